/**
 * Autoscaling with real processes (issue 10, items 4, 5 and 9): a head in this process, two local workers, the
 * application of test/fixtures/faults-autoscale.ts (a fixed ingress calling `Slow`, 0..4 replicas, upscale delay
 * 500 ms, downscale delays 1500 ms, target one ongoing request per replica), and load from a generator in its own
 * process that records every request's outcome.
 *
 * - A load step from one loop to eight scales `Slow` up: its target, then its running count, rise within a few
 *   seconds of the step, never sooner than the upscale delay after it; no request fails; the decision is exported.
 * - Idle, it scales to zero (target 0, nothing running); the next request waits for a replica to start, within its
 *   deadline, and succeeds; the cold start is exported.
 *
 * The time bounds are generous (a loaded two-core CI machine meets them), except the lower one, which holds on any
 * machine: no decision can come before its delay.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolve } from 'node:path';
import type { Head } from '@shoal/head';
import { deployFixture, startCluster, waitFor } from './helpers.ts';
import { AUTOSCALING, SLOW_MS } from './fixtures/faults-autoscale.ts';
import { Pids, metric, scrape, sleep, startLoad, status, type Status } from './fixtures/faults-harness.ts';

const APP = resolve(import.meta.dirname, 'fixtures/faults-autoscale.ts');
const KEY = 'auto/Slow';
const DEADLINE_MS = 5000;
const CLIENT_TIMEOUT_MS = 8000;

// Local workers inherit this process's environment: their replica state changes are not what these tests read.
process.env.SHOAL_LOG_LEVEL ??= 'warn';

const pids = new Pids();
let head: Head;

beforeAll(async () => {
  head = await startCluster({ workers: 2 });
  await deployFixture(head, { module: APP, name: 'auto' });
  pids.seen(await status(head));
});
afterAll(async () => {
  await head?.stop();
  pids.killAll();
});

function slowOf(s: Status): { target: number; running: number; numReplicas: number } {
  const d = s.applications.find((a) => a.name === 'auto')!.deployments.find((x) => x.name === 'Slow')!;
  return { target: d.autoscaling!.target, running: d.running, numReplicas: d.numReplicas };
}

function report(name: string, numbers: Record<string, unknown>): void {
  process.stdout.write(`[autoscale] ${name} ${JSON.stringify(numbers)}\n`);
}

describe('autoscaling', () => {
  it('a load step from 1 to 8 loops scales up within a few seconds, not before upscaleDelayMs, with 0 failed requests', async () => {
    const url = `${head.httpAddress}/?ms=${SLOW_MS}`;
    const load = await startLoad(pids, { url, loops: 1, deadlineMs: DEADLINE_MS, clientTimeoutMs: CLIENT_TIMEOUT_MS });
    // One loop wants one replica: wait for that, and for a full look-back window of it.
    await waitFor('Slow at one replica under one loop', async () => { const s = await status(head); return s !== undefined && slowOf(s).target === 1 && slowOf(s).running === 1; }, 20_000);
    await sleep(AUTOSCALING.lookBackPeriodMs + AUTOSCALING.upscaleDelayMs + 500);
    const metricsBefore = await scrape(head);
    const upscalesBefore = metric(metricsBefore, 'shoal_autoscaling_decisions_total', { deployment: KEY, reason: 'upscale' });
    const steady = slowOf((await status(head))!);
    expect(steady).toEqual({ target: 1, running: 1, numReplicas: 1 });

    // Taken before the generator starts the new loops: anything seen after it is at least this late.
    const stepAt = Date.now();
    await load.setLoops(8);
    let targetUpAt: number | undefined;
    let runningUpAt: number | undefined;
    let maxTarget = 1;
    await waitFor('Slow at maxReplicas, all running', async () => {
      const s = await status(head);
      if (s === undefined) return false;
      const now = Date.now();
      const { target, running } = slowOf(s);
      maxTarget = Math.max(maxTarget, target);
      if (targetUpAt === undefined && target > 1) targetUpAt = now;
      if (runningUpAt === undefined && running > 1) runningUpAt = now;
      return target === AUTOSCALING.maxReplicas && running === AUTOSCALING.maxReplicas;
    }, 30_000);
    const fullAt = Date.now();
    await sleep(1000);
    const summary = await load.stop();
    const upscalesAfter = metric(await scrape(head), 'shoal_autoscaling_decisions_total', { deployment: KEY, reason: 'upscale' });
    report('load-step', {
      requests: summary.requests, failed: summary.requests - summary.ok, clientRetries: summary.clientRetries, maxMs: summary.maxMs, p50Ms: summary.p50Ms,
      targetUpMs: targetUpAt! - stepAt, runningUpMs: runningUpAt! - stepAt, fullMs: fullAt - stepAt, maxTarget, upscales: upscalesAfter - upscalesBefore,
    });

    expect({ failed: summary.requests - summary.ok, failures: summary.failures }).toEqual({ failed: 0, failures: {} });
    expect(summary.clientRetries).toBe(0);
    expect(summary.requests).toBeGreaterThan(50);
    // Not before the delay: the larger count must have been wanted for upscaleDelayMs, and the want began after the step.
    expect(targetUpAt! - stepAt).toBeGreaterThanOrEqual(AUTOSCALING.upscaleDelayMs);
    expect(runningUpAt!).toBeGreaterThanOrEqual(targetUpAt!);
    // Within a few seconds (generous: the look-back window, the delay, a replica start, on a loaded machine).
    expect(targetUpAt! - stepAt).toBeLessThan(8000);
    expect(fullAt - stepAt).toBeLessThan(15_000);
    expect(maxTarget).toBe(AUTOSCALING.maxReplicas);
    expect(upscalesAfter - upscalesBefore).toBeGreaterThanOrEqual(1);
  });

  it('idle scales to zero, and the next request waits for a replica within its deadline and succeeds', async () => {
    const idleFrom = Date.now();
    let zero: Status | undefined;
    await waitFor('Slow at zero replicas', async () => {
      zero = await status(head);
      const slow = zero === undefined ? undefined : slowOf(zero);
      // Running 0 comes first; the last replica is listed DRAINING until its drain ends.
      return slow !== undefined && slow.target === 0 && slow.running === 0 && zero!.replicas.every((r) => !(r.app === 'auto' && r.deployment === 'Slow'));
    }, 30_000);
    const zeroMs = Date.now() - idleFrom;
    expect(zero!.replicas.filter((r) => r.app === 'auto' && r.deployment === 'Slow')).toEqual([]);
    const before = await scrape(head);
    const toZero = metric(before, 'shoal_autoscaling_decisions_total', { deployment: KEY, reason: 'downscale-to-zero' });
    const startsBefore = metric(before, 'shoal_replica_start_seconds_count', { deployment: KEY });
    const fromZeroBefore = metric(before, 'shoal_autoscaling_decisions_total', { deployment: KEY, reason: 'scale-from-zero' });
    expect(toZero).toBeGreaterThanOrEqual(1);

    const timeoutMs = 10_000;
    const t0 = performance.now();
    const res = await fetch(`${head.httpAddress}/?ms=1`, { headers: { 'x-shoal-timeout-ms': String(timeoutMs) }, signal: AbortSignal.timeout(timeoutMs + 5000) });
    const body = await res.text();
    const coldMs = performance.now() - t0;
    const after = await scrape(head);
    const startsAfter = metric(after, 'shoal_replica_start_seconds_count', { deployment: KEY });
    const startSecondsSum = metric(after, 'shoal_replica_start_seconds_sum', { deployment: KEY }) - metric(before, 'shoal_replica_start_seconds_sum', { deployment: KEY });
    const slow = slowOf((await status(head))!);
    report('scale-to-zero', { zeroMs, coldMs: Math.round(coldMs), replicaStartMs: Math.round(startSecondsSum * 1000), status: res.status, after: slow });

    expect(res.status, body).toBe(200);
    expect(coldMs).toBeLessThan(timeoutMs);
    expect(startsAfter - startsBefore).toBe(1);
    expect(metric(after, 'shoal_autoscaling_decisions_total', { deployment: KEY, reason: 'scale-from-zero' }) - fromZeroBefore).toBe(1);
    expect(slow).toEqual({ target: 1, running: 1, numReplicas: 1 });
  });
});
