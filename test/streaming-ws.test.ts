/**
 * Integration: streamed answers over a WebSocket on a real cluster (head in this process, two worker processes),
 * with the ws client. The fixture puts Chat (the ingress) and Model on different workers, so a relayed stream
 * crosses a worker connection. Tokens in order, two streams multiplexed on one socket, unary methods, a cancel
 * message and a closed socket ending the generators (and the downstream one), bad messages answered with errors
 * on a socket that stays open, the in-flight bound, deadlines, a slow reader pausing the generators with a bounded
 * number of chunks ahead. Observed through the app's counters (GET /stats), never through timing.
 */
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import type { Head } from '@shoal/head';
import { deployFixture, samples, startCluster, waitFor } from './helpers.ts';
import { expectRelayCancelled, statsAt, steady, type Counts } from './stream-helpers.ts';

const WS_APP = resolve(import.meta.dirname, 'fixtures/ws-app.ts');

let head: Head;
const wsUrl = (p: string): string => `${head.httpAddress.replace(/^http/, 'ws')}${p}`;

const stats = (): Promise<{ chat: Counts; model: Counts }> => statsAt(`${head.httpAddress}/w/stats`);

interface Msg { id: string | number | null; chunk?: unknown; result?: unknown; end?: true; error?: { code: string; message: string } }
const terminal = (m: Msg): boolean => 'end' in m || 'result' in m || 'error' in m;

/** A ws client that keeps every message it read, and waits on them by event. */
class Client {
  readonly messages: Msg[] = [];
  private readonly listeners = new Set<() => void>();
  closed: { code: number } | undefined;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (d) => { this.messages.push(JSON.parse(String(d)) as Msg); this.notify(); });
    ws.on('close', (code) => { this.closed = { code }; this.notify(); });
  }

  static async open(path = '/w/ws', headers: Record<string, string> = {}): Promise<Client> {
    const ws = new WebSocket(wsUrl(path), { headers });
    await new Promise<void>((resolveP, reject) => { ws.once('open', () => resolveP()); ws.once('error', reject); });
    return new Client(ws);
  }

  send(m: unknown): void { this.ws.send(typeof m === 'string' ? m : JSON.stringify(m)); }
  of(id: string | number | null): Msg[] { return this.messages.filter((m) => m.id === id); }
  chunks(id: string): unknown[] { return this.of(id).filter((m) => 'chunk' in m).map((m) => m.chunk); }

  /** Resolves once `cond` holds, checked on every message (and close). */
  until(what: string, cond: () => boolean, timeoutMs = 20_000): Promise<void> {
    if (cond()) return Promise.resolve();
    return new Promise((resolveP, reject) => {
      const timer = setTimeout(() => { this.listeners.delete(check); reject(new Error(`timed out waiting for ${what}`)); }, timeoutMs);
      const check = (): void => { if (cond()) { clearTimeout(timer); this.listeners.delete(check); resolveP(); } };
      this.listeners.add(check);
    });
  }

  /** The chunks of request `id` and the message that ended it. */
  async answer(id: string): Promise<{ chunks: unknown[]; last: Msg }> {
    await this.until(`the answer to ${id}`, () => this.of(id).some(terminal));
    const ms = this.of(id);
    return { chunks: ms.filter((m) => 'chunk' in m).map((m) => m.chunk), last: ms.find(terminal)! };
  }

  async close(): Promise<void> {
    if (this.closed !== undefined) return;
    this.ws.close();
    await this.until('the socket to close', () => this.closed !== undefined);
  }

  private notify(): void { for (const l of [...this.listeners]) l(); }
}

/** An upgrade the ingress refuses: its HTTP status and JSON body. */
function refused(path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: { error: string; code: string } }> {
  return new Promise((resolveP, reject) => {
    const ws = new WebSocket(wsUrl(path), { headers });
    ws.once('open', () => { ws.close(); reject(new Error(`upgrade to ${path} was accepted`)); });
    ws.once('error', () => undefined);
    ws.once('unexpected-response', (_req, res) => {
      let text = '';
      res.on('data', (c: Buffer) => { text += c.toString(); });
      res.on('end', () => resolveP({ status: res.statusCode ?? 0, body: JSON.parse(text) as { error: string; code: string } }));
    });
  });
}

beforeAll(async () => {
  head = await startCluster({ workers: 2 });
  await deployFixture(head, { module: WS_APP, name: 'wsapp', routePrefix: '/w' });
});
afterAll(async () => { await head?.stop(); });

describe('streaming over a WebSocket', () => {
  it('places Chat and Model on different workers', () => {
    const workerOf = (d: string): string | undefined => head.controller.status().replicas.find((r) => r.app === 'wsapp' && r.deployment === d)?.workerId;
    expect(workerOf('Chat')).toBeDefined();
    expect(workerOf('Chat')).not.toBe(workerOf('Model'));
  });

  it('streams tokens in order as chunk messages, relayed across workers, then end; unary methods answer with one result', async () => {
    const c = await Client.open();
    c.send({ id: '1', method: 'relay', args: [6] });
    const a = await c.answer('1');
    expect(a.chunks).toEqual([0, 1, 2, 3, 4, 5].map((i) => ({ tok: `tok${i}` })));
    expect(a.last).toEqual({ id: '1', end: true });
    expect(c.of('1').at(-1)).toEqual({ id: '1', end: true });

    c.send({ id: 2, method: 'add', args: [2, 3] });
    c.send({ id: 'b', method: 'bytes' });
    await c.until('both unary answers', () => c.of(2).length > 0 && c.of('b').length > 0);
    expect(c.of(2)).toEqual([{ id: 2, result: 5 }]);
    expect(c.of('b')).toEqual([{ id: 'b', result: 'AQID' }]);

    // A generator's error ends its stream with an error message after the chunks before it.
    c.send({ id: 'f', method: 'fail' });
    const f = await c.answer('f');
    expect(f.chunks).toEqual(['a']);
    expect(f.last.error).toMatchObject({ code: 'ERR_USER_CODE', message: expect.stringContaining('generator failed after 1 chunk') });
    await c.close();
  });

  it('calls continuousBatch() and batch() fields of the ingress class, never a _name or a lifecycle hook', async () => {
    const c = await Client.open();
    c.send({ id: 'cd', method: 'countdown', args: [4] });
    c.send({ id: 'cd2', method: 'countdown', args: [2] });
    c.send({ id: 'db', method: 'double', args: [21] });
    c.send({ id: 'sec', method: '_secret' });
    c.send({ id: 'hook', method: 'checkHealth' });
    const [cd, cd2, db, sec, hook] = await Promise.all(['cd', 'cd2', 'db', 'sec', 'hook'].map((id) => c.answer(id)));
    expect(cd!.chunks).toEqual([4, 3, 2, 1]);
    expect(cd!.last).toEqual({ id: 'cd', end: true });
    expect(cd2!.chunks).toEqual([2, 1]);
    expect(db!.last).toEqual({ id: 'db', result: 42 });
    expect(sec!.last.error).toMatchObject({ code: 'ERR_NOT_FOUND', message: expect.stringContaining('has no method "_secret" callable over a WebSocket') });
    expect(hook!.last.error).toMatchObject({ code: 'ERR_NOT_FOUND', message: expect.stringContaining('has no method "checkHealth" callable over a WebSocket') });
    await c.close();
  });

  it('multiplexes two streams on one socket by id, each in order', async () => {
    const c = await Client.open();
    c.send({ id: 'x', method: 'relay', args: [8, 5] });
    c.send({ id: 'y', method: 'generate', args: [8, 5] });
    const [x, y] = await Promise.all([c.answer('x'), c.answer('y')]);
    expect(x.chunks).toEqual([...Array(8).keys()].map((i) => ({ tok: `tok${i}` })));
    expect(y.chunks).toEqual([...Array(8).keys()].map((i) => `tok${i}`));
    expect(x.last.end).toBe(true);
    expect(y.last.end).toBe(true);
    // Both were in flight at once: their chunks interleave on the socket.
    const order = c.messages.filter((m) => 'chunk' in m).map((m) => m.id);
    expect(order.indexOf('y')).toBeLessThan(order.lastIndexOf('x'));
    expect(order.indexOf('x')).toBeLessThan(order.lastIndexOf('y'));
    await c.close();
  });

  it('a cancel message stops the generator and its downstream stream: both finally blocks run, the request ends with ERR_CANCELLED', async () => {
    const before = await stats();
    const c = await Client.open();
    c.send({ id: 'c', method: 'relay', args: [0, 10] });
    await c.until('3 chunks', () => c.chunks('c').length >= 3);
    c.send({ id: 'c', cancel: true });
    const a = await c.answer('c');
    expect(a.last.error).toMatchObject({ code: 'ERR_CANCELLED', message: 'WebSocket request "c" cancelled by the client' });
    await expectRelayCancelled(stats, 'chat', before);
    // A cancel for an id not in flight (its answer crossed the cancel) is ignored; the socket still serves.
    c.send({ id: 'gone', cancel: true });
    c.send({ id: 'after', method: 'add', args: [1, 1] });
    expect((await c.answer('after')).last).toEqual({ id: 'after', result: 2 });
    expect(c.of('gone')).toEqual([]);
    await c.close();
  });

  it('closing the socket cancels every stream on it', async () => {
    const before = await stats();
    const c = await Client.open();
    c.send({ id: 'r', method: 'relay', args: [0, 10] });
    c.send({ id: 'g', method: 'generate', args: [0, 10] });
    await c.until('chunks of both', () => c.chunks('r').length >= 2 && c.chunks('g').length >= 2);
    c.ws.terminate();
    await waitFor('the three generators ended', async () => {
      const s = await stats();
      return s.chat.finished >= before.chat.finished + 2 && s.model.finished > before.model.finished;
    });
    const after = await stats();
    expect(after.chat.aborted).toBeGreaterThanOrEqual(before.chat.aborted + 2);
    expect(after.model.aborted).toBeGreaterThan(before.model.aborted);
  });

  it('answers bad messages with errors naming what was wrong, and keeps the socket open', async () => {
    const c = await Client.open();
    c.send('not json');
    c.send({ method: 'add' });
    c.send({ id: 'u', method: 'nope' });
    c.send({ id: 'v', method: 'fetch' });
    c.send({ id: 'w', method: 'add', args: 'x' });
    c.send({ id: 't', method: 'add', timeout: 5 });
    c.ws.send(Buffer.from([1, 2, 3]), { binary: true });
    await c.until('7 errors', () => c.messages.length >= 7);
    const nulls = c.of(null);
    expect(nulls).toHaveLength(3);
    expect(nulls[0]!.error).toMatchObject({ code: 'ERR_BAD_REQUEST', message: expect.stringMatching(/^WebSocket message is not JSON/) });
    expect(nulls[1]!.error?.message).toContain('has no "id"');
    expect(nulls[2]!.error?.message).toContain('binary messages are not read');
    // An unknown method reaches the replica, which lists what it has (fields such as continuousBatch() ones too).
    expect(c.of('u')[0]!.error).toMatchObject({ code: 'ERR_NOT_FOUND', message: expect.stringMatching(/has no method "nope" \(it has: add, bytes, countdown, double, fail, fetch, generate, .*relay, stats\)/) });
    expect(c.of('v')[0]!.error).toMatchObject({ code: 'ERR_NOT_FOUND', message: expect.stringContaining('has no method "fetch" callable over a WebSocket') });
    expect(c.of('w')[0]!.error?.message).toContain('field "args" must be an array');
    expect(c.of('t')[0]!.error?.message).toContain('unknown field "timeout"');

    // An id already in flight is refused; the first request goes on.
    c.send({ id: 'dup', method: 'generate', args: [0, 20] });
    c.send({ id: 'dup', method: 'add', args: [1, 2] });
    await c.until('the duplicate refused', () => c.of('dup').some((m) => m.error !== undefined));
    expect(c.of('dup').find((m) => m.error !== undefined)!.error?.message).toContain('request id "dup" is already in flight');
    c.send({ id: 'dup', cancel: true });
    await c.until('the cancel', () => c.of('dup').filter((m) => m.error !== undefined).length === 2);

    // Still open: a call works.
    c.send({ id: 'ok', method: 'add', args: [20, 22] });
    expect((await c.answer('ok')).last).toEqual({ id: 'ok', result: 42 });

    // Only a frame over the deployment's maxRequestBytes (64 KiB) closes the socket (1009, message too big).
    c.send({ id: 'big', method: 'add', args: ['x'.repeat(70_000), 1] });
    await c.until('the socket closed', () => c.closed !== undefined);
    expect(c.closed?.code).toBe(1009);
  });

  it('bounds the requests in flight on a socket, naming the bound', async () => {
    const before = await stats();
    const c = await Client.open();
    for (let i = 0; i < 64; i++) c.send({ id: `s${i}`, method: 'generate', args: [0, 50] });
    c.send({ id: 'one-more', method: 'add', args: [1, 2] });
    const a = await c.answer('one-more');
    expect(a.last.error).toMatchObject({ code: 'ERR_QUEUE_FULL', message: 'too many requests in flight on this WebSocket: inflight=64, maxInflightPerSocket=64' });
    await c.until('every stream started', () => [...Array(64).keys()].every((i) => c.chunks(`s${i}`).length > 0));
    await c.close();
    await waitFor('all 64 generators ended', async () => (await stats()).chat.finished >= before.chat.finished + 64);
  });

  it('a deadline from the upgrade\'s x-shoal-timeout-ms or a message\'s timeoutMs bounds each stream', async () => {
    const before = await stats();
    const c = await Client.open('/w/ws', { 'x-shoal-timeout-ms': '800' });
    c.send({ id: 'd', method: 'relay', args: [0, 20] });
    c.send({ id: 'm', method: 'generate', args: [0, 20], timeoutMs: 600 });
    const [d, m] = await Promise.all([c.answer('d'), c.answer('m')]);
    expect(d.last.error?.code).toBe('ERR_DEADLINE_EXCEEDED');
    expect(m.last.error?.code).toBe('ERR_DEADLINE_EXCEEDED');
    await waitFor('the generators ended', async () => {
      const s = await stats();
      return s.chat.finished >= before.chat.finished + 2 && s.model.finished > before.model.finished;
    });
    // A request without a timeout on this socket still completes if it is quick.
    c.send({ id: 'q', method: 'add', args: [1, 2] });
    expect((await c.answer('q')).last.result).toBe(3);
    await c.close();
  });

  it('refuses upgrades off application routes and with bad headers', async () => {
    expect(await refused('/nowhere')).toMatchObject({ status: 404, body: { code: 'ERR_NOT_FOUND', error: expect.stringContaining('no application takes WebSocket upgrades at /nowhere') } });
    expect(await refused('/-/metrics')).toMatchObject({ status: 404 });
    expect(await refused('/w/ws', { 'x-shoal-timeout-ms': 'soon' })).toMatchObject({ status: 400, body: { code: 'ERR_INVALID_OPTION', error: expect.stringContaining('header x-shoal-timeout-ms') } });
    expect(await refused('/w/ws', { 'x-shoal-priority': '1.5' })).toMatchObject({ status: 400, body: { error: expect.stringContaining('header x-shoal-priority') } });
    // Plain HTTP on the same route is unaffected.
    expect(await (await fetch(`${head.httpAddress}/w/`)).json()).toEqual({ hello: 'ws' });
  });

  it('backpressure: a client that does not read pauses both generators with a bounded number of chunks ahead', async () => {
    const before = await stats();
    const size = 256 * 1024;
    const c = await Client.open();
    c.send({ id: 'slow', method: 'relay', args: [0, 0, size] });
    await c.until('the stream started', () => c.chunks('slow').length > 0);
    c.ws.pause();
    const stalled = await steady(async () => (await stats()).model.produced - before.model.produced);
    // Kernel socket buffers hold some megabytes; past them the WebSocket's 1 MiB and each hop's window (16 chunks
    // or 1 MiB) hold a few chunks of 256 KiB. An unbounded producer would be far past this.
    expect(stalled).toBeGreaterThan(0);
    expect(stalled).toBeLessThan(120);
    c.ws.resume();
    await waitFor('more produced once the client reads', async () => (await stats()).model.produced - before.model.produced > stalled + 20);
    expect(c.chunks('slow').length).toBeGreaterThan(stalled / 2);
    c.messages.length = 0;
    c.ws.terminate();
    await waitFor('the stream ended after the client left', async () => {
      const s = await stats();
      return s.model.finished > before.model.finished && s.chat.finished > before.chat.finished;
    });
  });

  it('exports WebSocket connections and messages, and counts WebSocket streams in the stream series', async () => {
    const c = await Client.open();
    c.send({ id: 'p', method: 'add', args: [1, 2] });
    await c.answer('p');
    const text = await (await fetch(`${head.httpAddress}/-/metrics`)).text();
    expect(samples(text, 'shoal_websocket_connections', { app: 'wsapp' }).reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(1);
    expect(samples(text, 'shoal_websocket_messages_total', { app: 'wsapp', direction: 'in' }).reduce((a, b) => a + b, 0)).toBeGreaterThan(10);
    expect(samples(text, 'shoal_websocket_messages_total', { app: 'wsapp', direction: 'out' }).reduce((a, b) => a + b, 0)).toBeGreaterThan(50);
    expect(samples(text, 'shoal_stream_first_chunk_seconds_count', { app: 'wsapp', deployment: 'Chat' }).reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(5);
    expect(samples(text, 'shoal_streams_total', { app: 'wsapp', deployment: 'Chat', reason: 'cancelled' }).reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
    await c.close();
    await waitFor('the gauge to drop', async () => {
      const t = await (await fetch(`${head.httpAddress}/-/metrics`)).text();
      return samples(t, 'shoal_websocket_connections', { app: 'wsapp' }).reduce((a, b) => a + b, 0) === 0;
    });
  });
});
