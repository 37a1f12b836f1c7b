import type { FakeClock } from '../../src/clock.ts';
import type { BatchContext, BatchFunction } from '../../src/batching/batch-queue.ts';
import type { ItemError } from '../../src/batching/item-error.ts';
import { seededRandom } from '../../src/random.ts';

export interface ManualCall<I, O> {
  readonly items: I[];
  readonly ctx: BatchContext;
  resolve(results: Array<O | ItemError>): void;
  reject(err: unknown): void;
}

/** A batch function whose calls are recorded and answered by the test. */
export function manualBatch<I, O>(): { calls: ManualCall<I, O>[]; fn: BatchFunction<I, O> } {
  const calls: ManualCall<I, O>[] = [];
  const fn: BatchFunction<I, O> = (items, ctx) =>
    new Promise((resolve, reject) => {
      calls.push({ items, ctx, resolve, reject });
    });
  return { calls, fn };
}

export interface Tracked<T> {
  status: 'pending' | 'fulfilled' | 'rejected';
  value: T | undefined;
  error: unknown;
}

/** Follows a promise's outcome without awaiting it (and keeps its rejection handled). */
export function track<T>(promise: Promise<T>): Tracked<T> {
  const t: Tracked<T> = { status: 'pending', value: undefined, error: undefined };
  promise.then(
    (value) => {
      t.status = 'fulfilled';
      t.value = value;
    },
    (error: unknown) => {
      t.status = 'rejected';
      t.error = error;
    },
  );
  return t;
}

export { seededRandom };

/** A synthetic model: service time of a batch of n items, in ms. */
export type LatencyCurve = (n: number) => number;

export interface SimulationResult {
  /** Per completed request: [submit time, latency]. */
  readonly latencies: Array<[number, number]>;
  readonly rejected: number;
}

/**
 * Drives a queue with Poisson arrivals at `ratePerSec` for `durationMs` of fake time; each batch "runs" for
 * curve(n) * (1 ± jitter) on the fake clock. Deterministic for a given seed.
 */
export async function simulate<O>(opts: {
  clock: FakeClock;
  queue: { submit(item: number): Promise<O> };
  ratePerSec: number | ((t: number) => number);
  durationMs: number;
  seed?: number;
}): Promise<SimulationResult> {
  const { clock, queue, durationMs } = opts;
  const random = seededRandom(opts.seed ?? 1);
  const rate = typeof opts.ratePerSec === 'number' ? (): number => opts.ratePerSec as number : opts.ratePerSec;
  const start = clock.monoNow();
  const latencies: Array<[number, number]> = [];
  let rejected = 0;
  let n = 0;
  const arrive = (): void => {
    const t = clock.monoNow();
    if (t - start >= durationMs) return;
    queue.submit(n++).then(() => latencies.push([t - start, clock.monoNow() - t]), () => rejected++);
    clock.setTimeout(arrive, (-Math.log(1 - random()) * 1000) / rate(t - start));
  };
  arrive();
  await clock.advanceAsync(durationMs + 10_000);
  return { latencies, rejected };
}

/** A batch function whose batches take curve(n) * (1 ± jitter) ms of fake time. */
export function syntheticModel(clock: FakeClock, curve: LatencyCurve, jitter = 0.05, seed = 7): (items: number[]) => Promise<number[]> {
  const random = seededRandom(seed);
  return async (items) => {
    await clock.sleep(curve(items.length) * (1 + jitter * (2 * random() - 1)));
    return items;
  };
}

/** The q-quantile (0..1) of some numbers. */
export function quantile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? NaN;
}
