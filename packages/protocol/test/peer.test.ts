import { once } from 'node:events';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { WebSocket } from 'ws';
import { NotFoundError, PeerGoneError, ProtocolError, toWireError } from '@shoal/core';
import { encodeMessage, Peer, type Message, type PeerOptions, type ReplyMessage } from '../src/index.ts';
import { nextTick, recordingLogger, startServer, wsPair, type Server } from './ws-pair.ts';

let server: Server;
beforeEach(async () => { server = await startServer(); });
afterEach(async () => { await server.close(); });

function peer(ws: WebSocket, opts: Partial<PeerOptions> = {}): Peer {
  return new Peer(ws, { name: 'test', maxFrameBytes: 1 << 20, logger: recordingLogger(), onMessage: () => {}, ...opts });
}

/** A server peer that answers `call` with args[0] * 2 (or NotFoundError for method "missing") and reports q=7. */
function doublingServer(ws: WebSocket, seen: Message[] = [], opts: Partial<PeerOptions> = {}): Peer {
  return peer(ws, {
    ...opts,
    onMessage: (m, p) => {
      seen.push(m);
      if (m.t !== 'call') return;
      if (m.method === 'missing') p.replyError(m.id, toWireError(new NotFoundError('no method "missing"')), 7);
      else if (m.method === 'echo') p.reply(m.id, m.args[0]);
      else if (m.method !== 'hold') p.reply(m.id, (m.args[0] as number) * 2, 7);
    },
  });
}

function countFrames(ws: WebSocket): { frames: number } {
  const counter = { frames: 0 };
  ws.on('message', () => { counter.frames++; });
  return counter;
}

async function settle<T>(p: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  try { return { ok: true, value: await p }; } catch (error) { return { ok: false, error }; }
}

describe('Peer over a real WebSocket pair', () => {
  it('answers a request with the reply of the same id, carrying q', async () => {
    const [c, s] = await wsPair(server);
    doublingServer(s);
    const client = peer(c);
    const reply = await client.request({ t: 'call', replicaId: 'r', method: 'double', args: [21] });
    expect(reply).toMatchObject({ t: 'reply', ok: true, value: 42, q: 7 });
    expect(await client.call({ t: 'call', replicaId: 'r', method: 'double', args: [5] })).toBe(10);
    expect(client.pendingCount).toBe(0);
  });

  it('a value the codec cannot encode fails that one call, never the connection: a reply becomes an error reply, a request rejects', async () => {
    const [c, s] = await wsPair(server);
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic.self = cyclic;
    peer(s, { onMessage: (m, p) => { if (m.t === 'call') p.reply(m.id, m.method === 'cyclic' ? cyclic : 'fine', 3); } });
    const client = peer(c);
    const bad = await client.request({ t: 'call', replicaId: 'r', method: 'cyclic', args: [] });
    expect(bad).toMatchObject({ ok: false, q: 3, error: { code: 'ERR_ENCODE', name: 'ProtocolError', httpStatus: 500 } });
    expect((bad as { error: { message: string } }).error.message).toMatch(/cannot encode "reply" message for test: Maximum call stack/);
    const err = await client.request({ t: 'call', replicaId: 'r', method: 'x', args: [cyclic] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProtocolError);
    expect((err as ProtocolError).code).toBe('ERR_ENCODE');
    expect(client.pendingCount).toBe(0);
    // Both ends go on serving.
    expect(await client.call({ t: 'call', replicaId: 'r', method: 'ok', args: [] })).toBe('fine');
    expect(client.closed).toBe(false);
  });

  it('rebuilds a remote error into its class', async () => {
    const [c, s] = await wsPair(server);
    doublingServer(s);
    const client = peer(c);
    const err = await client.call({ t: 'call', replicaId: 'r', method: 'missing', args: [] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotFoundError);
    expect((err as NotFoundError).code).toBe('ERR_NOT_FOUND');
    expect((err as Error).message).toContain('no method "missing"');
  });

  it('matches concurrent replies to their requests by id', async () => {
    const [c, s] = await wsPair(server);
    doublingServer(s);
    const client = peer(c);
    const values = await Promise.all(Array.from({ length: 50 }, (_, i) => client.call({ t: 'call', replicaId: 'r', method: 'double', args: [i] })));
    expect(values).toEqual(Array.from({ length: 50 }, (_, i) => i * 2));
  });

  it('carries Buffers and typed arrays through a real connection as the same types', async () => {
    const [c, s] = await wsPair(server);
    doublingServer(s);
    const client = peer(c);
    const value = await client.call({ t: 'call', replicaId: 'r', method: 'echo', args: [{ b: Buffer.from([1, 2]), f: new Float32Array([0.5, 1.5]) }] }) as { b: Buffer; f: Float32Array };
    expect(Buffer.isBuffer(value.b)).toBe(true);
    expect([...value.b]).toEqual([1, 2]);
    expect(value.f).toBeInstanceOf(Float32Array);
    expect([...value.f]).toEqual([0.5, 1.5]);
  });

  it('coalesces the messages of one tick into one frame, both ways', async () => {
    const [c, s] = await wsPair(server);
    const seen: Message[] = [];
    doublingServer(s, seen);
    const client = peer(c);
    const framesAtServer = countFrames(s);
    const framesAtClient = countFrames(c);

    const first = Array.from({ length: 10 }, (_, i) => client.call({ t: 'call', replicaId: 'r', method: 'double', args: [i] }));
    client.send({ t: 'cancel', id: 999 });
    expect(await Promise.all(first)).toEqual(Array.from({ length: 10 }, (_, i) => i * 2));
    expect(framesAtServer.frames).toBe(1);
    expect(seen).toHaveLength(11);
    // The server answered all ten while handling one frame, so the replies share one frame too.
    expect(framesAtClient.frames).toBe(1);

    const second = Array.from({ length: 3 }, (_, i) => client.call({ t: 'call', replicaId: 'r', method: 'double', args: [i] }));
    await Promise.all(second);
    expect(framesAtServer.frames).toBe(2);
    expect(framesAtClient.frames).toBe(2);
  });

  it('rejects every pending request with PeerGoneError when the other side closes', async () => {
    const [c, s] = await wsPair(server);
    const serverPeer = doublingServer(s);
    const closes: PeerGoneError[] = [];
    const client = peer(c, { onClose: (err) => closes.push(err) });
    const held = Array.from({ length: 5 }, () => settle(client.call({ t: 'call', replicaId: 'r', method: 'hold', args: [] })));
    await nextTick();
    await nextTick();
    expect(client.pendingCount).toBe(5);
    serverPeer.close(1001, 'going away');
    const results = await Promise.all(held);
    for (const r of results) {
      expect(r.ok).toBe(false);
      expect((r as { error: unknown }).error).toBeInstanceOf(PeerGoneError);
      expect(((r as { error: PeerGoneError }).error).code).toBe('ERR_PEER_GONE');
    }
    expect(((results[0] as { error: Error }).error).message).toMatch(/closed \(code 1001: going away\) with 5 requests pending/);
    expect(client.pendingCount).toBe(0);
    expect(client.closed).toBe(true);
    expect(closes).toHaveLength(1);
    // After the close nothing can hang: new requests fail at once, send throws.
    await expect(client.request({ t: 'health', replicaId: 'r', timeoutMs: 1 })).rejects.toBeInstanceOf(PeerGoneError);
    expect(() => client.send({ t: 'cancel', id: 1 })).toThrow(PeerGoneError);
  });

  it('rejects pending requests when the other side drops without a close handshake', async () => {
    const [c, s] = await wsPair(server);
    doublingServer(s);
    const client = peer(c);
    const held = settle(client.call({ t: 'call', replicaId: 'r', method: 'hold', args: [] }));
    await nextTick();
    s.terminate();
    const r = await held;
    expect(r.ok).toBe(false);
    expect((r as { error: unknown }).error).toBeInstanceOf(PeerGoneError);
  });

  it('rejects its own pending requests when closed locally', async () => {
    const [c, s] = await wsPair(server);
    doublingServer(s);
    const client = peer(c);
    const held = settle(client.call({ t: 'call', replicaId: 'r', method: 'hold', args: [] }));
    client.close();
    const r = await held;
    expect((r as { error: unknown }).error).toBeInstanceOf(PeerGoneError);
    expect(client.pendingCount).toBe(0);
  });

  it('refuses to send a frame larger than maxFrameBytes with a typed error, and still sends the rest', async () => {
    const [c, s] = await wsPair(server);
    const seen: Message[] = [];
    doublingServer(s, seen);
    const logger = recordingLogger();
    const client = peer(c, { maxFrameBytes: 2048, logger });
    const big = settle(client.call({ t: 'call', replicaId: 'r', method: 'echo', args: [Buffer.alloc(4096)] }));
    const small = client.call({ t: 'call', replicaId: 'r', method: 'double', args: [4] });
    const r = await big;
    expect(r.ok).toBe(false);
    const err = (r as { error: ProtocolError }).error;
    expect(err).toBeInstanceOf(ProtocolError);
    expect(err.code).toBe('ERR_FRAME_TOO_LARGE');
    expect(err.message).toMatch(/frame of \d+ bytes .* exceeds maxFrameBytes=2048/);
    expect(await small).toBe(8);
    expect(seen.map((m) => m.t === 'call' && m.method)).toEqual(['double']);
    expect(client.pendingCount).toBe(0);
    expect(logger.lines.some((l) => l.level === 'warn' && l.msg.includes('oversized'))).toBe(true);
  });

  it('answers the requester with ERR_FRAME_TOO_LARGE when its own reply is too large', async () => {
    const [c, s] = await wsPair(server);
    doublingServer(s, [], { maxFrameBytes: 2048 });
    const client = peer(c);
    const err = await client.call({ t: 'call', replicaId: 'r', method: 'echo', args: [Buffer.alloc(4096)] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProtocolError);
    expect((err as ProtocolError).code).toBe('ERR_FRAME_TOO_LARGE');
  });

  it('does not hang when the receiver refuses an oversized frame (ws maxPayload)', async () => {
    await server.close();
    server = await startServer({ maxPayload: 1024 });
    const [c, s] = await wsPair(server);
    doublingServer(s);
    const client = peer(c); // its own bound is larger than the server's
    const r = await settle(client.call({ t: 'call', replicaId: 'r', method: 'echo', args: [Buffer.alloc(4096)] }));
    expect(r.ok).toBe(false);
    expect((r as { error: unknown }).error).toBeInstanceOf(PeerGoneError);
    expect(((r as { error: Error }).error).message).toContain('1009');
  });

  it('closes with 1002 on a garbage frame and rejects its pending requests', async () => {
    const [c, s] = await wsPair(server);
    const logger = recordingLogger();
    const serverPeer = peer(s, { logger });
    const pending = settle(serverPeer.request({ t: 'health', replicaId: 'r', timeoutMs: 10 }));
    const closed = once(c, 'close');
    c.send(Buffer.from([0xc1, 0x00, 0x01]), { binary: true });
    const [code] = await closed as [number];
    expect(code).toBe(1002);
    const r = await pending;
    expect((r as { error: unknown }).error).toBeInstanceOf(PeerGoneError);
    expect(((r as { error: Error }).error).message).toContain('protocol error');
    expect(logger.lines.some((l) => l.msg.startsWith('bad frame'))).toBe(true);
  });

  it('closes with 1002 on a text frame', async () => {
    const [c, s] = await wsPair(server);
    const serverPeer = peer(s);
    const closed = once(c, 'close');
    c.send(encodeMessage({ t: 'cancel', id: 1 }).toString('latin1'));
    const [code] = await closed as [number];
    expect(code).toBe(1002);
    expect(serverPeer.closed).toBe(true);
  });

  it('drops a late reply to a forgotten request and keeps working', async () => {
    const [c, s] = await wsPair(server);
    const held: Array<{ id: number; p: Peer }> = [];
    peer(s, { onMessage: (m, p) => { if (m.t === 'call') { if (m.method === 'hold') held.push({ id: m.id, p }); else p.reply(m.id, 'ok'); } } });
    const client = peer(c);
    const { id, reply } = client.requestWithId({ t: 'call', replicaId: 'r', method: 'hold', args: [] });
    let settled = false;
    void reply.then(() => { settled = true; }, () => { settled = true; });
    while (held.length === 0) await nextTick();
    expect(held[0]!.id).toBe(id);
    expect(client.forget(id)).toBe(true);
    held[0]!.p.reply(id, 'late');
    expect(await client.call({ t: 'call', replicaId: 'r', method: 'now', args: [] })).toBe('ok');
    expect(settled).toBe(false);
    expect(client.pendingCount).toBe(0);
  });

  it('logs a throwing message handler instead of dropping the connection', async () => {
    const [c, s] = await wsPair(server);
    const logger = recordingLogger();
    let n = 0;
    peer(s, { logger, onMessage: (m, p) => { n++; if (m.t === 'call') { if (n === 1) throw new Error('handler bug'); p.reply(m.id, 'fine'); } } });
    const client = peer(c);
    client.send({ t: 'call', id: 1000, replicaId: 'r', method: 'x', args: [] });
    expect(await client.call({ t: 'call', replicaId: 'r', method: 'x', args: [] })).toBe('fine');
    expect(logger.lines.some((l) => l.level === 'error' && l.fields?.error === 'handler bug')).toBe(true);
  });

  it('passes non-reply messages and replies to unknown ids without resolving anything', async () => {
    const [c, s] = await wsPair(server);
    const got: Message[] = [];
    const serverPeer = peer(s, { onMessage: (m) => got.push(m) });
    const client = peer(c, { onMessage: (m) => got.push(m) });
    const stray: ReplyMessage = { t: 'reply', id: 12345, ok: true, value: 1 };
    serverPeer.send(stray);
    serverPeer.send({ t: 'routes', version: 1, table: {} });
    while (got.length === 0) await nextTick();
    expect(got).toEqual([{ t: 'routes', version: 1, table: {} }]);
    expect(client.closed).toBe(false);
  });
});
