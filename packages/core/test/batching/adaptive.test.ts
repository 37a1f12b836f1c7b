import { describe, expect, it } from 'vitest';
import { AdaptiveBatchController, BatchQueue } from '../../src/batching/index.ts';
import { FakeClock } from '../../src/clock.ts';
import { quantile, simulate, syntheticModel, type LatencyCurve } from './helpers.ts';

/** Runs an adaptive queue against a synthetic model at a Poisson load; returns its stats and the late p99. */
async function run(curve: LatencyCurve, ratePerSec: number, objectiveMs: number, durationMs = 30_000) {
  const clock = new FakeClock();
  const queue = new BatchQueue<number, number>(
    { maxBatchSize: 64, maxWaitMs: 20, latencyObjective: { percentile: 99, ms: objectiveMs } },
    syntheticModel(clock, curve),
    { clock },
  );
  const { latencies, rejected } = await simulate({ clock, queue, ratePerSec, durationMs });
  // Judge the second half only: the first is the controller learning.
  const p99 = quantile(latencies.filter(([t]) => t >= durationMs / 2).map(([, ms]) => ms), 0.99);
  return { stats: queue.stats(), p99, rejected, queue };
}

describe('adaptive batching', () => {
  it('on a curve where batching pays, grows batches and keeps p99 within the objective', async () => {
    const curve: LatencyCurve = (n) => 10 + 2 * n;
    const { stats, p99 } = await run(curve, 150, 50);
    expect(stats.adaptive?.batchingPays).toBe('yes');
    expect(stats.effective.maxBatchSize).toBeGreaterThanOrEqual(4);
    expect(curve(stats.effective.maxBatchSize)).toBeLessThanOrEqual(50);
    expect(stats.effective.maxWaitMs).toBeGreaterThan(0);
    expect(p99).toBeLessThanOrEqual(50);
  });

  it('under overload converges near the largest batch whose latency fits the objective', async () => {
    // A GPU-like curve: flat to 10 items, then 1 ms per item. 58 items take 58 ms, within 60.
    const curve: LatencyCurve = (n) => Math.max(10, n);
    const { stats, rejected } = await run(curve, 1500, 60, 10_000);
    expect(rejected).toBeGreaterThan(0);
    expect(stats.effective.maxBatchSize).toBeGreaterThanOrEqual(48);
    expect(curve(stats.effective.maxBatchSize)).toBeLessThanOrEqual(60);
  });

  it('learns not to wait when per-item time does not fall with batch size', async () => {
    const curve: LatencyCurve = (n) => 4 * n;
    const { stats, p99 } = await run(curve, 150, 50);
    expect(stats.adaptive?.batchingPays).toBe('no');
    expect(stats.effective.maxWaitMs).toBe(0);
    expect(p99).toBeLessThanOrEqual(50);
  });

  it('still batches when the objective cannot be met, for throughput', async () => {
    // One item alone takes 31 ms of a 50 ms objective, so queueing alone breaks it at 20/s.
    const { stats, p99 } = await run((n) => 30 + n, 20, 50);
    expect(stats.effective.maxBatchSize).toBeGreaterThan(1);
    expect(p99).toBeLessThan(100);
  });

  it('keeps the learned curve across reconfigure, and drops the controller when the objective goes', async () => {
    const { queue } = await run((n) => 10 + 2 * n, 150, 50);
    const learned = queue.stats().adaptive?.curve.length ?? 0;
    expect(learned).toBeGreaterThan(3);
    queue.reconfigure({ maxBatchSize: 32 });
    expect(queue.stats().adaptive?.curve).toHaveLength(learned);
    queue.reconfigure({ latencyObjective: undefined, maxWaitMs: 7 });
    expect(queue.stats().adaptive).toBeUndefined();
    expect(queue.stats().effective).toEqual({ maxBatchSize: 32, maxWaitMs: 7 });
  });
});

describe('AdaptiveBatchController', () => {
  const objective = { percentile: 99, ms: 50, decreaseFactor: 0.75, windowBatches: 4 };
  const feed = (controller: AdaptiveBatchController, curve: LatencyCurve, sizes: number[]): void => {
    for (const size of sizes) {
      const serviceMs = curve(size);
      controller.observe({ size, serviceMs, latenciesMs: Array(size).fill(serviceMs), backlog: 0, epoch: controller.epoch });
    }
  };

  it('tells from the fitted curve whether batching pays', () => {
    const gain = new AdaptiveBatchController({ maxBatchSize: 32, maxWaitMs: 10 }, objective);
    expect(gain.batchingPays()).toBe('unknown');
    feed(gain, (n) => 8 + n, [1, 2, 4, 8]);
    expect(gain.batchingPays()).toBe('yes');
    expect(gain.predictServiceMs(16)).toBeCloseTo(24);

    const none = new AdaptiveBatchController({ maxBatchSize: 32, maxWaitMs: 10 }, objective);
    feed(none, (n) => 3 * n, [1, 2, 4, 8]);
    expect(none.batchingPays()).toBe('no');
    expect(none.effective().maxWaitMs).toBe(0);
  });

  it('slow-starts while batches are full and the objective holds, never past the configured bound', () => {
    const controller = new AdaptiveBatchController({ maxBatchSize: 12, maxWaitMs: 10 }, objective);
    const sizes: number[] = [];
    for (let i = 0; i < 6; i++) {
      const size = controller.effective().maxBatchSize;
      sizes.push(size);
      feed(controller, (n) => 2 + 0.5 * n, Array(4).fill(size));
    }
    expect(sizes).toEqual([1, 2, 4, 8, 12, 12]);
  });

  it('shrinks multiplicatively on a violation when batching does not pay', () => {
    const controller = new AdaptiveBatchController({ maxBatchSize: 64, maxWaitMs: 10 }, objective);
    for (let i = 0; i < 4; i++) {
      const size = controller.effective().maxBatchSize;
      feed(controller, (n) => n, Array(4).fill(size));
    }
    expect(controller.effective().maxBatchSize).toBe(16);
    // Queue waits push the tail past 50 ms: 16 * 0.75 = 12.
    for (let i = 0; i < 4; i++) controller.observe({ size: 16, serviceMs: 16, latenciesMs: [80], backlog: 0, epoch: controller.epoch });
    expect(controller.snapshot()).toMatchObject({ maxBatchSize: 12, maxWaitMs: 0, batchingPays: 'no', lastTailMs: 80 });
  });
});
