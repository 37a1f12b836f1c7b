/**
 * Integration: streamed answers on a real cluster (head in this process, two worker processes). The fixture puts
 * Front (the ingress) and Model on different workers, so every relayed stream crosses a worker connection. Over
 * HTTP: SSE with the eventsource client (GET) and with fetch + eventsource-parser (POST), chunked transfer with
 * fetch; through handles from the head; a client that leaves cancels both generators; a client that does not read
 * pauses them; an error mid-stream. Observed through the app's own counters (/stats), never through timing.
 */
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventSource } from 'eventsource';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { streamMethodNames, UserCodeError, type AppSpec, type Handle } from '@shoal/core';
import type { Head } from '@shoal/head';
import { createHandle } from '@shoal/router';
import { resolve } from 'node:path';
import { Idle, Model } from './fixtures/stream-app.ts';
import { deployFixture, samples, startCluster, waitFor } from './helpers.ts';
import { expectRelayCancelled, statsAt, steady, type Counts } from './stream-helpers.ts';

const STREAM_APP = resolve(import.meta.dirname, 'fixtures/stream-app.ts');

let head: Head;
let spec: AppSpec;
const url = (p: string): string => `${head.httpAddress}/s${p}`;

const stats = (): Promise<{ front: Counts; model: Counts }> => statsAt(url('/stats'));

beforeAll(async () => {
  head = await startCluster({ workers: 2 });
  spec = await deployFixture(head, { module: STREAM_APP, name: 'streams', routePrefix: '/s' });
});
afterAll(async () => { await head?.stop(); });

function workerOf(deployment: string): string | undefined {
  return head.controller.status().replicas.find((r) => r.app === 'streams' && r.deployment === deployment)?.workerId;
}

describe('streaming over HTTP and handles', () => {
  it('places Front and Model on different workers', () => {
    expect(workerOf('Front')).toBeDefined();
    expect(workerOf('Front')).not.toBe(workerOf('Model'));
  });

  it('SSE with a real EventSource (GET): one data event per chunk, relayed across workers, then an end event', async () => {
    const es = new EventSource(url('/relay?n=6'));
    const data: unknown[] = [];
    await new Promise<void>((resolveP, reject) => {
      es.onmessage = (e) => data.push(JSON.parse(e.data as string));
      es.addEventListener('end', () => { es.close(); resolveP(); });
      es.onerror = (e) => { es.close(); reject(new Error(`EventSource error: ${(e as { message?: string }).message ?? 'unknown'}`)); };
    });
    expect(data).toEqual([0, 1, 2, 3, 4, 5].map((i) => ({ tok: `tok${i}` })));
  });

  it('POST SSE through fetch and eventsource-parser; the generator\'s error ends the stream with an error event', async () => {
    const events: EventSourceMessage[] = [];
    const parser = createParser({ onEvent: (e) => events.push(e) });
    const res = await fetch(url('/relay'), { method: 'POST', headers: { accept: 'text/event-stream', 'content-type': 'application/json' }, body: JSON.stringify({ n: 3 }) });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const text = await res.text();
    parser.feed(text);
    expect(events.filter((e) => e.event === undefined).map((e) => JSON.parse(e.data))).toEqual([{ tok: 'tok0' }, { tok: 'tok1' }, { tok: 'tok2' }]);
    expect(events.at(-1)).toMatchObject({ event: 'end', data: 'null' });

    const failed: EventSourceMessage[] = [];
    const p2 = createParser({ onEvent: (e) => failed.push(e) });
    const res2 = await fetch(url('/fail'), { headers: { accept: 'text/event-stream' } });
    p2.feed(await res2.text());
    expect(failed.slice(0, 2).map((e) => JSON.parse(e.data))).toEqual(['a', 'b']);
    expect(failed[2]?.event).toBe('error');
    expect(JSON.parse(failed[2]!.data)).toMatchObject({ code: 'ERR_USER_CODE', message: expect.stringContaining('generator failed after 2 chunks') });
  });

  it('a chunk that cannot cross the wire (a cycle) fails the stream with ERR_ENCODE after the chunks before it', async () => {
    const events: EventSourceMessage[] = [];
    const parser = createParser({ onEvent: (e) => events.push(e) });
    const res = await fetch(url('/cyclic'), { headers: { accept: 'text/event-stream' } });
    const body = await res.text();
    parser.feed(body);
    expect(JSON.parse(events[0]!.data)).toBe('fine');
    expect(events.at(-1)?.event).toBe('error');
    expect(JSON.parse(events.at(-1)!.data)).toMatchObject({ code: 'ERR_ENCODE' });
    expect((await fetch(url('/stats'))).status).toBe(200);
  });

  it('chunked transfer without SSE: strings raw (text/plain), other values as NDJSON, bytes raw; an error cuts the body', async () => {
    const text = await fetch(url('/local?n=4'));
    expect(text.headers.get('transfer-encoding')).toBe('chunked');
    expect(text.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(await text.text()).toBe('t0 t1 t2 t3 ');
    const nd = await fetch(url('/json?n=3'));
    expect(nd.headers.get('content-type')).toBe('application/x-ndjson');
    expect((await nd.text()).trim().split('\n').map((l) => JSON.parse(l))).toEqual([{ i: 0, sq: 0 }, { i: 1, sq: 1 }, { i: 2, sq: 4 }]);
    const bytes = await fetch(url('/bytes?n=3'));
    expect(bytes.headers.get('content-type')).toBe('application/octet-stream');
    expect([...new Uint8Array(await bytes.arrayBuffer())]).toEqual([0, 1, 1, 2, 2, 3]);
    const empty = await fetch(url('/empty'));
    expect(empty.status).toBe(200);
    expect(await empty.text()).toBe('');
    const fail = await fetch(url('/fail'));
    expect(fail.status).toBe(200);
    await expect(fail.text()).rejects.toThrow();
  });

  it('handles stream too: for await over a handle from the head, across to the worker; errors arrive after the chunks', async () => {
    const model = createHandle({ router: head.router, key: 'streams/Model', methods: spec.deployments.find((d) => d.name === 'Model')!.methods, streams: streamMethodNames(Model) }) as Handle<Model>;
    const got: string[] = [];
    for await (const tok of model.generate(4)) got.push(tok);
    expect(got).toEqual(['tok0', 'tok1', 'tok2', 'tok3']);
    const partial: string[] = [];
    const err = await (async () => { try { for await (const t of model.failing()) partial.push(t); } catch (e) { return e; } return undefined; })();
    expect(partial).toEqual(['a', 'b']);
    expect(err).toBeInstanceOf(UserCodeError);
    // Breaking out ends the generator at its replica: its finally runs.
    const before = (await stats()).model.finished;
    for await (const tok of model.generate(0, 5)) if (tok === 'tok2') break;
    await waitFor('Model\'s finally after a break', async () => (await stats()).model.finished > before);
  });

  it('a client that disconnects cancels the generator and its downstream call: both finally blocks run', async () => {
    const before = await stats();
    const es = new EventSource(url('/relay?n=0&delay=10'));
    let seen = 0;
    await new Promise<void>((resolveP) => { es.onmessage = () => { if (++seen === 3) resolveP(); }; });
    es.close();
    await expectRelayCancelled(stats, 'front', before);
  });

  it('backpressure: a client that does not read pauses both generators with a bounded number of chunks ahead', async () => {
    const before = await stats();
    const size = 256 * 1024;
    let res: IncomingMessage | undefined;
    const req = httpRequest(url(`/relay?n=0&size=${size}`), (r) => { res = r; r.pause(); });
    req.end();
    await waitFor('the stream started', () => res !== undefined);
    const stalled = await steady(async () => (await stats()).model.produced - before.model.produced);
    // Kernel socket buffers hold some megabytes; past them, each hop's window (16 chunks or 1 MiB) holds a few
    // chunks of 256 KiB. An unbounded producer would be far past this.
    expect(stalled).toBeGreaterThan(0);
    expect(stalled).toBeLessThan(120);
    // Reading again resumes them.
    let read = 0;
    res!.on('data', (c: Buffer) => { read += c.length; });
    res!.resume();
    await waitFor('more produced once the client reads', async () => (await stats()).model.produced - before.model.produced > stalled + 20);
    expect(read).toBeGreaterThan(stalled * size / 2);
    req.destroy();
    await waitFor('the paused stream ended after the client left', async () => (await stats()).model.finished > before.model.finished);
  });

  it('a client that stopped reading is cut off at the deadline: its response is destroyed, not left waiting for drain', async () => {
    const before = await stats();
    const size = 256 * 1024;
    let res: IncomingMessage | undefined;
    let closed = false;
    let tail = '';
    const req = httpRequest(url(`/relay?n=0&size=${size}`), { headers: { accept: 'text/event-stream', 'x-shoal-timeout-ms': '1500' } }, (r) => {
      res = r;
      r.pause();
      r.on('close', () => { closed = true; });
      r.on('error', () => undefined);
    });
    req.on('error', () => undefined);
    req.end();
    await waitFor('the stream started', () => res !== undefined);
    await waitFor('both generators ended at the deadline', async () => {
      const s = await stats();
      return s.front.finished > before.front.finished && s.model.finished > before.model.finished;
    });
    // A paused socket sees nothing of how the server ended it; reading again shows it. The server destroyed the
    // response when the deadline came (its socket freed then): the body is cut, never ended with an error event
    // (which is what a server still waiting for drain would write once the client read again).
    res!.on('data', (c: Buffer) => { tail = (tail + c.toString('latin1')).slice(-4096); });
    res!.resume();
    await waitFor('the response closed', () => closed);
    expect(res!.complete).toBe(false);
    expect(tail).not.toContain('event: error');
    req.destroy();
  });

  it('the deadline bounds the whole stream: past it an SSE stream ends with ERR_DEADLINE_EXCEEDED and both generators stop', async () => {
    const before = await stats();
    const events: EventSourceMessage[] = [];
    const parser = createParser({ onEvent: (e) => events.push(e) });
    const res = await fetch(url('/relay?n=0&delay=20'), { headers: { accept: 'text/event-stream', 'x-shoal-timeout-ms': '400' } });
    parser.feed(await res.text());
    expect(events.filter((e) => e.event === undefined).length).toBeGreaterThan(0);
    expect(events.at(-1)?.event).toBe('error');
    expect(JSON.parse(events.at(-1)!.data)).toMatchObject({ code: 'ERR_DEADLINE_EXCEEDED' });
    await waitFor('both generators ended at the deadline', async () => {
      const s = await stats();
      return s.front.finished > before.front.finished && s.model.finished > before.model.finished;
    });
  });

  it('a stream the head reads, paused out of credit, ends at its replica when the head connection drops', async () => {
    const model = createHandle({ router: head.router, key: 'streams/Model', methods: spec.deployments.find((d) => d.name === 'Model')!.methods, streams: streamMethodNames(Model) }) as Handle<Model>;
    const before = (await stats()).model;
    const it = model.generate(0)[Symbol.asyncIterator]();
    expect((await it.next()).value).toBe('tok0');
    // Not reading: the pump runs out of credit and waits for it, with the generator parked at a yield.
    const stalled = await steady(async () => (await stats()).model.produced - before.produced);
    expect(stalled).toBeGreaterThan(0);
    expect((await stats()).model.finished).toBe(before.finished);
    const wid = workerOf('Model')!;
    const peers = (head as unknown as { peers: Map<string, { closed: boolean; terminate(reason: string): void }> }).peers;
    peers.get(wid)!.terminate('test: cutting the head connection');
    // The chunks already here stay readable (then the error); the replica's end is what matters.
    await waitFor('Model\'s finally after the head connection dropped', async () => (await stats()).model.finished > before.finished);
    await it.return?.();
    await waitFor('the worker rejoined', () => peers.get(wid)?.closed === false && head.controller.status().replicas.some((r) => r.deployment === 'Model' && r.state === 'RUNNING'));
  });

  it('streamIdleTimeoutMs: a consumer that stops reading has its stream cancelled, with an error naming the option', async () => {
    const idleSpec = await deployFixture(head, { module: STREAM_APP, exportName: 'idle', name: 'idle', routePrefix: '/idle' });
    const h = createHandle({ router: head.router, key: 'idle/Idle', methods: idleSpec.deployments[0]!.methods, streams: streamMethodNames(Idle) }) as Handle<Idle>;
    const it = h.generate()[Symbol.asyncIterator]();
    expect((await it.next()).value).toBe(0);
    // Not reading: the generator waits for credit, and the bound ends it (its finally runs).
    await waitFor('Idle\'s finally after the idle bound', async () => (await h.stats()).finished === 1);
    let err: unknown;
    try { for (;;) { const r = await it.next(); if (r.done === true) break; } } catch (e) { err = e; }
    expect((err as Error | undefined)?.message).toMatch(/streamIdleTimeoutMs=300/);
  });

  it('exports time to first chunk, chunks and streams by reason', async () => {
    const text = await (await fetch(`${head.httpAddress}/-/metrics`)).text();
    const ttfc = samples(text, 'shoal_stream_first_chunk_seconds_count', { app: 'streams', deployment: 'Front' });
    expect(ttfc.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(5);
    expect(samples(text, 'shoal_stream_first_chunk_seconds_count', { app: 'streams', deployment: 'Model' }).reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(3);
    expect(samples(text, 'shoal_stream_chunks_total', { deployment: 'Front' }).reduce((a, b) => a + b, 0)).toBeGreaterThan(10);
    for (const reason of ['complete', 'error', 'cancelled']) {
      expect(samples(text, 'shoal_streams_total', { deployment: 'Front', reason }).reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
    }
  });
});

