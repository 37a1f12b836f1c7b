/**
 * One deployment's traffic as a time series of cumulative totals, fed by its replicas' heartbeats. Each replica
 * reports counters cumulative since it started (requests, errors, a latency histogram, busy ms); the series keeps
 * the latest report per replica and adds only the difference to the deployment's totals, so replicas that come and
 * go, and a replica whose counters start again from zero (it restarted), never make the totals go backwards.
 *
 * Points (copies of the totals) are kept at two resolutions, so a window of any length is `totals - point` for the
 * latest point at or before its start:
 *   fine:   one per FINE_STEP_MS (10 s), for the last hour;
 *   coarse: one per max(5 min, period / 8640), for the compliance period.
 * Dense latency buckets are kept on points of the last RECENT_MS only (for traffic quantiles); older points carry
 * only the counts within each objective's threshold (`good`), which bounds the memory: at most ~360 + 8640 small
 * points per deployment whatever the period.
 *
 * Pure: no timers, no clock. Time is the caller's monotonic ms.
 */
import { LATENCY_BUCKETS } from '@shoal/core';

/** The fine points' spacing. */
export const FINE_STEP_MS = 10_000;
/** How far back the fine points reach (the longest burn-rate window that is judged on them). */
export const FINE_SPAN_MS = 3_600_000;
/** How long a point keeps its dense latency buckets. */
export const RECENT_MS = 120_000;
/** The coarse points' smallest spacing, and how many cover the compliance period at most. */
const COARSE_MIN_STEP_MS = 300_000;
const COARSE_MAX_POINTS = 8640;

/** Cumulative totals of a deployment at one time. Resource figures are resource-ms (cores x ms, devices x ms). */
export interface Point {
  /** Monotonic ms. */
  t: number;
  requests: number;
  errors: number;
  /** Requests within each tracked bucket edge (aligned with the series' edges); undefined when taken under other edges. */
  good: number[] | undefined;
  /** Dense latency bucket counts; only on recent points. */
  counts: number[] | undefined;
  /** Replica-ms allocated (replicas held, busy or not) and busy (at least one request in user code). */
  allocMs: number;
  busyMs: number;
  allocCoreMs: number;
  allocDeviceMs: number;
  busyCoreMs: number;
  busyDeviceMs: number;
}

/** What a heartbeat says of one replica, cumulative since it started. */
export interface ReplicaSample {
  requests: number;
  errors: number;
  /** Dense latency bucket counts (LATENCY_BUCKETS long). */
  counts: readonly number[];
  /** Busy ms; undefined from a worker that does not report it. */
  busyMs?: number;
}

/** What one replica holds while it exists: the deployment's declared cpus and (real) devices. */
export interface ReplicaResources { cpus: number; devices: number }

interface ReplicaState { t: number; requests: number; errors: number; counts: number[]; busyMs: number }

/** The difference of the totals between a point and now. */
export interface Window {
  /** How much time it covers: less than asked when the series is younger. */
  spanMs: number;
  from: Point;
  to: Point;
}

export class DeploymentSeries {
  private readonly totals: Point;
  /** Cumulative dense bucket counts (totals.counts is this). */
  private readonly counts: number[];
  private readonly replicas = new Map<string, ReplicaState>();
  private fine: Point[] = [];
  private coarse: Point[] = [];
  private edges: number[];
  private periodMs: number;
  private lastObservedAt: number;
  private readonly startedAt: number;
  /** The first point, all zeros: never replaced by a later one of its step, so the first report stays counted. */
  private readonly origin: Point;

  /** `edges`: the latency bucket indices whose "at or below" counts the points keep (one per latency objective). */
  constructor(now: number, edges: readonly number[], periodMs: number) {
    this.counts = new Array<number>(LATENCY_BUCKETS).fill(0);
    this.edges = [...edges];
    this.periodMs = periodMs;
    this.totals = { t: now, requests: 0, errors: 0, good: undefined, counts: this.counts, allocMs: 0, busyMs: 0, allocCoreMs: 0, allocDeviceMs: 0, busyCoreMs: 0, busyDeviceMs: 0 };
    this.startedAt = now;
    this.lastObservedAt = now;
    this.origin = this.copy(now, true);
    this.fine.push(this.origin);
  }

  /** The edges the points are kept for. */
  get trackedEdges(): readonly number[] { return this.edges; }
  /** Points kept now (fine, coarse): what bounds the memory. */
  get pointCount(): { fine: number; coarse: number } { return { fine: this.fine.length, coarse: this.coarse.length }; }

  /**
   * New objectives: points taken before hold no counts for new edges, so latency windows start again from now
   * (availability and cost windows keep their history). A new period only changes how far back points are kept.
   */
  configure(edges: readonly number[], periodMs: number): void {
    this.periodMs = periodMs;
    if (edges.length === this.edges.length && edges.every((e, i) => e === this.edges[i])) return;
    this.edges = [...edges];
    for (const p of this.fine) p.good = undefined;
    for (const p of this.coarse) p.good = undefined;
    // The cumulative buckets are exact, so a point of the totals now holds the new edges' counts.
    this.push(this.lastObservedAt);
  }

  /**
   * One replica's report. `startedAt` (monotonic ms): when the replica was asked to start, for its first report,
   * which then counts all it says (it began at zero) and its allocation since then. Without it (a replica adopted
   * after a head restart), the first report is only a baseline: its counters hold requests of unknown times.
   */
  observe(now: number, replicaId: string, s: ReplicaSample, res: ReplicaResources, startedAt?: number): void {
    if (Math.floor(now / FINE_STEP_MS) !== Math.floor(this.lastObservedAt / FINE_STEP_MS)) this.push(this.lastObservedAt);
    this.lastObservedAt = Math.max(this.lastObservedAt, now);
    const busy = s.busyMs ?? 0;
    const prev = this.replicas.get(replicaId);
    if (prev === undefined) {
      this.replicas.set(replicaId, { t: now, requests: s.requests, errors: s.errors, counts: [...s.counts], busyMs: busy });
      if (startedAt === undefined) return;
      this.add(s.requests, s.errors, s.counts, undefined, busy, Math.max(0, now - startedAt), res);
      return;
    }
    // A counter below its last value: the replica started again from zero, so all it says now is new.
    let reset = s.requests < prev.requests || s.errors < prev.errors || busy < prev.busyMs;
    for (let k = 0; k < LATENCY_BUCKETS && !reset; k++) if ((s.counts[k] ?? 0) < prev.counts[k]!) reset = true;
    this.add(reset ? s.requests : s.requests - prev.requests, reset ? s.errors : s.errors - prev.errors, s.counts, reset ? undefined : prev.counts, reset ? busy : busy - prev.busyMs, Math.max(0, now - prev.t), res);
    prev.t = now;
    prev.requests = s.requests;
    prev.errors = s.errors;
    prev.busyMs = busy;
    for (let k = 0; k < LATENCY_BUCKETS; k++) prev.counts[k] = s.counts[k] ?? 0;
  }

  /** Stops following a replica (it is gone); what it answered stays in the totals. */
  forget(replicaId: string): void {
    this.replicas.delete(replicaId);
  }

  replicaIds(): IterableIterator<string> {
    return this.replicas.keys();
  }

  /**
   * The totals now against the latest point at or before `now - ms` (the oldest usable one when the series is
   * younger: spanMs says how much it covers). `need`: 'good' for a latency objective (a point taken under other
   * edges does not do), 'counts' for quantiles (only recent points do). Undefined when no point qualifies.
   */
  window(now: number, ms: number, need: 'good' | 'counts' | 'none' = 'none'): Window | undefined {
    const ok = (p: Point): boolean => (need === 'good' ? p.good !== undefined : need === 'counts' ? p.counts !== undefined : true);
    // Coarse points, fine ones, then the totals now: one list in time order. Points that qualify are a suffix of
    // it (edges and buckets are only ever dropped from old points), so both searches are binary.
    const to = this.current();
    const nc = this.coarse.length;
    const n = nc + this.fine.length + 1;
    const at = (i: number): Point => (i < nc ? this.coarse[i]! : i < n - 1 ? this.fine[i - nc]! : to);
    let lo = 0;
    let hi = n;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (at(mid).t <= now - ms) lo = mid + 1; else hi = mid; }
    const latestBefore = lo - 1;
    lo = 0;
    hi = n;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (ok(at(mid))) hi = mid; else lo = mid + 1; }
    const firstOk = lo;
    if (firstOk >= n) return undefined;
    // The latest point at or before the window's start when it qualifies, else the oldest that does (a shorter window).
    const from = at(Math.max(latestBefore, firstOk));
    // Nothing reported since the window began: it holds nothing, over its whole length (as far as the series goes).
    if (from === to) return { spanMs: Math.min(ms, Math.max(0, now - this.startedAt)), from, to };
    return { spanMs: Math.max(0, now - from.t), from, to };
  }

  /** Since the series began (its first point is all zeros). */
  sinceStart(now: number): Window {
    const zero: Point = { t: this.startedAt, requests: 0, errors: 0, good: undefined, counts: undefined, allocMs: 0, busyMs: 0, allocCoreMs: 0, allocDeviceMs: 0, busyCoreMs: 0, busyDeviceMs: 0 };
    return { spanMs: Math.max(0, now - this.startedAt), from: zero, to: this.current() };
  }

  /** The totals now, `good` filled for the current edges. */
  current(): Point {
    this.totals.t = this.lastObservedAt;
    this.totals.good = this.goodCounts();
    return this.totals;
  }

  private add(dn: number, de: number, counts: readonly number[], before: readonly number[] | undefined, dBusy: number, dt: number, res: ReplicaResources): void {
    const t = this.totals;
    t.requests += dn;
    t.errors += Math.max(0, de);
    for (let k = 0; k < LATENCY_BUCKETS; k++) this.counts[k]! += Math.max(0, (counts[k] ?? 0) - (before?.[k] ?? 0));
    t.allocMs += dt;
    t.busyMs += dBusy;
    t.allocCoreMs += dt * res.cpus;
    t.allocDeviceMs += dt * res.devices;
    t.busyCoreMs += dBusy * res.cpus;
    t.busyDeviceMs += dBusy * res.devices;
  }

  private goodCounts(): number[] {
    const out = new Array<number>(this.edges.length).fill(0);
    let sum = 0;
    let j = 0;
    for (let k = 0; k < LATENCY_BUCKETS && j < this.edges.length; k++) {
      sum += this.counts[k]!;
      while (j < this.edges.length && this.edges[j] === k) out[j++] = sum;
    }
    return out;
  }

  private copy(t: number, withCounts: boolean): Point {
    const c = this.totals;
    return {
      t, requests: c.requests, errors: c.errors, good: this.goodCounts(), counts: withCounts ? [...this.counts] : undefined,
      allocMs: c.allocMs, busyMs: c.busyMs, allocCoreMs: c.allocCoreMs, allocDeviceMs: c.allocDeviceMs, busyCoreMs: c.busyCoreMs, busyDeviceMs: c.busyDeviceMs,
    };
  }

  /** A point of the totals as of `t` (the latest report so far), then the tiers trimmed to their spans. */
  private push(at: number): void {
    const last = this.fine[this.fine.length - 1];
    const t = Math.max(at, last?.t ?? at);
    const p = this.copy(t, true);
    if (last !== undefined && last !== this.origin && Math.floor(last.t / FINE_STEP_MS) === Math.floor(t / FINE_STEP_MS)) this.fine[this.fine.length - 1] = p;
    else this.fine.push(p);
    for (const q of this.fine) { if (q.t >= t - RECENT_MS) break; q.counts = undefined; }
    // Keep one fine point at or before the span's start, so a window of the whole span has its baseline.
    while (this.fine.length > 1 && this.fine[1]!.t <= t - FINE_SPAN_MS) this.toCoarse(this.fine.shift()!);
    while (this.coarse.length > 1 && this.coarse[1]!.t <= t - this.periodMs) this.coarse.shift();
  }

  private toCoarse(p: Point): void {
    const step = Math.max(COARSE_MIN_STEP_MS, Math.ceil(this.periodMs / COARSE_MAX_POINTS));
    const last = this.coarse[this.coarse.length - 1];
    // The first point of each coarse step stands for it (so the series' first point, all zeros, is kept).
    if (last === undefined || Math.floor(last.t / step) !== Math.floor(p.t / step)) this.coarse.push(p);
  }
}
