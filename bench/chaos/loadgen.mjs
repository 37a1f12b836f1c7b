// The load generator of bench/chaos, in its own process so that it never shares an event loop with the bench's
// orchestration (status polling, signals) or with shoal.
//
//   node loadgen.mjs '{"url": "http://127.0.0.1:8000/?text=hi", "loops": 16, "seconds": 12, "deadlineMs": 5000,
//                      "clientTimeoutMs": 6000}'
//
// `loops` closed loops, each on its own keep-alive connection (a node:http Agent with maxSockets 1), send GET
// requests back to back for `seconds`. Every request carries `x-shoal-timeout-ms: deadlineMs`; the client gives up
// on it after `clientTimeoutMs` (from the first attempt, retry included) and destroys the socket.
//
// Retry policy, as a load balancer's `retry_on: reset` (Envoy): a request is sent again, once, only when its
// connection was reset (ECONNRESET, "socket hang up", EPIPE) before any byte of a response arrived. Nothing else
// is retried: not a timeout, not a refused connection, not a non-2xx answer. Retries are counted on their own.
//
// A loop whose request got no answer at all (refused, reset, timed out) waits FAIL_PAUSE_MS before its next one, as
// a client would: otherwise 16 loops spin on ECONNREFUSED while no head or worker listens, taking the CPU that the
// restarting cluster needs and inflating the request count.
//
// Prints a line {"t0": <Date.now() at the start>} when the loops start, and one JSON summary line at the end:
// { requests, ok, failed, failures: {kind: n}, examples: [..], clientRetries, retriedOk, over2s, overDeadline,
//   p50Ms, p99Ms, maxMs, timeline: [{ atMs, requests, failed, maxMs }] (500 ms buckets by request start) }.
import { Agent, request } from 'node:http';

const cfg = JSON.parse(process.argv[2]);
const url = new URL(cfg.url);
const deadlineMs = cfg.deadlineMs ?? 5000;
const clientTimeoutMs = cfg.clientTimeoutMs ?? 6000;
const BUCKET_MS = 500;
const RESET_CODES = new Set(['ECONNRESET', 'EPIPE']);
const FAIL_PAUSE_MS = 50;

const lat = [];
const failures = {};
const examples = [];
const timeline = [];
let requests = 0;
let ok = 0;
let failed = 0;
let clientRetries = 0;
let retriedOk = 0;

/** One attempt: resolves { status, code?, bytesSeen } or { error, bytesSeen }. Never rejects. */
function attempt(agent, timeLeftMs) {
  return new Promise((resolve) => {
    let bytesSeen = false;
    let settled = false;
    let sock;
    const onData = () => { bytesSeen = true; };
    const finish = (r) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock?.off('data', onData);
      resolve({ ...r, bytesSeen });
    };
    const req = request({
      agent, host: url.hostname, port: url.port, path: `${url.pathname}${url.search}`, method: 'GET',
      headers: { 'x-shoal-timeout-ms': String(deadlineMs) },
    }, (res) => {
      bytesSeen = true;
      const chunks = [];
      res.on('data', (c) => { if (res.statusCode < 200 || res.statusCode >= 300) chunks.push(c); });
      res.on('end', () => {
        let code;
        if (chunks.length > 0) { try { code = JSON.parse(Buffer.concat(chunks).toString()).code; } catch { /* not JSON */ } }
        finish({ status: res.statusCode, code, body: chunks.length > 0 ? Buffer.concat(chunks).toString().slice(0, 200) : undefined });
      });
      res.on('error', (e) => finish({ error: e.code ?? e.message, message: e.message }));
      res.on('aborted', () => finish({ error: 'ECONNRESET', message: 'response aborted mid-body' }));
    });
    req.on('socket', (s) => { sock = s; s.on('data', onData); });
    req.on('error', (e) => finish({ error: e.code ?? e.message, message: e.message }));
    const timer = setTimeout(() => {
      finish({ error: 'client-timeout', message: `no answer within ${clientTimeoutMs} ms` });
      req.destroy();
    }, Math.max(1, timeLeftMs));
    req.end();
  });
}

function bucket(startMs) {
  const i = Math.floor(startMs / BUCKET_MS);
  while (timeline.length <= i) timeline.push({ atMs: timeline.length * BUCKET_MS, requests: 0, failed: 0, maxMs: 0 });
  return timeline[i];
}

async function one(agent, t0) {
  const start = performance.now();
  requests++;
  let r = await attempt(agent, clientTimeoutMs);
  let retried = false;
  if (r.error !== undefined && RESET_CODES.has(r.error) && !r.bytesSeen) {
    clientRetries++;
    retried = true;
    r = await attempt(agent, clientTimeoutMs - (performance.now() - start));
  }
  const ms = performance.now() - start;
  lat.push(ms);
  const b = bucket(start - t0);
  b.requests++;
  b.maxMs = Math.max(b.maxMs, Math.round(ms));
  if (r.status !== undefined && r.status >= 200 && r.status < 300) {
    ok++;
    if (retried) retriedOk++;
    return;
  }
  failed++;
  b.failed++;
  const kind = r.status !== undefined ? `HTTP ${r.status}${r.code ? ` ${r.code}` : ''}` : `${r.error}${retried ? ' (after retry)' : ''}`;
  failures[kind] = (failures[kind] ?? 0) + 1;
  if (examples.length < 5) examples.push({ atMs: Math.round(start - t0), ms: Math.round(ms), kind, detail: r.body ?? r.message });
  if (r.status === undefined) await new Promise((resolve) => setTimeout(resolve, FAIL_PAUSE_MS));
}

const t0 = performance.now();
const end = t0 + cfg.seconds * 1000;
const agents = Array.from({ length: cfg.loops }, () => new Agent({ keepAlive: true, maxSockets: 1 }));
process.stdout.write(`${JSON.stringify({ t0: Date.now() })}\n`);
await Promise.all(agents.map(async (agent) => { while (performance.now() < end) await one(agent, t0); }));
for (const a of agents) a.destroy();
lat.sort((a, b) => a - b);
const pct = (p) => (lat.length === 0 ? null : Math.round(lat[Math.min(lat.length - 1, Math.max(0, Math.ceil((p / 100) * lat.length) - 1))] * 10) / 10);
process.stdout.write(`${JSON.stringify({
  requests, ok, failed, failures, examples, clientRetries, retriedOk,
  over2s: lat.filter((x) => x > 2000).length,
  overDeadline: lat.filter((x) => x > deadlineMs).length,
  p50Ms: pct(50), p99Ms: pct(99), maxMs: lat.length === 0 ? null : Math.round(lat.at(-1)),
  seconds: (performance.now() - t0) / 1000, timeline,
})}\n`);
