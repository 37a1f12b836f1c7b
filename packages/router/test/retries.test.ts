import { describe, expect, it } from 'vitest';
import {
  CancelledError, DeadlineExceededError, FakeClock, PeerGoneError, QueueFullError, ReplicaUnavailableError, UserCodeError,
  isNotRun, markNotRun, silentLogger, toWireError, type Clock, type WireHttpRequest,
} from '@shoal/core';
import type { NewRequest, ReplyMessage, RouteEntry } from '@shoal/protocol';
import { Router, type Dispatch, type ReplicaRef, type RouterOptions } from '../src/index.ts';
import { FakeTransport, entry, errorOf, flush, seeded, track, type Sent } from './fakes.ts';

const KEY = 'app/model';

/** A Sent that can also be refused with a reply marked "never ran" (ReplyErr.nr), as a draining replica answers. */
interface RefusableSent extends Sent {
  refuse(err: Error): void;
}

/** FakeTransport plus not-run refusals, an optional automatic answer, and a dispatch that throws. */
class RetryTransport extends FakeTransport {
  /** When set, answers each request at once (a resolved reply) instead of holding it. */
  auto: ((replica: ReplicaRef, message: NewRequest) => ReplyMessage) | undefined;
  /** When set, dispatch throws it synchronously (a connection that refuses before anything is sent). */
  throwOnDispatch: ((replica: ReplicaRef) => Error | undefined) | undefined;

  override dispatch(replica: ReplicaRef, message: NewRequest): Dispatch {
    const err = this.throwOnDispatch?.(replica);
    if (err !== undefined) { this.sent.push(heldSent(replica, message)); throw err; }
    const inner = super.dispatch(replica, message);
    const sent = this.sent.at(-1) as RefusableSent;
    const reply = new Promise<ReplyMessage>((resolve, reject) => {
      inner.reply.then(resolve, reject);
      sent.refuse = (e) => resolve({ t: 'reply', id: 0, ok: false, error: toWireError(e), nr: true });
    });
    const auto = this.auto?.(replica, message);
    return { reply: auto === undefined ? reply : Promise.resolve(auto), cancel: inner.cancel };
  }

  get all(): RefusableSent[] {
    return this.sent as RefusableSent[];
  }

  /** Replica ids in the order they were tried. */
  get tried(): string[] {
    return this.sent.map((s) => s.replica.replicaId);
  }
}

/** A Sent record for a dispatch that threw: nothing can answer it. */
function heldSent(replica: ReplicaRef, message: NewRequest): RefusableSent {
  const nothing = (): void => undefined;
  return { replica, message, cancels: 0, answer: nothing, answerError: nothing, die: nothing, refuse: nothing };
}

interface RetryRig {
  router: Router;
  transport: RetryTransport;
  clock: FakeClock;
  routes(table: Record<string, RouteEntry>): void;
}

function retryRig(opts: Partial<RouterOptions> = {}): RetryRig {
  const clock = new FakeClock();
  const transport = new RetryTransport();
  const router = new Router({ transport, clock, logger: silentLogger, noReplicaTimeoutMs: 5000, random: seeded(1), ...opts });
  let version = 0;
  return { router, transport, clock, routes: (table) => router.updateRoutes(table, ++version) };
}

/** A clock whose wall time can be moved without firing timers: a deadline that passed while an answer was on its way. */
function skewableClock(): { clock: Clock; skew(ms: number): void } {
  const fake = new FakeClock();
  let skew = 0;
  return {
    skew: (ms) => { skew += ms; },
    clock: {
      wallNow: () => fake.wallNow() + skew,
      monoNow: () => fake.monoNow() + skew,
      setTimeout: (fn, ms) => fake.setTimeout(fn, ms),
      clearTimeout: (h) => fake.clearTimeout(h),
    },
  };
}

function replicas(n: number, perWorker = 1): Array<[string, string]> {
  return Array.from({ length: n }, (_, i) => [`r${i + 1}`, `w${Math.floor(i / perWorker) + 1}`] as [string, string]);
}

const draining = (id = 'r?'): ReplicaUnavailableError => new ReplicaUnavailableError(`replica ${id} of "model" is DRAINING`);

function httpReq(method: string): WireHttpRequest {
  return { method, path: '/', query: '', headers: {}, body: new Uint8Array() };
}

describe('Router retries', () => {
  describe('a request refused with a reply marked never-ran (nr)', () => {
    it('is retried on another replica, never the one that refused it, and the caller gets the answer', async () => {
      // random() = 0 samples (r1, r2) and takes r1 on a tie: only the exclusion can send the retry elsewhere.
      const { router, transport, routes } = retryRig({ random: () => 0 });
      routes({ [KEY]: entry(replicas(3)) });
      const t = track(router.call(KEY, 'predict', [42], { priority: 2 }));
      await flush();
      expect(transport.tried).toEqual(['r1']);
      const first = transport.all[0]!;
      first.refuse(draining(first.replica.replicaId));
      await flush();
      expect(transport.sent).toHaveLength(2);
      const second = transport.all[1]!;
      expect(second.replica.replicaId).not.toBe(first.replica.replicaId);
      // The retry is the same request, to the new replica.
      expect(second.message).toEqual({ ...first.message, replicaId: second.replica.replicaId });
      second.answer('done');
      await flush();
      expect(t.outcome).toEqual({ ok: true, value: 'done' });
      expect(router.retries).toEqual({ made: 1, refused: 0 });
      expect(router.stats()[KEY]).toEqual({ inflight: 0, waiting: 0, replicas: 3 });
    });

    it('tries a different replica each time: refused by two, it reaches the third', async () => {
      const { router, transport, routes } = retryRig({ random: () => 0 });
      routes({ [KEY]: entry(replicas(3)) });
      const t = track(router.call(KEY, 'm', []));
      for (let i = 0; i < 2; i++) {
        await flush();
        transport.all.at(-1)!.refuse(new QueueFullError('replica queue full: queued=200, limit=200'));
      }
      await flush();
      expect(new Set(transport.tried).size).toBe(3);
      transport.all[2]!.answer(1);
      await flush();
      expect(t.outcome).toEqual({ ok: true, value: 1 });
    });

    it('whatever the method: a non-idempotent call that never ran is retried too', async () => {
      const { router, transport, routes } = retryRig();
      routes({ [KEY]: entry(replicas(2)) }); // no idempotentMethods
      const t = track(router.http(KEY, httpReq('POST')));
      await flush();
      transport.all[0]!.refuse(draining());
      await flush();
      expect(transport.sent).toHaveLength(2);
      transport.all[1]!.answer({ status: 201, headers: {}, body: new Uint8Array() });
      await flush();
      expect(t.outcome).toMatchObject({ ok: true, value: { status: 201 } });
    });

    it('stops after maxNotRunRetries (default 3), each on a replica not tried before, and the caller sees the last refusal in its class', async () => {
      const { router, transport, routes } = retryRig({ random: () => 0 });
      routes({ [KEY]: entry(replicas(8)) });
      const t = track(router.call(KEY, 'm', []));
      for (let i = 0; i < 10; i++) {
        await flush();
        const last = transport.all.at(-1)!;
        if (t.outcome === undefined) last.refuse(new QueueFullError(`replica queue full at ${last.replica.replicaId}`));
      }
      await flush();
      expect(transport.sent).toHaveLength(4);
      expect(new Set(transport.tried).size).toBe(4);
      const err = errorOf(t);
      expect(err).toBeInstanceOf(QueueFullError);
      expect(err.message).toBe(`replica queue full at ${transport.tried[3]}`);
      // Rebuilt from the wire: the mark does not travel on to whoever rethrows it.
      expect(isNotRun(err)).toBe(false);
      expect(router.retries.made).toBe(3);
    });

    it('takes maxNotRunRetries from the options (1 here; 0 never retries)', async () => {
      for (const max of [0, 1]) {
        const { router, transport, routes } = retryRig({ maxNotRunRetries: max });
        routes({ [KEY]: entry(replicas(4)) });
        const t = track(router.call(KEY, 'm', []));
        for (let i = 0; i < 4; i++) {
          await flush();
          if (t.outcome === undefined) transport.all.at(-1)!.refuse(draining());
        }
        expect(transport.sent).toHaveLength(max + 1);
        expect(errorOf(t)).toBeInstanceOf(ReplicaUnavailableError);
        expect(router.retries.made).toBe(max);
      }
    });

    it('an error reply without the mark is not retried: the request may have run', async () => {
      const { router, transport, routes } = retryRig();
      routes({ [KEY]: entry(replicas(3)) });
      const a = track(router.call(KEY, 'm', []));
      const b = track(router.call(KEY, 'm', []));
      await flush();
      transport.all[0]!.answerError(new TypeError('user bug'));
      // ERR_PEER_GONE in a reply is a downstream call of the replica's failing; a non-idempotent call is not re-run.
      transport.all[1]!.answerError(new PeerGoneError('connection to worker w9 closed'));
      await flush();
      expect(transport.sent).toHaveLength(2);
      expect(errorOf(a)).toBeInstanceOf(UserCodeError);
      expect(errorOf(b)).toBeInstanceOf(PeerGoneError);
      expect(router.retries.made).toBe(0);
    });

    it('an idempotent request whose replica answers ERR_PEER_GONE (a call it made lost its worker) is retried once', async () => {
      const { router, transport, routes } = retryRig();
      routes({ [KEY]: entry(replicas(3)) });
      const g = track(router.http(KEY, httpReq('GET')));
      await flush();
      transport.all[0]!.answerError(new PeerGoneError('connection to worker w9 closed'));
      await flush();
      expect(transport.sent).toHaveLength(2);
      transport.all[1]!.answerError(new PeerGoneError('connection to worker w9 closed'));
      await flush();
      // One retry only: the second ERR_PEER_GONE reaches the caller.
      expect(transport.sent).toHaveLength(2);
      expect(errorOf(g)).toBeInstanceOf(PeerGoneError);
      expect(router.retries.made).toBe(1);
    });

    it('with one replica the refusal stands at once: no retry goes anywhere', async () => {
      const { router, transport, routes } = retryRig();
      routes({ [KEY]: entry(replicas(1)) });
      const t = track(router.call(KEY, 'm', []));
      await flush();
      transport.all[0]!.refuse(new QueueFullError('replica queue full: queued=200, limit=200'));
      await flush();
      expect(transport.sent).toHaveLength(1);
      expect(errorOf(t)).toBeInstanceOf(QueueFullError);
      expect(router.stats()[KEY]).toEqual({ inflight: 0, waiting: 0, replicas: 1 });
    });

    it('a refusal that stands because no other replica is left spends no retry budget and counts no retry', async () => {
      const { router, transport, routes } = retryRig({ retryBudget: { ratio: 0, minRetries: 1 } });
      routes({ [KEY]: entry(replicas(1)) });
      const t = track(router.call(KEY, 'm', []));
      await flush();
      transport.all[0]!.refuse(draining());
      await flush();
      expect(errorOf(t)).toBeInstanceOf(ReplicaUnavailableError);
      expect(router.retries).toEqual({ made: 0, refused: 0 });
      // The one retry the budget holds is still there for a request that can use it.
      routes({ [KEY]: entry(replicas(2)) });
      const u = track(router.call(KEY, 'm', []));
      await flush();
      transport.all.at(-1)!.refuse(draining());
      await flush();
      expect(transport.sent).toHaveLength(3);
      transport.all.at(-1)!.answer('ok');
      await flush();
      expect(u.outcome).toEqual({ ok: true, value: 'ok' });
    });

    it('waits for room on another replica when every other one is full, and goes there once one frees', async () => {
      const { router, transport, routes } = retryRig({ random: () => 0 });
      routes({ [KEY]: entry(replicas(2), { maxOngoingRequests: 1 }) });
      const a = track(router.call(KEY, 'm', ['a']));
      const b = track(router.call(KEY, 'm', ['b']));
      await flush();
      expect(transport.tried).toEqual(['r1', 'r2']);
      transport.all[0]!.refuse(draining('r1'));
      await flush();
      // r2 is full and r1 refused it: the retry waits instead of going back to r1.
      expect(transport.sent).toHaveLength(2);
      expect(router.stats()[KEY]!.waiting).toBe(1);
      transport.all[1]!.answer('b');
      await flush();
      expect(transport.tried).toEqual(['r1', 'r2', 'r2']);
      transport.all[2]!.answer('a');
      await flush();
      expect(a.outcome).toEqual({ ok: true, value: 'a' });
      expect(b.outcome).toEqual({ ok: true, value: 'b' });
    });

    it('a queued retry that excludes the only free replica does not hold back a waiter that can use it', async () => {
      const { router, transport, routes } = retryRig({ random: () => 0 });
      routes({ [KEY]: entry(replicas(2), { maxOngoingRequests: 1 }) });
      const a = track(router.call(KEY, 'm', ['a'])); // -> r1
      track(router.call(KEY, 'm', ['b'])); //           -> r2, and stays there
      await flush();
      transport.all[0]!.refuse(draining('r1')); // a's retry waits for r2
      await flush();
      const c = track(router.call(KEY, 'm', ['c'])); // r1 is free again: c goes there
      await flush();
      expect(transport.all[2]!.replica.replicaId).toBe('r1');
      const d = track(router.call(KEY, 'm', ['d'])); // both full: d queues behind a's retry
      await flush();
      expect(router.stats()[KEY]!.waiting).toBe(2);
      transport.all[2]!.answer('c'); // r1 frees: d can take it; a's retry cannot
      await flush();
      expect(c.outcome).toEqual({ ok: true, value: 'c' });
      expect(transport.sent.map((s) => s.message)).toContainEqual(expect.objectContaining({ args: ['d'], replicaId: 'r1' }));
      expect(d.outcome).toBeUndefined();
      expect(a.outcome).toBeUndefined();
    });
  });

  describe('a dispatch that rejects with an error marked not-run', () => {
    it('is retried on another replica, even for a non-idempotent method', async () => {
      const { router, transport, routes } = retryRig();
      routes({ [KEY]: entry(replicas(3)) });
      const t = track(router.call(KEY, 'charge', []));
      await flush();
      const first = transport.all[0]!;
      first.die(markNotRun(new ReplicaUnavailableError(`cannot reach worker ${first.replica.workerId}: connect ECONNREFUSED`)));
      await flush();
      expect(transport.sent).toHaveLength(2);
      expect(transport.all[1]!.replica.replicaId).not.toBe(first.replica.replicaId);
      transport.all[1]!.answer('charged once');
      await flush();
      expect(t.outcome).toEqual({ ok: true, value: 'charged once' });
      expect(router.retries.made).toBe(1);
    });

    it('a PeerGoneError marked not-run (a request to a closed connection) is retried for any method, on another worker', async () => {
      const { router, transport, routes } = retryRig();
      routes({ [KEY]: entry(replicas(4, 2)) }); // r1,r2 on w1; r3,r4 on w2
      const t = track(router.call(KEY, 'charge', []));
      await flush();
      const first = transport.all[0]!;
      first.die(markNotRun(new PeerGoneError(`connection to worker ${first.replica.workerId} closed; request not sent`)));
      await flush();
      expect(transport.sent).toHaveLength(2);
      // The connection to that worker is gone: its other replica is not tried either.
      expect(transport.all[1]!.replica.workerId).not.toBe(first.replica.workerId);
      expect(router.replicaCount(KEY)).toBe(2);
      transport.all[1]!.answer('ok');
      await flush();
      expect(t.outcome).toEqual({ ok: true, value: 'ok' });
    });

    it('a dispatch that throws synchronously with a not-run error is retried too', async () => {
      const { router, transport, routes } = retryRig();
      routes({ [KEY]: entry(replicas(2)) });
      let refusing: string | undefined;
      transport.throwOnDispatch = (replica) => {
        refusing ??= replica.replicaId;
        return replica.replicaId === refusing ? markNotRun(new ReplicaUnavailableError('connection refused before sending')) : undefined;
      };
      const t = track(router.call(KEY, 'm', []));
      await flush();
      expect(transport.sent).toHaveLength(2);
      expect(transport.tried[1]).not.toBe(refusing);
      transport.all[1]!.answer('ok');
      await flush();
      expect(t.outcome).toEqual({ ok: true, value: 'ok' });
      expect(router.stats()[KEY]!.inflight).toBe(0);
    });

    it('gives up on a not-run rejection with an error that no longer carries the mark, as for a not-run reply', async () => {
      const { router, transport, routes } = retryRig();
      routes({ [KEY]: entry(replicas(1)) });
      const t = track(router.call(KEY, 'm', []));
      await flush();
      transport.all[0]!.die(markNotRun(new ReplicaUnavailableError('cannot reach worker w1 at ws://w1 for replica r1: connect ECONNREFUSED')));
      await flush();
      const err = errorOf(t);
      expect(err).toBeInstanceOf(ReplicaUnavailableError);
      expect(err.message).toContain('ECONNREFUSED');
      expect(isNotRun(err)).toBe(false);
    });

    it('an unmarked rejection that is not ERR_PEER_GONE is not retried', async () => {
      const { router, transport, routes } = retryRig();
      routes({ [KEY]: entry(replicas(3)) });
      const t = track(router.http(KEY, httpReq('GET')));
      await flush();
      transport.all[0]!.die(new ReplicaUnavailableError('refused after it may have run'));
      await flush();
      expect(transport.sent).toHaveLength(1);
      expect(errorOf(t)).toBeInstanceOf(ReplicaUnavailableError);
    });
  });

  describe('idempotent requests after their worker died mid-call (ERR_PEER_GONE)', () => {
    async function diesTwice(call: (router: Router) => Promise<unknown>, idempotentMethods?: string[]): Promise<{ transport: RetryTransport; t: ReturnType<typeof track>; router: Router }> {
      const { router, transport, routes } = retryRig();
      routes({ [KEY]: entry(replicas(3), idempotentMethods === undefined ? {} : { idempotentMethods }) });
      const t = track(call(router));
      for (let i = 0; i < 3; i++) {
        await flush();
        const last = transport.all.at(-1)!;
        if (t.outcome === undefined) last.die(new PeerGoneError(`connection to worker ${last.replica.workerId} closed with 1 requests pending`));
      }
      await flush();
      return { transport, t, router };
    }

    for (const method of ['GET', 'HEAD']) {
      it(`retries an HTTP ${method} exactly once, on a replica of another worker`, async () => {
        const { transport, t, router } = await diesTwice((r) => r.http(KEY, httpReq(method)));
        expect(transport.sent).toHaveLength(2);
        expect(transport.all[1]!.replica.workerId).not.toBe(transport.all[0]!.replica.workerId);
        const err = errorOf(t);
        expect(err).toBeInstanceOf(PeerGoneError);
        expect(toWireError(err).code).toBe('ERR_PEER_GONE');
        expect(router.retries.made).toBe(1);
      });
    }

    it('an HTTP GET whose retry succeeds answers the caller', async () => {
      const { router, transport, routes } = retryRig();
      routes({ [KEY]: entry(replicas(2)) });
      const t = track(router.http(KEY, httpReq('GET')));
      await flush();
      transport.all[0]!.die(new PeerGoneError('connection to worker closed'));
      await flush();
      transport.all[1]!.answer({ status: 200, headers: {}, body: new Uint8Array([7]) });
      await flush();
      expect(t.outcome).toMatchObject({ ok: true, value: { status: 200 } });
    });

    it('does not retry a non-idempotent call: the caller sees ERR_PEER_GONE', async () => {
      const { transport, t, router } = await diesTwice((r) => r.call(KEY, 'charge', []), ['predict']);
      expect(transport.sent).toHaveLength(1);
      expect(errorOf(t)).toBeInstanceOf(PeerGoneError);
      expect(router.retries.made).toBe(0);
    });

    it('does not retry an HTTP POST unless the deployment declares fetch (or *) idempotent', async () => {
      const none = await diesTwice((r) => r.http(KEY, httpReq('POST')));
      expect(none.transport.sent).toHaveLength(1);
      expect(errorOf(none.t)).toBeInstanceOf(PeerGoneError);
      const otherMethod = await diesTwice((r) => r.http(KEY, httpReq('POST')), ['predict']);
      expect(otherMethod.transport.sent).toHaveLength(1);
      for (const declared of [['fetch'], ['*']]) {
        const { transport, t } = await diesTwice((r) => r.http(KEY, httpReq('POST')), declared);
        expect(transport.sent).toHaveLength(2);
        expect(errorOf(t)).toBeInstanceOf(PeerGoneError);
      }
    });

    it('retries once a call whose method the route entry lists in idempotentMethods, or any call with *', async () => {
      const listed = await diesTwice((r) => r.call(KEY, 'predict', [1]), ['predict', 'embed']);
      expect(listed.transport.sent).toHaveLength(2);
      expect(listed.transport.all[1]!.message).toMatchObject({ t: 'call', method: 'predict', args: [1] });
      const star = await diesTwice((r) => r.call(KEY, 'anything', []), ['*']);
      expect(star.transport.sent).toHaveLength(2);
    });

    it('an empty idempotentMethods list declares nothing', async () => {
      const { transport } = await diesTwice((r) => r.call(KEY, 'predict', []), []);
      expect(transport.sent).toHaveLength(1);
    });

    it('when the dead worker held the only replica, the retry waits for the next route table (onNoReplica told) and goes there', async () => {
      const noReplica: string[] = [];
      const { router, transport, routes, clock } = retryRig({ onNoReplica: (k) => noReplica.push(k) });
      routes({ [KEY]: entry([['r1', 'w1']]) });
      const t = track(router.http(KEY, httpReq('GET')));
      await flush();
      transport.all[0]!.die(new PeerGoneError('connection to worker w1 closed'));
      await flush();
      expect(transport.sent).toHaveLength(1);
      expect(router.stats()[KEY]).toEqual({ inflight: 0, waiting: 1, replicas: 0 });
      expect(noReplica).toEqual([KEY]);
      clock.advance(1000);
      routes({ [KEY]: entry([['r2', 'w2']]) });
      await flush();
      expect(transport.tried).toEqual(['r1', 'r2']);
      transport.all[1]!.answer({ status: 200, headers: {}, body: new Uint8Array() });
      await flush();
      expect(t.outcome).toMatchObject({ ok: true });
      expect(clock.pendingTimers()).toBe(0);
    });
  });

  describe('never past the deadline, never after cancellation', () => {
    it('does not retry a refusal that arrives after the deadline passed: the caller sees the refusal', async () => {
      const s = skewableClock();
      const transport = new RetryTransport();
      const r = new Router({ transport, clock: s.clock, logger: silentLogger, random: seeded(1) });
      r.updateRoutes({ [KEY]: entry(replicas(3)) }, 1);
      const t = track(r.call(KEY, 'm', [], { deadline: s.clock.wallNow() + 1000 }));
      await flush();
      // The deadline passes while the refusal is on its way (the guard's timer has not fired yet).
      s.skew(1500);
      transport.all[0]!.refuse(draining());
      await flush();
      expect(transport.sent).toHaveLength(1);
      expect(errorOf(t)).toBeInstanceOf(ReplicaUnavailableError);
      expect(r.retries.made).toBe(0);
    });

    it('does not retry a GET whose worker died after its deadline passed', async () => {
      const s = skewableClock();
      const transport = new RetryTransport();
      const r = new Router({ transport, clock: s.clock, logger: silentLogger, random: seeded(1) });
      r.updateRoutes({ [KEY]: entry(replicas(3)) }, 1);
      const t = track(r.http(KEY, httpReq('GET'), { deadline: s.clock.wallNow() + 1000 }));
      await flush();
      s.skew(1000); // reaching the deadline counts as past it
      transport.all[0]!.die(new PeerGoneError('connection to worker closed'));
      await flush();
      expect(transport.sent).toHaveLength(1);
      expect(errorOf(t)).toBeInstanceOf(PeerGoneError);
    });

    it('a deadline that passes while the retry waits for room fails it there, unsent', async () => {
      const { router, transport, routes, clock } = retryRig({ random: () => 0 });
      routes({ [KEY]: entry(replicas(2), { maxOngoingRequests: 1 }) });
      const a = track(router.call(KEY, 'm', ['a'], { deadline: clock.wallNow() + 1000 }));
      track(router.call(KEY, 'm', ['b']));
      await flush();
      transport.all[0]!.refuse(draining('r1'));
      await flush();
      expect(router.stats()[KEY]!.waiting).toBe(1);
      clock.advance(1000);
      await flush();
      expect(errorOf(a)).toBeInstanceOf(DeadlineExceededError);
      expect(transport.sent).toHaveLength(2);
      expect(router.stats()[KEY]!.waiting).toBe(0);
    });

    it('does not retry once the caller aborted, even when the refusal was already on its way', async () => {
      const { router, transport, routes } = retryRig();
      routes({ [KEY]: entry(replicas(3)) });
      const ac = new AbortController();
      const t = track(router.call(KEY, 'm', [], { signal: ac.signal }));
      await flush();
      transport.all[0]!.refuse(draining());
      // The refusal's reply has settled the in-flight guard (one reaction), but the retry decision is still queued.
      await Promise.resolve();
      ac.abort();
      await flush();
      expect(transport.sent).toHaveLength(1);
      // Too late to cancel in flight (the answer came first): the refusal itself is what the caller sees.
      expect(errorOf(t)).toBeInstanceOf(ReplicaUnavailableError);
      expect(router.retries.made).toBe(0);
    });

    it('an abort in the same tick as the refusal cancels: CancelledError, no retry', async () => {
      const { router, transport, routes } = retryRig();
      routes({ [KEY]: entry(replicas(3)) });
      const ac = new AbortController();
      const t = track(router.call(KEY, 'm', [], { signal: ac.signal }));
      await flush();
      transport.all[0]!.refuse(draining());
      ac.abort();
      await flush();
      expect(transport.sent).toHaveLength(1);
      expect(errorOf(t)).toBeInstanceOf(CancelledError);
    });

    it('an abort while the retry waits for room drops it, unsent', async () => {
      const { router, transport, routes } = retryRig({ random: () => 0 });
      routes({ [KEY]: entry(replicas(2), { maxOngoingRequests: 1 }) });
      const ac = new AbortController();
      const a = track(router.call(KEY, 'm', ['a'], { signal: ac.signal }));
      track(router.call(KEY, 'm', ['b']));
      await flush();
      transport.all[0]!.refuse(draining('r1'));
      await flush();
      ac.abort();
      await flush();
      expect(errorOf(a)).toBeInstanceOf(CancelledError);
      transport.all[1]!.answer('b');
      await flush();
      expect(transport.sent).toHaveLength(2);
    });

    it('does not retry after the router closed', async () => {
      const { router, transport, routes } = retryRig();
      routes({ [KEY]: entry(replicas(3)) });
      const t = track(router.http(KEY, httpReq('GET')));
      const u = track(router.call(KEY, 'm', []));
      await flush();
      router.close();
      transport.all[0]!.die(new PeerGoneError('connection closed'));
      transport.all[1]!.refuse(draining());
      await flush();
      expect(transport.sent).toHaveLength(2);
      expect(errorOf(t)).toBeInstanceOf(PeerGoneError);
      expect(errorOf(u)).toBeInstanceOf(ReplicaUnavailableError);
    });
  });

  describe('the retry budget', () => {
    /** Refuses each request's first attempt (a storm of draining replicas), answers its retry. */
    function stormTransport(transport: RetryTransport): Set<unknown> {
      const seen = new Set<unknown>();
      transport.auto = (_replica, message) => {
        const id = message.t === 'call' ? message.args[0] : undefined;
        if (seen.has(id)) return { t: 'reply', id: 0, ok: true, value: id };
        seen.add(id);
        return { t: 'reply', id: 0, ok: false, error: toWireError(draining()), nr: true };
      };
      return seen;
    }

    it('caps retries in a storm at 10 + 20% of recent requests, and counts those it refused', async () => {
      const { router, transport, routes, clock } = retryRig();
      routes({ [KEY]: entry(replicas(4)) });
      stormTransport(transport);
      const ts = Array.from({ length: 100 }, (_, i) => track(router.call(KEY, 'm', [i])));
      await flush();
      const ok = ts.filter((t) => t.outcome?.ok === true).length;
      const failed = ts.filter((t) => t.outcome?.ok === false);
      expect(ok).toBe(30);
      expect(failed).toHaveLength(70);
      expect(failed.every((t) => errorOf(t) instanceof ReplicaUnavailableError)).toBe(true);
      expect(router.retries).toEqual({ made: 30, refused: 70 });
      expect(transport.sent).toHaveLength(130);

      // Ten seconds later the storm has left the window: the floor is back.
      clock.advance(10_000);
      const more = Array.from({ length: 10 }, (_, i) => track(router.call(KEY, 'm', [1000 + i])));
      await flush();
      expect(more.every((t) => t.outcome?.ok === true)).toBe(true);
      expect(router.retries).toEqual({ made: 40, refused: 70 });
    });

    it('takes its shape from RouterOptions.retryBudget', async () => {
      const { router, transport, routes } = retryRig({ retryBudget: { ratio: 0, minRetries: 2 } });
      routes({ [KEY]: entry(replicas(4)) });
      stormTransport(transport);
      const ts = Array.from({ length: 20 }, (_, i) => track(router.call(KEY, 'm', [i])));
      await flush();
      expect(ts.filter((t) => t.outcome?.ok === true)).toHaveLength(2);
      expect(router.retries).toEqual({ made: 2, refused: 18 });
    });

    it('retries after ERR_PEER_GONE draw on the same budget', async () => {
      const { router, transport, routes } = retryRig({ retryBudget: { ratio: 0, minRetries: 1 } });
      routes({ [KEY]: entry(replicas(6)) });
      const a = track(router.http(KEY, httpReq('GET')));
      const b = track(router.http(KEY, httpReq('GET')));
      await flush();
      transport.all[0]!.die(new PeerGoneError('gone'));
      transport.all[1]!.die(new PeerGoneError('gone'));
      await flush();
      expect(transport.sent).toHaveLength(3);
      expect(router.retries).toEqual({ made: 1, refused: 1 });
      expect([a, b].filter((t) => t.outcome !== undefined).map((t) => errorOf(t))).toEqual([expect.any(PeerGoneError)]);
    });
  });

  describe('a deployment whose replicas fail to start (RouteEntry.unavailable)', () => {
    it('fails calls at once with ERR_REPLICA_UNAVAILABLE naming the start error, sending nothing and arming no timer', async () => {
      const { router, transport, routes, clock } = retryRig();
      routes({ [KEY]: { ...entry([]), unavailable: 'UserCodeError: constructor threw: no weights at /models/x' } });
      const t = track(router.call(KEY, 'm', []));
      const h = track(router.http(KEY, httpReq('GET')));
      await flush();
      for (const x of [t, h]) {
        const err = errorOf(x);
        expect(err).toBeInstanceOf(ReplicaUnavailableError);
        expect(toWireError(err)).toMatchObject({ code: 'ERR_REPLICA_UNAVAILABLE', httpStatus: 503 });
        expect(err.message).toContain(`"${KEY}"`);
        expect(err.message).toContain('constructor threw: no weights at /models/x');
      }
      expect(transport.sent).toHaveLength(0);
      expect(clock.pendingTimers()).toBe(0);
      expect(router.stats()[KEY]).toEqual({ inflight: 0, waiting: 0, replicas: 0 });
    });

    it('fails the waiters already queued (for no replica) when such a table arrives', async () => {
      const { router, routes, clock } = retryRig();
      routes({ [KEY]: entry([]) });
      const ts = [track(router.call(KEY, 'm', [])), track(router.call(KEY, 'm', []))];
      await flush();
      expect(router.stats()[KEY]!.waiting).toBe(2);
      routes({ [KEY]: { ...entry([]), unavailable: 'boom in init()' } });
      await flush();
      for (const t of ts) {
        expect(errorOf(t)).toBeInstanceOf(ReplicaUnavailableError);
        expect(errorOf(t).message).toContain('boom in init()');
      }
      expect(router.stats()[KEY]!.waiting).toBe(0);
      expect(clock.pendingTimers()).toBe(0);
    });

    it('fails waiters queued for room once their replicas are gone and starts keep failing', async () => {
      const { router, transport, routes } = retryRig();
      routes({ [KEY]: entry([['r1', 'w1']], { maxOngoingRequests: 1 }) });
      const inflight = track(router.call(KEY, 'm', []));
      const queued = track(router.call(KEY, 'm', []));
      await flush();
      expect(router.stats()[KEY]!.waiting).toBe(1);
      routes({ [KEY]: { ...entry([], { maxOngoingRequests: 1 }), unavailable: 'init() threw' } });
      await flush();
      expect(errorOf(queued)).toBeInstanceOf(ReplicaUnavailableError);
      // The call in flight is the replica's to answer.
      expect(inflight.outcome).toBeUndefined();
      transport.all[0]!.answer('late');
      await flush();
      expect(inflight.outcome).toEqual({ ok: true, value: 'late' });
    });

    it('ignores `unavailable` while a replica runs, and serves again once the table clears it', async () => {
      const { router, transport, routes } = retryRig();
      routes({ [KEY]: { ...entry([['r1', 'w1']]), unavailable: 'one replica failed' } });
      const t = track(router.call(KEY, 'm', []));
      await flush();
      expect(transport.sent).toHaveLength(1);
      transport.all[0]!.answer(1);
      routes({ [KEY]: { ...entry([]), unavailable: 'init() threw' } });
      await expect(router.call(KEY, 'm', [])).rejects.toBeInstanceOf(ReplicaUnavailableError);
      routes({ [KEY]: entry([['r2', 'w2']]) });
      const u = track(router.call(KEY, 'm', []));
      await flush();
      transport.all.at(-1)!.answer(2);
      await flush();
      expect(t.outcome).toEqual({ ok: true, value: 1 });
      expect(u.outcome).toEqual({ ok: true, value: 2 });
    });

    it('a not-run retry that finds the deployment unavailable fails at once with that error', async () => {
      const { router, transport, routes } = retryRig({ random: () => 0 });
      routes({ [KEY]: entry(replicas(2), { maxOngoingRequests: 1 }) });
      const a = track(router.call(KEY, 'm', ['a']));
      track(router.call(KEY, 'm', ['b']));
      await flush();
      transport.all[0]!.refuse(draining('r1'));
      await flush();
      expect(router.stats()[KEY]!.waiting).toBe(1); // a's retry waits for r2
      routes({ [KEY]: { ...entry([], { maxOngoingRequests: 1 }), unavailable: 'replicas keep failing' } });
      await flush();
      expect(errorOf(a)).toBeInstanceOf(ReplicaUnavailableError);
      expect(errorOf(a).message).toContain('replicas keep failing');
    });
  });

  describe('resetRoutesVersion', () => {
    it('lets a lower-numbered table in (a restarted head numbers afresh), keeping the current one until it arrives', async () => {
      const { router, transport } = retryRig();
      router.updateRoutes({ [KEY]: entry([['old', 'w1']]) }, 40);
      router.updateRoutes({ [KEY]: entry([['new', 'w2']]) }, 1);
      void router.call(KEY, 'm', []);
      await flush();
      expect(transport.tried).toEqual(['old']);
      router.resetRoutesVersion();
      void router.call(KEY, 'm', []); // still the old table until the next one
      await flush();
      expect(transport.tried).toEqual(['old', 'old']);
      router.updateRoutes({ [KEY]: entry([['new', 'w2']]) }, 1);
      void router.call(KEY, 'm', []);
      await flush();
      expect(transport.tried.at(-1)).toBe('new');
      // Numbering goes on from the new head's tables: an older one of its own is ignored again.
      router.updateRoutes({ [KEY]: entry([['stale', 'w3']]) }, 1);
      void router.call(KEY, 'm', []);
      await flush();
      expect(transport.tried.at(-1)).toBe('new');
    });
  });

  describe('onNoReplica', () => {
    it('is told the key when a request starts waiting for a deployment with no replica, not when replicas are only full', async () => {
      const noReplica: string[] = [];
      const { router, routes } = retryRig({ onNoReplica: (k) => noReplica.push(k) });
      void router.call('app/unknown', 'm', []).catch(() => undefined); // no table entry at all
      await flush();
      expect(noReplica).toEqual(['app/unknown']);
      routes({ [KEY]: entry([]), 'app/full': entry([['r1', 'w1']], { maxOngoingRequests: 1 }) });
      void router.call(KEY, 'm', []).catch(() => undefined); // scaled to zero
      void router.call('app/full', 'm', []);
      void router.call('app/full', 'm', []); // waits for room, not for a replica
      await flush();
      expect(noReplica).toEqual(['app/unknown', KEY]);
      expect(router.stats()['app/full']!.waiting).toBe(1);
    });

    it('is not told for a deployment marked unavailable: that fails at once instead', async () => {
      const noReplica: string[] = [];
      const { router, routes } = retryRig({ onNoReplica: (k) => noReplica.push(k) });
      routes({ [KEY]: { ...entry([]), unavailable: 'x' } });
      await expect(router.call(KEY, 'm', [])).rejects.toBeInstanceOf(ReplicaUnavailableError);
      expect(noReplica).toEqual([]);
    });

    it('a waiter it was told about is sent as soon as a replica comes (scale from zero), within its deadline', async () => {
      const noReplica: string[] = [];
      const { router, transport, routes, clock } = retryRig({ onNoReplica: (k) => noReplica.push(k) });
      routes({ [KEY]: entry([]) });
      const t = track(router.call(KEY, 'm', ['x'], { deadline: clock.wallNow() + 3000 }));
      await flush();
      expect(noReplica).toEqual([KEY]);
      clock.advance(1200); // a cold start
      routes({ [KEY]: entry([['r1', 'w1']]) });
      await flush();
      expect(transport.tried).toEqual(['r1']);
      transport.all[0]!.answer('warm');
      await flush();
      expect(t.outcome).toEqual({ ok: true, value: 'warm' });
      expect(clock.pendingTimers()).toBe(0);
    });
  });
});
