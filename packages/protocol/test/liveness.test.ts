/**
 * Peer liveness over real sockets on 127.0.0.1: pings every intervalMs, and a peer silent for timeoutMs is
 * terminated so nothing waits on it. Real timers with short periods; the bounds are generous, since the machine
 * running the tests is shared.
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type Server as NetServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { BackpressureError, InvalidOptionError, PeerGoneError, isNotRun, toWireError } from '@shoal/core';
import { Peer, type PeerOptions } from '../src/index.ts';
import { recordingLogger, startServer, wsPair, type LogLine, type Server } from './ws-pair.ts';

const LIVENESS = { intervalMs: 50, timeoutMs: 300 };

let server: Server;
beforeEach(async () => { server = await startServer(); });
afterEach(async () => { await server.close(); });

function peer(ws: WebSocket, opts: Partial<PeerOptions> = {}): Peer {
  return new Peer(ws, { name: 'remote', maxFrameBytes: 1 << 20, logger: recordingLogger(), onMessage: () => {}, ...opts });
}

/** A peer that answers every call with its first argument. */
function echo(ws: WebSocket, opts: Partial<PeerOptions> = {}): Peer {
  return peer(ws, { ...opts, onMessage: (m, p) => { if (m.t === 'call') p.reply(m.id, m.args[0]); } });
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function settle<T>(p: Promise<T>): Promise<{ ok: true; value: T; at: number } | { ok: false; error: Error; at: number }> {
  try { const value = await p; return { ok: true, value, at: performance.now() }; } catch (error) { return { ok: false, error: error as Error, at: performance.now() }; }
}

const call = (p: Peer, arg: unknown = 1): Promise<unknown> => p.call({ t: 'call', replicaId: 'r', method: 'm', args: [arg] });

/**
 * A TCP server that completes the WebSocket handshake and then goes silent: it never reads again, so it never
 * answers a ping, and never closes.
 */
async function silentWebSocketServer(): Promise<{ url: string; close(): Promise<void> }> {
  const sockets: Socket[] = [];
  const srv: NetServer = createServer((socket) => {
    sockets.push(socket);
    let head = '';
    const onData = (chunk: Buffer): void => {
      head += chunk.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      socket.off('data', onData);
      socket.pause();
      const key = /sec-websocket-key:\s*(\S+)/i.exec(head)?.[1] ?? '';
      const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
    };
    socket.on('data', onData);
    socket.on('error', () => undefined);
  });
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  return {
    url: `ws://127.0.0.1:${(srv.address() as AddressInfo).port}`,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => srv.close(() => resolve()));
    },
  };
}

function warned(lines: LogLine[], msg: string): LogLine | undefined {
  return lines.find((l) => l.level === 'warn' && l.msg.includes(msg));
}

describe('Peer liveness', () => {
  it('terminates a peer whose other side stops reading after about timeoutMs, rejecting what is pending with ERR_PEER_GONE naming the timeout', async () => {
    const [c, s] = await wsPair(server);
    echo(s);
    const logger = recordingLogger();
    const closes: PeerGoneError[] = [];
    const client = peer(c, { liveness: LIVENESS, logger, onClose: (err) => closes.push(err) });
    expect(await call(client, 'alive')).toBe('alive');
    // The other side stops reading (stopped, or cut off): no more pongs, no answers, and no close either.
    s.pause();
    const start = performance.now();
    const pending = [settle(call(client, 1)), settle(call(client, 2))];
    const results = await Promise.all(pending);
    for (const r of results) {
      expect(r.ok).toBe(false);
      const err = (r as { error: Error }).error;
      expect(err).toBeInstanceOf(PeerGoneError);
      expect(toWireError(err).code).toBe('ERR_PEER_GONE');
      expect(err.message).toMatch(/terminated: nothing received for \d+ ms \(liveness timeout 300 ms\)/);
      // It was sent and may have run: not marked for a retry elsewhere.
      expect(isNotRun(err)).toBe(false);
    }
    const took = results[0]!.at - start;
    expect(took).toBeGreaterThanOrEqual(LIVENESS.timeoutMs - 60); // the last thing heard was the answer just before
    expect(took).toBeLessThan(LIVENESS.timeoutMs + 1500);
    expect(client.closed).toBe(true);
    expect(client.pendingCount).toBe(0);
    expect(closes).toHaveLength(1);
    expect(closes[0]!.message).toContain('liveness timeout 300 ms');
    expect(warned(logger.lines, 'liveness timeout')?.fields).toMatchObject({ peer: 'remote', timeoutMs: 300 });
    // The socket is gone on this side too.
    if (c.readyState !== WebSocket.CLOSED) await once(c, 'close');
  });

  it('terminates a connection to a server that completed the handshake and then went silent', async () => {
    const silent = await silentWebSocketServer();
    try {
      const ws = new WebSocket(silent.url, { perMessageDeflate: false });
      await once(ws, 'open');
      const client = peer(ws, { liveness: LIVENESS });
      const start = performance.now();
      const r = await settle(call(client));
      expect(r.ok).toBe(false);
      expect((r as { error: Error }).error).toBeInstanceOf(PeerGoneError);
      expect((r as { error: Error }).error.message).toContain('liveness timeout 300 ms');
      expect(r.at - start).toBeGreaterThanOrEqual(LIVENESS.timeoutMs - 60);
      expect(r.at - start).toBeLessThan(LIVENESS.timeoutMs + 1500);
    } finally {
      await silent.close();
    }
  });

  it('watchLiveness() starts the checks on a peer made without them (the head sends the periods in welcome)', async () => {
    const [c, s] = await wsPair(server);
    echo(s);
    const client = peer(c);
    s.pause();
    const held = settle(call(client));
    await sleep(LIVENESS.timeoutMs * 2);
    expect(client.closed).toBe(false); // no checks yet: it waits, as before
    client.watchLiveness(LIVENESS);
    const r = await held;
    expect(r.ok).toBe(false);
    expect((r as { error: Error }).error.message).toContain('liveness timeout 300 ms');
  });

  it('never terminates a live peer, over many timeouts, idle or busy, with checks on both sides', async () => {
    const [c, s] = await wsPair(server);
    const serverPeer = echo(s, { liveness: LIVENESS });
    const client = echo(c, { liveness: LIVENESS });
    // Idle: only pings and pongs cross, for about eight timeouts.
    for (let i = 0; i < 8; i++) {
      await sleep(LIVENESS.timeoutMs);
      expect(client.closed).toBe(false);
      expect(serverPeer.closed).toBe(false);
      expect(client.silentMs).toBeLessThan(LIVENESS.timeoutMs);
    }
    // Busy: calls both ways for a few more timeouts.
    const until = performance.now() + 3 * LIVENESS.timeoutMs;
    let n = 0;
    while (performance.now() < until) {
      expect(await call(client, n)).toBe(n);
      expect(await call(serverPeer, n + 1000)).toBe(n + 1000);
      n++;
      if (n % 50 === 0) await sleep(5);
    }
    expect(n).toBeGreaterThan(10);
    expect(client.closed).toBe(false);
    expect(serverPeer.closed).toBe(false);
  });

  it('never terminates a live peer that has no checks of its own (ws answers pings by itself)', async () => {
    const [c, s] = await wsPair(server);
    echo(s);
    const client = peer(c, { liveness: LIVENESS });
    await sleep(8 * LIVENESS.timeoutMs);
    expect(client.closed).toBe(false);
    expect(await call(client, 'still')).toBe('still');
  });

  it('does not count its own stalled event loop against the peer', async () => {
    const [c, s] = await wsPair(server);
    echo(s);
    const logger = recordingLogger();
    const client = peer(c, { liveness: LIVENESS, logger });
    await sleep(2 * LIVENESS.intervalMs);
    // This process does not run for three timeouts (a long GC, a blocked loop): the peer's pongs wait unread.
    const end = performance.now() + 3 * LIVENESS.timeoutMs;
    while (performance.now() < end) { /* busy */ }
    await sleep(2 * LIVENESS.timeoutMs);
    expect(client.closed).toBe(false);
    expect(warned(logger.lines, 'liveness timeout')).toBeUndefined();
    expect(await call(client, 'ok')).toBe('ok');
    // And it still finds a peer that really stops after that.
    s.pause();
    const r = await settle(call(client));
    expect((r as { error: Error }).error?.message).toContain('liveness timeout 300 ms');
  });

  it('finds a peer that stops reading while this side is paused on replies it owes that peer', async () => {
    const MiB = 1 << 20;
    const [c, s] = await wsPair(server);
    const answering = peer(s, {
      liveness: LIVENESS,
      maxFrameBytes: 4 * MiB,
      highWaterBytes: MiB,
      onMessage: (m, p) => { if (m.t === 'call') p.reply(m.id, Buffer.alloc(MiB, 1)); },
    });
    const caller = peer(c, { maxFrameBytes: 4 * MiB, highWaterBytes: 64 * MiB }); // never answers
    // The answering side has a request of its own pending at the caller.
    const own = settle(answering.call({ t: 'call', replicaId: 'r', method: 'm', args: [] }));
    await sleep(20);
    // The caller asks for far more than the kernel buffers hold, and stops reading (it was SIGSTOPped).
    const asked = Array.from({ length: 48 }, () => settle(call(caller)));
    c.pause();
    // The answering side owes more than its mark and stops reading too.
    for (let i = 0; i < 200 && !answering.readingPaused; i++) await sleep(10);
    expect(answering.readingPaused).toBe(true);
    const r = await Promise.race([own, sleep(LIVENESS.timeoutMs + 2000).then(() => undefined)]);
    expect(r).toBeDefined();
    expect(answering.closed).toBe(true);
    expect((r as { error: Error }).error.message).toContain('liveness timeout');
    c.terminate();
    await Promise.all(asked);
  });

  it('rejects liveness periods that cannot work, naming the option and both values', async () => {
    const [c] = await wsPair(server);
    for (const bad of [{ intervalMs: 0, timeoutMs: 300 }, { intervalMs: 100, timeoutMs: 100 }, { intervalMs: 200, timeoutMs: 100 }, { intervalMs: Number.NaN, timeoutMs: 100 }]) {
      let err: unknown;
      try { peer(c, { liveness: bad }); } catch (e) { err = e; }
      expect(err).toBeInstanceOf(InvalidOptionError);
      expect((err as Error).message).toContain('liveness');
      expect((err as Error).message).toContain(`intervalMs=${bad.intervalMs} timeoutMs=${bad.timeoutMs}`);
    }
    const p = peer(c);
    expect(() => p.watchLiveness({ intervalMs: 10, timeoutMs: 5 })).toThrow(InvalidOptionError);
  });

  describe('refusals before anything is sent are marked not-run', () => {
    it('a request to a peer closed locally, remotely, or by the liveness check rejects with ERR_PEER_GONE marked not-run', async () => {
      // Closed locally.
      const [c1, s1] = await wsPair(server);
      echo(s1);
      const local = peer(c1);
      local.close(1000, 'shutting down');
      const a = await settle(call(local));
      expect((a as { error: Error }).error).toBeInstanceOf(PeerGoneError);
      expect(isNotRun((a as { error: Error }).error)).toBe(true);
      expect((a as { error: Error }).error.message).toContain('request not sent');

      // Closed by the other side.
      const [c2, s2] = await wsPair(server);
      const remote = peer(c2);
      s2.close(1001, 'going away');
      await once(c2, 'close');
      const b = await settle(call(remote));
      expect((b as { error: Error }).error).toBeInstanceOf(PeerGoneError);
      expect(isNotRun((b as { error: Error }).error)).toBe(true);
      expect((b as { error: Error }).error.message).toContain('going away');

      // Terminated for silence: what was pending may have run, what comes after was never sent.
      const [c3, s3] = await wsPair(server);
      echo(s3);
      const watched = peer(c3, { liveness: LIVENESS });
      s3.pause();
      const inFlight = await settle(call(watched));
      expect(isNotRun((inFlight as { error: Error }).error)).toBe(false);
      const after = await settle(call(watched));
      expect((after as { error: Error }).error).toBeInstanceOf(PeerGoneError);
      expect(isNotRun((after as { error: Error }).error)).toBe(true);
      expect((after as { error: Error }).error.message).toContain('liveness timeout 300 ms');
    });

    it('a pending request rejected by a close is not marked: it was sent', async () => {
      const [c, s] = await wsPair(server);
      peer(s); // never answers
      const client = peer(c);
      const held = settle(call(client));
      await sleep(20);
      s.close();
      const r = await held;
      expect((r as { error: Error }).error).toBeInstanceOf(PeerGoneError);
      expect(isNotRun((r as { error: Error }).error)).toBe(false);
    });

    it('a BackpressureError refusal on a congested connection is marked not-run', async () => {
      const [c, s] = await wsPair(server);
      echo(s);
      const client = peer(c, { highWaterBytes: 1 });
      const first = settle(call(client, 'queued')); // its bytes sit in this tick's outbox: past the mark of 1
      const refused = await settle(call(client, 'refused'));
      expect(refused.ok).toBe(false);
      const err = (refused as { error: Error }).error;
      expect(err).toBeInstanceOf(BackpressureError);
      expect(toWireError(err)).toMatchObject({ code: 'ERR_BACKPRESSURE', httpStatus: 503 });
      expect(err.message).toContain('highWaterBytes=1');
      expect(isNotRun(err)).toBe(true);
      expect(client.refusals).toBe(1);
      // The one that went is answered; the connection is fine.
      expect(await first).toMatchObject({ ok: true, value: 'queued' });
      expect(client.closed).toBe(false);
    });
  });
});
