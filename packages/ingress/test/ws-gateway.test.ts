/**
 * The WebSocket front of a real Ingress on 127.0.0.1, over a real Router whose transport is a fake that answers
 * each request as a stream the test drives: the window each stream asks for, credit withheld while the client does
 * not read and granted again once it does, the in-flight and connection bounds from the options, a cancel message
 * and a closed socket cancelling at the replica, and shutdown closing the sockets.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { ChunkStream, compileDeploymentOptions, FakeClock, realClock, silentLogger, type AppSpec, type Clock, type DeploymentOptions, type StreamWindow } from '@shoal/core';
import type { NewRequest, ReplyMessage } from '@shoal/protocol';
import { Router, type Dispatch, type ReplicaRef, type Transport } from '@shoal/router';
import { Ingress } from '../src/index.ts';
import type { WebSocketOptions } from '../src/ws-options.ts';
import type { WsGateway } from '../src/ws-gateway.ts';

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
  /** Answers every request at once with this value's result, when set. */
  autoAnswer: ((message: NewRequest) => unknown) | undefined;

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
    if (this.autoAnswer !== undefined) s.answer(this.autoAnswer(message));
    return { reply, cancel: () => { s.cancels++; } };
  }
}

function app(options: DeploymentOptions = {}): AppSpec {
  return {
    name: 'chat', routePrefix: '/chat', ingress: 'Chat', modulePath: '/nowhere/chat.ts', exportName: 'default',
    deployments: [{ name: 'Chat', kind: 'class', options: compileDeploymentOptions({ maxRequestBytes: 4096, ...options }, 'Chat'), dependencies: [], methods: ['add', 'fetch', 'gen'] }],
  };
}

let ingress: Ingress | undefined;
const clients: WebSocket[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.terminate();
  await ingress?.close();
  ingress = undefined;
});

async function rig(websocket: WebSocketOptions = {}, opts: { clock?: Clock; deployment?: DeploymentOptions } = {}): Promise<{ transport: StreamTransport; url: string }> {
  const transport = new StreamTransport();
  const router = new Router({ transport, clock: opts.clock ?? new FakeClock(), logger: silentLogger });
  router.updateRoutes({ 'chat/Chat': { maxOngoingRequests: 100, maxQueuedRequests: 100, requestTimeoutMs: 0, replicas: [{ replicaId: 'r1', workerId: 'w1', dataAddress: 'ws://w1' }] } }, 1);
  ingress = new Ingress({ router, logger: silentLogger, isReady: () => true, websocket });
  ingress.setApps([app(opts.deployment)]);
  const { port } = await ingress.listen({ port: 0, host: '127.0.0.1' });
  return { transport, url: `ws://127.0.0.1:${port}/chat/ws` };
}

interface Msg { id: unknown; chunk?: unknown; result?: unknown; end?: true; error?: { code: string; message: string } }

/** The ingress's WebSocket gateway, for its per-socket stats. */
const gateway = (): WsGateway => (ingress as unknown as { ws: WsGateway }).ws;

async function open(url: string, options: WebSocket.ClientOptions = {}): Promise<{ ws: WebSocket; got: Msg[]; closed: Promise<number> }> {
  const ws = new WebSocket(url, options);
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

  it('a client that sends calls and never reads stops being read: the answers it did not read stay bounded, and all come once it reads', async () => {
    const max = 64 * 1024;
    // In flight per socket past what this test keeps in flight, so every call gets its result.
    const { transport, url } = await rig({ maxBufferedBytes: max, maxInflightPerSocket: 1000 });
    // Each answer is 2 KiB: 10k of them are 20 MiB, far past what the kernel's socket buffers take.
    const answer = 'a'.repeat(2048);
    transport.autoAnswer = () => answer;
    const c = await open(url);
    c.ws.pause();
    const n = 10_000;
    const batch = 16;
    let sent = 0;
    const sendBatch = (): void => { for (const end = Math.min(n, sent + batch); sent < end;) { c.ws.send(JSON.stringify({ id: sent, method: 'add', args: [sent] })); sent++; } };
    const paused = (): boolean => gateway().stats()[0]!.readPaused;
    // A batch at a time, each once the server has read the one before, until the server stops reading.
    while (sent < n && !paused()) {
      sendBatch();
      await until('the batch read', () => transport.sent.length >= sent || paused());
    }
    expect(paused()).toBe(true);
    for (let k = 0; k < 10; k++) sendBatch();
    let last = -1;
    let same = 0;
    await until('the server to stop reading', () => {
      if (transport.sent.length === last) same++; else { same = 0; last = transport.sent.length; }
      return same >= 40;
    }, 30_000);
    const st = gateway().stats()[0]!;
    expect(st.readPaused).toBe(true);
    expect(transport.sent.length).toBeLessThan(sent);
    // The bound, plus the answers to one read's worth of calls (a batch) and a message.
    expect(st.bufferedBytes).toBeGreaterThan(max);
    expect(st.bufferedBytes).toBeLessThan(max + 2 * batch * 2100);
    c.ws.resume();
    while (sent < n) {
      sendBatch();
      await until('the batch read', () => transport.sent.length >= sent);
    }
    await until('every call answered', () => c.got.length === n, 30_000);
    expect(c.got.every((m, i) => m.id === i && m.result === answer)).toBe(true);
    expect(gateway().stats()[0]).toMatchObject({ readPaused: false, backlog: 0, inflight: 0 });
  }, 120_000);

  it('a bad message flood from a client that never reads is bounded the same way', async () => {
    const max = 16 * 1024;
    const { url } = await rig({ maxBufferedBytes: max });
    const c = await open(url);
    c.ws.pause();
    // Each one is answered with an ERR_BAD_REQUEST naming the unknown field (a few hundred bytes).
    const bad = JSON.stringify({ id: 'x', method: 'add', [`f${'y'.repeat(200)}`]: 1 });
    const n = 20_000;
    for (let i = 0; i < n; i++) c.ws.send(bad);
    let last = -1;
    let same = 0;
    await until('the buffer to stop growing', () => {
      const b = gateway().stats()[0]!.bufferedBytes;
      if (b === last) same++; else { same = 0; last = b; }
      return same >= 40 && gateway().stats()[0]!.readPaused;
    }, 60_000);
    expect(gateway().stats()[0]!.readPaused).toBe(true);
    expect(last).toBeLessThan(max + 1024);
    c.ws.resume();
    await until('every message answered', () => c.got.length === n, 60_000);
    expect(c.got.every((m) => m.error?.code === 'ERR_BAD_REQUEST')).toBe(true);
  });

  it('sends any method but fetch, hooks, Object.prototype\'s and _names to the replica; websocketMethods restricts them', async () => {
    const { transport, url } = await rig();
    transport.autoAnswer = (m) => (m as { method: string }).method;
    const c = await open(url);
    // `generate` is no prototype method (the spec lists add, fetch, gen): an instance field such as continuousBatch().
    c.ws.send(JSON.stringify({ id: 1, method: 'generate' }));
    for (const [id, method] of [[2, 'fetch'], [3, 'init'], [4, 'constructor'], [5, 'toString'], [6, '_secret'], [7, 'checkHealth']] as const) c.ws.send(JSON.stringify({ id, method }));
    await until('7 answers', () => c.got.length === 7);
    expect(c.got.find((m) => m.id === 1)).toEqual({ id: 1, result: 'generate' });
    for (const id of [2, 3, 4, 5, 6, 7]) {
      expect(c.got.find((m) => m.id === id)!.error).toMatchObject({ code: 'ERR_NOT_FOUND', message: expect.stringContaining('callable over a WebSocket (fetch, lifecycle hooks, Object.prototype members and names starting with "_" are not)') });
    }
    expect(transport.sent.map((s) => (s.message as { method: string }).method)).toEqual(['generate']);
    await ingress!.close();

    const r = await rig({}, { deployment: { websocketMethods: ['add', 'generate', 'init'] } });
    r.transport.autoAnswer = (m) => (m as { method: string }).method;
    const d = await open(r.url);
    d.ws.send(JSON.stringify({ id: 'a', method: 'generate' }));
    d.ws.send(JSON.stringify({ id: 'b', method: 'gen' }));
    // A hook stays refused even when listed.
    d.ws.send(JSON.stringify({ id: 'c', method: 'init' }));
    await until('3 answers', () => d.got.length === 3);
    expect(d.got.find((m) => m.id === 'c')!.error?.message).toContain('lifecycle hooks');
    expect(d.got.find((m) => m.id === 'a')).toEqual({ id: 'a', result: 'generate' });
    expect(d.got.find((m) => m.id === 'b')!.error).toEqual({ code: 'ERR_NOT_FOUND', message: 'deployment "chat/Chat" has no method "gen" callable over a WebSocket (its websocketMethods are: add, generate, init)' });
    expect(r.transport.sent).toHaveLength(1);
  });

  it('pings every pingIntervalMs and cuts a peer that stops answering, cancelling its streams', async () => {
    const { transport, url } = await rig({ pingIntervalMs: 50 });
    const live = await open(url);
    let pings = 0;
    live.ws.on('ping', () => { pings++; });
    const dead = await open(url, { autoPong: false });
    dead.ws.send(JSON.stringify({ id: 1, method: 'gen' }));
    await until('dispatched', () => transport.sent.length === 1);
    transport.sent[0]!.start(['a']);
    await until('a chunk', () => dead.got.length === 1);
    // The peer that answers no ping is cut (no closing handshake: 1006), which cancels its stream at the replica.
    expect(await dead.closed).toBe(1006);
    await until('its stream cancelled', () => transport.sent[0]!.sourceCancels.length === 1);
    // The one that answers stays open through many pings.
    await until('5 pings', () => pings >= 5);
    expect(live.ws.readyState).toBe(WebSocket.OPEN);
    expect(gateway().connections).toBe(1);
  });

  it('a router-side deadline ends a stream waiting for its socket to drain: its error goes out and it leaves the in-flight count', async () => {
    const { transport, url } = await rig({ maxBufferedBytes: 16 * 1024 }, { clock: realClock });
    const c = await open(url);
    c.ws.send(JSON.stringify({ id: 'd', method: 'gen', timeoutMs: 4000 }));
    await until('the dispatch', () => transport.sent.length === 1);
    c.ws.pause();
    // A producer that pushes a 64 KiB chunk for each credit, until the socket's buffers are full and it waits.
    const big = 'x'.repeat(64 * 1024);
    const s = transport.sent[0]!;
    transport.onCredit = (x, n) => { x.stream!.push(Array.from({ length: n }, () => big)); };
    s.start(Array.from({ length: 16 }, () => big));
    // Past the kernel's buffers (they grow for a while on loopback), the stream waits for a drain that never comes.
    let last = -1;
    let same = 0;
    await until('credit to stop', () => {
      if (s.credits === last) same++; else { same = 0; last = s.credits; }
      return same >= 40;
    }, 30_000);
    expect(s.sourceCancels).toHaveLength(0);
    expect(gateway().stats()[0]!.inflight).toBe(1);
    await until('the deadline to cancel the stream', () => s.sourceCancels.length === 1);
    expect(s.sourceCancels[0]!.name).toBe('DeadlineExceededError');
    // It no longer counts in flight while the client still reads nothing: its error was written.
    await until('the request to leave the in-flight count', () => gateway().stats()[0]!.inflight === 0);
    c.ws.resume();
    await until('the error', () => c.got.some((m) => m.error !== undefined), 30_000);
    expect(c.got.at(-1)).toMatchObject({ id: 'd', error: { code: 'ERR_DEADLINE_EXCEEDED' } });
  });

  it('rejects bad options with their path', () => {
    const router = new Router({ transport: new StreamTransport(), clock: new FakeClock(), logger: silentLogger });
    expect(() => new Ingress({ router, logger: silentLogger, isReady: () => true, websocket: { maxBufferedBytes: 0 } })).toThrow(/websocket\.maxBufferedBytes: must be between 1 and/);
    expect(() => new Ingress({ router, logger: silentLogger, isReady: () => true, websocket: { pingIntervalMs: 5 } })).toThrow('websocket.pingIntervalMs: must be 0 (no pings) or an integer number of ms between 10 and 86400000');
    expect(() => new Ingress({ router, logger: silentLogger, isReady: () => true, websocket: { pingIntervalMs: 0 } })).not.toThrow();
    expect(() => compileDeploymentOptions({ websocketMethods: ['add', 'fetch'] }, 'Chat')).toThrow(/deployment\.websocketMethods\[1\]: names fetch\(\)/);
    expect(() => compileDeploymentOptions({ websocketMethods: ['_x'] }, 'Chat')).toThrow(/websocketMethods\[0\]: starts with "_"/);
    expect(() => compileDeploymentOptions({ websocketMethods: 'add' as unknown as string[] }, 'Chat')).toThrow(/websocketMethods: must be an array/);
  });
});
