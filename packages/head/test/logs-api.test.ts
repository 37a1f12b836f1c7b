import { afterEach, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { BadRequestError, LogRing, type LogMeta, type LogQueryAnswer } from '@shoal/core';
import type { Message, NewRequest, ReplyMessage } from '@shoal/protocol';
import { HeadLogs, parseLogQuery, type LogPeer } from '../src/logs-api.ts';

const meta = (timeMs: number, extra: Partial<LogMeta> = {}): LogMeta => ({ timeMs, level: 30, app: 'a', deployment: 'D', tagged: false, ...extra });

/** A worker connection that answers log queries from its own ring (or never, when `silent`). */
class FakeWorker implements LogPeer {
  closed = false;
  readonly sent: Message[] = [];
  readonly asked: NewRequest[] = [];
  readonly ring = new LogRing();
  private nextId = 1;
  constructor(readonly workerId: string, private readonly silent = false) {}
  requestWithId(message: NewRequest): { id: number; reply: Promise<ReplyMessage> } {
    this.asked.push(message);
    const id = this.nextId++;
    if (this.silent) return { id, reply: new Promise(() => undefined) };
    const filter = (message as { filter: Parameters<LogRing['query']>[0] }).filter;
    const value: LogQueryAnswer = this.ring.query(filter, this.workerId);
    return { id, reply: Promise.resolve({ t: 'reply', id, ok: true, value }) };
  }
  forget(): boolean { return true; }
  send(m: Message): void { this.sent.push(m); }
}

let server: Server | undefined;
afterEach(() => { server?.closeAllConnections(); server?.close(); server = undefined; });

async function serveOn(logs: HeadLogs): Promise<string> {
  server = createServer((req, res) => {
    logs.serve(new URL(req.url ?? '/', 'http://x'), req, res).catch((err: unknown) => res.writeHead(400).end((err as Error).message));
  });
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', () => r()));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('HeadLogs', () => {
  it('merges the head\'s and every worker\'s lines by time, and leaves out a worker that does not answer in time with a line saying so', async () => {
    const own = new LogRing();
    const w1 = new FakeWorker('w1');
    const w2 = new FakeWorker('w2', true);
    own.push('{"msg":"h2"}', meta(20));
    w1.ring.push('{"msg":"a1"}', meta(10));
    w1.ring.push('{"msg":"a3"}', meta(30));
    const logs = new HeadLogs({ ring: own, workers: () => [['w1', w1], ['w2', w2]], answerTimeoutMs: 30 });
    const base = await serveOn(logs);
    const res = await fetch(`${base}/api/logs?deployment=a/D`);
    expect(res.headers.get('content-type')).toMatch(/application\/x-ndjson/);
    const lines = (await res.text()).trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.slice(0, 3)).toEqual([{ worker: 'w1', msg: 'a1' }, { worker: 'head', msg: 'h2' }, { worker: 'w1', msg: 'a3' }]);
    expect(lines[3]).toMatchObject({ level: 'warn', component: 'logs', worker: 'w2', msg: 'worker w2 did not answer within 30 ms; its lines are left out' });
    expect(lines).toHaveLength(4);
    expect(w1.asked).toEqual([{ t: 'logs', filter: { app: 'a', deployment: 'D', limit: 1000 } }]);
  });

  it('cuts to the most recent `limit` across sources, with a first line counting what was left out', async () => {
    const own = new LogRing();
    const w1 = new FakeWorker('w1');
    for (let i = 0; i < 5; i++) own.push(`{"msg":"h${i}"}`, meta(i * 2));
    for (let i = 0; i < 5; i++) w1.ring.push(`{"msg":"w${i}"}`, meta(i * 2 + 1));
    const logs = new HeadLogs({ ring: own, workers: () => [['w1', w1]] });
    const text = await (await fetch(`${await serveOn(logs)}/api/logs?limit=3`)).text();
    const msgs = text.trimEnd().split('\n').map((l) => (JSON.parse(l) as { msg: string }).msg);
    expect(msgs).toEqual(['7 older matching lines left out (limit 3)', 'w3', 'h4', 'w4']);
  });

  it('follow: the merged backlog, then pushes and the head\'s own new lines; drops are said; the client going unsubscribes everywhere', async () => {
    const own = new LogRing();
    const w1 = new FakeWorker('w1');
    w1.ring.push('{"msg":"old"}', meta(1));
    const logs = new HeadLogs({ ring: own, workers: () => [['w1', w1]] });
    const ac = new AbortController();
    const res = await fetch(`${await serveOn(logs)}/api/logs?follow=1`, { signal: ac.signal });
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let text = '';
    const until = async (n: number): Promise<Array<Record<string, unknown>>> => {
      while (text.split('\n').length - 1 < n) text += decoder.decode((await reader.read()).value, { stream: true });
      return text.trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    };
    expect(await until(1)).toEqual([{ worker: 'w1', msg: 'old' }]);
    const follow = w1.asked[0] as { t: string; sub: number };
    expect(follow.t).toBe('logsFollow');
    logs.onPush('w1', { t: 'logsPush', sub: follow.sub, lines: [[5, '{"worker":"w1","msg":"new"}']], dropped: 2 });
    logs.onPush('w9', { t: 'logsPush', sub: follow.sub, lines: [[6, '{"worker":"w9","msg":"not its sub"}']] });
    own.push('{"msg":"head new"}', meta(7));
    const got = await until(4);
    expect(got[1]).toMatchObject({ level: 'warn', worker: 'w1', dropped: 2, msg: '2 log lines of w1 dropped: the head did not keep up' });
    expect(got.slice(2)).toEqual([{ worker: 'w1', msg: 'new' }, { worker: 'head', msg: 'head new' }]);

    // A worker joining now is followed from the follow's start on.
    const w2 = new FakeWorker('w2');
    w2.ring.push('{"msg":"before the follow"}', meta(0));
    w2.ring.push('{"msg":"w2 started"}', meta(Date.now() + 1000));
    logs.workerJoined('w2', w2);
    expect((await until(5))[4]).toEqual({ worker: 'w2', msg: 'w2 started' });

    expect(logs.followCount).toBe(1);
    ac.abort();
    await reader.closed.catch(() => undefined);
    for (let i = 0; i < 100 && logs.followCount > 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(logs.followCount).toBe(0);
    expect(own.followerCount).toBe(0);
    expect(w1.sent).toEqual([{ t: 'logsUnfollow', sub: follow.sub }]);
    expect(w2.sent).toEqual([{ t: 'logsUnfollow', sub: (w2.asked[0] as { sub: number }).sub }]);
  });
});

describe('HeadLogs follow and workers that go', () => {
  /** Reads a follow's lines as they come. */
  function lineReader(res: Response): (n: number) => Promise<Array<Record<string, unknown>>> {
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let text = '';
    return async (n) => {
      while (text.split('\n').length - 1 < n) text += decoder.decode((await reader.read()).value, { stream: true });
      return text.trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    };
  }

  it('drops a worker\'s subscriptions when its connection closes, not those of its newer connection', async () => {
    const w1 = new FakeWorker('w1');
    const logs = new HeadLogs({ ring: new LogRing(), workers: () => [['w1', w1]] });
    const ac = new AbortController();
    const res = await fetch(`${await serveOn(logs)}/api/logs?follow=1`, { signal: ac.signal });
    const until = lineReader(res);
    logs.onPush('w1', { t: 'logsPush', sub: (w1.asked[0] as { sub: number }).sub, lines: [[1, '{"worker":"w1","msg":"first"}']] });
    expect(await until(1)).toEqual([{ worker: 'w1', msg: 'first' }]);
    expect(logs.subscriptionCount).toBe(1);
    // The worker reconnects: the new connection is subscribed; then the old one's close is learnt.
    const again = new FakeWorker('w1');
    logs.workerJoined('w1', again);
    for (let i = 0; i < 100 && logs.subscriptionCount < 2; i++) await new Promise((r) => setTimeout(r, 5));
    w1.closed = true;
    logs.workerLeft('w1', w1);
    expect(logs.subscriptionCount).toBe(1);
    // A late push on the old subscription goes nowhere; the new one streams.
    logs.onPush('w1', { t: 'logsPush', sub: (w1.asked[0] as { sub: number }).sub, lines: [[2, '{"worker":"w1","msg":"stale"}']] });
    logs.onPush('w1', { t: 'logsPush', sub: (again.asked[0] as { sub: number }).sub, lines: [[3, '{"worker":"w1","msg":"second"}']] });
    expect((await until(2))[1]).toEqual({ worker: 'w1', msg: 'second' });
    again.closed = true;
    logs.workerLeft('w1', again);
    expect([logs.subscriptionCount, logs.followCount]).toEqual([0, 1]);
    ac.abort();
    for (let i = 0; i < 100 && logs.followCount > 0; i++) await new Promise((r) => setTimeout(r, 10));
    // Nothing is sent to the closed connections.
    expect([w1.sent, again.sent]).toEqual([[], []]);
  });

  it('bounds the lines kept while the backlog is gathered, and says how many it dropped', async () => {
    const fast = new FakeWorker('w1');
    const slow = new FakeWorker('w2', true);
    const logs = new HeadLogs({ ring: new LogRing(), workers: () => [['w1', fast], ['w2', slow]], answerTimeoutMs: 200, maxBufferedBytes: 1000 });
    const pending = fetch(`${await serveOn(logs)}/api/logs?follow=1`);
    while (fast.asked.length === 0 || slow.asked.length === 0) await new Promise((r) => setTimeout(r, 5));
    // w2 has not answered yet: w1's pushes wait for the backlog, 100 lines of ~100 bytes against a 1000-byte bound.
    const sub = (fast.asked[0] as { sub: number }).sub;
    const pad = 'x'.repeat(70);
    logs.onPush('w1', { t: 'logsPush', sub, lines: Array.from({ length: 100 }, (_, i): [number, string] => [i, `{"worker":"w1","i":${i},"pad":"${pad}"}`]) });
    const got = await lineReader(await pending)(11);
    expect(got[0]).toMatchObject({ level: 'warn', worker: 'w2' });
    const kept = got.slice(1).filter((l) => l.i !== undefined);
    expect(kept.length).toBeGreaterThan(0);
    expect(kept.length).toBeLessThanOrEqual(10);
    expect(kept.map((l) => l.i)).toEqual(kept.map((_, i) => i));
    const note = got[kept.length + 1]!;
    expect(note).toMatchObject({ level: 'warn', dropped: 100 - kept.length });
    expect(String(note.msg)).toMatch(/dropped while the backlog was gathered \(over maxBufferedBytes 1000\)/);
    server?.closeAllConnections();
  });
});

describe('HeadLogs follow with a client that does not read', () => {
  it('drops lines past maxBufferedBytes instead of buffering them, and says how many once the client reads again', async () => {
    const w1 = new FakeWorker('w1');
    const logs = new HeadLogs({ ring: new LogRing(), workers: () => [['w1', w1]], maxBufferedBytes: 64 * 1024 });
    let response: import('node:http').ServerResponse | undefined;
    server = createServer((req, res) => { response = res; void logs.serve(new URL(req.url ?? '/', 'http://x'), req, res); });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', () => r()));
    const client = connect((server.address() as AddressInfo).port, '127.0.0.1');
    let received = '';
    client.on('data', (d: Buffer) => { received += d.toString('latin1'); });
    client.write('GET /api/logs?follow=1 HTTP/1.1\r\nhost: x\r\n\r\n');
    while (w1.asked.length === 0) await new Promise((r) => setTimeout(r, 5));
    client.pause();
    const sub = (w1.asked[0] as { sub: number }).sub;
    const batch = Array.from({ length: 1000 }, (_, i): [number, string] => [i, `{"worker":"w1","pad":"${'x'.repeat(1000)}"}`]);
    // Fill the kernel's buffers and then the response's own, past the bound ...
    for (let i = 0; response === undefined || response.writableLength <= 64 * 1024; i++) {
      if (i >= 200) throw new Error('200 MB pushed and the response never buffered past its bound');
      logs.onPush('w1', { t: 'logsPush', sub, lines: batch });
      await new Promise((r) => setImmediate(r));
    }
    const buffered = response.writableLength;
    // ... then these are dropped, not buffered.
    logs.onPush('w1', { t: 'logsPush', sub, lines: batch });
    expect(response.writableLength).toBe(buffered);
    client.resume();
    while (response.writableLength > 0) await new Promise((r) => setTimeout(r, 5));
    logs.onPush('w1', { t: 'logsPush', sub, lines: [[1, '{"worker":"w1","msg":"after"}']] });
    while (!received.includes('"msg":"after"')) await new Promise((r) => setTimeout(r, 5));
    const tail = received.slice(received.lastIndexOf('dropped: this reader'));
    expect(received).toMatch(/"msg":"\d+ log lines dropped: this reader did not keep up"/);
    const dropped = Number(/"dropped":(\d+)/.exec(received.slice(received.lastIndexOf('"component":"logs"')))?.[1]);
    expect(dropped).toBeGreaterThanOrEqual(1000);
    expect(tail).toContain('"msg":"after"');
    client.destroy();
  });
});

describe('parseLogQuery', () => {
  it('reads every parameter, and splits APP/DEPLOYMENT', () => {
    expect(parseLogQuery(new URLSearchParams('deployment=shop/Ranker&since=2026-12-01T16:00:00Z&level=warn&limit=5&follow=1'))).toEqual({
      filter: { app: 'shop', deployment: 'Ranker', sinceMs: Date.parse('2026-12-01T16:00:00Z'), level: 'warn', limit: 5 }, follow: true,
    });
    expect(parseLogQuery(new URLSearchParams('since=1700000000000'))).toEqual({ filter: { sinceMs: 1700000000000, limit: 1000 }, follow: false });
    expect(parseLogQuery(new URLSearchParams('since=2026-12-01')).filter.sinceMs).toBe(Date.parse('2026-12-01'));
    expect(parseLogQuery(new URLSearchParams('since=100000000000')).filter.sinceMs).toBe(100_000_000_000);
  });

  it('refuses what it cannot read, naming the parameter', () => {
    const bad: Array<[string, RegExp]> = [
      ['level=loud', /logs\.level: must be one of debug, info, warn, error/],
      ['since=soon', /since: must be an ISO 8601 time \(2026-12-01T16:00:00Z\) or epoch milliseconds \(12 digits or more\), got "soon"/],
      // A year, or seconds since 1970, are not read as epoch ms.
      ['since=2024', /since: must be an ISO 8601 time .* got "2024"/],
      ['since=1700000000', /since: must be an ISO 8601 time .* got "1700000000"/],
      ['since=2024-13-45T99:00:00Z', /since: must be an ISO 8601 time/],
      ['since=10m', /since: must be an ISO 8601 time/],
      ['limit=-1', /limit: must be a whole number/],
      ['limit=20000', /logs\.limit: must be at most 10000/],
      ['follow=yes', /follow: must be 1 or 0/],
      ['deployment=a/D&app=b', /names application "a" but app is "b"/],
      ['verbose=1', /unknown parameter "verbose"/],
    ];
    for (const [q, message] of bad) {
      expect(() => parseLogQuery(new URLSearchParams(q)), q).toThrow(BadRequestError);
      expect(() => parseLogQuery(new URLSearchParams(q)), q).toThrow(message);
    }
  });
});
