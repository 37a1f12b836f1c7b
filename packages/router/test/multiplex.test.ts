/**
 * Model affinity in the router: a request naming a model goes to a replica holding it, a hot model spreads to
 * replicas without it, and what replicas hold is learnt from route tables and replies, the newest kept.
 */
import { describe, expect, it } from 'vitest';
import { FakeClock, InvalidOptionError, silentLogger } from '@shoal/core';
import type { ModelSet, NewRequest, ReplyMessage, RouteEntry } from '@shoal/protocol';
import { ReplicaSet, Router, createHandle, type Dispatch, type ReplicaRef, type Transport } from '../src/index.ts';
import { seeded } from './fakes.ts';

/** Route entry of a multiplexed deployment: replica i on worker wi, holding models[i]. */
function multiplexed(models: string[][], opts: Partial<RouteEntry> = {}): RouteEntry {
  return {
    maxOngoingRequests: 10, maxQueuedRequests: 100, requestTimeoutMs: 0, hotOngoingRequests: 5, ...opts,
    replicas: models.map((ids, i) => ({ replicaId: `r${i}`, workerId: `w${i}`, dataAddress: `ws://w${i}`, models: { v: 0, ids } })),
  };
}

function setOf(entry: RouteEntry, loads: number[] = [], local?: string): ReplicaSet {
  const set = new ReplicaSet('app/M', seeded(7), () => local);
  set.update(entry);
  set.replicas.forEach((r, i) => { r.inflight = loads[i] ?? 0; });
  return set;
}

function counts(set: ReplicaSet, modelId: string | undefined, n = 2000): Record<string, number> {
  const out: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const id = set.choose(undefined, undefined, modelId)?.replicaId ?? 'none';
    out[id] = (out[id] ?? 0) + 1;
  }
  return out;
}

describe('ReplicaSet: model affinity', () => {
  it('sends a model to the replica holding it while that one is below the hot threshold, however loaded the others', () => {
    const set = setOf(multiplexed([[], ['a', 'b'], []]), [0, 4, 0]);
    expect(counts(set, 'a')).toEqual({ r1: 2000 });
    expect(counts(set, 'b')).toEqual({ r1: 2000 });
  });

  it('chooses as for any request when no replica holds the model (the one chosen loads it)', () => {
    const set = setOf(multiplexed([['x'], ['y'], ['z']]), [0, 3, 9]);
    const c = counts(set, 'new');
    expect(c.r2).toBeUndefined(); // the most loaded never wins a power-of-two comparison
    expect(c.r0! + c.r1!).toBe(2000);
    expect(c.r0!).toBeGreaterThan(c.r1!);
  });

  it('loads a model no replica holds where it evicts nothing, when the loads are even', () => {
    expect(counts(setOf(multiplexed([['x', 'y'], ['z']]), [1, 1]), 'new')).toEqual({ r1: 2000 });
    // Of three, r1 wins every comparison it is sampled in: two draws out of three.
    const three = counts(setOf(multiplexed([['x', 'y'], ['z'], ['p', 'q']]), [1, 1, 1]), 'new');
    expect(Math.abs(three.r1! / 2000 - 2 / 3)).toBeLessThan(0.05);
    // The load comes first: a busier replica is not chosen for holding fewer models.
    expect(counts(setOf(multiplexed([['x', 'y'], [], ['p', 'q']]), [0, 2, 0]), 'new').r1).toBeUndefined();
  });

  it('among replicas holding it, the least loaded; a local one on a tie', () => {
    expect(counts(setOf(multiplexed([['a'], ['a'], []]), [3, 1, 0]), 'a')).toEqual({ r1: 2000 });
    expect(counts(setOf(multiplexed([['a'], ['a'], []]), [2, 2, 0], 'w1'), 'a')).toEqual({ r1: 2000 });
  });

  it('spreads a hot model: once every holder has hotOngoingRequests, a less loaded replica without it is chosen', () => {
    const set = setOf(multiplexed([['a'], [], []]), [5, 1, 2]);
    const c = counts(set, 'a');
    expect(c.r0).toBeUndefined();
    expect(c.r1).toBeGreaterThan(0);
    // Below the threshold it stays put.
    set.replicas[0]!.inflight = 4;
    expect(counts(set, 'a')).toEqual({ r0: 2000 });
    // Hot, but the others are as loaded: the holder keeps it (no load to gain by loading the model elsewhere).
    const even = setOf(multiplexed([['a'], [], []]), [6, 6, 7]);
    expect(counts(even, 'a')).toEqual({ r0: 2000 });
    // Two holders, both hot: the third replica gets it too.
    const two = setOf(multiplexed([['a'], ['a'], []]), [5, 6, 0]);
    expect(counts(two, 'a')).toEqual({ r2: 2000 });
  });

  it('goes past a full holder to a replica with room, and says undefined when all are full', () => {
    const set = setOf(multiplexed([['a'], [], []], { maxOngoingRequests: 3, hotOngoingRequests: 3 }), [3, 1, 3]);
    expect(counts(set, 'a')).toEqual({ r1: 2000 });
    set.replicas[1]!.inflight = 3;
    expect(set.choose(undefined, undefined, 'a')).toBeUndefined();
  });

  it('ignores the model of a deployment that does not multiplex', () => {
    const entry = multiplexed([['a'], [], []]);
    delete entry.hotOngoingRequests;
    const c = counts(setOf(entry, [9, 0, 0]), 'a');
    expect(c.r0).toBeUndefined();
  });

  it('keeps the newest model set of a replica, whether it came from a reply or a route table', () => {
    const set = setOf(multiplexed([['a'], []]));
    const r1 = set.replicas[1]!;
    set.report(r1, 0, { v: 5, ids: ['a', 'b'] }); // r1's reply: it loaded a and b
    expect(r1.models).toEqual({ v: 5, ids: ['a', 'b'] });
    set.update(multiplexed([['a'], []])); // a table from an older heartbeat (v 0)
    expect(set.replicas[1]!.models?.ids).toEqual(['a', 'b']);
    const newer = multiplexed([['a'], ['c']]);
    newer.replicas[1]!.models = { v: 9, ids: ['c'] };
    set.update(newer);
    expect(set.replicas[1]!.models).toEqual({ v: 9, ids: ['c'] });
    set.report(r1, 0, { v: 8, ids: ['old'] });
    expect(r1.models?.ids).toEqual(['c']);
  });
});

/** A transport answering at once, as a multiplexed replica would: it loads the model it is asked for (one at most). */
class OneModelTransport implements Transport {
  readonly sent: Array<{ replica: string; message: NewRequest }> = [];
  private readonly held = new Map<string, ModelSet>();
  dispatch(replica: ReplicaRef, message: NewRequest): Dispatch {
    this.sent.push({ replica: replica.replicaId, message });
    const modelId = (message as { modelId?: string }).modelId;
    let reply: ReplyMessage = { t: 'reply', id: 0, ok: true, value: replica.replicaId, q: 0 };
    if (modelId !== undefined) {
      const v = (this.held.get(replica.replicaId)?.v ?? 0) + 1;
      this.held.set(replica.replicaId, { v, ids: [modelId] });
      reply = { ...reply, models: this.held.get(replica.replicaId)! };
    }
    return { reply: Promise.resolve(reply), cancel: () => undefined };
  }
}

describe('Router and handles: the model id', () => {
  function rig(): { router: Router; transport: OneModelTransport } {
    const transport = new OneModelTransport();
    const router = new Router({ transport, clock: new FakeClock(), logger: silentLogger, random: seeded(3) });
    router.updateRoutes({ 'app/M': multiplexed([[], [], []]) }, 1);
    return { router, transport };
  }

  it('travels in the request, and a reply teaching which replica holds the model brings the next ones there', async () => {
    const { router, transport } = rig();
    const first = await router.call('app/M', 'predict', [1], { modelId: 'a' });
    for (let i = 0; i < 20; i++) expect(await router.call('app/M', 'predict', [i], { modelId: 'a' })).toBe(first);
    expect(transport.sent.every((s) => (s.message as { modelId?: string }).modelId === 'a')).toBe(true);
    await router.http('app/M', { method: 'GET', path: '/', query: '', headers: {}, body: new Uint8Array() }, { modelId: 'b' }).catch(() => undefined);
    expect(transport.sent.at(-1)!.message).toMatchObject({ t: 'http', modelId: 'b' });
  });

  it('handle: withOptions({ modelId }) is checked and sent; otherwise the calling request\'s model is inherited', async () => {
    const { router, transport } = rig();
    let inherited: string | undefined = 'from-request';
    const handle = createHandle<{ predict(x: number): string }>({ router, key: 'app/M', methods: ['predict'], inheritedModelId: () => inherited });
    await handle.predict(1);
    await handle.withOptions({ modelId: 'own' }).predict(1);
    inherited = undefined;
    await handle.predict(1);
    expect(transport.sent.map((s) => (s.message as { modelId?: string }).modelId)).toEqual(['from-request', 'own', undefined]);
    const err = await handle.withOptions({ modelId: 'bad\nid' }).predict(1).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidOptionError);
    expect((err as Error).message).toBe('invalid option handle.withOptions.modelId: must not contain control characters (got "bad\\nid")');
    await expect(handle.withOptions({ modelId: '' }).predict(1)).rejects.toThrow(/handle.withOptions.modelId: must be 1-256 characters long, got 0/);
    expect(transport.sent).toHaveLength(3);
  });
});
