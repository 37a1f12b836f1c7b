/**
 * One deployment's exact-match cache in one router: answers a key from its store, or runs the computation once
 * for every caller that asks for the same key at the same time (miss coalescing).
 *
 * Coalescing: the first caller of a key that misses (the leader) computes; callers of that key that arrive while
 * it does wait for it and get a decoded copy of its answer. When the leader fails, they get the same error (it is
 * never stored); when it was cancelled or ran out of its own deadline (its caller's business, not theirs), or its
 * answer cannot be shared (a stream), each computes its own, again coalesced behind whichever goes first. A
 * waiter's own cancellation or deadline ends its wait alone. With Redis, coalescing is per router: two workers
 * that miss the same key at once each compute it once.
 */
import { decodeValue, encodeValue } from './value-codec.ts';
import type { CacheStore } from './store.ts';

export type CacheResult = 'hit' | 'miss' | 'bypass' | 'coalesced';

/** What a deployment's cache reports; the owner binds it to the deployment's labels once. */
export interface DeploymentCacheObserver {
  requested(result: CacheResult): void;
  storeFailed(): void;
}

/** What becomes of a computed answer: stored and shared with waiters, shared only, or neither. */
export type Disposition = 'store' | 'share' | 'none';

export interface ResponseCacheOptions {
  store: CacheStore;
  ttlMs: number;
  /** Encoded answers larger than this are shared with waiters but not stored. */
  maxEntryBytes: number;
  observer?: DeploymentCacheObserver;
  /**
   * Errors that belong to the leader's caller alone (its cancellation, its deadline): waiters compute their own
   * instead of failing with it. @default none (every error is shared)
   */
  leaderOnly?: (err: unknown) => boolean;
}

/** What a leader hands its waiters. Never rejects: a waiter's own cancellation is the only rejection it sees. */
export interface Outcome { bytes?: Uint8Array; error?: unknown; shared?: boolean }

export interface Answer<T> {
  value: T;
  result: Exclude<CacheResult, 'bypass'>;
}

const NONE: Outcome = {};

export class ResponseCache {
  private readonly inflight = new Map<string, Promise<Outcome>>();

  constructor(private readonly opts: ResponseCacheOptions) {}

  get store(): CacheStore { return this.opts.store; }

  /** Keys being computed now (for tests). */
  get computing(): number { return this.inflight.size; }

  /** Counts a request the cache was not used for. */
  bypassed(): void {
    this.opts.observer?.requested('bypass');
  }

  /**
   * The answer for `key`: from the store (a hit), from a computation of the same key in flight (coalesced), or
   * from `compute` (a miss). `dispose` says what may become of a computed answer. `wait` bounds a waiter's wait by
   * its own signal and deadline (it rejects to end it).
   */
  async get<T>(key: string, compute: () => Promise<T>, dispose: (value: T) => Disposition, wait: (p: Promise<Outcome>) => Promise<Outcome> = (p) => p): Promise<Answer<T>> {
    const { store, observer } = this.opts;
    if (store.kind === 'memory') {
      const b = store.get(key) as Uint8Array | undefined;
      if (b !== undefined) { observer?.requested('hit'); return { value: decodeValue(b) as T, result: 'hit' }; }
    }
    let counted = false;
    for (let pending = this.inflight.get(key); pending !== undefined; pending = this.inflight.get(key)) {
      if (!counted) { observer?.requested('coalesced'); counted = true; }
      const out = await wait(pending);
      if (out.bytes !== undefined) return { value: decodeValue(out.bytes) as T, result: 'coalesced' };
      if (out.error !== undefined && out.shared === true) throw out.error;
      // The leader's answer was its own (cancelled, a stream): compute, unless another has started already.
    }
    let settle: (o: Outcome) => void = () => undefined;
    const mine = new Promise<Outcome>((resolve) => { settle = resolve; });
    this.inflight.set(key, mine);
    try {
      if (store.kind !== 'memory') {
        const b = await store.get(key);
        if (b !== undefined) {
          settle({ bytes: b });
          if (!counted) observer?.requested('hit');
          return { value: decodeValue(b) as T, result: counted ? 'coalesced' : 'hit' };
        }
      }
      if (!counted) observer?.requested('miss');
      let value: T;
      try {
        value = await compute();
      } catch (err) {
        settle({ error: err, shared: !(this.opts.leaderOnly?.(err) ?? false) });
        throw err;
      }
      const d = dispose(value);
      if (d !== 'none') {
        // Encoded now, before the caller can change or transfer what it got.
        const bytes = encodeValue(value);
        if (bytes !== undefined) {
          if (d === 'store' && bytes.byteLength <= this.opts.maxEntryBytes) store.set(key, bytes, this.opts.ttlMs);
          settle({ bytes });
        }
      }
      return { value, result: 'miss' };
    } finally {
      settle(NONE);
      if (this.inflight.get(key) === mine) this.inflight.delete(key);
    }
  }
}

/** A stream (an async iterable) is never cached nor shared: it can be read once. */
export function isStream(value: unknown): boolean {
  return typeof value === 'object' && value !== null && typeof (value as { [Symbol.asyncIterator]?: unknown })[Symbol.asyncIterator] === 'function';
}

/**
 * The caller asks not to use the cache: `x-shoal-cache: bypass`, or `Cache-Control: no-cache` or `no-store`.
 */
export function wantsBypass(headers: Record<string, string | string[] | undefined>): boolean {
  const x = headers['x-shoal-cache'];
  if (x !== undefined && (Array.isArray(x) ? x : [x]).some((v) => v.trim().toLowerCase() === 'bypass')) return true;
  const cc = headers['cache-control'];
  if (cc === undefined) return false;
  return (Array.isArray(cc) ? cc.join(',') : cc).toLowerCase().split(',').some((d) => { const t = d.trim(); return t === 'no-cache' || t === 'no-store'; });
}

/**
 * Reports store failures: each is counted; one log line every `everyMs` at most, with how many were not logged.
 */
export class ErrorLogLimiter {
  private lastAt = Number.NEGATIVE_INFINITY;
  private quiet = 0;

  constructor(private readonly log: (message: string, fields: Record<string, unknown>) => void, private readonly everyMs = 5000, private readonly now: () => number = () => performance.now()) {}

  report(message: string, fields: Record<string, unknown>): void {
    const t = this.now();
    if (t - this.lastAt < this.everyMs) { this.quiet++; return; }
    this.lastAt = t;
    this.log(message, this.quiet > 0 ? { ...fields, notLogged: this.quiet } : fields);
    this.quiet = 0;
  }
}
