import { describe, expect, it } from 'vitest';
import {
  ChunkStream, DEFAULT_STREAM_WINDOW, DeadlineExceededError, FakeClock, PeerGoneError, ReplicaUnavailableError, silentLogger, toWireError,
  type StreamEndReason, type StreamWindow,
} from '@shoal/core';
import type { NewRequest, ReplyMessage } from '@shoal/protocol';
import { Router, createHandle, type Dispatch, type ReplicaRef, type RouterStreamObserver, type Transport } from '../src/index.ts';
import { entry, flush, seeded, track } from './fakes.ts';

const KEY = 'app/llm';
const WINDOW: StreamWindow = { chunks: 4, bytes: 1 << 20 };

/** One dispatched request: answer it as a stream (its first chunks), refuse it as never run, or lose its worker. */
interface Sent {
  replica: ReplicaRef;
  message: NewRequest;
  cancels: number;
  credits: number;
  sourceCancels: Error[];
  stream: ChunkStream | undefined;
  start(chunks: unknown[], q?: number): ChunkStream;
  refuse(err: Error): void;
  die(err: Error): void;
  answer(value: unknown): void;
}

class StreamTransport implements Transport {
  readonly sent: Sent[] = [];
  dispatch(replica: ReplicaRef, message: NewRequest): Dispatch {
    let resolve!: (r: ReplyMessage) => void;
    let reject!: (e: Error) => void;
    const reply = new Promise<ReplyMessage>((res, rej) => { resolve = res; reject = rej; });
    const s: Sent = {
      replica, message, cancels: 0, credits: 0, sourceCancels: [], stream: undefined,
      start: (chunks, q) => {
        const stream = new ChunkStream({ credit: (n) => { s.credits += n; }, cancel: (r) => { s.sourceCancels.push(r); } }, WINDOW);
        stream.push(chunks);
        s.stream = stream;
        resolve({ t: 'reply', id: 0, ok: true, value: stream, stream, ...(q === undefined ? {} : { q }) });
        return stream;
      },
      refuse: (err) => resolve({ t: 'reply', id: 0, ok: false, error: toWireError(err), nr: true }),
      die: (err) => reject(err),
      answer: (value) => resolve({ t: 'reply', id: 0, ok: true, value }),
    };
    this.sent.push(s);
    return { reply, cancel: () => { s.cancels++; } };
  }
}

function streamRig(onStream?: RouterStreamObserver) {
  const clock = new FakeClock();
  const transport = new StreamTransport();
  const router = new Router({ transport, clock, logger: silentLogger, random: seeded(3), ...(onStream === undefined ? {} : { onStream }) });
  router.updateRoutes({ [KEY]: entry([['r1', 'w1'], ['r2', 'w2']]) }, 1);
  return { clock, transport, router };
}

describe('router: streamed answers', () => {
  it('sends the window, resolves with the stream at its first chunk, and counts it in flight until it ends', async () => {
    const seen: Array<[string, StreamEndReason | 'started', number]> = [];
    const { transport, router } = streamRig({ started: (k) => seen.push([k, 'started', 0]), ended: (k, r, n) => seen.push([k, r, n]) });
    const call = track(router.call(KEY, 'gen', ['hi'], { stream: WINDOW }));
    await flush();
    const sent = transport.sent[0]!;
    expect((sent.message as { s?: unknown }).s).toEqual([4, 1 << 20]);
    sent.start(['a']);
    await flush();
    const stream = call.outcome?.ok === true ? call.outcome.value as ChunkStream : undefined;
    expect(ChunkStream.is(stream)).toBe(true);
    expect(router.stats()[KEY]!.inflight).toBe(1);
    stream!.push(['b']);
    stream!.end();
    const got: unknown[] = [];
    for await (const v of stream!) got.push(v);
    expect(got).toEqual(['a', 'b']);
    expect(router.stats()[KEY]!.inflight).toBe(0);
    expect(seen).toEqual([[KEY, 'started', 0], [KEY, 'complete', 2]]);
  });

  it('learns the replica\'s load from a stream\'s first reply, as from a unary one', async () => {
    const { transport, router } = streamRig();
    void track(router.call(KEY, 'gen', [], { stream: WINDOW }));
    await flush();
    const first = transport.sent[0]!;
    // The replica says it runs 10 (this stream among them): 9 from other routers.
    first.start(['a'], 10);
    await flush();
    const other = first.replica.replicaId === 'r1' ? 'r2' : 'r1';
    for (let i = 0; i < 5; i++) void track(router.call(KEY, 'unary', []));
    await flush();
    // Without the report, the busy replica would look as loaded as one stream and take some of these.
    expect(transport.sent.slice(1).map((x) => x.replica.replicaId)).toEqual([other, other, other, other, other]);
    first.stream!.end();
  });

  it('a unary call sends no window field at all', async () => {
    const { transport, router } = streamRig();
    const call = track(router.call(KEY, 'predict', [1]));
    await flush();
    expect('s' in transport.sent[0]!.message).toBe(false);
    transport.sent[0]!.answer(2);
    await flush();
    expect(call.outcome).toEqual({ ok: true, value: 2 });
  });

  it('retries a stream refused before its first chunk, never one that failed after it', async () => {
    const { transport, router } = streamRig();
    const call = track(router.call(KEY, 'gen', [], { stream: WINDOW }));
    await flush();
    transport.sent[0]!.refuse(new ReplicaUnavailableError('draining'));
    await flush();
    expect(transport.sent.length).toBe(2);
    expect(transport.sent[1]!.replica.replicaId).not.toBe(transport.sent[0]!.replica.replicaId);
    const stream = transport.sent[1]!.start(['first']);
    await flush();
    expect(call.outcome?.ok).toBe(true);
    stream.fail(new PeerGoneError('worker died mid-stream'));
    await expect(stream.next()).resolves.toEqual({ done: false, value: 'first' });
    await expect(stream.next()).rejects.toMatchObject({ code: 'ERR_PEER_GONE' });
    await flush();
    expect(transport.sent.length).toBe(2);
  });

  it('the deadline bounds the whole stream: past it the stream fails and is cancelled at the replica', async () => {
    const { clock, transport, router } = streamRig();
    const call = track(router.call(KEY, 'gen', [], { stream: WINDOW, deadline: clock.wallNow() + 1000 }));
    await flush();
    const stream = transport.sent[0]!.start(['a']);
    await flush();
    expect(call.outcome?.ok).toBe(true);
    clock.advance(500);
    expect(transport.sent[0]!.sourceCancels).toEqual([]);
    clock.advance(600);
    expect(transport.sent[0]!.sourceCancels[0]).toBeInstanceOf(DeadlineExceededError);
    await expect(stream.next()).rejects.toBeInstanceOf(DeadlineExceededError);
    expect(router.stats()[KEY]!.inflight).toBe(0);
  });

  it('the caller\'s signal aborting mid-stream cancels it; before the first chunk it cancels the dispatch', async () => {
    const { transport, router } = streamRig();
    const ac = new AbortController();
    const call = track(router.call(KEY, 'gen', [], { stream: WINDOW, signal: ac.signal }));
    await flush();
    const stream = transport.sent[0]!.start(['a']);
    await flush();
    expect(call.outcome?.ok).toBe(true);
    ac.abort();
    expect(transport.sent[0]!.sourceCancels.length).toBe(1);
    await expect(stream.next()).rejects.toMatchObject({ code: 'ERR_CANCELLED' });

    const ac2 = new AbortController();
    const early = track(router.call(KEY, 'gen', [], { stream: WINDOW, signal: ac2.signal }));
    await flush();
    ac2.abort();
    await flush();
    expect(transport.sent[1]!.cancels).toBe(1);
    expect(early.outcome).toMatchObject({ ok: false });
  });
});

describe('handles: streaming methods', () => {
  function handleRig() {
    const r = streamRig();
    const handle = createHandle<{ gen(p: string): AsyncGenerator<string>; predict(x: number): number }>({ router: r.router, key: KEY, methods: ['gen', 'predict'], streams: ['gen'] });
    return { ...r, handle };
  }

  it('for await over handle.gen() works; a break cancels the stream at the replica', async () => {
    const { transport, handle } = handleRig();
    const got: string[] = [];
    const loop = (async () => {
      for await (const tok of handle.gen('p')) { got.push(tok); if (got.length === 2) break; }
    })();
    await flush();
    // Nothing is sent before iteration begins; the first next() sent it.
    expect(transport.sent.length).toBe(1);
    expect((transport.sent[0]!.message as { s?: unknown; method?: string }).s).toEqual([DEFAULT_STREAM_WINDOW.chunks, DEFAULT_STREAM_WINDOW.bytes]);
    const stream = transport.sent[0]!.start(['x', 'y', 'z']);
    await loop;
    expect(got).toEqual(['x', 'y']);
    expect(transport.sent[0]!.sourceCancels.length).toBe(1);
    expect(stream.closed).toBe(true);
  });

  it('is sent only when iterated or awaited; awaiting gives an async iterable', async () => {
    const { transport, handle } = handleRig();
    const s = handle.gen('p');
    await flush();
    expect(transport.sent.length).toBe(0);
    const awaited = (async () => { const it = await s; const out: string[] = []; for await (const v of it) out.push(v); return out; })();
    await flush();
    const stream = transport.sent[0]!.start(['1']);
    stream.push(['2']);
    stream.end();
    expect(await awaited).toEqual(['1', '2']);
  });

  it('a break before the first chunk aborts the call; unary methods are unchanged', async () => {
    const { transport, handle } = handleRig();
    const it = handle.gen('p')[Symbol.asyncIterator]();
    const first = it.next().then(() => undefined, (e: unknown) => e);
    await flush();
    await it.return?.();
    await flush();
    expect(transport.sent[0]!.cancels).toBe(1);
    expect(await first).toMatchObject({ code: 'ERR_CANCELLED' });
    const p = handle.predict(2);
    await flush();
    expect('s' in transport.sent[1]!.message).toBe(false);
    transport.sent[1]!.answer(4);
    expect(await p).toBe(4);
  });
});
