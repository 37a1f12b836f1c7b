/**
 * A memory store in front of a Redis store (cache.nearCache): a hit in this router's memory costs no round trip;
 * a miss there asks Redis, and a Redis hit is kept in memory for what its Redis entry has left (PTTL, read in the
 * same round trip), never longer. So a near entry expires no later than the shared one. Entries are never changed
 * in place (a key names the version and input; its answer is the same wherever it was computed), so a near copy
 * is never stale, only possibly gone sooner.
 */
import { MemoryStore } from './memory-store.ts';
import type { RedisStore } from './redis-store.ts';
import type { CacheStore } from './store.ts';

export class NearStore implements CacheStore {
  readonly kind = 'near';

  constructor(private readonly near: MemoryStore, private readonly far: RedisStore) {}

  get(key: string): Uint8Array | Promise<Uint8Array | undefined> {
    const b = this.near.get(key);
    if (b !== undefined) return b;
    return this.far.getWithTtl(key).then((got) => {
      if (got === undefined) return undefined;
      this.near.set(key, got.bytes, got.ttlMs);
      return got.bytes;
    });
  }

  set(key: string, bytes: Uint8Array, ttlMs: number): void {
    this.near.set(key, bytes, ttlMs);
    this.far.set(key, bytes, ttlMs);
  }

  /** What this router holds near. */
  stats(): { entries: number; bytes: number } {
    return this.near.stats();
  }

  close(): void {
    this.near.close();
    this.far.close();
  }
}
