/** The Peer's eager flush: the 16th message of a tick goes out at once, counted in frames on a real socket pair. */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { WebSocket } from 'ws';
import { decodeFrame, Peer, type Message } from '../src/index.ts';
import { nextTick, recordingLogger, startServer, wsPair, type Server } from './ws-pair.ts';

let server: Server;
beforeEach(async () => { server = await startServer(); });
afterEach(async () => { await server.close(); });

/** Messages per frame as the other side reads them, in arrival order. */
function framesAt(ws: WebSocket): number[] {
  const sizes: number[] = [];
  ws.on('message', (data: Buffer) => { sizes.push(decodeFrame(data).length); });
  return sizes;
}

/** Counts the frames the peer hands to its socket, synchronously, as they are written. */
function writesOf(ws: WebSocket): { writes: number } {
  const counter = { writes: 0 };
  const send = ws.send.bind(ws);
  ws.send = ((...args: Parameters<WebSocket['send']>) => { counter.writes++; return send(...args); }) as WebSocket['send'];
  return counter;
}

async function until(what: string, cond: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  if (!cond()) throw new Error(`timed out waiting for ${what}`);
}

const cancel = (id: number): Message => ({ t: 'cancel', id });

describe('Peer flush at 16 messages', () => {
  it('15 messages wait for the end of the tick; the 16th is written at once, before any tick', async () => {
    const [c, s] = await wsPair(server);
    const client = new Peer(c, { name: 'client', maxFrameBytes: 1 << 20, logger: recordingLogger(), onMessage: () => {} });
    const written = writesOf(c);
    const sizes = framesAt(s);

    for (let i = 1; i <= 15; i++) client.send(cancel(i));
    expect(written.writes).toBe(0);
    client.send(cancel(16));
    expect(written.writes).toBe(1);
    client.send(cancel(17));
    expect(written.writes).toBe(1);
    await nextTick();
    expect(written.writes).toBe(2);
    await until('two frames', () => sizes.length === 2);
    expect(sizes).toEqual([16, 1]);
  });

  it('one tick of 40 messages goes as frames of 16, 16 and 8; one of 15 as a single frame', async () => {
    const [c, s] = await wsPair(server);
    const client = new Peer(c, { name: 'client', maxFrameBytes: 1 << 20, logger: recordingLogger(), onMessage: () => {} });
    const sizes = framesAt(s);
    for (let i = 1; i <= 40; i++) client.send(cancel(i));
    await until('three frames', () => sizes.length === 3);
    for (let i = 1; i <= 15; i++) client.send(cancel(100 + i));
    await until('four frames', () => sizes.length === 4);
    await nextTick();
    expect(sizes).toEqual([16, 16, 8, 15]);
  });
});
