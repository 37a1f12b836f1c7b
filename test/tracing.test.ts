/**
 * Integration: OpenTelemetry spans of real requests through a real cluster (a head, two worker processes),
 * exported over OTLP/HTTP to a receiver this test runs. Every request's trace has the ingress span, the router's
 * call span, the replica's queue and compute spans, the downstream handle call with its own queue and compute,
 * and the batched method's wait; a batch's span links the requests it ran. X-Request-ID is echoed (or made) and
 * a client's traceparent is continued.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import { gunzipSync } from 'node:zlib';
import { resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { AppSpec } from '@shoal/core';
import type { Head } from '@shoal/head';
import { deployFixture, startCluster, waitFor } from './helpers.ts';

const APP = resolve(import.meta.dirname, 'fixtures/tracing-app.ts');

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes?: Array<{ key: string; value: Record<string, unknown> }>;
  links?: Array<{ traceId: string; spanId: string }>;
  status?: { code?: number; message?: string };
  startTimeUnixNano: string | number;
  endTimeUnixNano: string | number;
  service: string;
}

const spans: OtlpSpan[] = [];
let exports = 0;
let receiver: Server;
let head: Head;
let spec: AppSpec;

/** The OTLP/HTTP JSON receiver: keeps every span with its resource's service.name. */
function startReceiver(): Promise<number> {
  receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let body = Buffer.concat(chunks);
      if (req.headers['content-encoding'] === 'gzip') body = gunzipSync(body);
      if (req.url !== '/v1/traces' || req.method !== 'POST' || !String(req.headers['content-type']).startsWith('application/json')) {
        res.writeHead(415).end();
        return;
      }
      const doc = JSON.parse(body.toString('utf8')) as { resourceSpans: Array<{ resource: { attributes: OtlpSpan['attributes'] }; scopeSpans: Array<{ spans: Omit<OtlpSpan, 'service'>[] }> }> };
      exports++;
      for (const rs of doc.resourceSpans) {
        const service = String(rs.resource.attributes?.find((a) => a.key === 'service.name')?.value.stringValue);
        for (const ss of rs.scopeSpans) for (const s of ss.spans) spans.push({ ...s, service });
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  return new Promise((r) => receiver.listen(0, '127.0.0.1', () => r((receiver.address() as { port: number }).port)));
}

function attr(s: OtlpSpan, key: string): unknown {
  const v = s.attributes?.find((a) => a.key === key)?.value;
  return v === undefined ? undefined : Object.values(v)[0];
}

const hex = (bytes: number): string => randomBytes(bytes).toString('hex');

beforeAll(async () => {
  const port = await startReceiver();
  // Local workers inherit the environment: they export their spans to the receiver.
  process.env.SHOAL_OTLP_ENDPOINT = `http://127.0.0.1:${port}/v1/traces`;
  head = await startCluster();
  spec = await deployFixture(head, { module: APP, name: 'traced' });
}, 60_000);

afterAll(async () => {
  delete process.env.SHOAL_OTLP_ENDPOINT;
  await head?.stop();
  await new Promise((r) => receiver?.close(r));
});

function inTrace(traceId: string): OtlpSpan[] {
  return spans.filter((s) => s.traceId === traceId);
}

function one(trace: OtlpSpan[], name: string): OtlpSpan {
  const found = trace.filter((s) => s.name === name);
  expect(found.map((s) => s.name), `spans named "${name}" in trace: ${trace.map((s) => s.name).join(', ')}`).toEqual([name]);
  return found[0]!;
}

const EXPECTED = ['GET /', 'queue Front', 'compute Front.fetch', 'call traced/Model.predict', 'queue Model', 'compute Model.predict', 'batch Model.predict wait'];

describe('tracing over OTLP/HTTP', () => {
  it('echoes the client\'s X-Request-ID, makes one when absent, and the replica sees both ids', async () => {
    const given = await fetch(`${head.httpAddress}/?x=1`, { headers: { 'x-request-id': 'req-given-1' } });
    expect(given.status).toBe(200);
    expect(given.headers.get('x-request-id')).toBe('req-given-1');
    const body = await given.json() as { y: number; requestId: string; traceId: string };
    expect(body).toMatchObject({ y: 2, requestId: 'req-given-1' });
    expect(body.traceId).toMatch(/^[0-9a-f]{32}$/);

    const made = await fetch(`${head.httpAddress}/?x=2`);
    const id = made.headers.get('x-request-id');
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect((await made.json() as { requestId: string }).requestId).toBe(id);

    // An error answer carries it too.
    const failed = await fetch(`${head.httpAddress}/fail`, { headers: { 'x-request-id': 'req-failed' } });
    expect(failed.status).toBe(500);
    expect(failed.headers.get('x-request-id')).toBe('req-failed');
    // And the ingress's built-in endpoints.
    const health = await fetch(`${head.httpAddress}/-/healthz`, { headers: { 'x-request-id': 'req-health' } });
    expect(health.headers.get('x-request-id')).toBe('req-health');
  });

  it('every request\'s trace holds ingress, queue, compute and downstream spans, parented as the request went', async () => {
    const n = 12;
    const parents = Array.from({ length: n }, () => ({ traceId: hex(16), spanId: hex(8) }));
    const answers = await Promise.all(parents.map(async (p, i) => {
      const res = await fetch(`${head.httpAddress}/?x=${i}`, { headers: { traceparent: `00-${p.traceId}-${p.spanId}-01`, 'x-request-id': `req-${i}` } });
      expect(res.status).toBe(200);
      return await res.json() as { y: number; traceId: string; spanId: string; requestId: string };
    }));
    answers.forEach((a, i) => {
      expect(a.y).toBe(2 * i);
      // The client's trace goes on: the replica's span is in it.
      expect(a.traceId).toBe(parents[i]!.traceId);
    });
    await waitFor('every trace\'s spans to be exported', () => parents.every((p) => EXPECTED.every((name) => inTrace(p.traceId).some((s) => s.name === name))), 30_000);

    const computeModelIds = new Set<string>();
    parents.forEach((p, i) => {
      const trace = inTrace(p.traceId);
      const ingress = one(trace, 'GET /');
      expect(ingress.parentSpanId).toBe(p.spanId);
      expect(ingress.kind).toBe(2); // SERVER (OTLP numbering)
      expect(ingress.service).toBe('shoal-worker');
      expect(attr(ingress, 'shoal.request_id')).toBe(`req-${i}`);
      expect(attr(ingress, 'http.response.status_code')).toBe(200);
      // The ingress's span is the caller of the ingress deployment: its queue and compute spans are its children.
      expect(trace.some((s) => s.name === 'call traced/Front')).toBe(false);
      const queueFront = one(trace, 'queue Front');
      const computeFront = one(trace, 'compute Front.fetch');
      expect(queueFront.parentSpanId).toBe(ingress.spanId);
      expect(computeFront.parentSpanId).toBe(ingress.spanId);
      expect(attr(computeFront, 'shoal.request_id')).toBe(`req-${i}`);
      // User code ran inside the compute span: its requestContext().trace was that span.
      expect(answers[i]!.spanId).toBe(computeFront.spanId);
      const callModel = one(trace, 'call traced/Model.predict');
      expect(callModel.parentSpanId).toBe(computeFront.spanId);
      expect(callModel.kind).toBe(3); // CLIENT
      const queueModel = one(trace, 'queue Model');
      const computeModel = one(trace, 'compute Model.predict');
      expect(queueModel.parentSpanId).toBe(callModel.spanId);
      expect(computeModel.parentSpanId).toBe(callModel.spanId);
      const wait = one(trace, 'batch Model.predict wait');
      expect(wait.parentSpanId).toBe(computeModel.spanId);
      computeModelIds.add(computeModel.spanId);
      // Spans are well formed: none ends before it starts.
      for (const s of [ingress, queueFront, computeFront, callModel, queueModel, computeModel, wait]) expect(BigInt(s.endTimeUnixNano) >= BigInt(s.startTimeUnixNano), s.name).toBe(true);
      expect(BigInt(queueFront.startTimeUnixNano) <= BigInt(queueFront.endTimeUnixNano)).toBe(true);
    });

    // Each batch's span links every request it ran; together they cover all twelve, and some batch ran several.
    const batches = spans.filter((s) => s.name === 'batch Model.predict' && (s.links ?? []).some((l) => computeModelIds.has(l.spanId)));
    const linked = new Set(batches.flatMap((b) => (b.links ?? []).map((l) => l.spanId)));
    for (const id of computeModelIds) expect(linked.has(id)).toBe(true);
    for (const b of batches) expect(attr(b, 'shoal.batch.size')).toBe((b.links ?? []).length);
    expect(Math.max(...batches.map((b) => (b.links ?? []).length))).toBeGreaterThan(1);
    expect(exports).toBeGreaterThan(0);
  });

  it('a request without traceparent starts a trace at the ingress span', async () => {
    const res = await fetch(`${head.httpAddress}/?x=3`);
    const { traceId } = await res.json() as { traceId: string };
    await waitFor('the new trace\'s spans', () => EXPECTED.every((name) => inTrace(traceId).some((s) => s.name === name)), 30_000);
    const ingress = one(inTrace(traceId), 'GET /');
    expect(ingress.parentSpanId ?? '').toBe('');
  });

  it('a failing downstream call marks its spans, and the ingress span, as errors', async () => {
    const p = { traceId: hex(16), spanId: hex(8) };
    const res = await fetch(`${head.httpAddress}/fail`, { headers: { traceparent: `00-${p.traceId}-${p.spanId}-01` } });
    expect(res.status).toBe(500);
    const names = ['GET /', 'compute Front.fetch', 'call traced/Model.fail', 'compute Model.fail'];
    await waitFor('the failed trace\'s spans', () => names.every((name) => inTrace(p.traceId).some((s) => s.name === name)), 30_000);
    const trace = inTrace(p.traceId);
    for (const name of names) expect(one(trace, name).status?.code, name).toBe(2); // ERROR
    expect(one(trace, 'compute Model.fail').status?.message).toMatch(/model failed on purpose/);
    expect(attr(one(trace, 'GET /'), 'http.response.status_code')).toBe(500);
  });

  it('an unsampled traceparent is carried on but records nothing', async () => {
    const p = { traceId: hex(16), spanId: hex(8) };
    const res = await fetch(`${head.httpAddress}/?x=4`, { headers: { traceparent: `00-${p.traceId}-${p.spanId}-00` } });
    const body = await res.json() as { traceId: string };
    expect(body.traceId).toBe(p.traceId);
    // A sampled request sent after it is exported; by then the unsampled one would have been too.
    const q = { traceId: hex(16), spanId: hex(8) };
    await fetch(`${head.httpAddress}/?x=5`, { headers: { traceparent: `00-${q.traceId}-${q.spanId}-01` } });
    await waitFor('the sampled trace', () => EXPECTED.every((name) => inTrace(q.traceId).some((s) => s.name === name)), 30_000);
    // Each worker exports every second: two more periods leave none of them holding the first request's spans.
    await new Promise((r) => setTimeout(r, 2500));
    expect(inTrace(p.traceId)).toEqual([]);
  });
});
