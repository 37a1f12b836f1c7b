import { describe, expect, it } from 'vitest';
import { LATENCY_BUCKETS, bucketUpperMs, compileSlo, latencyBucket } from '@shoal/core';
import {
  DeploymentSeries, FINE_STEP_MS, SloTracker, alertingOf, costOf, edgeOf, edgesOf, objectivesOf, sloStatusOf, trafficOf, type ReplicaSample,
} from '../src/slo/index.ts';

const FAST = latencyBucket(2);
const SLOW = latencyBucket(500);
const MIN = 60_000;
const HOUR = 3_600_000;
const RES = { cpus: 1, devices: 0 };

/** A replica's cumulative counters, advanced interval by interval. */
class FakeReplica {
  requests = 0;
  errors = 0;
  busyMs = 0;
  readonly counts = new Array<number>(LATENCY_BUCKETS).fill(0);
  /** `n` requests, `slow` of them slow (500 ms), `errors` of them failed, `busy` ms busy. */
  serve(n: number, slow: number, errors = 0, busy = 0): this {
    this.requests += n;
    this.errors += errors;
    this.counts[FAST]! += n - slow;
    this.counts[SLOW]! += slow;
    this.busyMs += busy;
    return this;
  }
  sample(): ReplicaSample {
    return { requests: this.requests, errors: this.errors, counts: [...this.counts], busyMs: this.busyMs };
  }
}

function seriesFor(slo: unknown, now = 0): { series: DeploymentSeries; status: (t: number) => ReturnType<typeof sloStatusOf> } {
  const c = compileSlo(slo, 'slo');
  const objectives = objectivesOf(c);
  const series = new DeploymentSeries(now, edgesOf(objectives), c.windowMs);
  return { series, status: (t) => sloStatusOf(series, objectives, c.windowMs, t) };
}

/** Feeds `intervals` reports 10 s apart from t0 + 10 s; returns the time of the last. */
function run(series: DeploymentSeries, r: FakeReplica, t0: number, intervals: number, each: (r: FakeReplica, i: number) => void, id = 'r1'): number {
  let t = t0;
  for (let i = 0; i < intervals; i++) {
    t += FINE_STEP_MS;
    each(r, i);
    series.observe(t, id, r.sample(), RES, 0);
  }
  return t;
}

describe('SLO arithmetic', () => {
  it('rounds a latency threshold down to a bucket edge (a request in the bucket straddling it counts as slow)', () => {
    for (const ms of [0.1, 1, 7.5, 200, 1000, 88_000]) {
      const k = edgeOf(ms);
      expect(bucketUpperMs(k)).toBeLessThanOrEqual(ms * (1 + 1e-12));
      expect(bucketUpperMs(k + 1)).toBeGreaterThan(ms);
    }
    // 195 ms lies in the bucket above the 200 ms threshold's edge (190.6 ms).
    expect(latencyBucket(195)).toBe(edgeOf(200) + 1);
    expect(latencyBucket(150)).toBeLessThanOrEqual(edgeOf(200));
  });

  it('computes attainment, budget and burn rates from known counts, and pages on the 1 h / 5 m pair', () => {
    // The head has watched the deployment, idle, for 4 h before its first request: every window is covered.
    const { series, status } = seriesFor({ latency: { p99: 200 }, availability: 0.99 }, -4 * HOUR);
    const r = new FakeReplica();
    // Two hours at 2% slow and 1% failed: p99 burns at 2, availability at 1.
    let t = run(series, r, 0, 720, (x) => x.serve(100, 2, 1));
    let s = status(t);
    const [p99, avail] = s.objectives;
    expect(p99).toMatchObject({ name: 'p99', target: 0.99, thresholdMs: 200, alerting: false });
    expect(p99!.attainment['5m']).toBeCloseTo(0.98, 12);
    expect(p99!.attainment['1h']).toBeCloseTo(0.98, 12);
    expect(p99!.attainment.period).toBeCloseTo(0.98, 12);
    expect(p99!.burn['5m']).toBeCloseTo(2, 9);
    expect(p99!.burn['1h']).toBeCloseTo(2, 9);
    expect(p99!.burn['6h']).toBeCloseTo(2, 9);
    expect(p99!.budgetRemaining).toBeCloseTo(-1, 9);
    expect(avail).toMatchObject({ name: 'availability', target: 0.99, alerting: false });
    expect(avail!.burn['1h']).toBeCloseTo(1, 9);
    expect(avail!.budgetRemaining).toBeCloseTo(0, 9);
    expect(p99!.periodCoveredMs).toBe(t + 4 * HOUR);
    expect(p99!.coveredMs).toEqual({ '5m': 5 * MIN, '30m': 30 * MIN, '1h': HOUR, '6h': 6 * HOUR });
    // Ten minutes where every request is slow: 5 m burns at 100, 1 h at (300 x 2 + 60 x 100) / 360 = 18.3.
    t = run(series, r, t, 60, (x) => x.serve(100, 100));
    s = status(t);
    expect(s.objectives[0]!.burn['5m']).toBeCloseTo(100, 9);
    expect(s.objectives[0]!.burn['1h']).toBeCloseTo((300 * 2 + 60 * 100) / 360, 9);
    expect(s.objectives[0]!.alerting).toBe(true);
    expect(s.alerting).toBe(true);
    // Slow is not failed: availability saw no new errors, its 5 m burn is 0.
    expect(s.objectives[1]!.burn['5m']).toBe(0);
    expect(s.objectives[1]!.alerting).toBe(false);
    // Recovery: the short window clears first, so the fast pair stops paging though the hour still burns hot;
    // the slow pair still pages: 30 m at (90 x 2 + 60 x 100) / 180, the 2 h 15 m so far at 7440 / 81000 x 100.
    t = run(series, r, t, 30, (x) => x.serve(100, 0));
    s = status(t);
    expect(s.objectives[0]!.burn['5m']).toBe(0);
    expect(s.objectives[0]!.burn['1h']).toBeGreaterThan(14.4);
    expect(s.objectives[0]!.burn['30m']).toBeCloseTo((90 * 2 + 60 * 100) / 180, 9);
    expect(s.objectives[0]!.burn['6h']).toBeCloseTo(7440 / 810, 9);
    expect(s.objectives[0]!.alerting).toBe(true);
    // Another half hour of good answers: the 30 m window clears too, and nothing pages.
    t = run(series, r, t, 180, (x) => x.serve(100, 0));
    expect(status(t).objectives[0]!.alerting).toBe(false);
  });

  it('pages on the 6 h / 30 m pair alone', () => {
    const full = { '5m': 5 * MIN, '30m': 30 * MIN, '1h': HOUR, '6h': 6 * HOUR };
    expect(alertingOf({ '5m': 7, '1h': 7, '30m': 7, '6h': 6.5 }, full)).toBe(true);
    expect(alertingOf({ '5m': 20, '1h': 10, '30m': 7, '6h': 5 }, full)).toBe(false);
    expect(alertingOf({ '5m': 15, '1h': 15, '30m': null, '6h': null }, full)).toBe(true);
    expect(alertingOf({ '5m': null, '1h': 15, '30m': null, '6h': null }, full)).toBe(false);
    // A window not yet covered in full does not count, however hot it burns.
    expect(alertingOf({ '5m': 15, '1h': 15, '30m': null, '6h': null }, { ...full, '1h': HOUR - 1 })).toBe(false);
    expect(alertingOf({ '5m': 7, '1h': 7, '30m': 7, '6h': 6.5 }, { ...full, '6h': 5 * HOUR })).toBe(false);
  });

  it('does not page on a young series: a fresh deployment pages once its windows are covered', () => {
    const { series, status } = seriesFor({ availability: 0.999 });
    const r = new FakeReplica();
    // The first report: 1 failure in 10 burns at 100 over every window, but each covers only 10 s.
    let t = run(series, r, 0, 1, (x) => x.serve(10, 0, 1));
    let o = status(t).objectives[0]!;
    expect(o.burn['5m']).toBeCloseTo(100, 9);
    expect(o.burn['1h']).toBeCloseTo(100, 9);
    expect(o.coveredMs).toEqual({ '5m': 10_000, '30m': 10_000, '1h': 10_000, '6h': 10_000 });
    expect(o.alerting).toBe(false);
    // It keeps failing at that rate: still no page while the hour is short, though 5 m is covered.
    t = run(series, r, t, 354, (x) => x.serve(10, 0, 1));
    o = status(t).objectives[0]!;
    expect(t).toBe(HOUR - 50_000);
    expect(o.coveredMs['5m']).toBe(5 * MIN);
    expect(o.coveredMs['1h']).toBe(HOUR - 50_000);
    expect(o.alerting).toBe(false);
    // Once the series is an hour old, the 1 h / 5 m pair is real and pages; the 6 h one is still short.
    t = run(series, r, t, 5, (x) => x.serve(10, 0, 1));
    o = status(t).objectives[0]!;
    expect(o.coveredMs).toMatchObject({ '1h': HOUR, '6h': HOUR });
    expect(o.burn['1h']).toBeCloseTo(100, 9);
    expect(o.alerting).toBe(true);
    expect(status(t).alerting).toBe(true);
  });

  it('reports null where a window has no requests, and shorter windows while the series is young', () => {
    const { series, status } = seriesFor({ latency: { p50: 10 } });
    let s = status(0);
    expect(s.objectives[0]).toMatchObject({ attainment: { '5m': null, '1h': null, period: null }, budgetRemaining: null, alerting: false });
    expect(s.objectives[0]!.burn).toEqual({ '5m': null, '30m': null, '1h': null, '6h': null });
    const r = new FakeReplica();
    // 20 minutes of data: the hour and the period cover those 20 minutes.
    const t = run(series, r, 0, 120, (x, i) => x.serve(10, i < 60 ? 10 : 0));
    s = status(t);
    expect(s.objectives[0]!.attainment['1h']).toBeCloseTo(0.5, 12);
    expect(s.objectives[0]!.attainment.period).toBeCloseTo(0.5, 12);
    expect(s.objectives[0]!.attainment['5m']).toBe(1);
    expect(s.objectives[0]!.periodCoveredMs).toBe(20 * MIN);
    // An idle stretch: the recent windows hold no request, the period still does.
    s = status(t + 2 * HOUR);
    expect(s.objectives[0]!.attainment['5m']).toBeNull();
    expect(s.objectives[0]!.attainment['1h']).toBeNull();
    expect(s.objectives[0]!.attainment.period).toBeCloseTo(0.5, 12);
  });

  it('counts a restarted replica from zero again, and keeps what replicas that left answered', () => {
    const { series, status } = seriesFor({ availability: 0.9 });
    const a = new FakeReplica();
    let t = run(series, a, 0, 6, (x) => x.serve(100, 0, 10));
    // The replica restarts: its counters begin again, lower than before. Its 50 new requests are all new.
    const again = new FakeReplica().serve(50, 0, 0);
    t += FINE_STEP_MS;
    series.observe(t, 'r1', again.sample(), RES, 0);
    expect(series.current().requests).toBe(650);
    expect(series.current().errors).toBe(60);
    // A second replica joins, the first leaves: the totals never go back.
    const b = new FakeReplica();
    t = run(series, b, t, 3, (x) => x.serve(100, 0, 0), 'r2');
    series.forget('r1');
    expect(series.current().requests).toBe(950);
    expect(status(t).objectives[0]!.attainment.period).toBeCloseTo(890 / 950, 12);
  });

  it('keeps bounded points however long it runs: fine for the last hour, coarse for the period', () => {
    const { series, status } = seriesFor({ availability: 0.99, window: '1d' });
    const r = new FakeReplica();
    // Three days; only the last day counts for the period, and it had 1% errors (the first two had none).
    const t = run(series, r, 0, 3 * 8640, (x, i) => x.serve(100, 0, i >= 2 * 8640 ? 1 : 0));
    const { fine, coarse } = series.pointCount;
    expect(fine).toBeLessThanOrEqual(HOUR / FINE_STEP_MS + 2);
    expect(coarse).toBeLessThanOrEqual(86_400_000 / 300_000 + 2);
    const o = status(t).objectives[0]!;
    // The period's baseline is a coarse point at most 5 minutes before the day began.
    expect(o.attainment.period).toBeGreaterThanOrEqual(0.99);
    expect(o.attainment.period).toBeLessThan(0.9901);
    expect(o.periodCoveredMs).toBe(86_400_000);
    expect(o.burn['6h']).toBeCloseTo(1, 9);
  });

  it('starts latency windows again when the objectives change, keeping availability history', () => {
    const tracker = new SloTracker();
    const r = new FakeReplica();
    const sloA = compileSlo({ latency: { p99: 200 }, availability: 0.99 }, 's');
    const sloB = compileSlo({ latency: { p99: 1000 }, availability: 0.99 }, 's');
    let t = 0;
    for (let i = 0; i < 60; i++) { t += FINE_STEP_MS; tracker.observe(t, 'a/d', sloA, 'r1', r.serve(100, 10, 1).sample(), RES, 0); }
    expect(tracker.figures(t, 'a/d', sloA)!.slo!.objectives[0]!.attainment.period).toBeCloseTo(0.9, 12);
    // At 1000 ms the 500 ms requests are good; only requests since the change are judged on it.
    for (let i = 0; i < 6; i++) { t += FINE_STEP_MS; tracker.observe(t, 'a/d', sloB, 'r1', r.serve(100, 10, 1).sample(), RES, 0); }
    const s = tracker.figures(t, 'a/d', sloB)!.slo!;
    expect(s.objectives[0]).toMatchObject({ name: 'p99', thresholdMs: 1000 });
    expect(s.objectives[0]!.attainment.period).toBe(1);
    expect(s.objectives[0]!.periodCoveredMs).toBeLessThanOrEqual(6 * FINE_STEP_MS);
    // The series began with the first report.
    expect(s.objectives[1]!.periodCoveredMs).toBe(t - FINE_STEP_MS);
    expect(s.objectives[1]!.attainment.period).toBeCloseTo(0.99, 12);
  });

  it('treats an adopted replica\'s first report as a baseline (its counts are of unknown times)', () => {
    const tracker = new SloTracker();
    const slo = compileSlo({ availability: 0.99 }, 's');
    const old = new FakeReplica().serve(10_000, 0, 5_000, 1_000_000);
    tracker.markAdopted('r1');
    tracker.observe(10_000, 'a/d', slo, 'r1', old.sample(), RES, 0);
    tracker.observe(20_000, 'a/d', slo, 'r1', old.serve(100, 0, 0, 5_000).sample(), RES, 0);
    const f = tracker.figures(20_000, 'a/d', slo)!;
    expect(f.slo!.objectives[0]!.attainment.period).toBe(1);
    expect(f.cost.total.requests).toBe(100);
    expect(f.cost.total.idleShare).toBeCloseTo(0.5, 12);
    tracker.retain(() => false, () => false);
    expect(tracker.figures(20_000, 'a/d', slo)).toBeUndefined();
  });

  it('reads recent traffic: rate, error rate and quantiles over the last minute', () => {
    const { series } = seriesFor({ availability: 0.99 });
    expect(trafficOf(series, 0)).toEqual({ windowMs: 0, rps: 0, errorRate: 0, p50Ms: null, p95Ms: null, p99Ms: null });
    const r = new FakeReplica();
    // Five minutes at 50/s (500 per 10 s), the last minute with 2% slow and 1% errors.
    const t = run(series, r, 0, 30, (x, i) => x.serve(500, i >= 24 ? 10 : 0, i >= 24 ? 5 : 0));
    const tr = trafficOf(series, t);
    expect(tr.windowMs).toBe(MIN);
    expect(tr.rps).toBeCloseTo(50, 9);
    expect(tr.errorRate).toBeCloseTo(0.01, 12);
    expect(tr.p50Ms).toBeCloseTo(bucketUpperMs(FAST), 9);
    expect(tr.p99Ms).toBeCloseTo(bucketUpperMs(SLOW), 9);
  });
});

describe('cost arithmetic', () => {
  it('prices allocated resource-hours, divides by requests, and measures idle replica time', () => {
    const series = new DeploymentSeries(0, [], 30 * 86_400_000);
    const res = { cpus: 2, devices: 1 };
    const a = new FakeReplica();
    const b = new FakeReplica();
    let t = 0;
    // Two replicas asked to start at 0, reporting every 10 s for an hour, each busy 5 s of every 10 s.
    for (let i = 0; i < 360; i++) {
      t += FINE_STEP_MS;
      series.observe(t, 'a', a.serve(50, 0, 0, 5_000).sample(), res, 0);
      series.observe(t, 'b', b.serve(50, 0, 0, 5_000).sample(), res, 0);
    }
    const c = costOf(series.sinceStart(t), { coreHour: 0.04, deviceHour: 2.5 });
    expect(c.windowMs).toBe(HOUR);
    expect(c.requests).toBe(36_000);
    expect(c.allocatedCoreHours).toBeCloseTo(4, 12);
    expect(c.allocatedDeviceHours).toBeCloseTo(2, 12);
    expect(c.busyCoreHours).toBeCloseTo(2, 12);
    expect(c.busyDeviceHours).toBeCloseTo(1, 12);
    expect(c.cost).toBeCloseTo(4 * 0.04 + 2 * 2.5, 12);
    expect(c.costPer1kRequests).toBeCloseTo(((4 * 0.04 + 2 * 2.5) / 36_000) * 1000, 12);
    expect(c.idleShare).toBeCloseTo(0.5, 12);
    // From busy time only: half the core- and device-hours, so half the cost per request.
    expect(c.busyCostPer1kRequests).toBeCloseTo(((2 * 0.04 + 1 * 2.5) / 36_000) * 1000, 12);
    // Without prices: no cost, the idle share still.
    expect(costOf(series.sinceStart(t), undefined)).toMatchObject({ cost: null, costPer1kRequests: null, busyCostPer1kRequests: null });
    expect(costOf(series.sinceStart(t), undefined).idleShare).toBeCloseTo(0.5, 12);
    // An idle hour on top: allocation doubles, requests do not.
    for (let i = 0; i < 360; i++) { t += FINE_STEP_MS; series.observe(t, 'a', a.sample(), res, 0); series.observe(t, 'b', b.sample(), res, 0); }
    const lastHour = costOf(series.window(t, HOUR)!, { coreHour: 0.04, deviceHour: 2.5 });
    expect(lastHour.requests).toBe(0);
    expect(lastHour.costPer1kRequests).toBeNull();
    expect(lastHour.idleShare).toBe(1);
    expect(costOf(series.sinceStart(t), { coreHour: 0.04, deviceHour: 2.5 }).idleShare).toBeCloseTo(0.75, 12);
  });

  it('counts a fresh replica\'s time from when it was asked to start', () => {
    const series = new DeploymentSeries(0, [], HOUR);
    series.observe(30_000, 'a', new FakeReplica().sample(), { cpus: 4, devices: 0 }, 12_000);
    expect(costOf(series.sinceStart(30_000), { coreHour: 3.6, deviceHour: 0 }).allocatedCoreHours).toBeCloseTo((18_000 * 4) / HOUR, 12);
  });
});
