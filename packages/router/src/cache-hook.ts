/**
 * The router's side of the exact-match response cache (docs/caching.md): one cache per deployment whose route
 * entry carries `cache`, built and replaced as route tables come. Router.call and Router.http hand a request of
 * such a deployment here; everything else never reaches this file.
 *
 * A request is keyed on the deployment, the version it is pinned to (while versions are split each has its own
 * entries), the userConfig hash, the method, the model id and a canonical hash of its input. On a miss it goes
 * back through the router pinned to that version, and its answer is stored only when the replica that gave it
 * ran that version: during a rolling update, or after a retry moved it to another version, it is not.
 */
import {
  CancelledError, DeadlineExceededError, Deadline, LazyAbortController, type Clock, type Logger, type TimerHandle, type WireHttpRequest, type WireHttpResponse,
} from '@shoal/core';
import type { RouteCache, RouteTable } from '@shoal/protocol';
import {
  ErrorLogLimiter, MemoryStore, NearStore, RedisClients, RedisStore, ResponseCache, isStream, tryInputHash, wantsBypass, type CacheStore, type DeploymentCacheObserver,
  type Disposition, type Outcome,
} from '@shoal/cache';
import type { ReplicaRef } from './replica-set.ts';
import type { RouteOptions } from './router.ts';

/** The header an HTTP answer of a cached deployment carries: hit, miss or bypass. */
export const CACHE_HEADER = 'x-shoal-cache';

/** What a router's cache metrics are told; bound once per deployment key. */
export interface CacheObserver {
  deployment(key: string): DeploymentCacheObserver;
}

/**
 * Set by the cache on the request it sends through the router on a miss: the version to pin it to, and where
 * the router leaves the request's attempt (its last replica is the one that answered). Internal to the router.
 */
export interface CachePin {
  version: string | undefined;
  attempt?: { tried: ReplicaRef | undefined };
}

/** What the cache needs of the router (Router implements it). */
export interface CacheRouter {
  call(key: string, method: string, args: unknown[], opts: RouteOptions): Promise<unknown>;
  http(key: string, req: WireHttpRequest, opts: RouteOptions): Promise<WireHttpResponse>;
  /**
   * The version a request would be pinned to now (undefined: versions are not split), or null when it must not be
   * cached (an HTTP request while an experiment splits the deployment: its answers are counted per request).
   */
  cacheVersion(key: string, stickyKey: string | undefined, req: WireHttpRequest | undefined): string | undefined | null;
}

export interface CacheHooksOptions {
  clock: Clock;
  logger: Logger;
  observer?: CacheObserver;
  /** Redis connections, shared by every deployment on one server. @default made here */
  redis?: RedisClients;
  /** Makes a deployment's store (tests). @default MemoryStore or RedisStore by the options */
  makeStore?: (key: string, cfg: RouteCache, onError: (err: Error, op: string) => void) => CacheStore;
}

/** What a cached deployment's entries cost in this router (memory stores; a Redis store holds none here). */
export interface CacheStats { key: string; store: CacheStore['kind']; entries: number; bytes: number }

/** An error that is its caller's own: a waiter for the same key computes again instead of sharing it. */
function callerOnly(err: unknown): boolean {
  return err instanceof CancelledError || err instanceof DeadlineExceededError;
}

const NO_OBSERVER: DeploymentCacheObserver = { requested: () => undefined, storeFailed: () => undefined };

/** One deployment's cache. */
class DeploymentCache {
  readonly cache: ResponseCache;
  private readonly methods: ReadonlySet<string> | undefined;
  private readonly httpMethods: ReadonlySet<string>;
  /** Options as given (without version and config), to tell a change that needs a new store from one that does not. */
  readonly shape: string;

  constructor(readonly key: string, public cfg: RouteCache, readonly store: CacheStore, observer: DeploymentCacheObserver, private readonly clock: Clock) {
    this.cache = new ResponseCache({ store, ttlMs: cfg.ttlMs, maxEntryBytes: cfg.maxEntryBytes, observer, leaderOnly: callerOnly });
    this.methods = cfg.methods.includes('*') ? undefined : new Set(cfg.methods);
    this.httpMethods = new Set(cfg.httpMethods);
    this.shape = shapeOf(cfg);
  }

  call(router: CacheRouter, method: string, args: unknown[], opts: RouteOptions): Promise<unknown> {
    const version = router.cacheVersion(this.key, opts.stickyKey, undefined);
    const pin: CachePin = { version: version ?? undefined };
    // A streamed answer is never stored; a caller that takes streams is keyed apart from one that takes a streaming
    // method's answer gathered whole, so neither gets the other's form.
    const hash = opts.cache === 'bypass' || version === null || (this.methods !== undefined && !this.methods.has(method)) ? undefined : tryInputHash([method, opts.modelId ?? null, opts.stream !== undefined, args]);
    if (hash === undefined) {
      this.cache.bypassed();
      return router.call(this.key, method, args, { ...opts, cachePin: pin });
    }
    const keyVersion = version ?? this.cfg.version;
    return this.cache.get(
      `${this.key}:${keyVersion}.${this.cfg.config}:c:${hash}`,
      () => router.call(this.key, method, args, { ...opts, cachePin: pin }),
      (value): Disposition => (isStream(value) ? 'none' : pin.attempt?.tried?.version === keyVersion ? 'store' : 'share'),
      (p) => this.wait(p, opts),
    ).then((a) => a.value);
  }

  http(router: CacheRouter, req: WireHttpRequest, opts: RouteOptions): Promise<WireHttpResponse> {
    const version = router.cacheVersion(this.key, opts.stickyKey, req);
    const pin: CachePin = { version: version ?? undefined };
    const hash = opts.cache === 'bypass' || version === null || !this.httpMethods.has(req.method) || wantsBypass(req.headers)
      ? undefined
      : tryInputHash([req.method, req.path, req.query, opts.modelId ?? null, opts.stream !== undefined, this.cfg.varyHeaders.map((h) => req.headers[h] ?? null), req.body]);
    if (hash === undefined) {
      this.cache.bypassed();
      return router.http(this.key, req, { ...opts, cachePin: pin }).then((res) => marked(res, 'bypass'));
    }
    const keyVersion = version ?? this.cfg.version;
    return this.cache.get(
      `${this.key}:${keyVersion}.${this.cfg.config}:h:${hash}`,
      () => router.http(this.key, req, { ...opts, cachePin: pin }),
      // A private answer (it sets a cookie, or says private / no-store) is its caller's alone: waiters compute their own.
      (res): Disposition => (isStream(res) || isStream(res.body) || privateHttp(res) ? 'none' : !storableHttp(res) ? 'share' : pin.attempt?.tried?.version === keyVersion ? 'store' : 'share'),
      (p) => this.wait(p, opts),
    ).then((a) => marked(a.value, a.result === 'miss' ? 'miss' : 'hit'));
  }

  /** A waiter's wait for the leader, ended by its own signal or deadline. */
  private wait(p: Promise<Outcome>, opts: RouteOptions): Promise<Outcome> {
    const { signal, deadline } = opts;
    if (signal === undefined && deadline === undefined) return p;
    if (signal?.aborted === true) return Promise.reject(new CancelledError(`call to "${this.key}" cancelled while it waited for the same request's answer`));
    return new Promise<Outcome>((resolve, reject) => {
      let timer: TimerHandle | undefined;
      const onAbort = (): void => { cleanup(); reject(new CancelledError(`call to "${this.key}" cancelled while it waited for the same request's answer`)); };
      const cleanup = (): void => {
        if (timer !== undefined) this.clock.clearTimeout(timer);
        if (signal instanceof LazyAbortController) signal.listen(undefined);
        else signal?.removeEventListener('abort', onAbort);
      };
      if (deadline !== undefined) {
        timer = this.clock.setTimeout(() => { cleanup(); reject(new DeadlineExceededError(`deadline exceeded while waiting for the same request to "${this.key}" to be answered`)); }, Deadline.remainingMs(deadline, this.clock));
      }
      if (signal instanceof LazyAbortController) signal.listen(onAbort);
      else signal?.addEventListener('abort', onAbort, { once: true });
      p.then((o) => { cleanup(); resolve(o); }, (e: unknown) => { cleanup(); reject(e); });
    });
  }
}

/** An HTTP answer that may be stored: 2xx and not private (privateHttp); a private one is checked first. */
function storableHttp(res: WireHttpResponse): boolean {
  return res.status >= 200 && res.status <= 299 && !isStream(res.body);
}

/** An answer for its caller only, neither stored nor shared: it sets a cookie, or the application marked it private or no-store. */
function privateHttp(res: WireHttpResponse): boolean {
  for (const [name, value] of Object.entries(res.headers)) {
    const n = name.toLowerCase();
    if (n === 'set-cookie') return true;
    if (n === 'cache-control' && /(^|,)\s*(no-store|private)\s*(,|$)/i.test(String(value))) return true;
  }
  return false;
}

/** The answer with its x-shoal-cache header; a streamed one (a ChunkStream) as it is. */
function marked(res: WireHttpResponse, result: 'hit' | 'miss' | 'bypass'): WireHttpResponse {
  if (isStream(res)) return res;
  return { ...res, headers: { ...res.headers, [CACHE_HEADER]: result } };
}

function shapeOf(cfg: RouteCache): string {
  const { version: _v, config: _c, ...rest } = cfg;
  return JSON.stringify(rest);
}

/** The caches of every deployment that has one, as the latest route table says. */
export class CacheHooks {
  private readonly byKey = new Map<string, DeploymentCache>();
  private readonly redis: RedisClients;
  private readonly ownRedis: boolean;
  private readonly errors: ErrorLogLimiter;

  constructor(private readonly opts: CacheHooksOptions) {
    this.errors = new ErrorLogLimiter((message, fields) => opts.logger.warn(message, fields), 5000, () => opts.clock.monoNow());
    this.ownRedis = opts.redis === undefined;
    this.redis = opts.redis ?? new RedisClients({ onConnectionError: (url, err) => this.errors.report('response cache: Redis connection failed; requests are computed without it', { redis: redactUrl(url), error: err.message }) });
  }

  /** Deployments with a cache; 0 keeps the router's branch to one comparison. */
  get size(): number { return this.byKey.size; }

  get(key: string): DeploymentCache | undefined {
    return this.byKey.get(key);
  }

  /** Applies a route table: caches appear, go, or take new options (a changed store or bound starts empty). */
  update(table: RouteTable): void {
    for (const [key, entry] of Object.entries(table)) {
      const cfg = entry.cache;
      const had = this.byKey.get(key);
      if (cfg === undefined) { if (had !== undefined) this.drop(key, had); continue; }
      if (had !== undefined && had.shape === shapeOf(cfg)) {
        // A new version or userConfig: new keys; old entries are never looked up again and age out.
        had.cfg = cfg;
        continue;
      }
      if (had !== undefined) this.drop(key, had);
      this.byKey.set(key, this.make(key, cfg));
    }
    for (const [key, had] of [...this.byKey]) if (!(key in table)) this.drop(key, had);
  }

  stats(): CacheStats[] {
    return [...this.byKey.values()].map((d) => ({ key: d.key, store: d.store.kind, ...d.store.stats() }));
  }

  close(): void {
    for (const [key, d] of [...this.byKey]) this.drop(key, d);
    if (this.ownRedis) this.redis.close();
  }

  private make(key: string, cfg: RouteCache): DeploymentCache {
    const observer = this.opts.observer?.deployment(key) ?? NO_OBSERVER;
    const onError = (err: Error, op: string): void => {
      observer.storeFailed();
      this.errors.report('response cache store failed; the request is computed without it', { deployment: key, op, error: err.message });
    };
    let store: CacheStore;
    if (this.opts.makeStore !== undefined) store = this.opts.makeStore(key, cfg, onError);
    else {
      const memory = (): MemoryStore => new MemoryStore({ maxBytes: cfg.maxBytes, maxEntries: cfg.maxEntries, now: () => this.opts.clock.monoNow() });
      const redis = (): RedisStore => new RedisStore({ client: this.redis.acquire(cfg.redisUrl!), prefix: cfg.redisKeyPrefix, onError });
      store = cfg.store === 'memory' ? memory() : cfg.nearCache ? new NearStore(memory(), redis()) : redis();
    }
    return new DeploymentCache(key, cfg, store, observer, this.opts.clock);
  }

  private drop(key: string, d: DeploymentCache): void {
    this.byKey.delete(key);
    d.store.close();
    if (d.store.kind !== 'memory' && this.opts.makeStore === undefined && d.cfg.redisUrl !== undefined) this.redis.release(d.cfg.redisUrl);
  }
}

/** A Redis URL without its password, for logs. */
function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    return 'redis://(unparsable url)';
  }
}
