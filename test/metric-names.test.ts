/**
 * Metrics docs/METRICS.md names that no other test read by name, each read from a real /-/metrics scrape of a head
 * with a real worker process, with a value the test knows; and a guard that every documented name is read by some
 * test, so a new metric comes with one.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { env, type AppSpec } from '@shoal/core';
import type { Head } from '@shoal/head';
import { loadAppSpec } from '../packages/cli/src/main.ts';
import { deployFixture, handleFor, samples, startCluster, waitFor } from './helpers.ts';
import { documentedMetrics } from './metrics-doc.ts';

const ROOT = resolve(import.meta.dirname, '..');
const APP = resolve(import.meta.dirname, 'fixtures/metric-names-app.ts');
const CASCADE = resolve(import.meta.dirname, 'fixtures/cascade-app.ts');
const NATIVE = resolve(import.meta.dirname, 'fixtures/native-pool-app.ts');

let head: Head;
let spec: AppSpec;
let control: string;
const scrape = async (): Promise<string> => (await fetch(`${control}/-/metrics`)).text();
const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);
/** Sum of the series of `name` with `labels` in a fresh scrape. */
const value = async (name: string, labels: Record<string, string> = {}): Promise<number> => sum(samples(await scrape(), name, labels));
const get = (path: string): Promise<Response> => fetch(`${head.httpAddress}${path}`);

beforeAll(async () => {
  head = await startCluster({ workers: 1, workerTimeoutMs: 30_000, prices: { coreHour: 1 } });
  control = head.clusterAddress.replace(/^ws/, 'http');
  spec = await deployFixture(head, { module: APP, name: 'names' });
}, 60_000);
afterAll(async () => { await head?.stop(); });

describe('documented metrics, read by name', () => {
  it('batching, caching, autoscaling, waiting requests, start times, costs and event loops', async () => {
    const batch = { app: 'names', deployment: 'Doubler', method: 'double' };
    // The first item goes alone and is held running; the next two queue behind it, short of a batch of four.
    const doubled = [get('/double?x=1')];
    await waitFor('one item running', async () => (await value('shoal_batch_running_items', batch)) === 1);
    doubled.push(get('/double?x=2'), get('/double?x=3'));
    await waitFor('two items queued', async () => (await value('shoal_batch_queued_items', batch)) === 2);
    expect(await value('shoal_batch_running_items', batch)).toBe(1);

    for (let i = 0; i < 2; i++) expect(await (await get('/square?x=3')).json()).toEqual({ y: 9 });
    expect(await value('shoal_cache_entries', { app: 'names', deployment: 'Cached', store: 'memory' })).toBe(1);
    expect(await value('shoal_cache_bytes', { app: 'names', deployment: 'Cached', store: 'memory' })).toBeGreaterThan(0);

    expect(await (await get('/ping')).json()).toEqual({ y: 'pong' });
    expect(samples(await scrape(), 'shoal_autoscaling_target_replicas', { app: 'names', deployment: 'Scaled' })).toEqual([1]);

    // Held has one slot: of two HTTP calls through the worker's router, and two handle calls through the head's,
    // one of each waits in its router.
    const viaWorker = [get('/hold'), get('/hold')];
    const held = handleFor<{ hold(): Promise<string> }>(head, spec, 'Held');
    const viaHead = [held.hold(), held.hold()];
    const waiting = async (): Promise<[number, number]> => {
      const text = await scrape();
      return [sum(samples(text, 'shoal_worker_router_waiting_requests', { deployment: 'names/Held' })), sum(samples(text, 'shoal_router_waiting_requests', { deployment: 'names/Held' }))];
    };
    await waitFor('one call waiting in each router', async () => (await waiting()).join() === '1,1');
    expect(await (await get('/release')).json()).toEqual({ released: true });
    // Released, the batch of one answers; the two queued items go with two more, as a full batch.
    await waitFor('the held batch to end', async () => (await value('shoal_batch_running_items', batch)) === 0);
    expect(await value('shoal_batch_queued_items', batch)).toBe(2);
    doubled.push(get('/double?x=4'), get('/double?x=5'));
    expect(await Promise.all(doubled.map(async (r) => (await (await r).json() as { y: number }).y))).toEqual([2, 4, 6, 8, 10]);
    expect(await value('shoal_batch_queued_items', batch)).toBe(0);
    expect(await value('shoal_batch_wait_seconds_bucket', { ...batch, le: '+Inf' })).toBe(5);
    expect(await value('shoal_batch_batches_total', { ...batch, size: '4' })).toBe(1);
    expect(await Promise.all(viaWorker.map(async (r) => (await (await r).json() as { y: string }).y))).toEqual(['released', 'released']);
    expect(await Promise.all(viaHead)).toEqual(['released', 'released']);
    expect(await waiting()).toEqual([0, 0]);

    const text = await scrape();
    // One cold start per deployment, each counted in the +Inf bucket.
    for (const d of ['Front', 'Doubler', 'Cached', 'Scaled', 'Held']) {
      expect([d, samples(text, 'shoal_replica_start_seconds_bucket', { deployment: `names/${d}`, le: '+Inf' })]).toEqual([d, [1]]);
    }
    // Cores are priced (coreHour 1) and Front answered requests: its busy cost is a positive figure.
    const [busy] = samples(text, 'shoal_busy_cost_per_1k_requests', { app: 'names', deployment: 'Front' });
    expect(Number.isFinite(busy) && busy! > 0).toBe(true);
    for (const [p50, max] of [['shoal_head_event_loop_delay_p50_seconds', 'shoal_head_event_loop_delay_max_seconds'], ['shoal_worker_event_loop_delay_p50_seconds', 'shoal_worker_event_loop_delay_max_seconds']] as const) {
      const [a] = samples(text, p50);
      const [b] = samples(text, max);
      expect([samples(text, p50).length, samples(text, max).length]).toEqual([1, 1]);
      // Both over the same interval since the previous scrape (0 when it was too short to sample a delay).
      expect(b!).toBeGreaterThanOrEqual(a!);
    }
    // Exported with no series until a deployment consumes a broker stream (test/broker-*.test.ts run one).
    expect(text).toMatch(/^# TYPE shoal_broker_inflight gauge$/m);
  });

  it('cascade: escalations that agree anyway, and small answers given before any large latency was known', async () => {
    await deployFixture(head, { module: CASCADE, name: 'cascade', routePrefix: '/classify' });
    // Confidence (x mod 10) / 10 against 0.3: 0 and 10 escalate, and the small model agrees on both; 5 comes first,
    // before the large model has answered anything.
    for (const x of [5, 0, 3, 10]) {
      const res = await fetch(`${head.httpAddress}/classify`, { method: 'POST', body: JSON.stringify({ x }), headers: { 'content-type': 'application/json' } });
      expect(res.status).toBe(200);
    }
    const l = { app: 'cascade', deployment: 'classify' };
    expect(await value('shoal_cascade_escalation_agreements_total', l)).toBe(2);
    expect(await value('shoal_cascade_latency_unestimated_total', l)).toBe(1);
  });

  it('rollout: a canary at its first step takes 25% and its start is one decision', async () => {
    await deployFixture(head, { module: APP, exportName: 'canaryA', name: 'canary', routePrefix: '/canary' });
    await head.deploy(await loadAppSpec(APP, { exportName: 'canaryB', name: 'canary', routePrefix: '/canary' }));
    await waitFor('the canary to take traffic', async () => (await value('shoal_rollout_traffic_percent', { app: 'canary', deployment: 'Canaried', phase: 'canary' })) === 25);
    expect(await value('shoal_rollout_decisions_total', { deployment: 'canary/Canaried', action: 'start' })).toBe(1);
  });

  it('native pools and blobs of the worker\'s runtime (where the addon loads)', async (ctx) => {
    const loaded = (head.controller.status().workers[0]?.resources.devices.length ?? 0) > 0;
    if (!loaded) {
      if (env.requireNative()) throw new Error('SHOAL_REQUIRE_NATIVE=1 but the worker loaded no native addon');
      ctx.skip();
    }
    await deployFixture(head, { module: NATIVE, name: 'np', routePrefix: '/np' });
    const text = await scrape();
    // The fixture's pool: a 1 MiB budget, one 4096-byte block allocated from an empty cache (one miss).
    const pool = { device: '0' };
    expect(samples(text, 'shoal_native_pool_budget_bytes', pool)).toEqual([1 << 20]);
    expect(samples(text, 'shoal_native_pool_peak_bytes', pool)).toEqual([4096]);
    expect(samples(text, 'shoal_native_pool_cache_misses', pool)).toEqual([1]);
    expect(samples(text, 'shoal_native_pool_cached_bytes', pool)).toEqual([0]);
    // No weight blobs registered: every blob gauge of device 0 is there, at 0.
    for (const name of ['shoal_native_blob_resident_bytes', 'shoal_native_blob_idle_bytes', 'shoal_native_blob_evicted_bytes', 'shoal_native_blob_refs']) {
      expect([name, samples(text, name, { device: '0', backend: 'host' })]).toEqual([name, [0]]);
    }
  });
});

describe('every documented metric is read by some test', () => {
  it('names each shoal_* metric of docs/METRICS.md in a test file', () => {
    const sources: string[] = [];
    const walk = (dir: string): void => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        if (e.name === 'node_modules' || e.name === 'dist') continue;
        const p = join(dir, e.name);
        if (e.isDirectory()) walk(p);
        else if (e.name.endsWith('.ts')) sources.push(readFileSync(p, 'utf8'));
      }
    };
    walk(join(ROOT, 'test'));
    for (const pkg of readdirSync(join(ROOT, 'packages'))) { try { walk(join(ROOT, 'packages', pkg, 'test')); } catch { /* no tests */ } }
    const all = sources.join('\n');
    const documented = [...documentedMetrics()];
    expect(documented.length).toBeGreaterThan(50);
    // A histogram is read by its _bucket, _sum or _count series too.
    const read = (name: string): boolean => new RegExp(`(?<![a-z0-9_])${name}(?:_bucket|_sum|_count)?(?![a-z0-9_])`).test(all);
    expect(documented.filter((name) => !read(name))).toEqual([]);
  });
});
