/** A replica's streamed answers: the slot is held until the stream ends, user code runs in its request context. */
import { describe, expect, it } from 'vitest';
import { CancelledError, ChunkStream, StreamPump, compileDeploymentOptions, requestContext, silentLogger, type BatchObserver as BatchObserverType } from '@shoal/core';
import { Replica, type ReplicaInstance, type ReplicaObserver } from '../src/replica.ts';
import { ChunkBatcher, ReplicaStream } from '../src/stream-replica.ts';
import { HandleStream } from '@shoal/router';

class Gen {
  finallyRan = 0;
  async *tokens(n: number): AsyncGenerator<string> {
    try {
      for (let i = 0; i < n; i++) yield `${requestContext()?.requestId ?? 'none'}:${i}`;
    } finally {
      this.finallyRan++;
    }
  }
  /** Not an async generator method, but returns an async iterable: it streams too. */
  indirect(): AsyncIterable<number> {
    return (async function* () { yield 1; yield 2; })();
  }
  async *failing(): AsyncGenerator<number> { yield 1; throw new Error('no more tokens'); }
  plain(): number[] { return [1, 2]; }
}

async function start(maxOngoingRequests = 1): Promise<{ replica: Replica; gen: Gen; computed: number[] }> {
  const computed: number[] = [];
  const observer: ReplicaObserver = {
    queueWaited: () => undefined, computed: (ms) => computed.push(ms), modelLoaded: () => undefined,
    batch: () => ({}) as BatchObserverType,
  };
  const replica = new Replica({ replicaId: 'r1', app: 'app', deployment: 'Gen', options: compileDeploymentOptions({ maxOngoingRequests }, 'Gen'), logger: silentLogger, observer });
  let gen: Gen | undefined;
  await replica.start(() => (gen = new Gen()) as unknown as ReplicaInstance);
  return { replica, gen: gen!, computed };
}

async function drainAll(rs: ReplicaStream): Promise<unknown[]> {
  const out: unknown[] = [];
  for (;;) { const r = await rs.next(); if (r.done === true) return out; out.push(r.value); }
}

describe('replica streams', () => {
  it('answers an async generator method with a ReplicaStream that runs in the request context', async () => {
    const { replica } = await start();
    const rs = await replica.call('tokens', [3], new AbortController().signal, undefined, undefined, undefined, 'req-7');
    expect(ReplicaStream.is(rs)).toBe(true);
    expect(await drainAll(rs as ReplicaStream)).toEqual(['req-7:0', 'req-7:1', 'req-7:2']);
    const ind = await replica.call('indirect', [], new AbortController().signal, undefined);
    expect(await drainAll(ind as ReplicaStream)).toEqual([1, 2]);
    // Arrays are answers, not streams.
    expect(await replica.call('plain', [], new AbortController().signal, undefined)).toEqual([1, 2]);
    await replica.drain(1000);
  });

  it('holds the slot until the stream ends; compute is recorded then', async () => {
    const { replica, computed } = await start(1);
    const rs = await replica.call('tokens', [2], new AbortController().signal, undefined) as ReplicaStream;
    expect(replica.ongoingCount).toBe(1);
    expect(computed).toEqual([]);
    // A second request waits for the slot the stream holds.
    let second: unknown;
    const waiting = replica.call('plain', [], new AbortController().signal, undefined).then((v) => { second = v; });
    await new Promise((r) => setImmediate(r));
    expect(second).toBeUndefined();
    expect(replica.queuedCount).toBe(1);
    await drainAll(rs);
    await waiting;
    expect(second).toEqual([1, 2]);
    expect(replica.ongoingCount).toBe(0);
    expect(computed.length).toBe(2);
    await replica.drain(1000);
  });

  it('a cancelled stream runs the generator\'s finally and gives the slot back; errors count as errors', async () => {
    const { replica, gen } = await start(1);
    const rs = await replica.call('tokens', [1000], new AbortController().signal, undefined) as ReplicaStream;
    const pump = new StreamPump(rs, { chunks: 2, bytes: 1 << 20 }, { chunk: () => undefined, done: () => undefined });
    pump.start();
    await new Promise((r) => setImmediate(r));
    expect(pump.produced).toBe(2);
    pump.cancel(new CancelledError('client left'));
    await new Promise((r) => setImmediate(r));
    expect(gen.finallyRan).toBe(1);
    expect(replica.ongoingCount).toBe(0);

    const before = replica.outcomes.errors;
    const f = await replica.call('failing', [], new AbortController().signal, undefined) as ReplicaStream;
    await expect(drainAll(f)).rejects.toMatchObject({ code: 'ERR_USER_CODE', message: expect.stringContaining('no more tokens') });
    expect(replica.outcomes.errors).toBe(before + 1);
    expect(replica.ongoingCount).toBe(0);
    await replica.drain(1000);
  });

  it('a drain that times out stops the streams still running', async () => {
    const { replica, gen } = await start(1);
    const rs = await replica.call('tokens', [1000], new AbortController().signal, undefined) as ReplicaStream;
    await rs.next();
    await replica.drain(50);
    expect(gen.finallyRan).toBe(1);
    expect(replica.state).toBe('STOPPED');
  });
});

describe('ChunkBatcher', () => {
  it('splits a turn\'s chunks by count and by estimated bytes, whichever comes first', () => {
    const sent: unknown[][] = [];
    const b = new ChunkBatcher((cs) => { sent.push(cs); return cs.length; }, 8, 1000);
    // Four chunks of 300 bytes: the fourth passes 1000 bytes, so they go as one message at once.
    for (let i = 0; i < 4; i++) b.add(i, 300);
    expect(sent).toEqual([[0, 1, 2, 3]]);
    // Small ones go by count.
    for (let i = 0; i < 8; i++) b.add(i, 1);
    expect(sent.at(-1)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    // What is left goes at the end of the turn, or on flush().
    b.add('x', 10);
    expect(sent).toHaveLength(2);
    b.flush();
    expect(sent.at(-1)).toEqual(['x']);
    expect(b.sent).toBe(13);
  });
});

describe('streams a request opened below it end with the request', () => {
  /** A downstream stream as a handle would open it: its call is a ChunkStream whose producer records a cancel. */
  class Opener {
    readonly cancels: string[] = [];
    private downstream(label: string): HandleStream<number> {
      return new HandleStream<number>(async () => {
        const s = new ChunkStream({ credit: () => undefined, cancel: () => { this.cancels.push(label); } }, { chunks: 4, bytes: 1 << 20 });
        s.push([1, 2, 3]);
        return s;
      }, `down.${label}`);
    }

    /** Reads one chunk of a downstream stream, then returns without ending it. */
    async peek(): Promise<number> {
      const it = this.downstream('peek');
      return (await it.next()).value as number;
    }

    /** A streaming method that opens one below it and stops after its first chunk. */
    async *relayOne(): AsyncGenerator<number> {
      const it = this.downstream('relay');
      yield (await it.next()).value as number;
    }

    /** Reads a downstream stream to its end: nothing is left to cancel. */
    async full(): Promise<number> {
      let n = 0;
      const s = new HandleStream<number>(async () => { const c = new ChunkStream({ credit: () => undefined, cancel: () => { this.cancels.push('full'); } }); c.push([1, 2]); c.end(); return c; }, 'down.full');
      for await (const v of s) n += v;
      return n;
    }
  }

  it('a unary method that left a stream open, and a streaming one that ended early, cancel it when their slot is given back', async () => {
    const replica = new Replica({ replicaId: 'r1', app: 'app', deployment: 'Opener', options: compileDeploymentOptions({ maxOngoingRequests: 2 }, 'Opener'), logger: silentLogger });
    let op!: Opener;
    await replica.start(() => (op = new Opener()) as unknown as ReplicaInstance);
    expect(await replica.call('peek', [], new AbortController().signal, undefined)).toBe(1);
    expect(op.cancels).toEqual(['peek']);
    const rs = await replica.call('relayOne', [], new AbortController().signal, undefined) as ReplicaStream;
    expect(op.cancels).toEqual(['peek']);
    expect(await drainAll(rs)).toEqual([1]);
    expect(op.cancels).toEqual(['peek', 'relay']);
    expect(await replica.call('full', [], new AbortController().signal, undefined)).toBe(3);
    expect(op.cancels).toEqual(['peek', 'relay']);
    await replica.drain(1000);
  });
});
