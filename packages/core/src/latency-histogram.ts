/**
 * A fixed log-scale latency histogram: bucket k holds durations up to BASE_MS * RATIO^k ms. Replicas keep one
 * cumulative histogram each and send it (sparse) with their heartbeat; the head subtracts two snapshots to get a
 * window and reads quantiles from it. Fixed bounds, so histograms from any process add and subtract bucket by bucket.
 *
 *   const h = new LatencyHistogram();
 *   h.record(12.5);
 *   quantileMs(h.counts, 0.99);   // upper bound of the bucket holding the 99th percentile
 */

/** Upper bound of bucket 0, in ms. */
const BASE_MS = 0.1;
/** Each bucket's bound is this times the previous one: a quantile is known to within 15%. */
const RATIO = 1.15;
/** Buckets: the last one (over ~2 minutes) is open-ended. */
export const LATENCY_BUCKETS = 100;
const LOG_RATIO = Math.log(RATIO);

/** The bucket a duration falls in. */
export function latencyBucket(ms: number): number {
  if (!(ms > BASE_MS)) return 0;
  const k = Math.ceil(Math.log(ms / BASE_MS) / LOG_RATIO - 1e-9);
  return k >= LATENCY_BUCKETS ? LATENCY_BUCKETS - 1 : k;
}

/** The upper bound of bucket k, in ms. */
export function bucketUpperMs(k: number): number {
  return BASE_MS * RATIO ** k;
}

/** Requests answered, errors among them, and their latencies, cumulative since a replica started. */
export interface OutcomeCounts {
  requests: number;
  errors: number;
  /** Dense bucket counts (LATENCY_BUCKETS long). */
  counts: number[];
}

export class LatencyHistogram implements OutcomeCounts {
  requests = 0;
  errors = 0;
  readonly counts: number[] = new Array<number>(LATENCY_BUCKETS).fill(0);

  record(ms: number, error = false): void {
    this.requests++;
    if (error) this.errors++;
    this.counts[latencyBucket(ms)]!++;
  }

  /** A request counted as a success turned out an error (an HTTP answer of 5xx, known only after it was built). */
  markError(): void {
    this.errors++;
  }

  /** Nonzero buckets as [bucket, count, bucket, count, ...]: what a heartbeat carries. */
  sparse(): number[] {
    const out: number[] = [];
    for (let k = 0; k < LATENCY_BUCKETS; k++) if (this.counts[k] !== 0) out.push(k, this.counts[k]!);
    return out;
  }
}

/** Dense counts from a sparse list; bad entries (out of range, negative) are dropped, not trusted. */
export function denseCounts(sparse: readonly number[]): number[] {
  const out = new Array<number>(LATENCY_BUCKETS).fill(0);
  for (let i = 0; i + 1 < sparse.length; i += 2) {
    const k = sparse[i]!;
    const n = sparse[i + 1]!;
    if (Number.isInteger(k) && k >= 0 && k < LATENCY_BUCKETS && Number.isFinite(n) && n > 0) out[k] = n;
  }
  return out;
}

/** a - b, bucket by bucket, never below 0 (a replica that restarted counts from 0 again). */
export function subtractCounts(a: OutcomeCounts, b: OutcomeCounts | undefined): OutcomeCounts {
  if (b === undefined || b.requests > a.requests) return { requests: a.requests, errors: a.errors, counts: [...a.counts] };
  return { requests: a.requests - b.requests, errors: Math.max(0, a.errors - b.errors), counts: a.counts.map((n, k) => Math.max(0, n - (b.counts[k] ?? 0))) };
}

export function addCounts(into: OutcomeCounts, x: OutcomeCounts): void {
  into.requests += x.requests;
  into.errors += x.errors;
  for (let k = 0; k < LATENCY_BUCKETS; k++) into.counts[k] = (into.counts[k] ?? 0) + (x.counts[k] ?? 0);
}

export function emptyCounts(): OutcomeCounts {
  return { requests: 0, errors: 0, counts: new Array<number>(LATENCY_BUCKETS).fill(0) };
}

/** The upper bound (ms) of the bucket holding quantile q of the counts; 0 when there are none. */
export function quantileMs(counts: readonly number[], q: number): number {
  let total = 0;
  for (const n of counts) total += n;
  if (total === 0) return 0;
  const rank = Math.ceil(q * total);
  let seen = 0;
  for (let k = 0; k < counts.length; k++) {
    seen += counts[k]!;
    if (seen >= rank) return bucketUpperMs(k);
  }
  return bucketUpperMs(counts.length - 1);
}
