import type { BatchContext, BatchFunction } from '../../src/batching/batch-queue.ts';
import type { ItemError } from '../../src/batching/item-error.ts';

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

/** Deterministic PRNG (mulberry32) so simulations are reproducible. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
