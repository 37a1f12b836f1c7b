/**
 * A store in Redis, shared by every worker that caches the deployment: an entry one worker stored is a hit on
 * every other. Values are msgpack bytes (value-codec.ts) set with a PX expiry; keys start with the deployment's
 * prefix, its name and its version (the caller builds them), so `redis-cli --scan --pattern 'shoal:cache:app/dep:*'`
 * finds one deployment's entries.
 *
 * Fail-open: Redis down, slow or refusing is never a failed request. Commands are not queued while the connection
 * is down (enableOfflineQueue off) and time out after commandTimeoutMs; a failed get is a miss, a failed set is an
 * answer not cached, and each is reported (counted, and logged by the owner at most every few seconds).
 */
import { createRequire } from 'node:module';
import type { Redis } from 'ioredis';
import type { CacheStore } from './store.ts';

/** ioredis, loaded on first use: a process that never caches in Redis does not pay for its ~40 modules at start-up. */
let RedisClass: typeof Redis | undefined;
function redisClass(): typeof Redis {
  return RedisClass ??= (createRequire(import.meta.url)('ioredis') as typeof import('ioredis')).Redis;
}

/** How long one Redis command may take before the request goes on without the cache. */
export const DEFAULT_REDIS_COMMAND_TIMEOUT_MS = 250;

export interface RedisStoreOptions {
  /** A client from RedisClients (shared by every deployment on one server). */
  client: Redis;
  /** Put before every key, with a colon: options.cache.redisKeyPrefix. */
  prefix: string;
  /** Told of every failed command, with what it was doing. */
  onError: (err: Error, op: 'get' | 'set') => void;
}

export class RedisStore implements CacheStore {
  readonly kind = 'redis';

  constructor(private readonly opts: RedisStoreOptions) {}

  get(key: string): Promise<Uint8Array | undefined> {
    return this.opts.client.getBuffer(`${this.opts.prefix}:${key}`).then(
      (b) => (b === null ? undefined : b),
      (err: unknown) => { this.opts.onError(err as Error, 'get'); return undefined; },
    );
  }

  /** The bytes under `key` and the ms they have left (one round trip: GET and PTTL pipelined), or undefined. */
  getWithTtl(key: string): Promise<{ bytes: Uint8Array; ttlMs: number } | undefined> {
    const k = `${this.opts.prefix}:${key}`;
    return this.opts.client.pipeline().getBuffer(k).pttl(k).exec().then(
      (res) => {
        const [g, t] = res ?? [];
        const err = g?.[0] ?? t?.[0];
        if (err !== null && err !== undefined) { this.opts.onError(err, 'get'); return undefined; }
        const bytes = g?.[1] as Buffer | null | undefined;
        const ttlMs = t?.[1] as number | undefined;
        // PTTL: -2 gone since the GET, -1 no expiry (not ours: never cached near).
        if (bytes === null || bytes === undefined || ttlMs === undefined || ttlMs <= 0) return undefined;
        return { bytes, ttlMs };
      },
      (err: unknown) => { this.opts.onError(err as Error, 'get'); return undefined; },
    );
  }

  set(key: string, bytes: Uint8Array, ttlMs: number): void {
    const value = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.opts.client.set(`${this.opts.prefix}:${key}`, value, 'PX', Math.max(1, Math.round(ttlMs))).catch((err: unknown) => this.opts.onError(err as Error, 'set'));
  }

  /** Redis holds the entries; none are counted here (Redis's own INFO has them). */
  stats(): { entries: number; bytes: number } {
    return { entries: 0, bytes: 0 };
  }

  /** The client is shared: RedisClients closes it. */
  close(): void {}
}

/**
 * One connection per Redis URL in this process, shared by every deployment that caches there, and closed when the
 * last of them lets it go.
 */
export class RedisClients {
  private readonly clients = new Map<string, { client: Redis; users: number }>();

  constructor(private readonly opts: { commandTimeoutMs?: number; onConnectionError: (url: string, err: Error) => void }) {}

  acquire(url: string): Redis {
    const held = this.clients.get(url);
    if (held !== undefined) { held.users++; return held.client; }
    const timeout = this.opts.commandTimeoutMs ?? DEFAULT_REDIS_COMMAND_TIMEOUT_MS;
    const client = new (redisClass())(url, {
      commandTimeout: timeout,
      connectTimeout: Math.max(1000, timeout),
      // A request never waits for a reconnect: with the connection down, commands fail at once (a miss).
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      // Reconnect forever, backing off to a second apart.
      retryStrategy: (times) => Math.min(50 * times, 1000),
    });
    // Without a listener ioredis prints every connection error itself.
    client.on('error', (err: Error) => this.opts.onConnectionError(url, err));
    this.clients.set(url, { client, users: 1 });
    return client;
  }

  release(url: string): void {
    const held = this.clients.get(url);
    if (held === undefined) return;
    if (--held.users > 0) return;
    this.clients.delete(url);
    held.client.disconnect();
  }

  close(): void {
    for (const { client } of this.clients.values()) client.disconnect();
    this.clients.clear();
  }
}
