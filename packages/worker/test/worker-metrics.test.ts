/** The worker's per-deployment histograms, fed through the observers a replica, its batch queues and the router get. */
import { describe, expect, it } from 'vitest';
import { silentLogger } from '@shoal/core';
import { WorkerMetrics } from '../src/worker-metrics.ts';

function metrics(): WorkerMetrics {
  return new WorkerMetrics({ workerId: () => 'w1', stats: () => ({ workerId: 'w1', replicas: [], router: {} }), logger: silentLogger });
}

/** The value of the one series of `name` with exactly these labels (worker included), or undefined. */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  const want = Object.entries(labels).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => `${k}="${v}"`).join(',');
  for (const line of text.split('\n')) {
    const m = /^([\w:]+)\{(.*)\} (\S+)$/.exec(line);
    if (m === null || m[1] !== name) continue;
    const have = [...m[2]!.matchAll(/(\w+)="([^"]*)"/g)].map((x) => `${x[1]}="${x[2]}"`).sort().join(',');
    if (have === want) return Number(m[3]);
  }
  return undefined;
}

describe('WorkerMetrics observers', () => {
  it('records a replica\'s waits, compute and model loads per deployment, in seconds, with no replica label', async () => {
    const m = metrics();
    const o = m.replicaObserver('shop', 'Ranker');
    o.queueWaited(0);
    o.queueWaited(30);
    o.computed(4);
    o.modelLoaded(1500, true);
    o.modelLoaded(20, false);
    const text = await m.text();
    m.close();
    const labels = { worker: 'w1', app: 'shop', deployment: 'Ranker' };
    expect(sample(text, 'shoal_request_queue_wait_seconds_count', labels)).toBe(2);
    expect(sample(text, 'shoal_request_queue_wait_seconds_sum', labels)).toBeCloseTo(0.03, 9);
    // The wait of 0 lands in the first bucket.
    expect(sample(text, 'shoal_request_queue_wait_seconds_bucket', { ...labels, le: '0.0005' })).toBe(1);
    expect(sample(text, 'shoal_request_compute_seconds_sum', labels)).toBeCloseTo(0.004, 9);
    expect(sample(text, 'shoal_multiplex_model_load_seconds_count', { ...labels, result: 'ok' })).toBe(1);
    expect(sample(text, 'shoal_multiplex_model_load_seconds_sum', { ...labels, result: 'ok' })).toBeCloseTo(1.5, 9);
    expect(sample(text, 'shoal_multiplex_model_load_seconds_count', { ...labels, result: 'error' })).toBe(1);
    expect(text).not.toMatch(/shoal_request_queue_wait_seconds_count\{[^}]*replica=/);
  });

  it('records a batched method\'s sizes, release reasons, waits and runs per method', async () => {
    const m = metrics();
    const b = m.replicaObserver('shop', 'Ranker').batch('score');
    b.released(8, 'full');
    b.released(3, 'timeout');
    b.released(5, 'full');
    for (let i = 0; i < 16; i++) b.waited(2);
    b.ran(12, 8);
    const text = await m.text();
    m.close();
    const labels = { worker: 'w1', app: 'shop', deployment: 'Ranker', method: 'score' };
    expect(sample(text, 'shoal_batch_releases_total', { ...labels, reason: 'full' })).toBe(2);
    expect(sample(text, 'shoal_batch_releases_total', { ...labels, reason: 'timeout' })).toBe(1);
    expect(sample(text, 'shoal_batch_size_count', labels)).toBe(3);
    expect(sample(text, 'shoal_batch_size_sum', labels)).toBe(16);
    expect(sample(text, 'shoal_batch_size_bucket', { ...labels, le: '4' })).toBe(1);
    expect(sample(text, 'shoal_batch_wait_seconds_count', labels)).toBe(16);
    expect(sample(text, 'shoal_batch_run_seconds_sum', labels)).toBeCloseTo(0.012, 9);
    // A batched method's runs are not counted as requests' compute as well.
    expect(text).not.toMatch(/^shoal_request_compute_seconds_count\{/m);
  });

  it('records the router\'s end-to-end times by outcome and its waits for a slot, the key split into app and deployment', async () => {
    const m = metrics();
    m.routes.observeAnswered('shop/Ranker', 250, true);
    m.routes.observeAnswered('shop/Ranker', 40, false);
    m.routes.observeQueued('shop/Ranker', 100);
    const text = await m.text();
    m.close();
    const labels = { worker: 'w1', app: 'shop', deployment: 'Ranker' };
    expect(sample(text, 'shoal_request_duration_seconds_sum', { ...labels, outcome: 'ok' })).toBeCloseTo(0.25, 9);
    expect(sample(text, 'shoal_request_duration_seconds_count', { ...labels, outcome: 'error' })).toBe(1);
    expect(sample(text, 'shoal_router_queue_wait_seconds_sum', labels)).toBeCloseTo(0.1, 9);
  });
});
