/**
 * The semantic cache's store: answers keyed by unit vectors, found by the nearest cached vector when its cosine
 * similarity reaches the threshold. Least recently used entries are evicted past maxEntries; an entry older than
 * ttlMs is never served (it is dropped when a lookup finds it). It runs no user code: embedding the input and
 * deciding what to cache is SemanticMethods' job (semantic-methods.ts).
 *
 *   const cache = new SemanticCache({ threshold: 0.9, maxEntries: 100_000 });
 *   const v = normalize(await embed(text), cache.dimensions, 'embed')!;
 *   const hit = cache.lookup(v);
 *   const answer = hit !== undefined ? hit.value : await compute(text);
 *   if (hit === undefined) cache.insert(v, answer);
 */
import { realClock, type Clock } from '@shoal/core';
import { FlatIndex, HnswIndex, type HnswOptions, type VectorIndex } from './semantic-index.ts';

export interface SemanticCacheConfig {
  /** Cosine similarity, in (0, 1], the nearest cached input must reach for its answer to be served. */
  threshold: number;
  /** Entries held; past it the least recently used one is evicted. */
  maxEntries: number;
  /** Age in ms past which an entry is not served. 0: no expiry. @default 0 */
  ttlMs?: number;
  /** Time source (tests pass a fake one). @default realClock */
  clock?: Clock;
  /** 'hnsw' (usearch) or 'flat' (an exact scan, for tests and the bench's comparison). @default 'hnsw' */
  index?: 'hnsw' | 'flat';
  /** HNSW graph parameters. */
  hnsw?: HnswOptions;
}

/** A served entry: its answer and how similar its input was. */
export interface SemanticHit { value: unknown; similarity: number }

interface Entry { value: unknown; storedAt: number }

export class SemanticCache {
  private index: VectorIndex | undefined;
  /** Entry by key, in least to most recently used order (a Map iterates in insertion order; a hit re-inserts). */
  private readonly entries = new Map<number, Entry>();
  private nextKey = 0;
  private readonly clock: Clock;
  private readonly ttlMs: number;
  /** Entries evicted for room and dropped for age, since creation. */
  evictions = 0;
  expirations = 0;

  constructor(private readonly opts: SemanticCacheConfig) {
    if (!(opts.threshold > 0 && opts.threshold <= 1)) throw new RangeError(`threshold must be in (0, 1], got ${opts.threshold}`);
    if (!Number.isInteger(opts.maxEntries) || opts.maxEntries < 1) throw new RangeError(`maxEntries must be an integer >= 1, got ${opts.maxEntries}`);
    this.clock = opts.clock ?? realClock;
    this.ttlMs = opts.ttlMs ?? 0;
  }

  get threshold(): number { return this.opts.threshold; }
  /** Entries held now (expired ones not yet found by a lookup included: they are dropped lazily). */
  get size(): number { return this.entries.size; }
  /** The vectors' length, fixed by the first vector seen; undefined until then. */
  get dimensions(): number | undefined { return this.index?.dimensions; }

  /** The entry whose input is nearest to `vector` (unit length), if it is similar enough and not expired. */
  lookup(vector: Float32Array): SemanticHit | undefined {
    const found = this.nearest(vector);
    if (found === undefined || found.similarity < this.opts.threshold) return undefined;
    const e = found.entry;
    // Most recently used now.
    this.entries.delete(found.key);
    this.entries.set(found.key, e);
    return { value: e.value, similarity: found.similarity };
  }

  /**
   * Caches `value` for `vector` (unit length). When an entry at least threshold-similar is already there (two
   * near-identical misses ran at once, and the first has just inserted), it is kept and this one is not added, so
   * concurrent misses do not fill the index with duplicates.
   */
  insert(vector: Float32Array, value: unknown): void {
    const index = this.indexFor(vector);
    const found = this.nearest(vector);
    if (found !== undefined && found.similarity >= this.opts.threshold) return;
    while (this.entries.size >= this.opts.maxEntries) {
      const oldest = this.entries.keys().next().value as number;
      this.drop(oldest);
      this.evictions++;
    }
    const key = this.nextKey++;
    index.add(key, vector);
    this.entries.set(key, { value, storedAt: this.clock.monoNow() });
  }

  /**
   * Caches many answers at once (warming a cache, the bench): `rows` holds one unit vector per value, row-major.
   * Unlike insert() it does not look for near duplicates; past maxEntries the least recently used entries (the
   * first rows, if the cache was empty) are evicted. An HNSW index adds the rows on `threads` threads (0: usearch's
   * choice), much faster than one insert() each.
   */
  insertMany(rows: Float32Array, values: readonly unknown[], threads = 0): void {
    if (values.length === 0) return;
    if (rows.length % values.length !== 0) throw new RangeError(`rows holds ${rows.length} numbers, not a whole number of vectors for ${values.length} values`);
    const d = rows.length / values.length;
    const index = this.indexFor(rows.subarray(0, d));
    const skip = Math.max(0, values.length - this.opts.maxEntries);
    while (this.entries.size > 0 && this.entries.size + values.length - skip > this.opts.maxEntries) {
      this.drop(this.entries.keys().next().value as number);
      this.evictions++;
    }
    const now = this.clock.monoNow();
    const keys: number[] = [];
    for (let i = skip; i < values.length; i++) {
      const key = this.nextKey++;
      keys.push(key);
      this.entries.set(key, { value: values[i], storedAt: now });
    }
    const kept = rows.subarray(skip * d);
    if (index instanceof HnswIndex) index.addMany(keys, kept, threads);
    else for (const [j, key] of keys.entries()) index.add(key, kept.subarray(j * d, (j + 1) * d));
    this.evictions += skip;
  }

  /** The index answering lookups (undefined before the first vector): for measuring the search alone. */
  get vectorIndex(): VectorIndex | undefined { return this.index; }

  /** Drops every entry. */
  clear(): void {
    for (const key of [...this.entries.keys()]) this.drop(key);
  }

  /** The nearest live entry; an expired one found nearest is dropped and the search repeated. */
  private nearest(vector: Float32Array): { key: number; entry: Entry; similarity: number } | undefined {
    const index = this.indexFor(vector);
    for (;;) {
      const n = index.nearest(vector);
      if (n === undefined) return undefined;
      const entry = this.entries.get(n.key);
      if (entry === undefined) { index.remove(n.key); continue; }
      if (this.ttlMs > 0 && this.clock.monoNow() - entry.storedAt >= this.ttlMs) {
        this.drop(n.key);
        this.expirations++;
        continue;
      }
      return { key: n.key, entry, similarity: n.similarity };
    }
  }

  private drop(key: number): void {
    this.entries.delete(key);
    this.index?.remove(key);
  }

  private indexFor(vector: Float32Array): VectorIndex {
    if (this.index !== undefined) {
      if (vector.length !== this.index.dimensions) throw new RangeError(`vector has ${vector.length} dimensions; this cache holds ${this.index.dimensions}-dimension vectors`);
      return this.index;
    }
    this.index = this.opts.index === 'flat' ? new FlatIndex(vector.length) : new HnswIndex(vector.length, this.opts.hnsw);
    return this.index;
  }
}
