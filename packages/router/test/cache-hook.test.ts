/** The router's response cache (cache-hook.ts) over a fake transport: versions, bypass, HTTP rules, coalescing. */
import { describe, expect, it } from 'vitest';
import { compileCache, type WireHttpResponse } from '@shoal/core';
import type { RouteCache, RouteEntry } from '@shoal/protocol';
import type { CacheResult, DeploymentCacheObserver } from '@shoal/cache';
import { flush, rig } from './fakes.ts';

function cache(version: string, options: Record<string, unknown> = {}, config = 'c0'): RouteCache {
  return { ...compileCache(options, 'cache'), version, config };
}

function entry(replicas: Array<[id: string, version: string]>, c: RouteCache | undefined, traffic?: RouteEntry['traffic']): RouteEntry {
  return {
    maxOngoingRequests: 100, maxQueuedRequests: 100, requestTimeoutMs: 0,
    replicas: replicas.map(([replicaId, version]) => ({ replicaId, workerId: 'w1', dataAddress: 'ws://w1', version })),
    ...(c === undefined ? {} : { cache: c }), ...(traffic === undefined ? {} : { traffic }),
  };
}

function observed(): { counts: Record<string, number>; observer: { deployment: (k: string) => DeploymentCacheObserver } } {
  const counts: Record<string, number> = {};
  return {
    counts,
    observer: { deployment: (k) => ({ requested: (r: CacheResult) => { counts[`${k}:${r}`] = (counts[`${k}:${r}`] ?? 0) + 1; }, storeFailed: () => { counts[`${k}:error`] = (counts[`${k}:error`] ?? 0) + 1; } }) },
  };
}

/** Answers every request the transport holds with the replica id and the call's first argument. */
async function answerAll(t: ReturnType<typeof rig>['transport'], from = 0): Promise<void> {
  await flush();
  for (const s of t.sent.slice(from)) {
    const m = s.message;
    if (m.t === 'call') s.answer({ by: s.replica.replicaId, x: m.args[0] });
    else if (m.t === 'http') s.answer({ status: 200, headers: { 'content-type': 'text/plain' }, body: Buffer.from(`${s.replica.replicaId}:${m.req.path}`) } satisfies WireHttpResponse);
  }
}

describe('Router response cache', () => {
  it('answers a repeated call from the cache, and a deployment without a cache is untouched', async () => {
    const o = observed();
    const r = rig({ cacheObserver: o.observer });
    r.routes({ 'a/M': entry([['r1', 'v1']], cache('v1')), 'a/N': entry([['n1', 'v1']], undefined) });
    const first = r.router.call('a/M', 'predict', [{ q: 1, p: [1, 2] }]);
    await answerAll(r.transport);
    expect(await first).toEqual({ by: 'r1', x: { q: 1, p: [1, 2] } });
    // Same input, keys in another order: a hit, nothing sent.
    expect(await r.router.call('a/M', 'predict', [{ p: [1, 2], q: 1 }])).toEqual({ by: 'r1', x: { q: 1, p: [1, 2] } });
    expect(r.transport.sent).toHaveLength(1);
    // Another input, another method: misses.
    const other = [r.router.call('a/M', 'predict', [{ q: 2 }]), r.router.call('a/M', 'score', [{ q: 1, p: [1, 2] }])];
    await answerAll(r.transport, 1);
    await Promise.all(other);
    expect(r.transport.sent).toHaveLength(3);
    const n = [r.router.call('a/N', 'predict', [1]), r.router.call('a/N', 'predict', [1])];
    await answerAll(r.transport, 3);
    await Promise.all(n);
    expect(r.transport.sent).toHaveLength(5);
    expect(o.counts).toEqual({ 'a/M:miss': 3, 'a/M:hit': 1 });
  });

  it('bypass: CallOptions cache "bypass" neither reads nor stores; methods outside `methods` are not cached', async () => {
    const o = observed();
    const r = rig({ cacheObserver: o.observer });
    r.routes({ 'a/M': entry([['r1', 'v1']], cache('v1', { methods: ['predict'] })) });
    const p = r.router.call('a/M', 'predict', [1]);
    await answerAll(r.transport);
    await p;
    const b = r.router.call('a/M', 'predict', [1], { cache: 'bypass' });
    const s = r.router.call('a/M', 'score', [1]);
    await answerAll(r.transport, 1);
    await Promise.all([b, s]);
    expect(r.transport.sent).toHaveLength(3);
    // The bypass travels on to the replica (its semantic cache honours it); other calls carry no flag.
    expect(r.transport.sent.map((x) => x.message.t === 'call' ? x.message.nc : 'http')).toEqual([undefined, true, undefined]);
    expect('nc' in r.transport.sent[0]!.message).toBe(false);
    const s2 = r.router.call('a/M', 'score', [1]);
    await answerAll(r.transport, 3);
    await s2;
    expect(r.transport.sent).toHaveLength(4);
    expect(o.counts).toEqual({ 'a/M:miss': 1, 'a/M:bypass': 3 });
  });

  it('coalesces concurrent identical calls into one request to a replica', async () => {
    const r = rig();
    r.routes({ 'a/M': entry([['r1', 'v1'], ['r2', 'v1']], cache('v1')) });
    const all = Array.from({ length: 10 }, () => r.router.call('a/M', 'predict', [new Float32Array([1, 2, 3])]));
    await flush();
    expect(r.transport.sent).toHaveLength(1);
    await answerAll(r.transport);
    const got = await Promise.all(all);
    for (const g of got) expect((g as { x: Float32Array }).x).toEqual(new Float32Array([1, 2, 3]));
  });

  it('a new version or userConfig never serves the old entries', async () => {
    const r = rig();
    r.routes({ 'a/M': entry([['r1', 'v1']], cache('v1')) });
    const a = r.router.call('a/M', 'predict', [1]);
    await answerAll(r.transport);
    await a;
    r.routes({ 'a/M': entry([['r2', 'v2']], cache('v2')) });
    const b = r.router.call('a/M', 'predict', [1]);
    await answerAll(r.transport, 1);
    expect(await b).toEqual({ by: 'r2', x: 1 });
    r.routes({ 'a/M': entry([['r2', 'v2']], cache('v2', {}, 'c1')) });
    const c = r.router.call('a/M', 'predict', [1]);
    await answerAll(r.transport, 2);
    await c;
    expect(r.transport.sent).toHaveLength(3);
  });

  it('during a rolling update an old replica\'s answer is not stored under the new version', async () => {
    const r = rig({ random: () => 0 });
    r.routes({ 'a/M': entry([['old', 'v1']], cache('v2')) });
    const a = r.router.call('a/M', 'predict', [1]);
    await answerAll(r.transport);
    expect(await a).toEqual({ by: 'old', x: 1 });
    r.routes({ 'a/M': entry([['new', 'v2']], cache('v2')) });
    const b = r.router.call('a/M', 'predict', [1]);
    await answerAll(r.transport, 1);
    expect(await b).toEqual({ by: 'new', x: 1 });
    expect(await r.router.call('a/M', 'predict', [1])).toEqual({ by: 'new', x: 1 });
    expect(r.transport.sent).toHaveLength(2);
  });

  it('while versions are split, each version has its own entries', async () => {
    let u = 0.1;
    const r = rig({ random: () => u });
    const traffic = { weights: [{ version: 'v1', percent: 50 }, { version: 'v2', percent: 50 }] };
    r.routes({ 'a/M': entry([['s1', 'v1'], ['c1', 'v2']], cache('v2'), traffic) });
    const a = r.router.call('a/M', 'predict', [1]); // u = 0.1: v1
    await answerAll(r.transport);
    expect(await a).toEqual({ by: 's1', x: 1 });
    u = 0.9; // v2: its own miss
    const b = r.router.call('a/M', 'predict', [1]);
    await answerAll(r.transport, 1);
    expect(await b).toEqual({ by: 'c1', x: 1 });
    u = 0.1;
    expect(await r.router.call('a/M', 'predict', [1])).toEqual({ by: 's1', x: 1 });
    u = 0.9;
    expect(await r.router.call('a/M', 'predict', [1])).toEqual({ by: 'c1', x: 1 });
    expect(r.transport.sent).toHaveLength(2);
  });

  it('HTTP: GET is cached and marked, POST only when listed, bypass headers and non-2xx answers are not stored', async () => {
    const r = rig();
    r.routes({ 'a/M': entry([['r1', 'v1']], cache('v1')) });
    const req = (method: string, path: string, headers: Record<string, string> = {}): Parameters<typeof r.router.http>[1] => ({ method, path, query: 'a=1', headers, body: Buffer.alloc(0) });
    const g1 = r.router.http('a/M', req('GET', '/x'));
    await answerAll(r.transport);
    expect((await g1).headers['x-shoal-cache']).toBe('miss');
    const g2 = await r.router.http('a/M', req('GET', '/x'));
    expect(g2.headers['x-shoal-cache']).toBe('hit');
    expect(Buffer.from(g2.body).toString()).toBe('r1:/x');
    expect(r.transport.sent).toHaveLength(1);
    // Another Accept is another key; a bypass header computes and says so.
    const g3 = r.router.http('a/M', req('GET', '/x', { accept: 'application/json' }));
    const g4 = r.router.http('a/M', req('GET', '/x', { 'x-shoal-cache': 'bypass' }));
    const g5 = r.router.http('a/M', req('GET', '/x', { 'cache-control': 'no-cache' }));
    const p1 = r.router.http('a/M', req('POST', '/x'));
    await answerAll(r.transport, 1);
    expect((await g3).headers['x-shoal-cache']).toBe('miss');
    expect((await g4).headers['x-shoal-cache']).toBe('bypass');
    expect((await g5).headers['x-shoal-cache']).toBe('bypass');
    expect((await p1).headers['x-shoal-cache']).toBe('bypass');
    expect(r.transport.sent).toHaveLength(5);
    // A 500 is not stored.
    const e1 = r.router.http('a/M', req('GET', '/err'));
    await flush();
    r.transport.sent[5]!.answer({ status: 500, headers: {}, body: Buffer.from('no') });
    expect((await e1).status).toBe(500);
    const e2 = r.router.http('a/M', req('GET', '/err'));
    await answerAll(r.transport, 6);
    expect((await e2).status).toBe(200);
    expect(r.transport.sent).toHaveLength(7);
  });

  it('HTTP: an answer that sets a cookie (or is private) is not shared with coalesced waiters; cookie is a default varyHeader', async () => {
    const o = observed();
    const r = rig({ cacheObserver: o.observer });
    r.routes({ 'a/M': entry([['r1', 'v1']], cache('v1')), 'a/N': entry([['n1', 'v1']], cache('v1', { varyHeaders: ['accept'] })) });
    const get = (key: string, cookie: string): Promise<WireHttpResponse> => r.router.http(key, { method: 'GET', path: '/me', query: '', headers: { cookie }, body: Buffer.alloc(0) });
    const answerAs = (i: number, user: string, headers: Record<string, string>): void => {
      r.transport.sent[i]!.answer({ status: 200, headers: { ...headers }, body: Buffer.from(`profile of ${user}`) } satisfies WireHttpResponse);
    };
    // By default the cookie is part of the key: two users' requests are two keys, each computed.
    const a = get('a/M', 'sid=alice');
    const b = get('a/M', 'sid=bob');
    await flush();
    expect(r.transport.sent).toHaveLength(2);
    answerAs(0, 'alice', {});
    answerAs(1, 'bob', {});
    expect(Buffer.from((await a).body).toString()).toBe('profile of alice');
    expect(Buffer.from((await b).body).toString()).toBe('profile of bob');
    // Without cookie in varyHeaders both are one key and coalesce, but an answer with Set-Cookie is the leader's
    // alone: the waiter sends its own request and gets its own body and cookie.
    const c = get('a/N', 'sid=carol');
    const d = get('a/N', 'sid=dave');
    await flush();
    expect(r.transport.sent).toHaveLength(3);
    answerAs(2, 'carol', { 'set-cookie': 'sid=carol2' });
    expect(Buffer.from((await c).body).toString()).toBe('profile of carol');
    await flush();
    expect(r.transport.sent).toHaveLength(4);
    expect(r.transport.sent[3]!.message.t === 'http' && r.transport.sent[3]!.message.req.headers.cookie).toBe('sid=dave');
    answerAs(3, 'dave', { 'set-cookie': 'sid=dave2' });
    const dv = await d;
    expect(Buffer.from(dv.body).toString()).toBe('profile of dave');
    expect(dv.headers['set-cookie']).toBe('sid=dave2');
    // Cache-Control private: not shared either, and nothing was stored.
    const e = get('a/N', 'sid=erin');
    const f = get('a/N', 'sid=frank');
    await flush();
    expect(r.transport.sent).toHaveLength(5);
    answerAs(4, 'erin', { 'cache-control': 'private, max-age=60' });
    expect(Buffer.from((await e).body).toString()).toBe('profile of erin');
    await flush();
    expect(r.transport.sent).toHaveLength(6);
    answerAs(5, 'frank', { 'cache-control': 'private, max-age=60' });
    expect(Buffer.from((await f).body).toString()).toBe('profile of frank');
    expect(o.counts['a/N:hit']).toBeUndefined();
  });

  it('HTTP POST is cached when httpMethods lists it, keyed by its body', async () => {
    const r = rig();
    r.routes({ 'a/M': entry([['r1', 'v1']], cache('v1', { httpMethods: ['GET', 'POST'] })) });
    const post = (body: string): Promise<WireHttpResponse> => r.router.http('a/M', { method: 'POST', path: '/p', query: '', headers: {}, body: Buffer.from(body) });
    const a = post('{"x":1}');
    await answerAll(r.transport);
    await a;
    expect((await post('{"x":1}')).headers['x-shoal-cache']).toBe('hit');
    const b = post('{"x":2}');
    await answerAll(r.transport, 1);
    expect((await b).headers['x-shoal-cache']).toBe('miss');
    expect(r.transport.sent).toHaveLength(2);
  });

  it('errors are never cached', async () => {
    const r = rig();
    r.routes({ 'a/M': entry([['r1', 'v1']], cache('v1')) });
    const a = r.router.call('a/M', 'predict', [1]);
    await flush();
    r.transport.sent[0]!.answerError(new Error('boom'));
    await expect(a).rejects.toThrow('boom');
    const b = r.router.call('a/M', 'predict', [1]);
    await answerAll(r.transport, 1);
    expect(await b).toEqual({ by: 'r1', x: 1 });
  });

  it('a route table without the cache drops it', async () => {
    const r = rig();
    r.routes({ 'a/M': entry([['r1', 'v1']], cache('v1')) });
    const a = r.router.call('a/M', 'predict', [1]);
    await answerAll(r.transport);
    await a;
    expect(r.router.cacheStats()).toMatchObject([{ key: 'a/M', store: 'memory', entries: 1 }]);
    r.routes({ 'a/M': entry([['r1', 'v1']], undefined) });
    expect(r.router.cacheStats()).toEqual([]);
    const b = r.router.call('a/M', 'predict', [1]);
    await answerAll(r.transport, 1);
    await b;
    expect(r.transport.sent).toHaveLength(2);
  });
});
