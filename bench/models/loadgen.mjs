// The load generator of bench/models, in its own process so it never shares an event loop with a server.
// Modes: "rate" (open loop: a request every 1/rate s for `seconds`, at most `maxInFlight` outstanding; past it a
// request is dropped and counted), "closed" (`concurrency` connections back to back for `seconds`) and "burst"
// (`size` requests at once, `count` times, each after the previous burst has finished plus `gapMs`).
//   node loadgen.mjs '{"url": "...", "bodyFile": "...", "headers": {}, "mode": "rate", "rate": 100, "seconds": 3}'
// Prints one JSON line: { sent, ok, errors, dropped, seconds, rps, p50Ms, p99Ms, maxMs, firstError }.
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:http';

const cfg = JSON.parse(process.argv[2]);
const body = readFileSync(cfg.bodyFile);
const url = new URL(cfg.url);
const agent = new Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 4096 });
const headers = { 'content-type': 'application/octet-stream', 'content-length': String(body.byteLength), ...(cfg.headers ?? {}) };
const lat = [];
let sent = 0;
let ok = 0;
let errors = 0;
let dropped = 0;
let inFlight = 0;
let firstError;

function once() {
  sent++;
  inFlight++;
  const t0 = performance.now();
  return new Promise((resolve) => {
    const done = (good, why) => {
      inFlight--;
      if (good) { ok++; lat.push(performance.now() - t0); } else { errors++; firstError ??= why; }
      resolve();
    };
    const req = request({ agent, host: url.hostname, port: url.port, path: url.pathname, method: 'POST', headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => { if (res.statusCode !== 200) chunks.push(c); });
      res.on('end', () => done(res.statusCode === 200, `HTTP ${res.statusCode}: ${Buffer.concat(chunks).toString().slice(0, 300)}`));
      res.on('error', (e) => done(false, e.message));
    });
    req.on('error', (e) => done(false, e.message));
    req.end(body);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const t0 = performance.now();
if (cfg.mode === 'closed') {
  const end = t0 + cfg.seconds * 1000;
  await Promise.all(Array.from({ length: cfg.concurrency }, async () => { while (performance.now() < end) await once(); }));
} else if (cfg.mode === 'rate') {
  const interval = 1000 / cfg.rate;
  const total = Math.round(cfg.rate * cfg.seconds);
  const pending = [];
  for (let i = 0; i < total; i++) {
    const due = t0 + i * interval;
    const wait = due - performance.now();
    if (wait > 1) await sleep(wait);
    if (inFlight >= (cfg.maxInFlight ?? 256)) { dropped++; continue; }
    pending.push(once());
  }
  await Promise.all(pending);
} else if (cfg.mode === 'burst') {
  for (let b = 0; b < cfg.count; b++) {
    await Promise.all(Array.from({ length: cfg.size }, () => once()));
    await sleep(cfg.gapMs ?? 100);
  }
} else {
  throw new Error(`unknown mode ${cfg.mode}`);
}
const seconds = (performance.now() - t0) / 1000 - (cfg.mode === 'burst' ? (cfg.count * (cfg.gapMs ?? 100)) / 1000 : 0);
lat.sort((a, b) => a - b);
const pct = (p) => (lat.length === 0 ? null : lat[Math.min(lat.length - 1, Math.max(0, Math.ceil((p / 100) * lat.length) - 1))]);
process.stdout.write(`${JSON.stringify({ sent, ok, errors, dropped, seconds, rps: ok / seconds, p50Ms: pct(50), p99Ms: pct(99), maxMs: lat.at(-1) ?? null, firstError })}\n`);
agent.destroy();
