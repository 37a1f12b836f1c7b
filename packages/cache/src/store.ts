/** Where a response cache keeps its entries: a router's memory, or a Redis server every worker shares. */
export interface CacheStore {
  /** 'memory' answers synchronously; 'redis' and 'near' (memory in front of Redis) may answer with a promise. */
  readonly kind: 'memory' | 'redis' | 'near';
  /**
   * The bytes stored under `key` that have not expired, or undefined. A store that fails answers undefined (the
   * request is computed) and reports the failure; it never throws.
   */
  get(key: string): Uint8Array | undefined | Promise<Uint8Array | undefined>;
  /** Stores `bytes` for `ttlMs`. Never throws: a failure is reported, the answer just is not cached. */
  set(key: string, bytes: Uint8Array, ttlMs: number): void;
  /** Entries and their bytes held in this process (a shared store: 0, it holds none here). */
  stats(): { entries: number; bytes: number };
  close(): void;
}
