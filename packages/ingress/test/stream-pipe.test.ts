/** pipeChunks and the HTTP framing: a writer that reports a full buffer stops the taking of chunks, so the producer pauses. */
import { describe, expect, it } from 'vitest';
import { ChunkStream, StreamPump, UserCodeError } from '@shoal/core';
import { chunkedBytes, chunkedContentType, framingFor, gatheredBody, pipeChunks, sseError, sseEvent, SSE_END, type ChunkWriter } from '../src/index.ts';

const settle = async (n = 10): Promise<void> => { for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r)); };

function infinite(): { produced: () => number; it: AsyncGenerator<number> } {
  let n = 0;
  async function* gen(): AsyncGenerator<number> { for (;;) yield n++; }
  return { produced: () => n, it: gen() };
}

function local(it: AsyncIterator<unknown>, chunks: number): ChunkStream {
  let stream!: ChunkStream;
  const pump = new StreamPump(it, { chunks, bytes: 1 << 20 }, {
    chunk: (v) => stream.push([v]),
    done: (err, reason) => { if (reason === 'complete') stream.end(); else if (err !== undefined) stream.fail(err); },
  });
  stream = new ChunkStream({ credit: (n) => pump.credit(n), cancel: (r) => pump.cancel(r) }, { chunks, bytes: 1 << 20 });
  pump.start();
  return stream;
}

describe('pipeChunks', () => {
  it('takes no chunk while the writer is full: the generator stops one window ahead, and resumes on drain', async () => {
    const { produced, it } = infinite();
    const stream = local(it, 4);
    const written: unknown[] = [];
    // Full at once, and again once 8 more chunks were written after the first release.
    let fullAfter = 0;
    let release!: () => void;
    const writer: ChunkWriter = {
      write: (cs) => { written.push(...cs); return written.length < fullAfter; },
      drained: () => new Promise<void>((r) => { release = r; }),
    };
    const piping = pipeChunks(stream, writer);
    await settle();
    // One batch written (what was there), then the writer said full: one more window is produced, no more.
    const first = written.length;
    expect(first).toBeGreaterThan(0);
    expect(produced()).toBeLessThanOrEqual(first + 4);
    const atPause = produced();
    await settle();
    expect(produced()).toBe(atPause);
    fullAfter = written.length + 8;
    release();
    await settle();
    expect(produced()).toBeGreaterThan(atPause + 4);
    expect(produced()).toBeLessThanOrEqual(fullAfter + 4 + 4);
    // The client leaves while the pipe waits for drain: its writer's drained() resolves on close, as the ingress's does.
    stream.cancel(new Error('client left'));
    release();
    await expect(piping).rejects.toThrow('client left');
  });

  it('a writer that never drains does not hold the pipe past the stream\'s end (a deadline): it rejects with the stream\'s error', async () => {
    const { it: gen } = infinite();
    const stream = local(gen, 4);
    // Full at once, and never drains (a client that stopped reading).
    const piping = pipeChunks(stream, { write: () => false, drained: () => new Promise<void>(() => undefined) });
    await settle();
    stream.cancel(new Error('deadline exceeded'));
    await expect(piping).rejects.toThrow('deadline exceeded');
  });

  it('resolves at the end; a writer that throws cancels the stream (its generator stops) and rejects', async () => {
    async function* three(): AsyncGenerator<number> { yield 1; yield 2; yield 3; }
    const out: unknown[] = [];
    await pipeChunks(local(three(), 2), { write: (cs) => { out.push(...cs); return true; }, drained: async () => undefined });
    expect(out).toEqual([1, 2, 3]);

    let finallyRan = false;
    async function* guarded(): AsyncGenerator<number> { try { for (;;) yield 1; } finally { finallyRan = true; } }
    const s = local(guarded(), 2);
    await expect(pipeChunks(s, { write: () => { throw new TypeError('cannot frame'); }, drained: async () => undefined })).rejects.toThrow('cannot frame');
    await settle();
    expect(finallyRan).toBe(true);
  });
});

describe('stream framing', () => {
  it('chooses SSE from Accept, and frames chunks and ends', () => {
    expect(framingFor('text/event-stream')).toBe('sse');
    expect(framingFor(['application/json', 'text/event-stream;q=0.9'])).toBe('sse');
    expect(framingFor('*/*')).toBe('chunked');
    expect(framingFor(undefined)).toBe('chunked');
    expect(sseEvent({ tok: 'a' })).toBe('data: {"tok":"a"}\n\n');
    expect(sseEvent('line\nbreak')).toBe('data: "line\\nbreak"\n\n');
    expect(sseEvent(new Uint8Array([1, 2, 3]))).toBe('data: "AQID"\n\n');
    expect(SSE_END).toBe('event: end\ndata: null\n\n');
    expect(sseError(new UserCodeError('boom'))).toBe('event: error\ndata: {"code":"ERR_USER_CODE","message":"boom"}\n\n');
    expect(chunkedBytes('raw')).toBe('raw');
    expect(chunkedBytes({ a: 1 })).toBe('{"a":1}\n');
    expect(chunkedContentType('x')).toMatch(/^text\/plain/);
    expect(chunkedContentType(Buffer.from('x'))).toBe('application/octet-stream');
    expect(chunkedContentType({})).toBe('application/x-ndjson');
    expect(gatheredBody(['a', 'b'])).toEqual({ contentType: 'text/plain; charset=utf-8', body: Buffer.from('ab') });
    expect(gatheredBody([{ i: 1 }, { i: 2 }]).body.toString()).toBe('{"i":1}\n{"i":2}\n');
  });
});
