/**
 * The exact-match response cache of a deployment (docs/caching.md): the documented input form and its compiled
 * form. Routers answer a repeated request (same deployment version, method and input) from the cache instead of
 * running it again.
 */
import { InvalidOptionError } from './errors.ts';

export type CacheStoreKind = 'memory' | 'redis';

/** HTTP methods whose answers may be cached: GET and HEAD always may; POST only when listed. */
export type CacheHttpMethod = 'GET' | 'HEAD' | 'POST';

export interface CacheOptions {
  /** How long an answer stays cached, in ms. @default 60000 */
  ttlMs?: number;
  /** 'memory': a least-recently-used store in each router; 'redis': one store shared by every worker. @default 'memory' */
  store?: CacheStoreKind;
  /** The Redis server of store 'redis' (redis:// or rediss://). Required with it, refused without it. */
  redisUrl?: string;
  /**
   * With store 'redis': keep a memory store (bounded by maxBytes and maxEntries) in front of Redis in each router,
   * so a repeated hit costs no round trip. An entry it takes from Redis expires when the Redis entry does.
   * @default false
   */
  nearCache?: boolean;
  /** Prefix of every Redis key (`<prefix>:<app>/<deployment>:<version>.<config>:<c|h>:<input hash>`), so clusters can share a server. @default 'shoal:cache' */
  redisKeyPrefix?: string;
  /** Encoded bytes of answers the memory store of one router holds; the least recently used go past it. @default 67108864 (64 MiB) */
  maxBytes?: number;
  /** Entries the memory store of one router holds; the least recently used go past it. @default 100000 */
  maxEntries?: number;
  /** An answer larger than this (encoded) is not cached. At most maxBytes. @default 8 MiB, or maxBytes when smaller */
  maxEntryBytes?: number;
  /** Handle methods whose answers are cached ('*': every method). @default ['*'] */
  methods?: string[];
  /** HTTP methods whose 2xx answers are cached: GET and HEAD, and POST only when listed. @default ['GET', 'HEAD'] */
  httpMethods?: CacheHttpMethod[];
  /** Request headers whose values are part of an HTTP request's key (lower case). @default ['accept', 'authorization', 'content-type', 'cookie'] */
  varyHeaders?: string[];
}

export interface CompiledCacheOptions {
  ttlMs: number;
  store: CacheStoreKind;
  /** Set with store 'redis'. */
  redisUrl?: string;
  redisKeyPrefix: string;
  nearCache: boolean;
  maxBytes: number;
  maxEntries: number;
  maxEntryBytes: number;
  methods: string[];
  httpMethods: CacheHttpMethod[];
  varyHeaders: string[];
}

const CACHE_KEYS: ReadonlyArray<keyof CacheOptions> = ['ttlMs', 'store', 'redisUrl', 'redisKeyPrefix', 'nearCache', 'maxBytes', 'maxEntries', 'maxEntryBytes', 'methods', 'httpMethods', 'varyHeaders'];
const HTTP_METHODS: readonly string[] = ['GET', 'HEAD', 'POST'];
const METHOD_RE = /^[A-Za-z_$][A-Za-z0-9_$]{0,127}$/;
const HEADER_RE = /^[a-z0-9!#$%&'*+.^_`|~-]{1,256}$/;
const PREFIX_RE = /^[A-Za-z0-9_.:/-]{1,128}$/;
/** A day: longer answers are better served by the application's own store. */
const MAX_TTL_MS = 86_400_000;
const MAX_BYTES = 2 ** 40;
const MAX_ENTRY_BYTES = 8 * 1024 * 1024;

function int(path: string, value: unknown, min: number, max: number, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value)) throw new InvalidOptionError(path, 'must be an integer', value);
  if (value < min || value > max) throw new InvalidOptionError(path, `must be between ${min} and ${max}`, value);
  return value;
}

function names(path: string, value: unknown, fallback: string[], check: (v: string) => boolean, what: string, allowEmpty = false): string[] {
  if (value === undefined) return fallback;
  if (!Array.isArray(value) || (value.length === 0 && !allowEmpty)) throw new InvalidOptionError(path, `must be a ${allowEmpty ? '' : 'non-empty '}array of ${what}`, value);
  const seen = new Set<string>();
  return value.map((v: unknown, i) => {
    if (typeof v !== 'string' || !check(v)) throw new InvalidOptionError(`${path}[${i}]`, `must be ${what}`, v);
    if (seen.has(v)) throw new InvalidOptionError(`${path}[${i}]`, 'is listed twice', v);
    seen.add(v);
    return v;
  });
}

export function compileCache(input: unknown, path: string): CompiledCacheOptions {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) throw new InvalidOptionError(path, 'must be an object', input);
  for (const key of Object.keys(input)) {
    if (!(CACHE_KEYS as readonly string[]).includes(key)) throw new InvalidOptionError(`${path}.${key}`, `is not a cache option (${CACHE_KEYS.join(', ')})`);
  }
  const c = input as CacheOptions;
  const store = c.store ?? 'memory';
  if (store !== 'memory' && store !== 'redis') throw new InvalidOptionError(`${path}.store`, "must be 'memory' or 'redis'", store);
  let redisUrl: string | undefined;
  if (store === 'redis') {
    if (c.redisUrl === undefined) throw new InvalidOptionError(`${path}.redisUrl`, "is required with store 'redis'");
    if (typeof c.redisUrl !== 'string') throw new InvalidOptionError(`${path}.redisUrl`, 'must be a string', c.redisUrl);
    let url: URL;
    try { url = new URL(c.redisUrl); } catch { throw new InvalidOptionError(`${path}.redisUrl`, 'must be a URL such as redis://127.0.0.1:6379', c.redisUrl); }
    if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') throw new InvalidOptionError(`${path}.redisUrl`, 'must start with redis:// or rediss://', c.redisUrl);
    redisUrl = c.redisUrl;
  } else if (c.redisUrl !== undefined) {
    throw new InvalidOptionError(`${path}.redisUrl`, "is only for store 'redis' (store is 'memory')", c.redisUrl);
  }
  const redisKeyPrefix = c.redisKeyPrefix ?? 'shoal:cache';
  if (typeof redisKeyPrefix !== 'string' || !PREFIX_RE.test(redisKeyPrefix)) {
    throw new InvalidOptionError(`${path}.redisKeyPrefix`, 'must be 1-128 characters of letters, digits, _ . : / -', redisKeyPrefix);
  }
  const nearCache = c.nearCache ?? false;
  if (typeof nearCache !== 'boolean') throw new InvalidOptionError(`${path}.nearCache`, 'must be true or false', nearCache);
  if (nearCache && store !== 'redis') throw new InvalidOptionError(`${path}.nearCache`, "is only for store 'redis' (a memory store is near already)", nearCache);
  const maxBytes = int(`${path}.maxBytes`, c.maxBytes, 1024, MAX_BYTES, 64 * 1024 * 1024);
  const maxEntryBytes = int(`${path}.maxEntryBytes`, c.maxEntryBytes, 1, MAX_BYTES, Math.min(MAX_ENTRY_BYTES, maxBytes));
  if (maxEntryBytes > maxBytes) throw new InvalidOptionError(`${path}.maxEntryBytes`, `must be at most maxBytes (${maxBytes})`, maxEntryBytes);
  const out: CompiledCacheOptions = {
    ttlMs: int(`${path}.ttlMs`, c.ttlMs, 1, MAX_TTL_MS, 60_000),
    store,
    redisKeyPrefix,
    nearCache,
    maxBytes,
    maxEntries: int(`${path}.maxEntries`, c.maxEntries, 1, 100_000_000, 100_000),
    maxEntryBytes,
    methods: names(`${path}.methods`, c.methods, ['*'], (m) => m === '*' || METHOD_RE.test(m), "method names or '*'"),
    httpMethods: names(`${path}.httpMethods`, c.httpMethods, ['GET', 'HEAD'], (m) => HTTP_METHODS.includes(m), `one of ${HTTP_METHODS.join(', ')}`) as CacheHttpMethod[],
    varyHeaders: names(`${path}.varyHeaders`, c.varyHeaders, ['accept', 'authorization', 'content-type', 'cookie'], (h) => HEADER_RE.test(h), 'lower-case header names', true),
  };
  if (redisUrl !== undefined) out.redisUrl = redisUrl;
  return out;
}
