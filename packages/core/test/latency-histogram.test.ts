import { describe, expect, it } from 'vitest';
import { LATENCY_BUCKETS, LatencyHistogram, addCounts, bucketUpperMs, denseCounts, emptyCounts, latencyBucket, quantileMs, subtractCounts } from '../src/index.ts';

describe('LatencyHistogram', () => {
  it('puts a duration in the first bucket whose bound holds it, within 15%', () => {
    for (const ms of [0, 0.05, 0.1, 0.2, 1, 3.3, 10, 99, 1234, 60_000]) {
      const k = latencyBucket(ms);
      expect(bucketUpperMs(k)).toBeGreaterThanOrEqual(ms);
      if (k > 0) expect(bucketUpperMs(k - 1)).toBeLessThan(ms);
      if (ms > 0.1) expect(bucketUpperMs(k) / ms).toBeLessThanOrEqual(1.15 + 1e-9);
    }
    expect(latencyBucket(1e12)).toBe(LATENCY_BUCKETS - 1);
    expect(latencyBucket(Number.NaN)).toBe(0);
  });

  it('reads quantiles, and windows by subtraction that survive a restarted replica', () => {
    const h = new LatencyHistogram();
    for (let i = 0; i < 990; i++) h.record(10);
    for (let i = 0; i < 10; i++) h.record(200, true);
    expect(quantileMs(h.counts, 0.5)).toBeCloseTo(bucketUpperMs(latencyBucket(10)), 9);
    expect(quantileMs(h.counts, 0.99)).toBeCloseTo(bucketUpperMs(latencyBucket(10)), 9);
    expect(quantileMs(h.counts, 0.999)).toBeCloseTo(bucketUpperMs(latencyBucket(200)), 9);
    const wire = { requests: h.requests, errors: h.errors, counts: denseCounts(h.sparse()) };
    expect(wire).toEqual({ requests: 1000, errors: 10, counts: h.counts });
    const base = { requests: 500, errors: 0, counts: denseCounts([latencyBucket(10), 500]) };
    expect(subtractCounts(wire, base)).toMatchObject({ requests: 500, errors: 10 });
    // A replica that restarted reports less than the baseline: its counts since the restart are the window.
    expect(subtractCounts(base, wire).requests).toBe(500);
    const sum = emptyCounts();
    addCounts(sum, wire);
    addCounts(sum, wire);
    expect(sum.requests).toBe(2000);
    expect(denseCounts([-1, 5, 1000, 5, 3, -2, 4, 7]).reduce((a, b) => a + b, 0)).toBe(7);
    expect(quantileMs(emptyCounts().counts, 0.99)).toBe(0);
  });
});
