/**
 * Integration: GET /-/metrics on a real head with real worker processes: request counters, replica gauges and
 * per-deployment latency histograms of every worker in one exposition that `promtool check metrics` accepts,
 * every shoal_* name documented in docs/METRICS.md, and a stuck worker left out, not waited on.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { env, type AppSpec } from '@shoal/core';
import type { Head } from '@shoal/head';
import { deployFixture, samples, startCluster } from './helpers.ts';
import { METRICS_DOC, definedMetrics, documentedMetrics, exportedMetrics } from './metrics-doc.ts';

let head: Head;
let spec: AppSpec;

beforeAll(async () => {
  // Heartbeat silence is not what this file tests: a worker paused for a scrape must not be declared dead.
  head = await startCluster({ workerTimeoutMs: 30_000 });
  spec = await deployFixture(head);
});
afterAll(async () => {
  await head?.stop();
});

/** Scrapes the public port (a worker answers with the head's merged text), or the head's control port. */
async function scrape(where: 'public' | 'control' = 'public'): Promise<{ text: string; contentType: string | null }> {
  const base = where === 'public' ? head.httpAddress : head.clusterAddress.replace('ws://', 'http://');
  const res = await fetch(`${base}/-/metrics`);
  expect(res.status).toBe(200);
  return { text: await res.text(), contentType: res.headers.get('content-type') };
}


function promtoolAvailable(): boolean {
  return spawnSync('promtool', ['--version'], { stdio: 'ignore' }).error === undefined;
}

describe('GET /-/metrics', () => {
  it('counts requests per application and status code, and shows every worker\'s replicas', async () => {
    for (let i = 0; i < 5; i++) expect((await fetch(`${head.httpAddress}/incr`)).status).toBe(200);
    for (let i = 0; i < 2; i++) expect((await fetch(`${head.httpAddress}/fail-here`)).status).toBe(500);
    const { text, contentType } = await scrape();
    expect(contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    const app = spec.name;
    // Each worker's ingress counts what it answered (labelled worker=<id>); the cluster total is their sum.
    const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);
    expect(sum(samples(text, 'shoal_http_requests_total', { app, code: '200' }))).toBe(5);
    expect(sum(samples(text, 'shoal_http_requests_total', { app, code: '500' }))).toBe(2);
    expect(sum(samples(text, 'shoal_http_request_duration_seconds_count', { app }))).toBe(7);
    expect(samples(text, 'shoal_workers_alive')).toEqual([2]);
    expect(samples(text, 'shoal_replicas', { app, deployment: 'Counter', state: 'RUNNING' })).toEqual([2]);
    // The head answers the same merged exposition on its control port, where Prometheus can scrape it directly.
    const direct = await fetch(`${head.clusterAddress.replace('ws://', 'http://')}/-/metrics`);
    expect([direct.status, direct.headers.get('content-type')]).toEqual([200, contentType]);
    const directText = await direct.text();
    expect(sum(samples(directText, 'shoal_http_requests_total', { app, code: '200' }))).toBe(5);
    expect(samples(directText, 'shoal_workers_alive')).toEqual([2]);

    // Counter's two replicas sit on the two workers; each worker reports its own replicas, labelled with its id.
    const workers = head.controller.status().workers.map((w) => w.workerId);
    expect(workers).toHaveLength(2);
    for (const replica of head.controller.status().replicas) {
      const labels = { worker: replica.workerId, replica: replica.replicaId, deployment: replica.deployment };
      expect(samples(text, 'shoal_replica_state', { ...labels, state: 'RUNNING' })).toEqual([1]);
      expect(samples(text, 'shoal_replica_ongoing_requests', labels)).toEqual([0]);
      expect(samples(text, 'shoal_replica_queued_requests', labels)).toEqual([0]);
    }
    for (const worker of workers) {
      expect(samples(text, 'shoal_worker_event_loop_delay_p99_seconds', { worker })).toHaveLength(1);
      expect(samples(text, 'process_resident_memory_bytes', { worker })[0]).toBeGreaterThan(0);
    }
    expect(samples(text, 'process_resident_memory_bytes')).toHaveLength(3);  // the head and two workers
    // The native addon, where it is built, reports its device through each worker.
    if (env.requireNative()) for (const worker of workers) expect(samples(text, 'shoal_native_device_total_bytes', { worker }).length).toBeGreaterThan(0);
  });

  it('times each request per deployment: end to end at the router, its wait for a replica slot, its compute', async () => {
    for (let i = 0; i < 3; i++) expect((await fetch(`${head.httpAddress}/incr`)).status).toBe(200);
    const { text } = await scrape();
    const app = spec.name;
    const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);
    // Front's fetch calls Counter once per request: each deployment's histograms count every one of them, summed
    // over the workers whose routers and replicas saw them (earlier tests' requests included, so at least 3).
    for (const deployment of ['Front', 'Counter']) {
      const labels = { app, deployment };
      const answered = sum(samples(text, 'shoal_request_duration_seconds_count', { ...labels, outcome: 'ok' }));
      expect(answered, deployment).toBeGreaterThanOrEqual(3);
      expect(sum(samples(text, 'shoal_request_queue_wait_seconds_count', labels)), deployment).toBe(answered + sum(samples(text, 'shoal_request_duration_seconds_count', { ...labels, outcome: 'error' })));
      expect(sum(samples(text, 'shoal_request_compute_seconds_count', labels)), deployment).toBeGreaterThanOrEqual(3);
      expect(sum(samples(text, 'shoal_request_compute_seconds_sum', labels)), deployment).toBeGreaterThan(0);
    }
    expect(samples(text, 'shoal_head_event_loop_delay_p99_seconds')).toHaveLength(1);
  });

  it('documents every shoal_* metric it exports, and every one the sources define, in docs/METRICS.md', async () => {
    const { text } = await scrape();
    const documented = documentedMetrics();
    const exported = exportedMetrics(text);
    expect(exported.length).toBeGreaterThan(20);
    expect(exported.filter((n) => !documented.has(n)), `add these to ${METRICS_DOC}`).toEqual([]);
    // Series only some clusters export (cascades, the native addon, multiplexing) are checked at their source.
    const defined = definedMetrics();
    expect(defined.size).toBeGreaterThan(40);
    expect([...defined].filter(([n]) => !documented.has(n)).map(([n, file]) => `${n} (${file})`), `add these to ${METRICS_DOC}`).toEqual([]);
  });

  it('passes `promtool check metrics`', async (ctx) => {
    if (!promtoolAvailable()) {
      if (env.requirePromtool()) throw new Error('promtool is not on PATH and SHOAL_REQUIRE_PROMTOOL=1: install it (Debian: apt-get install prometheus)');
      ctx.skip();
    }
    const { text } = await scrape();
    const lint = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect(`${lint.stdout}${lint.stderr}`.trim()).toBe('');
    expect(lint.status).toBe(0);
  });

  it('leaves out a worker that does not answer in time; the scrape does not wait for it', async () => {
    const pid = head.localWorkerPids()[0]!;
    const paused = head.controller.status().workers.find((w) => w.pid === pid)!.workerId;
    process.kill(pid, 'SIGSTOP');
    try {
      const started = Date.now();
      // The head's own port: a connection to the public port may be one the stopped worker holds.
      const { text } = await scrape('control');
      expect(Date.now() - started).toBeLessThan(5000);
      expect(samples(text, 'process_resident_memory_bytes', { worker: paused })).toEqual([]);
      expect(samples(text, 'process_resident_memory_bytes')).toHaveLength(2);
      expect(samples(text, 'shoal_workers_alive')).toEqual([2]);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    // Once it runs again it is back in the next scrape (its late answer to the last one was dropped).
    const { text } = await scrape('control');
    expect(samples(text, 'process_resident_memory_bytes', { worker: paused })).toHaveLength(1);
  });
});
