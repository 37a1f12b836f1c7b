/**
 * SLO arithmetic on a deployment's series: attainment over sliding windows, the error budget left over the
 * compliance period, and burn rates with the Google SRE workbook's multi-window alerts (page when the 1 h and 5 m
 * burn rates both exceed 14.4, or the 6 h and 30 m ones both exceed 6). Pure functions of the series' points.
 */
import { LATENCY_OBJECTIVES, bucketUpperMs, type CompiledSlo, type LatencyObjectiveName, type SloObjectiveName } from '@shoal/core';
import type { DeploymentSeries, Point, Window } from './series.ts';

/** One objective, compiled: its target share of good requests and, for latency, the bucket edge it is judged on. */
export interface Objective {
  name: SloObjectiveName;
  /** Share of requests that must be good, in (0, 1). */
  target: number;
  /** The declared threshold (latency objectives). */
  thresholdMs?: number;
  /** The latency bucket whose upper edge is the largest at or below the threshold: requests at or below it are good. */
  edge?: number;
}

/** Burn-rate windows and the alert pairs over them (long, short, threshold). */
export const SLO_WINDOWS_MS = { '5m': 300_000, '30m': 1_800_000, '1h': 3_600_000, '6h': 21_600_000 } as const;
export type BurnWindow = keyof typeof SLO_WINDOWS_MS;
export const BURN_ALERTS: ReadonlyArray<{ long: BurnWindow; short: BurnWindow; threshold: number }> = [
  { long: '1h', short: '5m', threshold: 14.4 },
  { long: '6h', short: '30m', threshold: 6 },
];

export interface ObjectiveStatus {
  name: SloObjectiveName;
  target: number;
  thresholdMs?: number;
  /** The bucket edge the threshold was rounded down to (what "within the threshold" means here). */
  edgeMs?: number;
  /** Share of good requests; null where the window holds no request. */
  attainment: { '5m': number | null; '1h': number | null; period: number | null };
  /** How much of the period covered so far (less than the period while the head has not watched that long). */
  periodCoveredMs: number;
  /** 1 - (bad share / allowed bad share) over the period: 1 untouched, 0 spent, below 0 overspent; null without requests. */
  budgetRemaining: number | null;
  /** Bad share / allowed bad share per window: 1 spends the budget exactly over the period. */
  burn: Record<BurnWindow, number | null>;
  /**
   * How much of each window the series covers: less than the window while the series (the deployment, or the head
   * watching it) is younger. A burn over a window not yet covered is shown but does not page.
   */
  coveredMs: Record<BurnWindow, number>;
  /** Both windows of a burn-rate pair over its threshold, each covered in full. */
  alerting: boolean;
}

export interface SloStatus {
  periodMs: number;
  objectives: ObjectiveStatus[];
  /** Any objective alerting. */
  alerting: boolean;
}

/** The latency bucket a threshold is judged on: the largest whose upper edge is at or below it. */
export function edgeOf(thresholdMs: number): number {
  let k = Math.max(0, Math.floor(Math.log(thresholdMs / bucketUpperMs(0)) / Math.log(bucketUpperMs(1) / bucketUpperMs(0)) + 1e-9));
  while (k > 0 && bucketUpperMs(k) > thresholdMs * (1 + 1e-12)) k--;
  while (bucketUpperMs(k + 1) <= thresholdMs * (1 + 1e-12)) k++;
  return k;
}

/** A deployment's objectives, latency ones first in the order p50, p95, p99, p999. */
export function objectivesOf(slo: CompiledSlo): Objective[] {
  const out: Objective[] = [];
  for (const name of Object.keys(LATENCY_OBJECTIVES) as LatencyObjectiveName[]) {
    const thresholdMs = slo.latency[name];
    if (thresholdMs !== undefined) out.push({ name, target: LATENCY_OBJECTIVES[name], thresholdMs, edge: edgeOf(thresholdMs) });
  }
  if (slo.availability !== undefined) out.push({ name: 'availability', target: slo.availability });
  return out;
}

/** The sorted distinct edges a series must keep counts for. */
export function edgesOf(objectives: readonly Objective[]): number[] {
  return [...new Set(objectives.flatMap((o) => (o.edge === undefined ? [] : [o.edge])))].sort((a, b) => a - b);
}

/** Good and total requests of an objective in a window. */
export function goodAndTotal(o: Objective, w: Window, edges: readonly number[]): { good: number; total: number } {
  const total = w.to.requests - w.from.requests;
  if (o.edge === undefined) return { good: total - (w.to.errors - w.from.errors), total };
  const i = edges.indexOf(o.edge);
  return { good: goodAt(w.to, i) - goodAt(w.from, i), total };
}

function goodAt(p: Point, i: number): number {
  return p.good?.[i] ?? 0;
}

export function attainmentOf(good: number, total: number): number | null {
  return total > 0 ? good / total : null;
}

/** The bad share over the allowed bad share (1 - target). */
export function burnRateOf(good: number, total: number, target: number): number | null {
  return total > 0 ? (total - good) / total / (1 - target) : null;
}

/** 1 - the budget spent: the allowed bad requests are (1 - target) x the period's requests. */
export function budgetRemainingOf(good: number, total: number, target: number): number | null {
  const burn = burnRateOf(good, total, target);
  return burn === null ? null : 1 - burn;
}

/**
 * Whether a burn-rate pair pages: both of its windows over the threshold, and both covered in full (`coveredMs`).
 * A window shorter than asked is no evidence of a sustained burn: one failure in a fresh deployment's first
 * ten requests would read as a 1 h burn of 100 (the workbook's long window must be real).
 */
export function alertingOf(burn: Partial<Record<BurnWindow, number | null>>, coveredMs: Partial<Record<BurnWindow, number>>): boolean {
  const over = (w: BurnWindow, threshold: number): boolean => (coveredMs[w] ?? 0) >= SLO_WINDOWS_MS[w] && (burn[w] ?? 0) > threshold;
  return BURN_ALERTS.some((a) => over(a.long, a.threshold) && over(a.short, a.threshold));
}

/** Every objective's status at `now` from the series (whose edges are edgesOf(objectives)). */
export function sloStatusOf(series: DeploymentSeries, objectives: readonly Objective[], periodMs: number, now: number): SloStatus {
  const edges = series.trackedEdges;
  const out: ObjectiveStatus[] = objectives.map((o) => {
    const need = o.edge === undefined ? 'none' : 'good';
    const over = (ms: number): { good: number; total: number; spanMs: number } => {
      const w = series.window(now, ms, need);
      return w === undefined ? { good: 0, total: 0, spanMs: 0 } : { ...goodAndTotal(o, w, edges), spanMs: w.spanMs };
    };
    const period = over(periodMs);
    const burn = {} as Record<BurnWindow, number | null>;
    const coveredMs = {} as Record<BurnWindow, number>;
    const att: Partial<Record<BurnWindow, number | null>> = {};
    for (const [name, ms] of Object.entries(SLO_WINDOWS_MS) as Array<[BurnWindow, number]>) {
      const x = over(ms);
      burn[name] = burnRateOf(x.good, x.total, o.target);
      coveredMs[name] = Math.min(ms, x.spanMs);
      att[name] = attainmentOf(x.good, x.total);
    }
    return {
      name: o.name, target: o.target,
      ...(o.thresholdMs !== undefined ? { thresholdMs: o.thresholdMs, edgeMs: Number(bucketUpperMs(o.edge!).toPrecision(4)) } : {}),
      attainment: { '5m': att['5m'] ?? null, '1h': att['1h'] ?? null, period: attainmentOf(period.good, period.total) },
      periodCoveredMs: Math.min(periodMs, period.spanMs),
      budgetRemaining: budgetRemainingOf(period.good, period.total, o.target),
      burn,
      coveredMs,
      alerting: alertingOf(burn, coveredMs),
    };
  });
  return { periodMs, objectives: out, alerting: out.some((o) => o.alerting) };
}
