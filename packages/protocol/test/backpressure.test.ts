/**
 * Flow control on a Peer over real sockets: a caller that stops reading cannot make the answering side buffer
 * without bound, and a requester past its high-water mark is refused with a typed, retryable error.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { WebSocket } from 'ws';
import { BackpressureError, InvalidOptionError, rebuildError, toWireError } from '@shoal/core';
import { decodeFrame, encodeMessage, Peer, type Message, type PeerOptions, type ReplyMessage } from '../src/index.ts';
import { recordingLogger, startServer, wsPair, type Server } from './ws-pair.ts';

const MiB = 1024 * 1024;

let server: Server;
beforeEach(async () => { server = await startServer(); });
afterEach(async () => { await server.close(); });

function peer(ws: WebSocket, opts: Partial<PeerOptions> = {}): Peer {
  return new Peer(ws, { name: 'test', maxFrameBytes: 4 * MiB, logger: recordingLogger(), onMessage: () => {}, ...opts });
}

/** Resolves once `done()` holds, checking every few ms; the test's own timeout bounds it. */
async function until(done: () => boolean): Promise<void> {
  while (!done()) await new Promise((resolve) => setTimeout(resolve, 2));
}

async function settle<T>(p: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  try { return { ok: true, value: await p }; } catch (error) { return { ok: false, error }; }
}

describe('Peer flow control', () => {
  it('stops reading while a caller does not read its replies, stays under the mark, and loses nothing', async () => {
    const highWaterBytes = 4 * MiB;
    const reply = Buffer.alloc(MiB, 7);
    // More replies than the kernel's socket buffers (a few MiB on loopback) and the mark together can hold.
    const requests = 64;
    const [c, s] = await wsPair(server);
    let handled = 0;
    let maxBuffered = 0;
    const answering = peer(s, {
      highWaterBytes,
      onMessage: (m, p) => {
        if (m.t !== 'call') return;
        handled++;
        p.reply(m.id, reply);
        maxBuffered = Math.max(maxBuffered, p.bufferedBytes);
      },
    });

    // The raw caller: its socket stops reading before it asks anything.
    const answered = new Map<number, number>();
    c.on('message', (data: Buffer) => {
      for (const m of decodeFrame(data)) if (m.t === 'reply' && m.ok) answered.set(m.id, (answered.get(m.id) ?? 0) + 1);
    });
    c.pause();
    for (let id = 1; id <= requests; id++) c.send(encodeMessage({ t: 'call', id, replicaId: 'r', method: 'big', args: [] }));

    await until(() => answering.readingPaused || handled === requests);
    expect(answering.readingPaused).toBe(true);
    expect(answering.pauses).toBeGreaterThanOrEqual(1);
    expect(handled).toBeLessThan(requests);
    // What it has read but not answered waits, unanswered, in order.
    expect(answering.heldCount).toBeGreaterThan(0);
    expect(handled + answering.heldCount).toBeLessThanOrEqual(requests);
    // Never more than the mark plus the one reply that crossed it (and a ws frame header per frame).
    const oneReply = encodeMessage({ t: 'reply', id: requests, ok: true, value: reply }).byteLength + 14;
    expect(maxBuffered).toBeLessThanOrEqual(highWaterBytes + oneReply);
    expect(answering.bufferedBytes).toBeLessThanOrEqual(highWaterBytes + oneReply);

    c.resume();
    await until(() => answered.size === requests);
    expect(handled).toBe(requests);
    expect([...answered.keys()].sort((a, b) => a - b)).toEqual(Array.from({ length: requests }, (_, i) => i + 1));
    expect([...answered.values()].every((n) => n === 1)).toBe(true);
    expect(maxBuffered).toBeLessThanOrEqual(highWaterBytes + oneReply);
    expect(answering.heldCount).toBe(0);
    expect(answering.readingPaused).toBe(false);
    expect(answering.pauses).toBeGreaterThanOrEqual(1);
    expect(answering.closed).toBe(false);
  });

  it('refuses a new request on a congested connection with BackpressureError naming both numbers, and takes it after drain', async () => {
    const highWaterBytes = MiB;
    const [c, s] = await wsPair(server);
    const seen: Message[] = [];
    peer(s, {
      onMessage: (m, p) => {
        seen.push(m);
        if (m.t === 'call') p.reply(m.id, (m.args[0] as Buffer).byteLength);
      },
    });
    const client = peer(c, { highWaterBytes });
    // The answering side reads nothing, so what the client sends piles up past the kernel's buffers.
    s.pause();
    const args = [Buffer.alloc(256 * 1024)];
    const accepted: Array<Promise<ReplyMessage>> = [];
    for (let i = 0; i < 400 && !client.congested; i++) accepted.push(client.request({ t: 'call', replicaId: 'r', method: 'size', args }));
    expect(client.congested).toBe(true);
    const buffered = client.bufferedBytes;
    expect(buffered).toBeGreaterThan(highWaterBytes);

    const refused = await settle(client.request({ t: 'call', replicaId: 'r', method: 'size', args }));
    expect(refused.ok).toBe(false);
    const err = (refused as { error: BackpressureError }).error;
    expect(err).toBeInstanceOf(BackpressureError);
    expect(err.code).toBe('ERR_BACKPRESSURE');
    expect(err.httpStatus).toBe(503);
    expect(err.message).toBe(`connection to test is congested: buffered=${buffered} bytes, highWaterBytes=${highWaterBytes}`);
    expect(err.details).toMatchObject({ bufferedBytes: buffered, highWaterBytes });
    expect(err.details?.retryAfterMs).toBeGreaterThan(0);
    expect(client.refusals).toBe(1);
    // It crosses processes as itself.
    expect(rebuildError(toWireError(err))).toBeInstanceOf(BackpressureError);
    // Cancels are never refused: they free the other side.
    client.send({ t: 'cancel', id: 999_999 });
    // The requester never stops reading for its own requests, or two peers could wait on each other for good.
    expect(client.readingPaused).toBe(false);

    s.resume();
    const replies = await Promise.all(accepted);
    expect(replies.every((r) => r.ok && r.value === args[0]!.byteLength)).toBe(true);
    expect(client.congested).toBe(false);
    expect(await client.call({ t: 'call', replicaId: 'r', method: 'size', args })).toBe(args[0]!.byteLength);
    expect(seen.filter((m) => m.t === 'call')).toHaveLength(accepted.length + 1);
    expect(seen.some((m) => m.t === 'cancel' && m.id === 999_999)).toBe(true);
    expect(client.pauses).toBe(0);
    expect(client.pendingCount).toBe(0);
  });

  it('does not reuse the id of a refused request', async () => {
    const [c, s] = await wsPair(server);
    peer(s);
    const client = peer(c, { highWaterBytes: MiB });
    s.pause();
    const args = [Buffer.alloc(256 * 1024)];
    for (let i = 0; i < 400 && !client.congested; i++) void client.request({ t: 'call', replicaId: 'r', method: 'size', args }).catch(() => undefined);
    const refused = client.requestWithId({ t: 'call', replicaId: 'r', method: 'size', args });
    await expect(refused.reply).rejects.toBeInstanceOf(BackpressureError);
    client.terminate('test over');
    const next = client.requestWithId({ t: 'health', replicaId: 'r', timeoutMs: 1 });
    await expect(next.reply).rejects.toThrow(/terminated/);
    expect(next.id).toBe(refused.id + 1);
  });

  it('rejects a highWaterBytes that is not a positive integer, naming the option', async () => {
    const [c] = await wsPair(server);
    for (const bad of [0, -1, 1.5, Number.NaN]) {
      let err: unknown;
      try { peer(c, { highWaterBytes: bad }); } catch (e) { err = e; }
      expect(err).toBeInstanceOf(InvalidOptionError);
      expect((err as Error).message).toContain('invalid option highWaterBytes');
    }
  });
});
