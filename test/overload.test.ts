/**
 * Integration: batching, backpressure, deadlines and cancellation with a real head and real worker processes.
 * Nothing here asserts wall-clock times: "fast" is asserted as "answered while the admitted requests still run".
 */
import { setMaxListeners } from 'node:events';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CancelledError, DeadlineExceededError, type AppSpec, type BatchQueueStats } from '@shoal/core';
import type { Head } from '@shoal/head';
import type { ReplicaStats } from '@shoal/protocol';
import { deployFixture, handleFor, startCluster, waitFor } from './helpers.ts';
import type { Batcher, Relay, Sink, Timed, Front } from './fixtures/batching-app.ts';

const MODULE = resolve(import.meta.dirname, 'fixtures/batching-app.ts');

let head: Head;
let front: AppSpec;
let relay: AppSpec;
let busy: AppSpec;
let timed: AppSpec;
const url = (p: string): string => `${head.httpAddress}${p}`;

// One worker: its ingress and its router are the only ones, so queue bounds (maxQueuedRequests is per router:
// every worker's ingress keeps its own queue) and counts below are exact.
beforeAll(async () => {
  head = await startCluster({ workers: 1, workerCpus: 16 });
  front = await deployFixture(head, { module: MODULE, name: 'front', routePrefix: '/' });
  relay = await deployFixture(head, { module: MODULE, exportName: 'relay', name: 'relay', routePrefix: '/relay' });
  busy = await deployFixture(head, { module: MODULE, exportName: 'busy', name: 'busy', routePrefix: '/busy' });
  timed = await deployFixture(head, { module: MODULE, exportName: 'timed', name: 'timed', routePrefix: '/timed' });
});
afterAll(async () => {
  await head?.stop();
});

async function replicaStats(app: string, deployment: string): Promise<ReplicaStats> {
  const { workers } = await head.stats();
  const found = workers.flatMap((w) => w.replicas).find((r) => r.app === app && r.deployment === deployment && r.state === 'RUNNING');
  if (found === undefined) throw new Error(`no running replica of ${app}/${deployment}`);
  return found;
}

async function batchStats(method: 'predict' | 'hold'): Promise<BatchQueueStats> {
  const s = (await replicaStats('relay', 'Batcher')).batch[method];
  if (s === undefined) throw new Error(`Batcher has no batched method ${method}`);
  return s;
}

/** Every in-flight count in the cluster, by where it is kept; all 0 when nothing is in flight. */
async function nonZeroCounts(): Promise<string[]> {
  const { router, workers } = await head.stats();
  const out: string[] = [];
  const routers = [['head', router] as const, ...workers.map((w) => [`worker ${w.workerId}`, w.router] as const)];
  for (const [where, stats] of routers) {
    for (const [key, s] of Object.entries(stats)) {
      if (s.inflight !== 0 || s.waiting !== 0) out.push(`${where} router ${key}: inflight=${s.inflight} waiting=${s.waiting}`);
    }
  }
  for (const r of workers.flatMap((w) => w.replicas)) {
    if (r.ongoing !== 0 || r.queued !== 0) out.push(`replica ${r.app}/${r.deployment}: ongoing=${r.ongoing} queued=${r.queued}`);
    for (const [m, b] of Object.entries(r.batch)) {
      if (b.queued !== 0 || b.running !== 0 || b.inFlight !== 0 || b.runningBatches !== 0) {
        out.push(`batch ${r.app}/${r.deployment}.${m}: queued=${b.queued} running=${b.running} inFlight=${b.inFlight}`);
      }
    }
  }
  return out;
}

async function expectAllCountsZero(): Promise<void> {
  let last: string[] = [];
  await waitFor('every in-flight count to return to 0', async () => (last = await nonZeroCounts()).length === 0, 15_000).catch(() => undefined);
  expect(last).toEqual([]);
}

describe('batching through the runtime', () => {
  it('forms batches larger than 1 from 200 concurrent calls', async () => {
    const batcher = handleFor<Batcher>(head, relay, 'Batcher');
    const before = (await batchStats('predict')).batchSizeCounts;
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => batcher.predict(i)));
    expect(results).toEqual(Array.from({ length: 200 }, (_, i) => i * 2));
    const after = (await batchStats('predict')).batchSizeCounts;
    const sizes = Object.keys(after).map(Number);
    const newBatches = sizes.map((size) => ({ size, count: (after[size] ?? 0) - (before[size] ?? 0) })).filter((b) => b.count > 0);
    expect(newBatches.reduce((n, b) => n + b.size * b.count, 0)).toBe(200);
    expect(Math.max(...newBatches.map((b) => b.size))).toBeGreaterThan(1);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(16);
  });

  it('carries the handle\'s priority into requestContext()', async () => {
    const batcher = handleFor<Batcher>(head, relay, 'Batcher');
    expect(await batcher.withOptions({ priority: 2 }).priority()).toBe(2);
    expect(await batcher.priority()).toBeUndefined();
  });

  it('takes a priority from the x-shoal-priority header, passes it to downstream calls, and refuses a bad one', async () => {
    const get = async (headers: Record<string, string>): Promise<{ status: number; body: unknown }> => {
      const res = await fetch(url('/priority'), { headers });
      return { status: res.status, body: await res.json() };
    };
    expect(await get({ 'x-shoal-priority': '3' })).toEqual({ status: 200, body: { own: 3, downstream: 3 } });
    expect(await get({})).toEqual({ status: 200, body: { own: null, downstream: null } });
    const bad = await get({ 'x-shoal-priority': 'high' });
    expect(bad.status).toBe(400);
    expect(bad.body).toMatchObject({ error: expect.stringMatching(/x-shoal-priority.*must be an integer/) as unknown });
  });
});

describe('backpressure', () => {
  it('answers 503 with the numbers and Retry-After at once, instead of queueing past maxQueuedRequests', async () => {
    const ac = new AbortController();
    setMaxListeners(0, ac.signal);
    const outcomes: Array<{ status: number; body: { error?: string; code?: string }; retryAfter: string | null }> = [];
    const requests = Array.from({ length: 12 }, () => fetch(url('/busy?ms=20000'), { signal: ac.signal }).then(async (res) => {
      outcomes.push({ status: res.status, body: await res.json() as { error?: string }, retryAfter: res.headers.get('retry-after') });
    }, () => undefined));
    // 2 run, 4 wait at the router, 6 are refused; the refusals arrive while the admitted ones are still running.
    await waitFor('six refusals', () => outcomes.length >= 6, 10_000);
    expect(outcomes.map((o) => o.status)).toEqual([503, 503, 503, 503, 503, 503]);
    for (const o of outcomes) {
      expect(o.body.code).toBe('ERR_QUEUE_FULL');
      expect(o.body.error).toMatch(/queued=4, maxQueuedRequests=4 for deployment "busy\/Busy"/);
      expect(Number(o.retryAfter)).toBeGreaterThanOrEqual(1);
    }
    const { workers } = await head.stats();
    expect(workers[0]!.router['busy/Busy']).toMatchObject({ inflight: 2, waiting: 4 });
    expect((await replicaStats('busy', 'Busy')).ongoing).toBe(2);
    ac.abort();
    await Promise.all(requests);
    expect(outcomes).toHaveLength(6);
    await expectAllCountsZero();
  });

  it('answers 413 for a body over maxRequestBytes before it reaches a worker', async () => {
    const ingress = handleFor<Front>(head, front, 'Front');
    const before = await ingress.count();
    const res = await fetch(url('/echo'), { method: 'POST', body: 'x'.repeat(2000) });
    expect(res.status).toBe(413);
    expect(await res.json()).toMatchObject({ code: 'ERR_REQUEST_TOO_LARGE', error: expect.stringMatching(/2000 bytes exceeds maxRequestBytes=1024/) as unknown });
    expect(await ingress.count()).toBe(before);
    const ok = await fetch(url('/echo'), { method: 'POST', body: 'x'.repeat(1000) });
    expect(await ok.json()).toEqual({ bytes: 1000 });
    expect(await ingress.count()).toBe(before + 1);
  });
});

describe('deadlines', () => {
  it('answers 504 past the x-shoal-timeout-ms deadline, and the downstream call sees its signal aborted', async () => {
    const sink = handleFor<Sink>(head, front, 'Sink');
    const res = await fetch(url('/sink?id=deadline-1'), { headers: { 'x-shoal-timeout-ms': '300' } });
    expect(res.status).toBe(504);
    expect(await res.json()).toMatchObject({ code: 'ERR_DEADLINE_EXCEEDED' });
    await waitFor('the downstream to see the abort', async () => (await sink.status('deadline-1')) === 'aborted', 10_000);
    await expectAllCountsZero();
  });

  it('applies the deployment default deadline (requestTimeoutMs) to HTTP and to handle calls', async () => {
    const res = await fetch(url('/timed'));
    expect(res.status).toBe(504);
    const t = handleFor<Timed>(head, timed, 'Timed');
    await expect(t.sleep(10_000)).rejects.toBeInstanceOf(DeadlineExceededError);
    // A call's own timeout replaces the default.
    expect(await t.withOptions({ timeoutMs: 5000 }).sleep(600)).toEqual({ aborted: false });
    await expectAllCountsZero();
  });

  it('takes a request that passes its deadline out of the batch queue', async () => {
    const batcher = handleFor<Batcher>(head, relay, 'Batcher');
    const calls = Array.from({ length: 20 }, (_, i) => batcher.withOptions({ timeoutMs: 400 }).hold(i).catch((e: unknown) => e));
    const results = await Promise.all(calls);
    for (const r of results) expect(r).toBeInstanceOf(DeadlineExceededError);
    await expectAllCountsZero();
    const totals = (await batchStats('hold')).totals;
    expect(totals.deadlineExceeded + totals.cancelled).toBeGreaterThanOrEqual(20);
  });
});

describe('cancellation', () => {
  it('cancels a running request when the HTTP client disconnects, down to the downstream deployment', async () => {
    const sink = handleFor<Sink>(head, front, 'Sink');
    const ac = new AbortController();
    const req = fetch(url('/sink?id=disconnect-1'), { signal: ac.signal }).catch((e: unknown) => e);
    await waitFor('the downstream to start', async () => (await sink.status('disconnect-1')) === 'waiting', 10_000);
    ac.abort();
    expect(await req).toBeInstanceOf(Error);
    await waitFor('the downstream to see the abort', async () => (await sink.status('disconnect-1')) === 'aborted', 10_000);
    await expectAllCountsZero();
  });

  it('brings every in-flight count back to 0 after cancelling 1000 calls mid-flight', async () => {
    const ac = new AbortController();
    setMaxListeners(0, ac.signal);
    const r = handleFor<Relay>(head, relay, 'Relay').withOptions({ signal: ac.signal });
    const calls = Array.from({ length: 1000 }, (_, i) => r.forward(i).then(() => 'answered', (e: unknown) => e));
    // Requests wait at every stage: the head's router, the Relay worker's router, the replica, the batch queue.
    await waitFor('requests queued at every stage', async () => {
      const hold = await batchStats('hold');
      return hold.running > 0 && hold.queued > 0 && (head.router.stats()['relay/Relay']?.waiting ?? 0) > 0;
    }, 20_000);
    const before = (await batchStats('hold')).totals.cancelled;
    ac.abort();
    const outcomes = await Promise.all(calls);
    for (const o of outcomes) expect(o).toBeInstanceOf(CancelledError);
    await expectAllCountsZero();
    // Cancellation reached the batch queue of the downstream deployment, not just the callers.
    expect((await batchStats('hold')).totals.cancelled - before).toBeGreaterThan(0);
  });
});

describe('run-time reconfiguration', () => {
  it('changes batch options through userConfig without restarting the replica', async () => {
    const batcher = handleFor<Batcher>(head, relay, 'Batcher');
    const v1 = await batcher.whoami();
    expect(v1.userConfig).toMatchObject({ tag: 'v1' });
    expect((await batchStats('predict')).effective).toEqual({ maxBatchSize: 16, maxWaitMs: 20 });

    const next = structuredClone(relay);
    const d = next.deployments.find((x) => x.name === 'Batcher')!;
    d.options.userConfig = { batch: { predict: { maxBatchSize: 4, maxWaitMs: 5 } }, tag: 'v2' };
    await head.deploy(next);
    await waitFor('the new userConfig to reach the replica', async () => ((await batcher.whoami()).userConfig as { tag?: string }).tag === 'v2', 10_000);

    const v2 = await batcher.whoami();
    expect(v2.pid).toBe(v1.pid);
    expect(v2.replicaId).toBe(v1.replicaId);
    expect((await batchStats('predict')).effective).toEqual({ maxBatchSize: 4, maxWaitMs: 5 });
    const before = (await batchStats('predict')).batchSizeCounts;
    await Promise.all(Array.from({ length: 100 }, (_, i) => batcher.predict(i)));
    const after = (await batchStats('predict')).batchSizeCounts;
    const grewAbove4 = Object.keys(after).map(Number).filter((size) => size > 4 && (after[size] ?? 0) !== (before[size] ?? 0));
    expect(grewAbove4).toEqual([]);
    expect(Object.keys(after).map(Number).some((size) => size > 1 && size <= 4 && (after[size] ?? 0) > (before[size] ?? 0))).toBe(true);
  });
});
