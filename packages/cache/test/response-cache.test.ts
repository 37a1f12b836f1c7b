import { describe, expect, it } from 'vitest';
import { CancelledError, FakeClock } from '@shoal/core';
import { ErrorLogLimiter, ResponseCache, isStream, wantsBypass, type CacheResult, type DeploymentCacheObserver } from '../src/response-cache.ts';
import { MemoryStore } from '../src/memory-store.ts';
import type { CacheStore } from '../src/store.ts';

function counting(): DeploymentCacheObserver & { counts: Record<CacheResult | 'errors', number> } {
  const counts = { hit: 0, miss: 0, bypass: 0, coalesced: 0, errors: 0 };
  return { counts, requested: (r) => { counts[r]++; }, storeFailed: () => { counts.errors++; } };
}

/** A shared store as Redis is one (answers by promise), that can be made to fail as a store does: fail-open. */
class FakeSharedStore implements CacheStore {
  readonly kind = 'redis';
  readonly map = new Map<string, Uint8Array>();
  down = false;
  constructor(private readonly onError: (err: Error) => void) {}
  async get(key: string): Promise<Uint8Array | undefined> {
    await Promise.resolve();
    if (this.down) { this.onError(new Error('connection refused')); return undefined; }
    return this.map.get(key);
  }
  set(key: string, bytes: Uint8Array): void {
    if (this.down) { this.onError(new Error('connection refused')); return; }
    this.map.set(key, bytes);
  }
  stats(): { entries: number; bytes: number } { return { entries: 0, bytes: 0 }; }
  close(): void {}
}

function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => { resolve = res; reject = rej; });
  return { promise, resolve, reject };
}

const memory = (): MemoryStore => new MemoryStore({ maxBytes: 1 << 20, maxEntries: 100 });

describe('ResponseCache', () => {
  it('a miss computes and stores; the next get is a hit with an equal, separate copy', async () => {
    const obs = counting();
    const cache = new ResponseCache({ store: memory(), ttlMs: 1000, maxEntryBytes: 1 << 20, observer: obs });
    let runs = 0;
    const compute = async (): Promise<{ y: Float32Array }> => { runs++; return { y: new Float32Array([1, 2, 3]) }; };
    const first = await cache.get('k', compute, () => 'store');
    expect(first.result).toBe('miss');
    first.value.y[0] = 99; // the caller changes what it got: the cached copy must not change
    const second = await cache.get('k', compute, () => 'store');
    expect(second.result).toBe('hit');
    expect(second.value.y).toBeInstanceOf(Float32Array);
    expect([...second.value.y]).toEqual([1, 2, 3]);
    expect(runs).toBe(1);
    expect(obs.counts).toMatchObject({ hit: 1, miss: 1, coalesced: 0 });
  });

  it('coalesces concurrent misses of one key into one computation', async () => {
    const obs = counting();
    const cache = new ResponseCache({ store: memory(), ttlMs: 1000, maxEntryBytes: 1 << 20, observer: obs });
    const gate = deferred<string>();
    let runs = 0;
    const compute = (): Promise<string> => { runs++; return gate.promise; };
    const all = Array.from({ length: 8 }, () => cache.get('k', compute, () => 'store'));
    await Promise.resolve();
    expect(cache.computing).toBe(1);
    gate.resolve('answer');
    const answers = await Promise.all(all);
    expect(runs).toBe(1);
    expect(answers.map((a) => a.value)).toEqual(Array(8).fill('answer'));
    expect(answers.filter((a) => a.result === 'miss')).toHaveLength(1);
    expect(obs.counts).toMatchObject({ miss: 1, coalesced: 7 });
    expect(cache.computing).toBe(0);
  });

  it('an error is shared with the waiters but never stored', async () => {
    const cache = new ResponseCache({ store: memory(), ttlMs: 1000, maxEntryBytes: 1 << 20 });
    const gate = deferred<string>();
    let runs = 0;
    const compute = (): Promise<string> => { runs++; return gate.promise; };
    const a = cache.get('k', compute, () => 'store');
    const b = cache.get('k', compute, () => 'store');
    gate.reject(new Error('model failed'));
    await expect(a).rejects.toThrow('model failed');
    await expect(b).rejects.toThrow('model failed');
    expect(runs).toBe(1);
    // Not cached: the next request runs again.
    const c = await cache.get('k', async () => { runs++; return 'ok'; }, () => 'store');
    expect(c).toEqual({ value: 'ok', result: 'miss' });
    expect(runs).toBe(2);
  });

  it('a leader cancelled by its own caller does not fail its waiters: one of them computes instead', async () => {
    const cache = new ResponseCache({ store: memory(), ttlMs: 1000, maxEntryBytes: 1 << 20, leaderOnly: (e) => e instanceof CancelledError });
    const gate = deferred<string>();
    const leader = cache.get('k', () => gate.promise, () => 'store');
    let second = 0;
    const waiters = [1, 2, 3].map(() => cache.get('k', async () => { second++; return 'recomputed'; }, () => 'store'));
    gate.reject(new CancelledError('client went away'));
    await expect(leader).rejects.toThrow(CancelledError);
    const got = await Promise.all(waiters);
    expect(got.map((g) => g.value)).toEqual(['recomputed', 'recomputed', 'recomputed']);
    expect(second).toBe(1);
  });

  it('a waiter\'s own cancellation ends its wait alone', async () => {
    const cache = new ResponseCache({ store: memory(), ttlMs: 1000, maxEntryBytes: 1 << 20 });
    const gate = deferred<string>();
    const leader = cache.get('k', () => gate.promise, () => 'store');
    const quit = deferred<never>();
    const waiter = cache.get('k', () => gate.promise, () => 'store', (p) => Promise.race([p, quit.promise]));
    quit.reject(new CancelledError('waiter left'));
    await expect(waiter).rejects.toThrow('waiter left');
    gate.resolve('fine');
    expect((await leader).value).toBe('fine');
  });

  it('answers marked share go to waiters but are not stored; none go to neither', async () => {
    const cache = new ResponseCache({ store: memory(), ttlMs: 1000, maxEntryBytes: 1 << 20 });
    const gate = deferred<string>();
    let runs = 0;
    const a = cache.get('k', () => { runs++; return gate.promise; }, () => 'share');
    const b = cache.get('k', () => { runs++; return gate.promise; }, () => 'share');
    gate.resolve('x');
    expect((await b).result).toBe('coalesced');
    await a;
    expect(cache.store.stats().entries).toBe(0);
    expect(runs).toBe(1);
    // 'none' (a stream): each waiter computes its own.
    const g2 = deferred<string>();
    const c = cache.get('s', () => { runs++; return g2.promise; }, () => 'none');
    const d = cache.get('s', async () => { runs++; return 'own'; }, () => 'none');
    g2.resolve('first');
    expect((await c).value).toBe('first');
    expect((await d).value).toBe('own');
    expect(runs).toBe(3);
  });

  it('does not store an answer past maxEntryBytes', async () => {
    const cache = new ResponseCache({ store: memory(), ttlMs: 1000, maxEntryBytes: 100 });
    await cache.get('big', async () => new Uint8Array(1000), () => 'store');
    await cache.get('small', async () => new Uint8Array(10), () => 'store');
    expect((cache.store as MemoryStore).keys()).toEqual(['small']);
  });

  it('expires entries with the store\'s TTL (fake clock)', async () => {
    const clock = new FakeClock();
    const cache = new ResponseCache({ store: new MemoryStore({ maxBytes: 1 << 20, maxEntries: 10, now: () => clock.monoNow() }), ttlMs: 500, maxEntryBytes: 1 << 20 });
    let runs = 0;
    const compute = async (): Promise<number> => ++runs;
    expect((await cache.get('k', compute, () => 'store')).value).toBe(1);
    clock.advance(499);
    expect(await cache.get('k', compute, () => 'store')).toEqual({ value: 1, result: 'hit' });
    clock.advance(1);
    expect(await cache.get('k', compute, () => 'store')).toEqual({ value: 2, result: 'miss' });
  });

  it('fails open: a shared store that is down makes every request a computed miss, each failure counted', async () => {
    const obs = counting();
    const store = new FakeSharedStore(() => obs.storeFailed());
    const cache = new ResponseCache({ store, ttlMs: 1000, maxEntryBytes: 1 << 20, observer: obs });
    let runs = 0;
    const compute = async (): Promise<string> => `run ${++runs}`;
    expect((await cache.get('k', compute, () => 'store')).result).toBe('miss');
    expect((await cache.get('k', compute, () => 'store')).result).toBe('hit');
    store.down = true;
    expect(await cache.get('k', compute, () => 'store')).toEqual({ value: 'run 2', result: 'miss' });
    expect(await cache.get('k', compute, () => 'store')).toEqual({ value: 'run 3', result: 'miss' });
    expect(obs.counts.errors).toBe(4); // a get and a set each time
    store.down = false;
    expect((await cache.get('k', compute, () => 'store')).result).toBe('hit');
  });

  it('coalesces behind a shared store\'s get too', async () => {
    const store = new FakeSharedStore(() => undefined);
    const cache = new ResponseCache({ store, ttlMs: 1000, maxEntryBytes: 1 << 20 });
    let runs = 0;
    const all = await Promise.all(Array.from({ length: 5 }, () => cache.get('k', async () => ++runs, () => 'store')));
    expect(runs).toBe(1);
    expect(all.map((a) => a.value)).toEqual([1, 1, 1, 1, 1]);
  });
});

describe('helpers', () => {
  it('wantsBypass reads x-shoal-cache and Cache-Control', () => {
    expect(wantsBypass({})).toBe(false);
    expect(wantsBypass({ 'x-shoal-cache': 'bypass' })).toBe(true);
    expect(wantsBypass({ 'x-shoal-cache': 'BYPASS ' })).toBe(true);
    expect(wantsBypass({ 'cache-control': 'max-age=0, no-cache' })).toBe(true);
    expect(wantsBypass({ 'cache-control': 'no-store' })).toBe(true);
    expect(wantsBypass({ 'cache-control': 'max-age=60' })).toBe(false);
    expect(wantsBypass({ 'cache-control': ['public', 'no-store'] })).toBe(true);
  });

  it('isStream knows an async iterable', () => {
    async function* gen(): AsyncGenerator<number> { yield 1; }
    expect(isStream(gen())).toBe(true);
    expect(isStream({ a: 1 })).toBe(false);
    expect(isStream(null)).toBe(false);
  });

  it('ErrorLogLimiter logs once per period and says how many it kept quiet', () => {
    const clock = new FakeClock();
    const lines: Array<Record<string, unknown>> = [];
    const lim = new ErrorLogLimiter((_m, f) => lines.push(f), 5000, () => clock.monoNow());
    for (let i = 0; i < 10; i++) lim.report('failed', { i });
    clock.advance(5000);
    lim.report('failed', { i: 10 });
    expect(lines).toEqual([{ i: 0 }, { i: 10, notLogged: 9 }]);
  });
});
