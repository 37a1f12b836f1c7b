import { describe, expect, it } from 'vitest';
import {
  LazyAbortController,
  CancelledError, DeadlineExceededError, NoReplicaError, PeerGoneError, QueueFullError, UserCodeError,
} from '@shoal/core';
import { entry, errorOf, flush, rig, track } from './fakes.ts';

const KEY = 'app/model';

describe('Router', () => {
  it('sends a call to a replica and returns its value', async () => {
    const { router, transport, routes } = rig();
    routes({ [KEY]: entry([['r1', 'w1']]) });
    const p = router.call(KEY, 'predict', [1, 2], { priority: 3 });
    await flush();
    expect(transport.sent).toHaveLength(1);
    expect(transport.sent[0]!.message).toMatchObject({ t: 'call', replicaId: 'r1', method: 'predict', args: [1, 2], priority: 3 });
    transport.sent[0]!.answer('ok');
    expect(await p).toBe('ok');
    expect(router.stats()[KEY]).toEqual({ inflight: 0, waiting: 0, replicas: 1 });
  });

  it('sends HTTP requests as http messages', async () => {
    const { router, transport, clock, routes } = rig();
    routes({ [KEY]: entry([['r1', 'w1']]) });
    const req = { method: 'GET', path: '/', query: '', headers: {}, body: new Uint8Array() };
    const deadline = clock.wallNow() + 1000;
    const p = router.http(KEY, req, { deadline });
    await flush();
    expect(transport.sent[0]!.message).toEqual({ t: 'http', replicaId: 'r1', req, deadline });
    transport.sent[0]!.answer({ status: 200, headers: {}, body: new Uint8Array([1]) });
    expect((await p).status).toBe(200);
  });

  it('rebuilds an error reply into its class', async () => {
    const { router, transport, routes } = rig();
    routes({ [KEY]: entry([['r1', 'w1']]) });
    const p = router.call(KEY, 'm', []);
    await flush();
    transport.sent[0]!.answerError(new TypeError('user bug'));
    const err = await p.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserCodeError);
    expect((err as Error).message).toBe('user bug');
  });

  describe('queue lengths piggybacked on replies', () => {
    it('steer later calls away from a replica that reports other callers\' work', async () => {
      // random() = 0 always samples (r1, r2) in that order, so r1 wins ties: any move to r2 is the reported load.
      const { router, transport, routes } = rig({ random: () => 0 });
      routes({ [KEY]: entry([['r1', 'w1'], ['r2', 'w2']]) });
      const first = router.call(KEY, 'm', []);
      await flush();
      expect(transport.sent[0]!.replica.replicaId).toBe('r1');
      // r1 answers, and one request of another caller is still there: its load is 1, r2's is 0.
      transport.sent[0]!.answer('a', 1);
      await first;
      const second = router.call(KEY, 'm', []);
      await flush();
      expect(transport.sent[1]!.replica.replicaId).toBe('r2');
      // r2 reports 5 others; r1 (load 1) is now the lighter one.
      transport.sent[1]!.answer('b', 5);
      await second;
      const third = router.call(KEY, 'm', []);
      await flush();
      expect(transport.sent[2]!.replica.replicaId).toBe('r1');
      // r1 reports an empty queue: back to a tie, which r1 wins.
      transport.sent[2]!.answer('c', 0);
      await third;
      void router.call(KEY, 'm', []);
      await flush();
      expect(transport.sent[3]!.replica.replicaId).toBe('r1');
    });

    it('do not count the answered request as another caller\'s', async () => {
      const { router, transport, routes } = rig({ random: () => 0 });
      routes({ [KEY]: entry([['r1', 'w1'], ['r2', 'w2']]) });
      // Two of ours at r1 and two at r2 (r1 wins ties, so they alternate).
      for (let i = 0; i < 4; i++) void router.call(KEY, 'm', []);
      await flush();
      expect(transport.sent.map((s) => s.replica.replicaId)).toEqual(['r1', 'r2', 'r1', 'r2']);
      // r1 answers one and reports q=3: our other request there plus 2 of other callers.
      transport.sent[0]!.answer('x', 3);
      await flush();
      // Load r1 = 1 + 2 = 3 > r2 = 2: the next call belongs on r2. (Subtracting the answered request
      // from q as if it were still queued would make r1 look like 2 and win the tie.)
      void router.call(KEY, 'm', []);
      await flush();
      expect(transport.sent[4]!.replica.replicaId).toBe('r2');
    });
  });

  it('spreads concurrent calls over replicas by their in-flight counts', async () => {
    const { router, transport, routes } = rig();
    routes({ [KEY]: entry([['r1', 'w1'], ['r2', 'w2'], ['r3', 'w3'], ['r4', 'w4']]) });
    for (let i = 0; i < 400; i++) void router.call(KEY, 'm', []);
    await flush();
    const per = ['r1', 'r2', 'r3', 'r4'].map((id) => transport.to(id).length);
    // Power of two choices keeps the spread within a couple of requests; random choice would not.
    expect(Math.max(...per) - Math.min(...per)).toBeLessThanOrEqual(2);
  });

  describe('bounded wait queue', () => {
    it('queues when every replica is full, then refuses with QueueFullError carrying the numbers', async () => {
      const { router, transport, routes } = rig();
      routes({ [KEY]: entry([['r1', 'w1']], { maxOngoingRequests: 1, maxQueuedRequests: 2 }) });
      const a = router.call(KEY, 'm', ['a']);
      const b = router.call(KEY, 'm', ['b']);
      const c = router.call(KEY, 'm', ['c']);
      await flush();
      expect(transport.sent).toHaveLength(1);
      expect(router.stats()[KEY]).toEqual({ inflight: 1, waiting: 2, replicas: 1 });
      const err = await router.call(KEY, 'm', ['d']).catch((e: unknown) => e) as QueueFullError;
      expect(err).toBeInstanceOf(QueueFullError);
      expect(err.code).toBe('ERR_QUEUE_FULL');
      expect(err.httpStatus).toBe(503);
      expect(err.message).toContain('queued=2, maxQueuedRequests=2');
      expect(err.message).toContain(`"${KEY}"`);
      expect(err.details).toMatchObject({ queued: 2, limit: 2, deployment: KEY });
      expect(err.details?.retryAfterMs).toBeGreaterThan(0);

      // Slots are handed to waiters in arrival order.
      transport.sent[0]!.answer('A');
      expect(await a).toBe('A');
      await flush();
      expect(transport.sent.map((s) => s.message.t === 'call' && s.message.args[0])).toEqual(['a', 'b']);
      transport.sent[1]!.answer('B');
      await flush();
      transport.sent[2]!.answer('C');
      expect([await b, await c]).toEqual(['B', 'C']);
      expect(router.stats()[KEY]).toEqual({ inflight: 0, waiting: 0, replicas: 1 });
    });

    it('with maxQueuedRequests=0 refuses at once when full', async () => {
      const { router, routes } = rig();
      routes({ [KEY]: entry([['r1', 'w1']], { maxOngoingRequests: 1, maxQueuedRequests: 0 }) });
      void router.call(KEY, 'm', []);
      await expect(router.call(KEY, 'm', [])).rejects.toBeInstanceOf(QueueFullError);
    });
  });

  describe('deadlines', () => {
    it('rejects with DeadlineExceededError and cancels at the replica when the deadline passes in flight', async () => {
      const { router, transport, clock, routes } = rig();
      routes({ [KEY]: entry([['r1', 'w1']]) });
      const t = track(router.call(KEY, 'm', [], { deadline: clock.wallNow() + 100 }));
      await flush();
      expect(transport.sent[0]!.message).toMatchObject({ deadline: clock.wallNow() + 100 });
      clock.advance(99);
      await flush();
      expect(t.outcome).toBeUndefined();
      expect(transport.sent[0]!.cancels).toBe(0);
      clock.advance(1);
      await flush();
      expect(errorOf(t)).toBeInstanceOf(DeadlineExceededError);
      expect(errorOf(t).message).toContain(KEY);
      expect(transport.sent[0]!.cancels).toBe(1);
      expect(router.stats()[KEY]!.inflight).toBe(0);
      transport.sent[0]!.answer('late'); // a late answer changes nothing
      await flush();
      expect(router.stats()[KEY]!.inflight).toBe(0);
      expect(clock.pendingTimers()).toBe(0);
    });

    it('rejects a queued call at its deadline without sending it', async () => {
      const { router, transport, clock, routes } = rig();
      routes({ [KEY]: entry([['r1', 'w1']], { maxOngoingRequests: 1 }) });
      void router.call(KEY, 'm', []);
      const t = track(router.call(KEY, 'm', [], { deadline: clock.wallNow() + 50 }));
      await flush();
      clock.advance(49);
      await flush();
      expect(t.outcome).toBeUndefined();
      clock.advance(1);
      await flush();
      expect(errorOf(t)).toBeInstanceOf(DeadlineExceededError);
      expect(transport.sent).toHaveLength(1);
      expect(router.stats()[KEY]!.waiting).toBe(0);
    });

    it('refuses a call whose deadline already passed', async () => {
      const { router, transport, clock, routes } = rig();
      routes({ [KEY]: entry([['r1', 'w1']]) });
      const deadline = clock.wallNow() + 10;
      clock.advance(10);
      await expect(router.call(KEY, 'm', [], { deadline })).rejects.toBeInstanceOf(DeadlineExceededError);
      expect(transport.sent).toHaveLength(0);
    });

    it('clears its timer when the answer comes first', async () => {
      const { router, transport, clock, routes } = rig();
      routes({ [KEY]: entry([['r1', 'w1']]) });
      const p = router.call(KEY, 'm', [], { deadline: clock.wallNow() + 100 });
      await flush();
      transport.sent[0]!.answer(1);
      expect(await p).toBe(1);
      expect(clock.pendingTimers()).toBe(0);
      clock.advance(1000);
      expect(transport.sent[0]!.cancels).toBe(0);
    });
  });

  describe('cancellation by AbortSignal', () => {
    // The ingress passes a LazyAbortController (whose signal is never made on this path); handles an AbortSignal.
    const kinds: Array<[string, () => { abort(): void; given: AbortSignal | LazyAbortController; made: () => boolean }]> = [
      ['an AbortSignal', () => { const ac = new AbortController(); return { abort: () => ac.abort(), given: ac.signal, made: () => true }; }],
      ['a LazyAbortController', () => {
        const c = new LazyAbortController();
        let made = false;
        const given = new Proxy(c, { get: (t, k) => { if (k === 'signal') made = true; const v = Reflect.get(t, k, t) as unknown; return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v; } });
        return { abort: () => c.abort(), given, made: () => made };
      }],
    ];
    for (const [kind, make] of kinds) {
      it(`rejects with CancelledError and sends a cancel for a call in flight (${kind})`, async () => {
        const { router, transport, routes } = rig();
        routes({ [KEY]: entry([['r1', 'w1']]) });
        const ac = make();
        const t = track(router.call(KEY, 'm', [], { signal: ac.given }));
        await flush();
        ac.abort();
        await flush();
        expect(errorOf(t)).toBeInstanceOf(CancelledError);
        expect(transport.sent[0]!.cancels).toBe(1);
        expect(router.stats()[KEY]!.inflight).toBe(0);
        if (kind !== 'an AbortSignal') expect(ac.made()).toBe(false);
      });

      it(`drops a queued call without sending it (${kind})`, async () => {
        const { router, transport, routes } = rig();
        routes({ [KEY]: entry([['r1', 'w1']], { maxOngoingRequests: 1 }) });
        void router.call(KEY, 'm', []);
        const ac = make();
        const t = track(router.call(KEY, 'm', [], { signal: ac.given }));
        await flush();
        ac.abort();
        await flush();
        expect(errorOf(t)).toBeInstanceOf(CancelledError);
        expect(transport.sent).toHaveLength(1);
        expect(router.stats()[KEY]!.waiting).toBe(0);
      });
    }

    it('refuses a call whose signal is already aborted', async () => {
      const { router, transport, routes } = rig();
      routes({ [KEY]: entry([['r1', 'w1']]) });
      await expect(router.call(KEY, 'm', [], { signal: AbortSignal.abort() })).rejects.toBeInstanceOf(CancelledError);
      expect(transport.sent).toHaveLength(0);
    });

    it('does not send a call aborted in the same tick as its wake-up', async () => {
      const { router, transport, routes } = rig();
      const ac = new AbortController();
      const t = track(router.call(KEY, 'm', [], { signal: ac.signal }));
      await flush();
      routes({ [KEY]: entry([['r1', 'w1']]) }); // wakes the waiter...
      ac.abort(); // ...which is aborted before its continuation runs
      await flush();
      expect(errorOf(t)).toBeInstanceOf(CancelledError);
      expect(transport.sent.filter((s) => s.cancels === 0)).toHaveLength(0); // nothing left running uncancelled
      expect(router.stats()[KEY]!.inflight).toBe(0);
    });
  });

  describe('no replicas', () => {
    it('waits for a replica, then fails with NoReplicaError after noReplicaTimeoutMs', async () => {
      const { router, clock } = rig({ noReplicaTimeoutMs: 5000 });
      const t = track(router.call(KEY, 'm', []));
      await flush();
      expect(router.stats()[KEY]).toEqual({ inflight: 0, waiting: 1, replicas: 0 });
      clock.advance(4999);
      await flush();
      expect(t.outcome).toBeUndefined();
      clock.advance(1);
      await flush();
      expect(errorOf(t)).toBeInstanceOf(NoReplicaError);
      expect(errorOf(t).message).toContain('within 5000 ms');
    });

    it('treats a route entry without replicas the same way', async () => {
      const { router, clock, routes } = rig({ noReplicaTimeoutMs: 100 });
      routes({ [KEY]: entry([]) });
      const t = track(router.call(KEY, 'm', []));
      await flush();
      clock.advance(100);
      await flush();
      expect(errorOf(t)).toBeInstanceOf(NoReplicaError);
    });

    it('sends a waiting call as soon as a replica appears', async () => {
      const { router, transport, clock, routes } = rig();
      const p = router.call(KEY, 'm', ['x']);
      await flush();
      clock.advance(1000);
      routes({ [KEY]: entry([['r7', 'w3']]) });
      await flush();
      expect(transport.sent).toHaveLength(1);
      expect(transport.sent[0]!.replica.replicaId).toBe('r7');
      transport.sent[0]!.answer('y');
      expect(await p).toBe('y');
      expect(clock.pendingTimers()).toBe(0);
    });

    it('fails waiters of a deployment that leaves the route table', async () => {
      const { router, routes } = rig();
      routes({ [KEY]: entry([]) });
      const t = track(router.call(KEY, 'm', []));
      await flush();
      routes({});
      await flush();
      expect(errorOf(t)).toBeInstanceOf(NoReplicaError);
      expect(errorOf(t).message).toContain('removed');
    });

    it('fails waiters when the router closes, and refuses calls after', async () => {
      const { router } = rig();
      const t = track(router.call(KEY, 'm', []));
      await flush();
      router.close();
      await flush();
      expect(errorOf(t)).toBeInstanceOf(NoReplicaError);
      await expect(router.call(KEY, 'm', [])).rejects.toBeInstanceOf(NoReplicaError);
    });
  });

  it('ignores a route table older than the one it has', async () => {
    const { router, transport } = rig();
    router.updateRoutes({ [KEY]: entry([['new', 'w2']]) }, 5);
    router.updateRoutes({ [KEY]: entry([['old', 'w1']]) }, 4);
    void router.call(KEY, 'm', []);
    await flush();
    expect(transport.sent[0]!.replica.replicaId).toBe('new');
  });

  describe('dropWorker', () => {
    it('routes new calls only to replicas on other workers', async () => {
      const { router, transport, routes } = rig();
      routes({ [KEY]: entry([['r1', 'w1'], ['r2', 'w2'], ['r3', 'w1']]) });
      router.dropWorker('w1');
      for (let i = 0; i < 20; i++) void router.call(KEY, 'm', []);
      await flush();
      expect(new Set(transport.sent.map((s) => s.replica.workerId))).toEqual(new Set(['w2']));
      expect(router.stats()[KEY]!.replicas).toBe(1);
    });

    it('lets in-flight calls to the dead worker fail with PeerGoneError and keeps counts right', async () => {
      const { router, transport, routes } = rig({ random: () => 0 });
      routes({ [KEY]: entry([['r1', 'w1'], ['r2', 'w2']]) });
      const t = track(router.call(KEY, 'm', []));
      await flush();
      expect(transport.sent[0]!.replica.workerId).toBe('w1');
      router.dropWorker('w1');
      transport.sent[0]!.die(new PeerGoneError('connection to w1 closed'));
      await flush();
      expect(errorOf(t)).toBeInstanceOf(PeerGoneError);
      expect(router.stats()[KEY]).toEqual({ inflight: 0, waiting: 0, replicas: 1 });
    });

    it('removes a replica whose connection broke even before dropWorker', async () => {
      const { router, transport, routes } = rig({ random: () => 0 });
      routes({ [KEY]: entry([['r1', 'w1'], ['r2', 'w2']]) });
      const p = router.call(KEY, 'm', []);
      await flush();
      transport.sent[0]!.die(new PeerGoneError('gone'));
      await expect(p).rejects.toBeInstanceOf(PeerGoneError);
      void router.call(KEY, 'm', []);
      await flush();
      expect(transport.sent[1]!.replica.replicaId).toBe('r2');
    });

    it('bounds the wait of queued calls once no replica is left, and reroutes them if one comes', async () => {
      const { router, transport, clock, routes } = rig({ noReplicaTimeoutMs: 1000 });
      routes({ [KEY]: entry([['r1', 'w1']], { maxOngoingRequests: 1 }) });
      const inflight = track(router.call(KEY, 'm', ['a']));
      const queued1 = track(router.call(KEY, 'm', ['b']));
      const queued2 = track(router.call(KEY, 'm', ['c']));
      await flush();
      router.dropWorker('w1');
      transport.sent[0]!.die(new PeerGoneError('w1 gone'));
      await flush();
      expect(errorOf(inflight)).toBeInstanceOf(PeerGoneError);
      expect(queued1.outcome).toBeUndefined();
      // A replacement comes up before the timeout: the first waiter gets it.
      clock.advance(500);
      routes({ [KEY]: entry([['r2', 'w2']], { maxOngoingRequests: 1 }) });
      await flush();
      expect(transport.sent[1]!.replica.replicaId).toBe('r2');
      expect(transport.sent[1]!.message).toMatchObject({ args: ['b'] });
      // That one goes too; the remaining waiter must not wait forever.
      router.dropWorker('w2');
      transport.sent[1]!.die(new PeerGoneError('w2 gone'));
      await flush();
      expect(errorOf(queued1)).toBeInstanceOf(PeerGoneError);
      expect(queued2.outcome).toBeUndefined();
      clock.advance(1000);
      await flush();
      expect(errorOf(queued2)).toBeInstanceOf(NoReplicaError);
      expect(router.stats()[KEY]).toEqual({ inflight: 0, waiting: 0, replicas: 0 });
      expect(clock.pendingTimers()).toBe(0);
    });
  });

  describe('in-flight counts return to 0', () => {
    it('after success, error replies and transport failures', async () => {
      const { router, transport, routes } = rig();
      routes({ [KEY]: entry([['r1', 'w1'], ['r2', 'w2'], ['r3', 'w3']], { maxOngoingRequests: 2 }) });
      const all = Array.from({ length: 30 }, (_, i) => track(router.call(KEY, 'm', [i])));
      for (let round = 0; transport.sent.length < 30 || transport.sent.some((s) => !('done' in s)); round++) {
        await flush();
        for (const [i, s] of transport.sent.entries()) {
          if ('done' in s) continue;
          Object.assign(s, { done: true });
          if (i % 3 === 0) s.answer(i);
          else if (i % 3 === 1) s.answerError(new Error('bad'));
          else s.die(new Error('transport broke')); // not a PeerGoneError: the replica stays
        }
        if (round > 100) throw new Error('calls did not drain');
      }
      await flush();
      expect(all.every((t) => t.outcome !== undefined)).toBe(true);
      expect(router.stats()[KEY]).toEqual({ inflight: 0, waiting: 0, replicas: 3 });
    });

    it('after 1000 cancellations in flight, while queued, and by deadline', async () => {
      const { router, transport, clock, routes } = rig();
      routes({ [KEY]: entry([['r1', 'w1'], ['r2', 'w2']], { maxOngoingRequests: 3, maxQueuedRequests: 10_000 }) });
      const tracked: Array<{ outcome: unknown }> = [];
      const controllers: AbortController[] = [];
      for (let i = 0; i < 1000; i++) {
        if (i % 4 === 3) { tracked.push(track(router.call(KEY, 'm', [i], { deadline: clock.wallNow() + 10 }))); continue; }
        const ac = new AbortController();
        controllers.push(ac);
        tracked.push(track(router.call(KEY, 'm', [i], { signal: ac.signal })));
      }
      await flush();
      expect(router.stats()[KEY]!.inflight).toBe(6);
      // Cancel in waves, so that each wave frees slots that queued calls then take and lose again.
      for (let k = 0; k < controllers.length; k++) {
        controllers[k]!.abort();
        if (k % 50 === 49) await flush();
      }
      clock.advance(10);
      await flush();
      // What survived the aborts are deadline calls sent after the clock moved; let them time out too.
      clock.advance(10);
      await flush();
      expect(tracked.every((t) => t.outcome !== undefined)).toBe(true);
      expect(tracked.every((t) => !(t.outcome as { ok: boolean }).ok)).toBe(true);
      expect(router.stats()[KEY]).toEqual({ inflight: 0, waiting: 0, replicas: 2 });
      // Every call that reached a replica was cancelled there exactly once.
      expect(transport.sent.every((s) => s.cancels === 1)).toBe(true);
      expect(clock.pendingTimers()).toBe(0);
      // And the router still works.
      const p = router.call(KEY, 'm', []);
      await flush();
      transport.sent.at(-1)!.answer('alive');
      expect(await p).toBe('alive');
    });
  });

  describe('quarantine of a worker this router lost its connection to', () => {
    it('takes its replicas back from the last table after a second, unless a newer table or the owner says otherwise', async () => {
      const { router, transport, clock, routes } = rig();
      routes({ [KEY]: entry([['r1', 'w1'], ['r2', 'w2']]) });
      const a = track(router.call(KEY, 'm', []));
      await flush();
      const toW1 = transport.sent.find((x) => x.replica.workerId === 'w1') ?? transport.sent[0]!;
      toW1.die(new PeerGoneError(`${toW1.replica.workerId} gone`));
      await flush();
      void a;
      expect(router.replicaCount(KEY)).toBe(1);
      clock.advance(1000);
      await flush();
      expect(router.replicaCount(KEY)).toBe(2);
      // The owner (the head) declared it dead: it stays out until a table lists it again.
      router.dropWorker(toW1.replica.workerId);
      clock.advance(5000);
      await flush();
      expect(router.replicaCount(KEY)).toBe(1);
    });
  });
});

