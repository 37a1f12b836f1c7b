/**
 * The WebSocket front of a real Ingress on 127.0.0.1, over a real Router whose transport is a fake that answers
 * each request as a stream the test drives: the window each stream asks for, credit withheld while the client does
 * not read and granted again once it does, the in-flight and connection bounds from the options, a cancel message
 * and a closed socket cancelling at the replica, and shutdown closing the sockets.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { ChunkStream, compileDeploymentOptions, FakeClock, silentLogger, type AppSpec, type StreamWindow } from '@shoal/core';
import type { NewRequest, ReplyMessage } from '@shoal/protocol';
import { Router, type Dispatch, type ReplicaRef, type Transport } from '@shoal/router';
import { Ingress } from '../src/index.ts';
import type { WebSocketOptions } from '../src/ws-options.ts';

/** One dispatched request, which the test answers as a stream or with a value. */
interface Sent {
  message: NewRequest;
  cancels: number;
  credits: number;
  sourceCancels: Error[];
  stream: ChunkStream | undefined;
  start(chunks: unknown[]): ChunkStream;
  answer(value: unknown): void;
}

class StreamTransport implements Transport {
  readonly sent: Sent[] = [];
  /** Told of every credit a stream grants. */
  onCredit: ((s: Sent, n: number) => void) | undefined;

  dispatch(_replica: ReplicaRef, message: NewRequest): Dispatch {
    let resolve!: (r: ReplyMessage) => void;
    const reply = new Promise<ReplyMessage>((res) => { resolve = res; });
    const s: Sent = {
      message, cancels: 0, credits: 0, sourceCancels: [], stream: undefined,
      start: (chunks) => {
        const window = 's' in message && Array.isArray(message.s) ? { chunks: message.s[0], bytes: message.s[1] } as StreamWindow : undefined;
        const stream = new ChunkStream({ credit: (n) => { s.credits += n; this.onCredit?.(s, n); }, cancel: (r) => { s.sourceCancels.push(r); } }, window);
        stream.push(chunks);
        s.stream = stream;
        resolve({ t: 'reply', id: 0, ok: true, value: stream, stream });
        return stream;
      },
      answer: (value) => resolve({ t: 'reply', id: 0, ok: true, value }),
    };
    this.sent.push(s);
    return { reply, cancel: () => { s.cancels++; } };
  }
}

const APP: AppSpec = {
  name: 'chat', routePrefix: '/chat', ingress: 'Chat', modulePath: '/nowhere/chat.ts', exportName: 'default',
  deployments: [{ name: 'Chat', kind: 'class', options: compileDeploymentOptions({ maxRequestBytes: 4096 }, 'Chat'), dependencies: [], methods: ['add', 'fetch', 'gen'] }],
};

let ingress: Ingress | undefined;
const clients: WebSocket[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.terminate();
  await ingress?.close();
  ingress = undefined;
});

async function rig(websocket: WebSocketOptions = {}): Promise<{ transport: StreamTransport; url: string }> {
  const transport = new StreamTransport();
  const router = new Router({ transport, clock: new FakeClock(), logger: silentLogger });
  router.updateRoutes({ 'chat/Chat': { maxOngoingRequests: 100, maxQueuedRequests: 100, requestTimeoutMs: 0, replicas: [{ replicaId: 'r1', workerId: 'w1', dataAddress: 'ws://w1' }] } }, 1);
  ingress = new Ingress({ router, logger: silentLogger, isReady: () => true, websocket });
  ingress.setApps([APP]);
  const { port } = await ingress.listen({ port: 0, host: '127.0.0.1' });
  return { transport, url: `ws://127.0.0.1:${port}/chat/ws` };
}

interface Msg { id: unknown; chunk?: unknown; result?: unknown; end?: true; error?: { code: string; message: string } }

async function open(url: string): Promise<{ ws: WebSocket; got: Msg[]; closed: Promise<number> }> {
  const ws = new WebSocket(url);
  clients.push(ws);
  const got: Msg[] = [];
  ws.on('message', (d) => got.push(JSON.parse(String(d)) as Msg));
  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject); });
  return { ws, got, closed };
}

async function until(what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('WebSocket front', () => {
  it('routes a call with the configured window; a unary answer is one result message', async () => {
    const { transport, url } = await rig({ window: { chunks: 4, bytes: 65536 } });
    const c = await open(url);
    c.ws.send(JSON.stringify({ id: 1, method: 'add', args: [1, 2], priority: 3 }));
    await until('the dispatch', () => transport.sent.length === 1);
    const m = transport.sent[0]!.message as NewRequest & { method: string; args: unknown[]; s: [number, number] };
    expect(m).toMatchObject({ method: 'add', args: [1, 2], s: [4, 65536] });
    transport.sent[0]!.answer(3);
    await until('the result', () => c.got.length === 1);
    expect(c.got).toEqual([{ id: 1, result: 3 }]);
  });

  it('withholds credit while the client does not read, and grants it again once it reads', async () => {
    const { transport, url } = await rig({ maxBufferedBytes: 64 * 1024 });
    const c = await open(url);
    c.ws.send(JSON.stringify({ id: 's', method: 'gen' }));
    await until('the dispatch', () => transport.sent.length === 1);
    // A producer that pushes a 64 KiB chunk for each credit, as a replica's pump does: 16 (the window) at first.
    const big = 'x'.repeat(64 * 1024);
    let pushed = 16;
    transport.onCredit = (s, n) => { pushed += n; s.stream!.push(Array.from({ length: n }, () => big)); };
    const s = transport.sent[0]!;
    s.start(Array.from({ length: 16 }, () => big));
    c.ws.pause();
    // Each credit is a chunk written to the socket; once the socket's buffers are full, no more.
    let last = -1;
    let same = 0;
    await until('credit to stop', () => {
      if (s.credits === last) same++; else { same = 0; last = s.credits; }
      return same >= 40;
    }, 30_000);
    const stalled = s.credits;
    // Kernel buffers on loopback take a few MiB; an unbounded writer would never stop.
    expect(stalled).toBeGreaterThan(0);
    expect(stalled).toBeLessThan(400);
    expect(s.stream!.buffered).toBeGreaterThan(0);
    c.ws.resume();
    await until('credit again once the client reads', () => s.credits > stalled + 50, 30_000);
    expect(pushed).toBeGreaterThan(stalled + 50);
    s.stream!.end();
    await until('the end', () => c.got.some((m) => m.end === true), 30_000);
    expect(c.got.filter((m) => 'chunk' in m).length).toBe(pushed);
  });

  it('bounds requests in flight per socket by the option, naming it', async () => {
    const { transport, url } = await rig({ maxInflightPerSocket: 2 });
    const c = await open(url);
    for (const id of ['a', 'b', 'c']) c.ws.send(JSON.stringify({ id, method: 'gen' }));
    await until('the refusal', () => c.got.length === 1);
    expect(c.got[0]).toEqual({ id: 'c', error: { code: 'ERR_QUEUE_FULL', message: 'too many requests in flight on this WebSocket: inflight=2, maxInflightPerSocket=2' } });
    expect(transport.sent).toHaveLength(2);
    // Once one ends, there is room again.
    transport.sent[0]!.answer('done');
    await until('a', () => c.got.some((m) => m.id === 'a'));
    c.ws.send(JSON.stringify({ id: 'c', method: 'gen' }));
    await until('the third dispatch', () => transport.sent.length === 3);
  });

  it('a cancel before the first chunk cancels the dispatch; after it, the stream at its replica', async () => {
    const { transport, url } = await rig();
    const c = await open(url);
    c.ws.send(JSON.stringify({ id: 'early', method: 'gen' }));
    c.ws.send(JSON.stringify({ id: 'late', method: 'gen' }));
    await until('both dispatched', () => transport.sent.length === 2);
    c.ws.send(JSON.stringify({ id: 'early', cancel: true }));
    await until('early cancelled', () => c.got.some((m) => m.id === 'early'));
    expect(transport.sent[0]!.cancels).toBe(1);
    expect(c.got.find((m) => m.id === 'early')!.error?.code).toBe('ERR_CANCELLED');
    transport.sent[1]!.start(['t0']);
    await until('a chunk', () => c.got.some((m) => m.id === 'late' && 'chunk' in m));
    c.ws.send(JSON.stringify({ id: 'late', cancel: true }));
    await until('late cancelled', () => c.got.some((m) => m.id === 'late' && m.error !== undefined));
    expect(transport.sent[1]!.sourceCancels).toHaveLength(1);
    expect(c.got.filter((m) => m.id === 'late')).toEqual([
      { id: 'late', chunk: 't0' },
      { id: 'late', error: { code: 'ERR_CANCELLED', message: 'WebSocket request "late" cancelled by the client' } },
    ]);
  });

  it('closing the socket cancels every request on it, streaming or not yet answered', async () => {
    const { transport, url } = await rig();
    const c = await open(url);
    c.ws.send(JSON.stringify({ id: 1, method: 'gen' }));
    c.ws.send(JSON.stringify({ id: 2, method: 'gen' }));
    await until('both dispatched', () => transport.sent.length === 2);
    transport.sent[0]!.start(['a']);
    await until('a chunk', () => c.got.length === 1);
    c.ws.close();
    await until('both cancelled', () => transport.sent[0]!.sourceCancels.length === 1 && transport.sent[1]!.cancels === 1);
  });

  it('refuses upgrades past maxConnections with 503, and closes sockets with 1001 on shutdown', async () => {
    const { transport, url } = await rig({ maxConnections: 1 });
    const c = await open(url);
    const refused = await new Promise<{ status: number; body: string }>((resolve) => {
      const ws = new WebSocket(url);
      clients.push(ws);
      ws.on('error', () => undefined);
      ws.once('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (d: Buffer) => { body += d.toString(); });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
    });
    expect(refused.status).toBe(503);
    expect(JSON.parse(refused.body)).toEqual({ code: 'ERR_QUEUE_FULL', error: 'too many WebSocket connections: connections=1, maxConnections=1' });
    c.ws.send(JSON.stringify({ id: 1, method: 'gen' }));
    await until('dispatched', () => transport.sent.length === 1);
    transport.sent[0]!.start(['a']);
    const closing = ingress!.close(0);
    expect(await c.closed).toBe(1001);
    await closing;
    ingress = undefined;
    await until('the stream cancelled', () => transport.sent[0]!.sourceCancels.length === 1);
  });

  it('rejects bad options with their path', () => {
    const router = new Router({ transport: new StreamTransport(), clock: new FakeClock(), logger: silentLogger });
    expect(() => new Ingress({ router, logger: silentLogger, isReady: () => true, websocket: { maxBufferedBytes: 0 } })).toThrow(/websocket\.maxBufferedBytes: must be between 1 and/);
  });
});
