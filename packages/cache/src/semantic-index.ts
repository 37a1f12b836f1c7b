/**
 * Nearest-neighbour indexes over unit vectors, for the semantic cache: HNSW (usearch, approximate, what the cache
 * uses) and a flat scan (exact: the reference the tests and the bench compare HNSW with). A flat index was meant to
 * answer below some size, but measured here it never wins: usearch's SIMD search over its graph beats a JavaScript
 * dot-product scan of 384-dim vectors from 16 entries up (docs/semantic-cache.md has the numbers), and at those
 * sizes HNSW finds the exact nearest anyway. Every vector given here is already L2-normalised (see normalize()), so
 * cosine similarity is a dot product.
 */
import { createRequire } from 'node:module';
import type usearchModule from 'usearch';

/** usearch (a native module), loaded when the first HNSW index is made: only semantic caches need it. */
let usearchLoaded: typeof usearchModule | undefined;
function usearchLib(): typeof usearchModule {
  return usearchLoaded ??= createRequire(import.meta.url)('usearch') as typeof usearchModule;
}

/** The nearest entry to a query and its cosine similarity (1: same direction). */
export interface Nearest { key: number; similarity: number }

/** What the semantic cache needs from an index. Keys are the cache's entry ids (non-negative safe integers). */
export interface VectorIndex {
  readonly dimensions: number;
  /** Entries held (removed ones not counted). */
  readonly size: number;
  add(key: number, vector: Float32Array): void;
  /** Removes the entry; false if it was not held. */
  remove(key: number): boolean;
  /** The nearest entry, or undefined when empty. */
  nearest(vector: Float32Array): Nearest | undefined;
}

/**
 * L2-normalises an embedding into a new Float32Array. Throws a TypeError or RangeError naming what was wrong (not an
 * array of numbers, the wrong length, a non-finite value). Returns undefined for the zero vector, which has no
 * direction: such an input is neither looked up nor cached.
 */
export function normalize(v: unknown, dimensions: number | undefined, what: string): Float32Array | undefined {
  if (!(Array.isArray(v) || v instanceof Float32Array || v instanceof Float64Array)) {
    throw new TypeError(`${what} must return an array of numbers (number[], Float32Array or Float64Array), got ${describe(v)}`);
  }
  const n = v.length;
  if (n === 0) throw new RangeError(`${what} returned an empty vector`);
  if (dimensions !== undefined && n !== dimensions) throw new RangeError(`${what} returned a vector of ${n} dimensions; this cache holds ${dimensions}-dimension vectors`);
  const out = new Float32Array(n);
  let sq = 0;
  for (let i = 0; i < n; i++) {
    const x = (v as ArrayLike<unknown>)[i];
    if (typeof x !== 'number' || !Number.isFinite(x)) throw new RangeError(`${what} returned a non-finite or non-number value at [${i}]: ${String(x)}`);
    out[i] = x;
    sq += x * x;
  }
  if (sq === 0) return undefined;
  const inv = 1 / Math.sqrt(sq);
  for (let i = 0; i < n; i++) out[i]! *= inv;
  return out;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'object';
  return typeof v;
}

/** Exact nearest neighbour by a scan of one contiguous Float32Array; removal moves the last row into the hole. */
export class FlatIndex implements VectorIndex {
  private data: Float32Array;
  private keys: number[] = [];
  private readonly rowOf = new Map<number, number>();

  constructor(readonly dimensions: number, initialCapacity = 64) {
    this.data = new Float32Array(dimensions * Math.max(1, initialCapacity));
  }

  get size(): number { return this.keys.length; }

  add(key: number, vector: Float32Array): void {
    if (this.rowOf.has(key)) throw new RangeError(`key ${key} is already in the index`);
    const row = this.keys.length;
    const d = this.dimensions;
    if ((row + 1) * d > this.data.length) {
      const grown = new Float32Array(this.data.length * 2);
      grown.set(this.data);
      this.data = grown;
    }
    this.data.set(vector, row * d);
    this.keys.push(key);
    this.rowOf.set(key, row);
  }

  remove(key: number): boolean {
    const row = this.rowOf.get(key);
    if (row === undefined) return false;
    this.rowOf.delete(key);
    const last = this.keys.length - 1;
    const d = this.dimensions;
    if (row !== last) {
      const moved = this.keys[last]!;
      this.data.copyWithin(row * d, last * d, (last + 1) * d);
      this.keys[row] = moved;
      this.rowOf.set(moved, row);
    }
    this.keys.pop();
    return true;
  }

  nearest(q: Float32Array): Nearest | undefined {
    const n = this.keys.length;
    if (n === 0) return undefined;
    const d = this.dimensions;
    const data = this.data;
    let best = -Infinity;
    let bestRow = 0;
    // Four accumulators: independent adds the CPU can overlap (about 2x a single running sum here).
    const d4 = d - (d % 4);
    for (let r = 0, off = 0; r < n; r++, off += d) {
      let a0 = 0, a1 = 0, a2 = 0, a3 = 0;
      let i = 0;
      for (; i < d4; i += 4) {
        a0 += data[off + i]! * q[i]!;
        a1 += data[off + i + 1]! * q[i + 1]!;
        a2 += data[off + i + 2]! * q[i + 2]!;
        a3 += data[off + i + 3]! * q[i + 3]!;
      }
      for (; i < d; i++) a0 += data[off + i]! * q[i]!;
      const dot = a0 + a1 + a2 + a3;
      if (dot > best) { best = dot; bestRow = r; }
    }
    return { key: this.keys[bestRow]!, similarity: best };
  }

  /** Every entry, for moving them into another index. */
  *entries(): IterableIterator<[number, Float32Array]> {
    const d = this.dimensions;
    for (let r = 0; r < this.keys.length; r++) yield [this.keys[r]!, this.data.subarray(r * d, (r + 1) * d)];
  }
}

/** HNSW graph parameters (usearch's names). */
export interface HnswOptions {
  /** Edges per node. @default 16 */
  connectivity?: number;
  /** Candidates considered while inserting. @default 64 */
  expansionAdd?: number;
  /** Candidates considered while searching: higher is more exact and slower. @default 32 */
  expansionSearch?: number;
}

/**
 * Approximate nearest neighbour by usearch's HNSW graph, cosine metric, f32. usearch's `remove` leaves the node in
 * the graph as a tombstone (its size() still counts it), so this class counts the live entries itself.
 */
export class HnswIndex implements VectorIndex {
  private readonly index: InstanceType<typeof usearchModule.Index>;
  private live = 0;

  constructor(readonly dimensions: number, opts: HnswOptions = {}) {
    const usearch = usearchLib();
    this.index = new usearch.Index({
      dimensions, metric: usearch.MetricKind.Cos, quantization: usearch.ScalarKind.F32,
      connectivity: opts.connectivity ?? 16, expansion_add: opts.expansionAdd ?? 64, expansion_search: opts.expansionSearch ?? 32, multi: false,
    });
  }

  get size(): number { return this.live; }

  add(key: number, vector: Float32Array): void {
    // One thread: a single insert gains nothing from a pool, and the worker's other threads are serving.
    this.index.add(BigInt(key), vector, 1);
    this.live++;
  }

  /** Adds many rows at once (n x dimensions, row-major), on `threads` threads (0: usearch's choice). */
  addMany(keys: readonly number[], rows: Float32Array, threads = 0): void {
    if (keys.length === 0) return;
    this.index.add(BigUint64Array.from(keys, (k) => BigInt(k)), rows, threads);
    this.live += keys.length;
  }

  remove(key: number): boolean {
    const removed = this.index.remove(BigInt(key)) as number;
    if (removed > 0) this.live--;
    return removed > 0;
  }

  nearest(q: Float32Array): Nearest | undefined {
    if (this.live === 0) return undefined;
    const m = this.index.search(q, 1, 1);
    const key = m.keys[0];
    if (key === undefined) return undefined;
    // usearch's cosine distance is 1 - similarity.
    return { key: Number(key), similarity: 1 - m.distances[0]! };
  }
}
