/**
 * Integration: a real Prometheus server (Debian's `prometheus`, started here with a generated config) scrapes a
 * live cluster's /-/metrics every second, and the test reads a request rate, counts and latency quantiles back
 * through Prometheus's HTTP API (/api/v1/query). The application's HTTP deployment calls a batched method of
 * another deployment, so one request feeds every per-deployment histogram.
 * Without the binary the test is skipped, or fails with SHOAL_REQUIRE_PROMTOOL=1 (CI sets it and installs the
 * `prometheus` package, which brings promtool too).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { env } from '@shoal/core';
import type { Head } from '@shoal/head';
import { deployFixture, freePort, startCluster, waitFor } from './helpers.ts';
import { documentedMetrics, exportedMetrics } from './metrics-doc.ts';

const PROMETHEUS = 'prometheus';
const prometheusMissing = spawnSync(PROMETHEUS, ['--version'], { stdio: 'ignore' }).error !== undefined;
if (prometheusMissing && !env.requirePromtool()) {
  process.stderr.write(`prometheus.test.ts: skipped: no ${PROMETHEUS} on PATH (Debian: apt-get install prometheus; SHOAL_REQUIRE_PROMTOOL=1 makes this a failure)\n`);
}

const APP = 'metered';
/** Requests the load sends, and how many at once; and the few sent first so that every series exists before it. */
const REQUESTS = 240;
const CONCURRENCY = 6;
const WARM_UP = 12;

let head: Head | undefined;
let prometheus: ChildProcess | undefined;
let promUrl = '';
let dir: string | undefined;
let promLog = '';
/** Unix seconds (Prometheus's time) just before the load started. */
let loadStartedAt = 0;

interface Sample { metric: Record<string, string>; value: [number, string] }

/** An instant query; the result vector. */
async function query(promql: string): Promise<Sample[]> {
  const res = await fetch(`${promUrl}/api/v1/query?${new URLSearchParams({ query: promql })}`);
  const body = await res.json() as { status: string; error?: string; data?: { resultType: string; result: Sample[] } };
  if (body.status !== 'success' || body.data === undefined) throw new Error(`query ${promql} failed: ${body.error ?? res.status}`);
  if (body.data.resultType !== 'vector') throw new Error(`query ${promql} gave a ${body.data.resultType}, not a vector`);
  return body.data.result;
}

/** The one value of a query that aggregates to a single series (NaN when it has none). */
async function scalar(promql: string): Promise<number> {
  const r = await query(promql);
  if (r.length > 1) throw new Error(`query ${promql} gave ${r.length} series, expected one`);
  return r.length === 0 ? Number.NaN : Number(r[0]!.value[1]);
}

/** A range covering everything since just before the load, in whole seconds (what increase() and rate() take). */
function sinceLoad(): string {
  return `${Math.ceil(Date.now() / 1000 - loadStartedAt) + 1}s`;
}

/**
 * A count Prometheus estimated for the load (increase(), or rate() times the range) is the requests sent, give or
 * take its extrapolation: at each end of the range it extends the series by up to about one scrape interval at the
 * range's average rate, which for a burst of a few seconds is tens of percent. Loose bounds, then.
 */
function expectAboutTheLoad(value: number, what: string): void {
  expect(value, what).toBeGreaterThan(REQUESTS * 0.5);
  expect(value, what).toBeLessThan(REQUESTS * 2);
}

async function sendLoad(count: number): Promise<void> {
  let next = 0;
  const statuses: number[] = [];
  const worker = async (): Promise<void> => {
    while (next < count) {
      const x = next++;
      const res = await fetch(`${head!.httpAddress}/?x=${x}`);
      expect(await res.json()).toEqual({ y: 2 * x });
      statuses.push(res.status);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  expect(statuses.filter((s) => s === 200)).toHaveLength(count);
}

describe.skipIf(prometheusMissing && !env.requirePromtool())('a real Prometheus server scraping the cluster', () => {
  beforeAll(async () => {
    if (prometheusMissing) throw new Error(`${PROMETHEUS} is not on PATH and SHOAL_REQUIRE_PROMTOOL=1: install it (Debian: apt-get install prometheus)`);
    // A worker paused by a slow scrape must not be declared dead: heartbeat silence is not what this file tests.
    head = await startCluster({ workerTimeoutMs: 30_000 });
    await deployFixture(head, { module: resolve(import.meta.dirname, 'fixtures/metrics-app.ts'), name: APP });
    dir = await mkdtemp(join(tmpdir(), 'shoal-prometheus-'));
    const target = new URL(head.clusterAddress.replace('ws://', 'http://')).host;
    const config = [
      'global:',
      '  scrape_interval: 1s',
      '  scrape_timeout: 1s',
      'scrape_configs:',
      '  - job_name: shoal',
      '    metrics_path: /-/metrics',
      '    static_configs:',
      `      - targets: ['${target}']`,
      '',
    ].join('\n');
    await writeFile(join(dir, 'prometheus.yml'), config);
    const port = await freePort();
    promUrl = `http://127.0.0.1:${port}`;
    prometheus = spawn(PROMETHEUS, [
      `--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn',
    ], { stdio: ['ignore', 'ignore', 'pipe'] });
    // Its last words, for the error when it does not come up (bounded: only the tail is kept).
    prometheus.stderr!.on('data', (b: Buffer) => { promLog = (promLog + b.toString()).slice(-4000); });
    const exited = new Promise<never>((_, reject) => prometheus!.once('exit', (code) => reject(new Error(`prometheus exited (${code}) before it was ready: ${promLog}`))));
    exited.catch(() => undefined);
    await Promise.race([exited, waitFor('prometheus to be ready', async () => (await fetch(`${promUrl}/-/ready`).catch(() => undefined))?.status === 200, 30_000)]);
    // It has scraped the head at least once, successfully.
    await waitFor('prometheus to scrape the head', async () => (await scalar('up{job="shoal"}')) === 1, 30_000);
  }, 90_000);

  afterAll(async () => {
    const p = prometheus;
    if (p !== undefined && p.exitCode === null && p.signalCode === null) {
      const gone = new Promise((resolveExit) => p.once('exit', resolveExit));
      p.kill('SIGTERM');
      await Promise.race([gone, new Promise((r) => setTimeout(r, 10_000))]);
      if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    }
    await head?.stop();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  }, 60_000);

  it('reads back the rate of the requests sent, and quantiles of the per-deployment histograms', async () => {
    const app = `app="${APP}"`;
    const answered = `sum(shoal_http_requests_total{${app},code="200"})`;
    // A counter born during the load would lose what it counted before its first scrape (increase() starts from
    // the first sample): a few requests first, scraped, so every series exists before the load.
    await sendLoad(WARM_UP);
    await waitFor('prometheus to see the warm-up', async () => (await scalar(answered)) === WARM_UP, 30_000);
    loadStartedAt = Date.now() / 1000;
    await sendLoad(REQUESTS);
    // Until a scrape after the load has landed: every request counted.
    await waitFor('prometheus to see every request', async () => (await scalar(answered)) === WARM_UP + REQUESTS, 30_000);
    // A few more scrape intervals: a range that ends on a flat counter, and longer than the burst, extrapolates less.
    await new Promise((r) => setTimeout(r, 3000));

    const range = sinceLoad();
    const seconds = Number(range.slice(0, -1));
    const rate = await scalar(`sum(rate(shoal_http_requests_total{${app}}[${range}]))`);
    expect(rate).toBeGreaterThan(0);
    // Over a range that holds the whole load, rate times the range is the requests sent.
    expectAboutTheLoad(rate * seconds, 'rate of shoal_http_requests_total times the range');

    // Every HTTP request reached Front, whose fetch called Doubler once: both deployments' end-to-end counts.
    for (const deployment of ['Front', 'Doubler']) {
      const ok = await scalar(`sum(increase(shoal_request_duration_seconds_count{${app},deployment="${deployment}",outcome="ok"}[${range}]))`);
      expectAboutTheLoad(ok, `requests ${deployment} answered`);
      const p99 = await scalar(`histogram_quantile(0.99, sum by (le) (rate(shoal_request_duration_seconds_bucket{${app},deployment="${deployment}"}[${range}])))`);
      expect(p99, deployment).toBeGreaterThan(0);
    }
    // Front's time in user code (it waits on Doubler), and Doubler's batches: their run, their items, their reasons.
    expect(await scalar(`histogram_quantile(0.5, sum by (le) (rate(shoal_request_compute_seconds_bucket{${app},deployment="Front"}[${range}])))`)).toBeGreaterThan(0);
    expect(await scalar(`histogram_quantile(0.5, sum by (le) (rate(shoal_batch_run_seconds_bucket{${app},deployment="Doubler",method="double"}[${range}])))`)).toBeGreaterThan(0);
    const items = await scalar(`sum(increase(shoal_batch_size_sum{${app},deployment="Doubler"}[${range}]))`);
    expectAboutTheLoad(items, 'items in Doubler\'s batches');
    const waits = await scalar(`sum(increase(shoal_batch_wait_seconds_count{${app},deployment="Doubler"}[${range}]))`);
    expectAboutTheLoad(waits, 'batch waits');
    const queueWaits = await scalar(`sum(increase(shoal_request_queue_wait_seconds_count{${app},deployment="Doubler"}[${range}]))`);
    expectAboutTheLoad(queueWaits, 'replica queue waits');
    const reasons = await query(`sum by (reason) (increase(shoal_batch_releases_total{${app},deployment="Doubler"}[${range}]))`);
    expect(reasons.length).toBeGreaterThan(0);
    for (const r of reasons) expect(['full', 'preferred', 'timeout', 'adaptive', 'idle']).toContain(r.metric.reason);
    const batches = reasons.reduce((n, r) => n + Number(r.value[1]), 0);
    const batchCount = await scalar(`sum(increase(shoal_batch_size_count{${app},deployment="Doubler"}[${range}]))`);
    // Each batch is released once, for one reason (both counts extrapolated alike).
    expect(Math.abs(batches - batchCount)).toBeLessThan(Math.max(2, batchCount * 0.1));
    // The head's own event loop, and the replicas by state.
    expect(await scalar('count(shoal_head_event_loop_delay_p99_seconds)')).toBe(1);
    expect(await scalar(`sum(shoal_replicas{${app},deployment="Front",state="RUNNING"})`)).toBe(2);
  }, 120_000);

  it('documents in docs/METRICS.md every shoal_* metric the cluster exported under load, and passes promtool', async () => {
    const res = await fetch(`${head!.clusterAddress.replace('ws://', 'http://')}/-/metrics`);
    const text = await res.text();
    const names = exportedMetrics(text);
    expect(names).toContain('shoal_batch_releases_total');
    const documented = documentedMetrics();
    expect(names.filter((n) => !documented.has(n))).toEqual([]);
    // The batch histograms and counters this cluster has (test/metrics.test.ts lints one without batching).
    const lint = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    if (lint.error !== undefined) throw new Error(`promtool did not run (it comes with the prometheus package): ${lint.error.message}`);
    expect(`${lint.stdout}${lint.stderr}`.trim()).toBe('');
    expect(lint.status).toBe(0);
  });
});
