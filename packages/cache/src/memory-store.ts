/**
 * A least-recently-used store in this process's memory, bounded by entries and by bytes, whose entries expire
 * after their TTL on the monotonic clock. A Map keeps the recency order: a hit moves its entry to the end,
 * eviction takes from the front. Expired entries are dropped when met (a get, or the eviction scan).
 */
import type { CacheStore } from './store.ts';

/** Bytes an entry costs besides its value: the Map slot, the record, and the key (two bytes a character). */
const ENTRY_OVERHEAD_BYTES = 96;

export interface MemoryStoreOptions {
  /** Bytes held at most (values, keys and overhead). */
  maxBytes: number;
  /** Entries held at most. */
  maxEntries: number;
  /** Monotonic ms (Clock.monoNow). @default performance.now */
  now?: () => number;
}

interface Entry { bytes: Uint8Array; expiresAt: number; size: number }

export class MemoryStore implements CacheStore {
  readonly kind = 'memory';
  private readonly map = new Map<string, Entry>();
  private held = 0;
  private readonly now: () => number;
  /** Entries evicted for room since the start (not those that expired). */
  evictions = 0;

  constructor(private readonly opts: MemoryStoreOptions) {
    this.now = opts.now ?? (() => performance.now());
  }

  /** What an entry of this key and value costs against maxBytes. */
  static sizeOf(key: string, bytes: Uint8Array): number {
    return bytes.byteLength + key.length * 2 + ENTRY_OVERHEAD_BYTES;
  }

  get(key: string): Uint8Array | undefined {
    const e = this.map.get(key);
    if (e === undefined) return undefined;
    if (e.expiresAt <= this.now()) { this.remove(key, e); return undefined; }
    // Most recently used goes last.
    this.map.delete(key);
    this.map.set(key, e);
    return e.bytes;
  }

  set(key: string, bytes: Uint8Array, ttlMs: number): void {
    const size = MemoryStore.sizeOf(key, bytes);
    const old = this.map.get(key);
    if (old !== undefined) this.remove(key, old);
    if (size > this.opts.maxBytes) return;
    while (this.map.size >= this.opts.maxEntries || this.held + size > this.opts.maxBytes) {
      const first = this.map.entries().next();
      if (first.done === true) break;
      const [k, e] = first.value;
      this.remove(k, e);
      if (e.expiresAt > this.now()) this.evictions++;
    }
    this.map.set(key, { bytes, expiresAt: this.now() + ttlMs, size });
    this.held += size;
  }

  delete(key: string): void {
    const e = this.map.get(key);
    if (e !== undefined) this.remove(key, e);
  }

  /** Keys from least to most recently used (for tests and debugging). */
  keys(): string[] {
    return [...this.map.keys()];
  }

  stats(): { entries: number; bytes: number } {
    return { entries: this.map.size, bytes: this.held };
  }

  close(): void {
    this.map.clear();
    this.held = 0;
  }

  private remove(key: string, e: Entry): void {
    this.map.delete(key);
    this.held -= e.size;
  }
}
