import { describe, expect, it } from 'vitest';
import { FakeClock, UserCodeError, silentLogger, stickyBucket, pickWeighted, type WireHttpResponse } from '@shoal/core';
import type { NewRequest, ReplyMessage, RouteEntry, RouteTable } from '@shoal/protocol';
import { Router, type Dispatch, type ReplicaRef, type Transport } from '../src/index.ts';
import { compareAnswers } from '../src/compare-answers.ts';

/** Answers at once: replica "s*" is the stable version, "c*" the canary; `failCanary` makes the canary throw. */
class VersionTransport implements Transport {
  readonly sent: Array<{ replica: string; message: NewRequest }> = [];
  failCanary = false;
  slowShadow = false;
  private held: Array<(r: ReplyMessage) => void> = [];
  dispatch(replica: ReplicaRef, message: NewRequest): Dispatch {
    this.sent.push({ replica: replica.replicaId, message });
    const canary = replica.replicaId.startsWith('c');
    const http = message.t === 'http';
    const httpValue: WireHttpResponse = { status: 200, headers: { 'content-type': 'application/json' }, body: Buffer.from(JSON.stringify({ label: 'cat', score: canary ? 0.52 : 0.5 })) };
    const value = http ? httpValue : replica.replicaId;
    if (canary && this.failCanary) return { reply: Promise.resolve({ t: 'reply', id: 0, ok: false, error: { code: 'ERR_USER_CODE', name: 'UserCodeError', message: 'canary crashed', httpStatus: new UserCodeError('x').httpStatus } }), cancel: () => undefined };
    if (replica.replicaId.startsWith('h') && this.slowShadow) return { reply: new Promise((r) => this.held.push(r)), cancel: () => undefined };
    return { reply: Promise.resolve({ t: 'reply', id: 0, ok: true, value: replica.replicaId.startsWith('h') && http ? { ...httpValue, body: Buffer.from(JSON.stringify({ label: 'dog', score: 0.9 })) } : value }), cancel: () => undefined };
  }
  to(prefix: string): number { return this.sent.filter((s) => s.replica.startsWith(prefix)).length; }
}

function entry(traffic: RouteEntry['traffic'], replicas: Array<[string, string]>): RouteEntry {
  return { maxOngoingRequests: 100, maxQueuedRequests: 100, requestTimeoutMs: 0, replicas: replicas.map(([id, version]) => ({ replicaId: id, workerId: 'w1', dataAddress: 'ws://x', version })), ...(traffic ? { traffic } : {}) };
}

function rig(table: RouteTable, seed = 1): { router: Router; t: VersionTransport } {
  const t = new VersionTransport();
  let x = seed;
  const random = (): number => { x = (x * 16807) % 2147483647; return x / 2147483647; };
  const router = new Router({ transport: t, clock: new FakeClock(), logger: silentLogger, random });
  router.updateRoutes(table, 1);
  return { router, t };
}

const req = (headers: Record<string, string> = {}) => ({ method: 'GET', path: '/', query: '', headers, body: new Uint8Array(0) });

describe('Router: versions split', () => {
  it('weights split calls between versions, and a kept replica takes its version from the next table', async () => {
    const { router, t } = rig({ 'a/M': entry(undefined, [['s1', 'v1'], ['s2', 'v1']]) });
    // The stable replicas were listed without a split; the canary table tags them.
    router.updateRoutes({ 'a/M': entry({ weights: [{ version: 'v1', percent: 80 }, { version: 'v2', percent: 20 }] }, [['s1', 'v1'], ['s2', 'v1'], ['c1', 'v2']]) }, 2);
    for (let i = 0; i < 2000; i++) await router.call('a/M', 'f', []);
    expect(t.to('c') / 2000).toBeGreaterThan(0.17);
    expect(t.to('c') / 2000).toBeLessThan(0.23);
  });

  it('a failed canary answer is retried once on the stable version (idempotent requests), so callers see none', async () => {
    const { router, t } = rig({ 'a/M': entry({ weights: [{ version: 'v1', percent: 50 }, { version: 'v2', percent: 50 }] }, [['s1', 'v1'], ['c1', 'v2']]) });
    t.failCanary = true;
    for (let i = 0; i < 200; i++) {
      const r = await router.http('a/M', req());
      expect(r.status).toBe(200);
    }
    expect(t.to('c')).toBeGreaterThan(50);
    expect(router.retries.made).toBe(t.to('c'));
    // A call that is not idempotent is not retried: its error stands.
    await expect((async () => { for (let i = 0; i < 50; i++) await router.call('a/M', 'f', []); })()).rejects.toThrow(/canary crashed/);
  });

  it('a sticky split sends the same key to the same version, as stickyBucket says, and marks the answer', async () => {
    const traffic = { weights: [{ version: 'v1', percent: 50 }, { version: 'v2', percent: 50 }], sticky: { header: 'x-user-id', experiment: 'e' } };
    const { router } = rig({ 'a/M': entry(traffic, [['s1', 'v1'], ['c1', 'v2']]) });
    for (const user of ['u1', 'u2', 'u3', 'u4', 'u5', 'u6']) {
      const want = pickWeighted([50, 50], stickyBucket('e', user)) === 0 ? 'A' : 'B';
      for (let i = 0; i < 3; i++) {
        const r = await router.http('a/M', req({ 'x-user-id': user, 'x-request-id': `${user}-${i}` }));
        expect(r.headers['x-shoal-variant']).toBe(want);
        expect(r.headers['x-request-id']).toBe(`${user}-${i}`);
      }
    }
    const noKey = await router.http('a/M', req());
    expect(noKey.headers['x-shoal-variant']).toBeUndefined();
    expect(noKey.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    const assigned = router.takeAssignments();
    expect(assigned).toHaveLength(18);
    expect(assigned[0]).toEqual(['e', 'u1-0', pickWeighted([50, 50], stickyBucket('e', 'u1'))]);
    expect(router.takeAssignments()).toEqual([]);
  });

  it('mirrors to the shadow version, never returns its answer, compares, and drops the mirror when the shadow is full', async () => {
    const traffic = { weights: [{ version: 'v1', percent: 100 }], shadow: { version: 'v2', percent: 100 } };
    const { router, t } = rig({ 'a/M': { ...entry(traffic, [['s1', 'v1'], ['h1', 'v2']]), maxOngoingRequests: 2 } });
    for (let i = 0; i < 20; i++) {
      const r = await router.http('a/M', req());
      expect(JSON.parse(Buffer.from(r.body as Uint8Array).toString())).toEqual({ label: 'cat', score: 0.5 });
    }
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    const c = router.shadowCounts()['a/M@v2']!;
    expect(c).toMatchObject({ mirrored: 20, compared: 20, agreed: 0, dropped: 0, numbers: 20 });
    expect(c.maxAbsDiff).toBeCloseTo(0.4, 9);
    t.slowShadow = true;
    for (let i = 0; i < 10; i++) await router.http('a/M', req());
    await new Promise((r) => setImmediate(r));
    const after = router.shadowCounts()['a/M@v2']!;
    expect(after.mirrored).toBe(22); // two slots on the shadow replica, the rest dropped
    expect(after.dropped).toBe(8);
  });
});

describe('compareAnswers', () => {
  it('agrees on equal labels and measures numbers, typed arrays included', () => {
    expect(compareAnswers({ label: 'cat', p: [0.1, 0.2] }, { label: 'cat', p: [0.1, 0.25] }, 1e6)).toEqual({ agree: true, numbers: 2, sumAbsDiff: expect.closeTo(0.05, 9), maxAbsDiff: expect.closeTo(0.05, 9) });
    expect(compareAnswers({ label: 'cat' }, { label: 'dog' }, 1e6).agree).toBe(false);
    expect(compareAnswers([1, 2], [1, 2, 3], 1e6).agree).toBe(false);
    const d = compareAnswers(new Float32Array([1, 2, 3]), new Float32Array([1, 2.5, 3]), 1e6);
    expect(d).toMatchObject({ agree: true, numbers: 3, maxAbsDiff: 0.5 });
    expect(compareAnswers({ status: 500, headers: {}, body: 'x' }, { status: 200, headers: {}, body: 'x' }, 1e6).agree).toBe(false);
    expect(compareAnswers(new Float32Array(10), new Float32Array(10), 4).numbers).toBe(4);
  });
});
