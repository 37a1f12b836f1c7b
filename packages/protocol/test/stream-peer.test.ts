import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { WebSocket } from 'ws';
import { ChunkStream, UserCodeError, toWireError, type WireStreamWindow } from '@shoal/core';
import { Peer, type CallMessage, type Message, type PeerOptions } from '../src/index.ts';
import { nextTick, recordingLogger, startServer, wsPair, type Server } from './ws-pair.ts';

let server: Server;
beforeEach(async () => { server = await startServer(); });
afterEach(async () => { await server.close(); });

function peer(ws: WebSocket, opts: Partial<PeerOptions> = {}): Peer {
  return new Peer(ws, { name: 'test', maxFrameBytes: 1 << 20, logger: recordingLogger(), onMessage: () => {}, ...opts });
}

const WINDOW: WireStreamWindow = [4, 1 << 20];

/** A hosting side that records what it is sent and lets the test answer by hand. */
async function rig(): Promise<{ client: Peer; host: Peer; seen: Message[]; call: () => Promise<{ id: number; stream: ChunkStream }> }> {
  const [c, s] = await wsPair(server);
  const seen: Message[] = [];
  const host = peer(s, { onMessage: (m) => { seen.push(m); } });
  const client = peer(c);
  const call = async (): Promise<{ id: number; stream: ChunkStream }> => {
    const { reply } = client.requestWithId({ t: 'call', replicaId: 'r', method: 'gen', args: [], s: WINDOW });
    await waitFor(() => seen.some((m) => m.t === 'call'));
    const id = (seen.find((m) => m.t === 'call') as CallMessage).id;
    expect((seen.find((m) => m.t === 'call') as CallMessage).s).toEqual(WINDOW);
    host.send({ t: 'chunk', id, v: ['a', 'b'] });
    const r = await reply;
    if (!r.ok || r.stream === undefined) throw new Error('expected a stream');
    expect(r.value).toBe(r.stream);
    return { id, stream: r.stream };
  };
  return { client, host, seen, call };
}

async function waitFor(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !cond(); i++) await nextTick();
  expect(cond()).toBe(true);
}

describe('streams over a Peer', () => {
  it('the first chunk message resolves the request with a stream; credit flows back; the reply ends it', async () => {
    const { client, host, seen, call } = await rig();
    const { id, stream } = await call();
    expect(client.pendingCount).toBe(0);
    expect(client.streamCount).toBe(1);
    expect(stream.window).toEqual({ chunks: 4, bytes: 1 << 20 });
    host.send({ t: 'chunk', id, v: ['c'] });
    const got: unknown[] = [];
    got.push((await stream.next()).value, (await stream.next()).value, (await stream.next()).value);
    host.send({ t: 'reply', id, ok: true, value: null });
    expect(await stream.next()).toEqual({ done: true, value: undefined });
    expect(got).toEqual(['a', 'b', 'c']);
    await waitFor(() => seen.filter((m) => m.t === 'credit').reduce((n, m) => n + (m as { n: number }).n, 0) === 3);
    expect(seen.filter((m) => m.t === 'credit').every((m) => (m as { id: number }).id === id)).toBe(true);
    expect(client.streamCount).toBe(0);
  });

  it('an error reply after chunks fails the stream with the error rebuilt into its class', async () => {
    const { host, call } = await rig();
    const { id, stream } = await call();
    host.send({ t: 'reply', id, ok: false, error: toWireError(new UserCodeError('generator threw at 3')) });
    const got: unknown[] = [];
    const err = await (async () => { try { for await (const v of stream) got.push(v); return undefined; } catch (e) { return e; } })();
    expect(got).toEqual(['a', 'b']);
    expect(err).toBeInstanceOf(UserCodeError);
    expect((err as Error).message).toContain('generator threw at 3');
  });

  it('a consumer that breaks sends cancel; chunks still in flight are dropped', async () => {
    const { client, host, seen, call } = await rig();
    const { id, stream } = await call();
    for await (const v of stream) { expect(v).toBe('a'); break; }
    await waitFor(() => seen.some((m) => m.t === 'cancel' && m.id === id));
    host.send({ t: 'chunk', id, v: ['late'] });
    host.send({ t: 'reply', id, ok: false, error: toWireError(new Error('cancelled')) });
    await nextTick();
    expect(client.streamCount).toBe(0);
    expect(stream.buffered).toBe(0);
  });

  it('a closed connection ends every open stream with ERR_PEER_GONE', async () => {
    const { host, call } = await rig();
    const { stream } = await call();
    await stream.nextBatch();
    const waiting = stream.next();
    host.close(1001, 'worker died');
    await expect(waiting).rejects.toMatchObject({ code: 'ERR_PEER_GONE' });
  });

  it('an empty chunk message starts a stream with no chunks, which the reply ends', async () => {
    const [c, s] = await wsPair(server);
    const host = peer(s, { onMessage: (m, p) => { if (m.t === 'call') { p.send({ t: 'chunk', id: m.id, v: [] }); p.reply(m.id, null); } } });
    const client = peer(c);
    const r = await client.request({ t: 'call', replicaId: 'r', method: 'gen', args: [], s: WINDOW });
    expect(r.ok && r.stream !== undefined).toBe(true);
    const got: unknown[] = [];
    for await (const v of (r as { stream: ChunkStream }).stream) got.push(v);
    expect(got).toEqual([]);
    void host;
  });

  it('a request without a window still gets a plain reply (no stream table entry)', async () => {
    const [c, s] = await wsPair(server);
    peer(s, { onMessage: (m, p) => { if (m.t === 'call') p.reply(m.id, [1, 2, 3]); } });
    const client = peer(c);
    const r = await client.request({ t: 'call', replicaId: 'r', method: 'gen', args: [] });
    expect(r).toMatchObject({ ok: true, value: [1, 2, 3] });
    expect(r.ok && r.stream).toBeFalsy();
    expect(client.streamCount).toBe(0);
  });
});
