/**
 * A deployment's recent traffic (the dashboard's and `shoal status`'s figures): requests per second, error rate
 * and latency quantiles over about the last minute, from the series' recent points.
 */
import { quantileMs } from '@shoal/core';
import type { DeploymentSeries } from './series.ts';

/** The span traffic figures cover (less while the series is younger). */
export const TRAFFIC_WINDOW_MS = 60_000;

export interface TrafficFigures {
  windowMs: number;
  rps: number;
  /** Errors / requests; 0 without requests. */
  errorRate: number;
  /** Upper edges of the latency buckets holding each quantile (within 15%); null without requests. */
  p50Ms: number | null;
  p95Ms: number | null;
  p99Ms: number | null;
}

export function trafficOf(series: DeploymentSeries, now: number): TrafficFigures {
  const w = series.window(now, TRAFFIC_WINDOW_MS, 'counts');
  if (w === undefined || w.spanMs === 0) return { windowMs: w?.spanMs ?? 0, rps: 0, errorRate: 0, p50Ms: null, p95Ms: null, p99Ms: null };
  const requests = w.to.requests - w.from.requests;
  const errors = w.to.errors - w.from.errors;
  const counts = w.to.counts!.map((n, k) => n - (w.from.counts![k] ?? 0));
  const q = (p: number): number | null => (requests > 0 ? quantileMs(counts, p) : null);
  return { windowMs: w.spanMs, rps: (requests / w.spanMs) * 1000, errorRate: requests > 0 ? errors / requests : 0, p50Ms: q(0.5), p95Ms: q(0.95), p99Ms: q(0.99) };
}
