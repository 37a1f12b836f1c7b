import { describe, expect, it } from 'vitest';
import { batch, createLogger, silentLogger } from '@shoal/core';
import type { WorkerStats } from '@shoal/protocol';
import { WorkerMetrics, type NativeGaugeSample } from '@shoal/worker';
import { HeadMetrics, mergeMetrics, type HeadMetricsOptions, type WorkerMetricsSource } from '../src/metrics.ts';

/** Names that appear in more than one `# HELP` or `# TYPE` line. */
function duplicateHeaders(text: string): string[] {
  const seen = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^# (HELP|TYPE) (\S+)/.exec(line);
    if (m !== null) seen.set(`${m[1]} ${m[2]}`, (seen.get(`${m[1]} ${m[2]}`) ?? 0) + 1);
  }
  return [...seen].filter(([, n]) => n > 1).map(([k]) => k);
}

/** The value of the one series of `name` whose labels include every one of `labels`. */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m === null || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
  }
  return undefined;
}

async function workerStats(replicaId: string): Promise<WorkerStats> {
  const predict = batch(async (xs: number[]) => xs.map((x) => x * 2), { maxBatchSize: 4, maxWaitMs: 1 });
  await Promise.all([predict(1), predict(2), predict(3)]);
  return {
    workerId: 'ignored',
    replicas: [{ replicaId, app: 'shop', deployment: 'Model', state: 'RUNNING', ongoing: 2, queued: 1, batch: { predict: predict.stats() } }],
    router: { 'shop/Model': { inflight: 3, waiting: 0, replicas: 2 } },
  };
}

function workerMetrics(workerId: string, stats: WorkerStats, native?: () => NativeGaugeSample[]): WorkerMetrics {
  return new WorkerMetrics({ workerId: () => workerId, stats: () => stats, logger: silentLogger, eventLoopResolutionMs: 1, ...(native ? { native } : {}) });
}

function source(workerId: string, metrics: WorkerMetrics): WorkerMetricsSource {
  return { workerId, request: () => ({ reply: metrics.json(), abandon: () => undefined }) };
}

function headOptions(workers: () => WorkerMetricsSource[], extra: Partial<HeadMetricsOptions> = {}): HeadMetricsOptions {
  return {
    status: () => ({
      applications: [{ name: 'shop', routePrefix: '/', ingress: 'Model', deployments: [{ name: 'Model', status: 'HEALTHY', message: '', numReplicas: 2, running: 2, failures: 0, version: 'v1', versions: [], decisions: [] }] }],
      replicas: [
        { replicaId: 'r1', app: 'shop', deployment: 'Model', version: 'v1', state: 'RUNNING', workerId: 'w1' },
        { replicaId: 'r2', app: 'shop', deployment: 'Model', version: 'v1', state: 'RUNNING', workerId: 'w2' },
      ],
      workers: [
        { workerId: 'w1', name: 'a', state: 'ALIVE', dataAddress: '', resources: { cpus: 1, memory: 1, gpus: 0, devices: [] }, used: { cpus: 0, gpus: 0, memory: 0 }, replicas: 1 },
        { workerId: 'w2', name: 'b', state: 'ALIVE', dataAddress: '', resources: { cpus: 1, memory: 1, gpus: 0, devices: [] }, used: { cpus: 0, gpus: 0, memory: 0 }, replicas: 1 },
      ],
    }),
    router: () => ({ 'shop/Model': { inflight: 5, waiting: 1, replicas: 2 } }),
    workers,
    logger: silentLogger,
    ...extra,
  };
}

describe('metrics merge', () => {
  it('builds the cluster status once per scrape, shared by every gauge that reads it', async () => {
    const base = headOptions(() => []);
    let calls = 0;
    const st = base.status();
    // A deployment with SLO and cost figures, so every SLO and cost gauge has something to read.
    st.applications[0]!.deployments[0]!.slo = {
      periodMs: 2_592_000_000, alerting: false,
      objectives: [{ name: 'availability', target: 0.99, attainment: { '5m': 1, '1h': 1, period: 1 }, periodCoveredMs: 1000, budgetRemaining: 1, burn: { '5m': 0, '30m': 0, '1h': 0, '6h': 0 }, coveredMs: { '5m': 1000, '30m': 1000, '1h': 1000, '6h': 1000 }, alerting: false }],
    };
    const head = new HeadMetrics({ ...base, status: () => { calls++; return st; } });
    const text = await head.scrape();
    expect(text).toMatch(/^shoal_slo_alerting\{app="shop",deployment="Model",objective="availability"\} 0$/m);
    expect(text).toMatch(/^shoal_replicas\{app="shop",deployment="Model",state="RUNNING"\} 2$/m);
    expect(calls).toBe(1);
    await head.scrape();
    expect(calls).toBe(2);
    head.close();
  });

  it('merges the head and every worker into one exposition: one HELP and TYPE per name, series apart by worker', async () => {
    const native = (): NativeGaugeSample[] => [
      { name: 'shoal_native_device_total_bytes', labels: { device: '0', backend: 'host' }, value: 1024 },
      { name: 'shoal_native_pool_used_bytes', labels: { pool: '1', device: '0' }, value: 256 },
    ];
    const w1 = workerMetrics('w1', await workerStats('r1'), native);
    const w2 = workerMetrics('w2', await workerStats('r2'));
    const head = new HeadMetrics(headOptions(() => [source('w1', w1), source('w2', w2)]));
    head.observeHttp('shop', 200, 0.01);
    head.observeHttp('shop', 200, 0.02);
    head.observeHttp('shop', 503, 0.001);
    // Block the event loop (both workers' gauges sample this process) for 30 ms on purpose, so the delay gauges
    // have one known delay to report.
    await new Promise((r) => setTimeout(r, 5)); // the gauge's first tick only sets its baseline
    const until = performance.now() + 30;
    while (performance.now() < until) { /* spin */ }
    await new Promise((r) => setTimeout(r, 5));
    const text = await head.scrape();
    w1.close();
    w2.close();

    expect(duplicateHeaders(text)).toEqual([]);
    expect(text.match(/^# TYPE process_resident_memory_bytes gauge$/gm)).toHaveLength(1);
    expect(sample(text, 'shoal_http_requests_total', { app: 'shop', code: '200' })).toBe(2);
    expect(sample(text, 'shoal_http_requests_total', { app: 'shop', code: '503' })).toBe(1);
    expect(sample(text, 'shoal_http_request_duration_seconds_count', { app: 'shop' })).toBe(3);
    expect(sample(text, 'shoal_router_inflight_requests', { deployment: 'shop/Model' })).toBe(5);
    expect(sample(text, 'shoal_workers_alive', {})).toBe(2);
    expect(sample(text, 'shoal_replicas', { deployment: 'Model', state: 'RUNNING' })).toBe(2);
    expect(sample(text, 'shoal_replicas', { deployment: 'Model', state: 'FAILED' })).toBe(0);
    for (const [worker, replica] of [['w1', 'r1'], ['w2', 'r2']] as const) {
      expect(sample(text, 'shoal_replica_ongoing_requests', { worker, replica })).toBe(2);
      expect(sample(text, 'shoal_replica_queued_requests', { worker, replica })).toBe(1);
      expect(sample(text, 'shoal_replica_state', { worker, replica, state: 'RUNNING' })).toBe(1);
      expect(sample(text, 'shoal_replica_state', { worker, replica, state: 'STARTING' })).toBe(0);
      expect(sample(text, 'shoal_batch_items_total', { worker, replica, method: 'predict', result: 'succeeded' })).toBe(3);
      expect(sample(text, 'shoal_batch_max_size', { worker, replica, method: 'predict' })).toBe(4);
      expect(sample(text, 'shoal_worker_router_inflight_requests', { worker, deployment: 'shop/Model' })).toBe(3);
      const [p50, p99, max] = ['p50', 'p99', 'max'].map((q) => sample(text, `shoal_worker_event_loop_delay_${q}_seconds`, { worker })!);
      expect(max).toBeGreaterThanOrEqual(0.025);
      expect(p50).toBeLessThanOrEqual(p99!);
      expect(p99).toBeLessThanOrEqual(max!);
      expect(sample(text, 'process_resident_memory_bytes', { worker })).toBeGreaterThan(0);
    }
    // Three items, maxBatchSize 4: however they were grouped, the batches hold all three.
    const batched = [1, 2, 3].reduce((s, size) => s + size * (sample(text, 'shoal_batch_batches_total', { worker: 'w1', size: String(size) }) ?? 0), 0);
    expect(batched).toBe(3);
    expect(sample(text, 'shoal_native_device_total_bytes', { worker: 'w1', device: '0' })).toBe(1024);
    expect(sample(text, 'shoal_native_pool_used_bytes', { worker: 'w1', pool: '1' })).toBe(256);
    expect(sample(text, 'shoal_native_device_total_bytes', { worker: 'w2' })).toBeUndefined();
  });

  it('leaves out, and logs, a worker that does not answer in time or fails; the scrape still answers', async () => {
    const lines: string[] = [];
    const logger = createLogger('test', 'warn', (l) => lines.push(l));
    const w1 = workerMetrics('w1', await workerStats('r1'));
    let abandoned = 0;
    const stuck: WorkerMetricsSource = { workerId: 'w2', request: () => ({ reply: new Promise(() => undefined), abandon: () => { abandoned++; } }) };
    const broken: WorkerMetricsSource = { workerId: 'w3', request: () => ({ reply: Promise.reject(new Error('peer gone')), abandon: () => undefined }) };
    const head = new HeadMetrics(headOptions(() => [source('w1', w1), stuck, broken], { workerTimeoutMs: 50, logger }));
    const started = Date.now();
    const text = await head.scrape();
    w1.close();
    expect(Date.now() - started).toBeLessThan(1000);
    expect(abandoned).toBe(1);
    expect(sample(text, 'shoal_replica_ongoing_requests', { worker: 'w1' })).toBe(2);
    expect(text).not.toMatch(/worker="w[23]"/);
    expect(lines.map((l) => JSON.parse(l) as { msg: string; workerId?: string })).toContainEqual(expect.objectContaining({ msg: expect.stringMatching(/no answer in time/), workerId: 'w2' }));
    expect(lines.join('\n')).toMatch(/peer gone/);
  });

  it('keeps series with equal labels from two registries as one (summed), with one header', async () => {
    const w1 = workerMetrics('w1', await workerStats('r1'));
    const json = await w1.json();
    w1.close();
    const text = await mergeMetrics([json, json]).metrics();
    expect(duplicateHeaders(text)).toEqual([]);
    expect(sample(text, 'shoal_replica_ongoing_requests', { worker: 'w1', replica: 'r1' })).toBe(4);
  });

  it('leaves out native gauges after the addon fails once, and says so once', async () => {
    const lines: string[] = [];
    let calls = 0;
    const w = new WorkerMetrics({
      workerId: () => 'w1', stats: () => ({ workerId: 'w1', replicas: [], router: {} }), logger: createLogger('test', 'warn', (l) => lines.push(l)),
      native: () => {
        calls++;
        if (calls > 1) throw new Error('device lost');
        return [{ name: 'shoal_native_device_free_bytes', labels: { device: '0', backend: 'cuda' }, value: 7 }];
      },
    });
    expect(await w.registry.metrics()).not.toMatch(/shoal_native/);
    expect(JSON.stringify(await w.json())).toMatch(/shoal_native_device_free_bytes/);
    expect(JSON.stringify(await w.json())).not.toMatch(/shoal_native/);
    await w.json();
    w.close();
    expect(calls).toBe(2);
    expect(lines.filter((l) => l.includes('device lost'))).toHaveLength(1);
  });
});
