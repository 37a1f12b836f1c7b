import { describe, expect, it } from 'vitest';
import { CancelledError, ChunkStream, DEFAULT_STREAM_WINDOW, DEFAULT_WIRE_STREAM_WINDOW, ProtocolError, compileDeploymentOptions, windowOfWire, windowToWire, StreamPump, chunkBytes, isStreamResult, windowFromWire, type StreamEndReason, type StreamWindow } from '../src/index.ts';

/** Runs queued promise callbacks and one macrotask turn. */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** A pump and a ChunkStream wired together in process, the way a local replica's stream is. */
function pair(gen: AsyncIterator<unknown>, window: StreamWindow = { chunks: 4, bytes: 1 << 20 }) {
  const ends: Array<{ error: Error | undefined; reason: StreamEndReason }> = [];
  const credits: number[] = [];
  let stream!: ChunkStream;
  const pump = new StreamPump(gen, window, {
    chunk: (v) => stream.push([v]),
    done: (error, reason) => { ends.push({ error, reason }); if (reason === 'complete') stream.end(); else if (reason === 'error') stream.fail(error!); },
  });
  stream = new ChunkStream({ credit: (n) => { credits.push(n); pump.credit(n); }, cancel: (reason) => pump.cancel(reason) }, window);
  pump.start();
  return { pump, stream, ends, credits };
}

/** A generator that counts what it produced and whether its finally ran. */
function counting(limit = Number.POSITIVE_INFINITY) {
  const state = { produced: 0, finallyRan: false };
  async function* gen(): AsyncGenerator<number> {
    try {
      while (state.produced < limit) yield state.produced++;
    } finally {
      state.finallyRan = true;
    }
  }
  return { state, it: gen() };
}

describe('StreamPump and ChunkStream', () => {
  it('delivers every chunk in order, then done, crediting as the consumer reads', async () => {
    const { state, it } = counting(10);
    const { stream, ends, credits } = pair(it);
    const got: unknown[] = [];
    for await (const v of stream) got.push(v);
    expect(got).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(ends).toEqual([{ error: undefined, reason: 'complete' }]);
    expect(state.finallyRan).toBe(true);
    expect(credits.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(6);
  });

  it('stops pulling the generator while the consumer takes nothing: at most one window produced ahead', async () => {
    const { state, it } = counting();
    const { stream, pump } = pair(it, { chunks: 4, bytes: 1 << 20 });
    for (let i = 0; i < 20; i++) await settle();
    expect(state.produced).toBe(4);
    expect(stream.buffered).toBe(4);
    expect(pump.outstanding).toBe(4);
    // Taking one gives no credit yet (credit goes back by half windows, or when the buffer runs dry).
    await stream.next();
    for (let i = 0; i < 5; i++) await settle();
    expect(state.produced).toBe(4);
    await stream.next();
    for (let i = 0; i < 5; i++) await settle();
    expect(state.produced).toBe(6);
    expect(pump.outstanding).toBe(4);
  });

  it('bounds the bytes ahead too: one large chunk always goes, then the window is full', async () => {
    async function* big(): AsyncGenerator<string> { for (;;) yield 'x'.repeat(600); }
    const { stream, pump } = pair(big(), { chunks: 100, bytes: 1000 });
    for (let i = 0; i < 20; i++) await settle();
    expect(pump.produced).toBe(2);
    expect(stream.buffered).toBe(2);
    stream.cancel(new CancelledError('done'));
  });

  it('break out of for-await cancels: the generator\'s finally runs, no more chunks are pulled', async () => {
    const { state, it } = counting();
    const { stream, ends } = pair(it);
    for await (const v of stream) if (v === 2) break;
    await settle();
    expect(state.finallyRan).toBe(true);
    expect(ends.map((e) => e.reason)).toEqual(['cancelled']);
    const after = state.produced;
    for (let i = 0; i < 5; i++) await settle();
    expect(state.produced).toBe(after);
  });

  it('an error mid-stream comes after the chunks produced before it, with the generator\'s error', async () => {
    async function* failing(): AsyncGenerator<number> { yield 1; yield 2; throw new Error('boom at 3'); }
    const { stream, ends } = pair(failing());
    const got: unknown[] = [];
    await expect((async () => { for await (const v of stream) got.push(v); })()).rejects.toThrow('boom at 3');
    expect(got).toEqual([1, 2]);
    expect(ends[0]!.reason).toBe('error');
  });

  it('cancel(reason) rejects a waiting consumer with the reason and tells onEnd listeners once', async () => {
    const never: AsyncIterator<unknown> = { next: () => new Promise(() => undefined), return: () => Promise.resolve({ done: true, value: undefined }) };
    const { stream } = pair(never);
    const seen: Array<[StreamEndReason, string | undefined, number]> = [];
    stream.onEnd((r, e, n) => seen.push([r, e?.message, n]));
    const waiting = stream.next();
    stream.cancel(new CancelledError('deadline'));
    stream.cancel(new CancelledError('again'));
    await expect(waiting).rejects.toThrow('deadline');
    expect(seen).toEqual([['cancelled', 'deadline', 0]]);
    // A listener added after the end is told at once.
    stream.onEnd((r) => seen.push([r, undefined, -1]));
    expect(seen[1]).toEqual(['cancelled', undefined, -1]);
  });

  it('nextBatch takes everything buffered at once; undefined at the end', async () => {
    const { it } = counting(6);
    const { stream } = pair(it, { chunks: 8, bytes: 1 << 20 });
    for (let i = 0; i < 10; i++) await settle();
    expect(await stream.nextBatch()).toEqual([0, 1, 2, 3, 4, 5]);
    expect(await stream.nextBatch()).toBeUndefined();
  });

  it('one consumer at a time: a second next() while one waits is refused', async () => {
    const never: AsyncIterator<unknown> = { next: () => new Promise(() => undefined) };
    const { stream } = pair(never);
    const first = stream.next();
    await expect(stream.next()).rejects.toBeInstanceOf(ProtocolError);
    stream.cancel(new CancelledError('end'));
    await expect(first).rejects.toThrow('end');
  });

  it('a consumer that waits hands back credit it held, so the producer is never stuck (window 1)', async () => {
    const { it } = counting(5);
    const { stream } = pair(it, { chunks: 1, bytes: 1 << 20 });
    const got: unknown[] = [];
    for await (const v of stream) got.push(v);
    expect(got).toEqual([0, 1, 2, 3, 4]);
  });
});

describe('per-request costs', () => {
  it('the default window travels as one frozen tuple, and reads back as the default object', () => {
    expect(windowToWire(DEFAULT_STREAM_WINDOW)).toBe(DEFAULT_WIRE_STREAM_WINDOW);
    expect(Object.isFrozen(DEFAULT_WIRE_STREAM_WINDOW)).toBe(true);
    expect(windowOfWire(DEFAULT_WIRE_STREAM_WINDOW)).toBe(DEFAULT_STREAM_WINDOW);
    expect(windowToWire({ chunks: 3, bytes: 9 })).toEqual([3, 9]);
    expect(windowOfWire([3, 9])).toEqual({ chunks: 3, bytes: 9 });
  });

  it('credit for a buffer that runs dry goes back once per tick, not once per chunk taken', async () => {
    const credits: number[] = [];
    const stream = new ChunkStream({ credit: (n) => credits.push(n), cancel: () => undefined }, { chunks: 64, bytes: 1 << 20 });
    // A chunk at a time, each taken at once (a fast consumer): the buffer runs dry after every take.
    // Within one tick (as a relay taking from chunk messages of one read does):
    const taken: Array<Promise<IteratorResult<unknown>>> = [];
    for (let i = 0; i < 5; i++) { stream.push([i]); taken.push(stream.next()); }
    expect(credits).toEqual([]);
    expect((await Promise.all(taken)).map((r) => r.value)).toEqual([0, 1, 2, 3, 4]);
    await settle();
    expect(credits).toEqual([5]);
  });
});

describe('StreamPump idle bound (streamIdleTimeoutMs)', () => {
  it('a consumer that grants no credit while the pump waits for it gets expired(); credit in time disarms it', async () => {
    const { state, it: gen } = counting();
    let expired = 0;
    let stream!: ChunkStream;
    const pump = new StreamPump(gen as AsyncIterator<unknown>, { chunks: 2, bytes: 1 << 20 }, {
      chunk: (v) => stream.push([v]),
      done: (error, reason) => { if (reason === 'cancelled') stream.cancel(error!); },
    }, { ms: 30, expired: () => { expired++; pump.cancel(new CancelledError('idle')); } });
    stream = new ChunkStream({ credit: (n) => pump.credit(n), cancel: (r) => pump.cancel(r) }, { chunks: 2, bytes: 1 << 20 });
    pump.start();
    // Read steadily for a while: each take gives credit back, so the bound never fires.
    for (let i = 0; i < 20; i++) expect((await stream.next()).value).toBe(i);
    expect(expired).toBe(0);
    // Then stop reading: out of credit, the pump waits; the bound ends it and the generator's finally runs.
    await new Promise<void>((resolve) => { const t = setInterval(() => { if (expired > 0) { clearInterval(t); resolve(); } }, 5); });
    expect(pump.over).toBe(true);
    await settle();
    expect(state.finallyRan).toBe(true);
  });

  it('the deployment option is validated with its path and set only when above 0', () => {
    expect(compileDeploymentOptions({ streamIdleTimeoutMs: 5000 }, 'D').streamIdleTimeoutMs).toBe(5000);
    expect('streamIdleTimeoutMs' in compileDeploymentOptions({}, 'D')).toBe(false);
    expect(() => compileDeploymentOptions({ streamIdleTimeoutMs: -1 }, 'D')).toThrow(/streamIdleTimeoutMs/);
  });
});

describe('ChunkStream enforces the window it granted', () => {
  it('a producer past its window (plus one message) fails the stream with a ProtocolError naming it, and is cancelled', async () => {
    const cancels: Error[] = [];
    const credits: number[] = [];
    const stream = new ChunkStream({ credit: (n) => credits.push(n), cancel: (r) => cancels.push(r) }, { chunks: 4, bytes: 1 << 20 });
    stream.push([0, 1, 2, 3]);
    // One message of slack past the window: still taken.
    stream.push([4]);
    expect(stream.buffered).toBe(5);
    expect(cancels).toEqual([]);
    stream.push([5, 6]);
    expect(cancels).toHaveLength(1);
    expect(cancels[0]).toBeInstanceOf(ProtocolError);
    expect(cancels[0]!.message).toMatch(/window of 4 chunks: 7 sent and not credited back/);
    // The chunks within the window are still read, then the error.
    const got: unknown[] = [];
    const err = await (async () => { try { for await (const v of stream) got.push(v); } catch (e) { return e; } return undefined; })();
    expect(got).toEqual([0, 1, 2, 3, 4]);
    expect(err).toBe(cancels[0]);
  });

  it('credit given back makes room: a producer that keeps within its window is never refused', async () => {
    const cancels: Error[] = [];
    const stream = new ChunkStream({ credit: () => undefined, cancel: (r) => cancels.push(r) }, { chunks: 2, bytes: 1 << 20 });
    for (let i = 0; i < 50; i++) {
      stream.push([i, i]);
      expect((await stream.next()).value).toBe(i);
      expect((await stream.next()).value).toBe(i);
    }
    expect(cancels).toEqual([]);
  });
});

describe('stream helpers', () => {
  it('isStreamResult: async iterables other than arrays, strings and bytes', () => {
    async function* g(): AsyncGenerator<number> { yield 1; }
    expect(isStreamResult(g())).toBe(true);
    expect(isStreamResult({ [Symbol.asyncIterator]: () => ({ next: async () => ({ done: true, value: undefined }) }) })).toBe(true);
    for (const v of [[1, 2], 'abc', Buffer.from('x'), new Float32Array(2), { a: 1 }, null, 3, undefined]) expect(isStreamResult(v)).toBe(false);
  });

  it('chunkBytes: exact for strings and bytes, an estimate for structures', () => {
    expect(chunkBytes('hello')).toBe(5);
    expect(chunkBytes(new Float32Array(4))).toBe(16);
    expect(chunkBytes(7)).toBe(8);
    expect(chunkBytes({ token: 'abc', ids: [1, 2] })).toBeGreaterThan(10);
  });

  it('windowFromWire names the field and the bad value', () => {
    expect(windowFromWire('s', [16, 1024])).toEqual({ chunks: 16, bytes: 1024 });
    // Capped below the connection's frame bound, so what is sent ahead fits the frames carrying it.
    expect(windowFromWire('s', [16, 8 << 20], 1 << 20)).toEqual({ chunks: 16, bytes: 1 << 20 });
    expect(() => windowFromWire('call message field s', [0, 1024])).toThrow(/call message field s\[0\] \(chunks\) must be an integer in \[1, 4096\], got 0/);
    expect(() => windowFromWire('s', [16, -1])).toThrow(/s\[1\] \(bytes\).*got -1/);
    expect(() => windowFromWire('s', { chunks: 1 })).toThrow(/s must be \[chunks, bytes\]/);
  });
});
