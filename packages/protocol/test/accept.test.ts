/**
 * attachWebSocketEndpoint: the token is checked at the HTTP upgrade (401 and no WebSocket without it), sockets that
 * have not authenticated are capped (the oldest goes first) and timed out, and hello frames are bounded.
 */
import { once } from 'node:events';
import { createServer, request, type Server } from 'node:http';
import { connect as tcpConnect, type AddressInfo, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { UnauthorizedError, type ShoalError } from '@shoal/core';
import {
  acceptHello, attachWebSocketEndpoint, connectPeer, decodeFrame, encodeMessage, PROTOCOL_VERSION, sendWelcome,
  type WebSocketEndpoint, type WebSocketEndpointOptions,
} from '../src/index.ts';
import { recordingLogger, type LogLine } from './ws-pair.ts';

const TOKEN = 'accept-test-token-0123';

interface Endpoint { server: Server; wss: WebSocketEndpoint; url: string; port: number; log: LogLine[]; accepted: WebSocket[] }

let open: Endpoint[] = [];
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const e of open.splice(0)) {
    for (const c of e.wss.clients) c.terminate();
    e.wss.close();
    e.server.closeAllConnections();
    await new Promise<void>((r) => e.server.close(() => r()));
  }
});

/** An http.Server answering plain requests with 200 "plain", with the endpoint on it; accepted sockets complete the hello. */
async function endpoint(opts: Partial<WebSocketEndpointOptions> = {}): Promise<Endpoint> {
  const log: LogLine[] = [];
  const accepted: WebSocket[] = [];
  const server = createServer((_req, res) => { res.end('plain'); });
  const wss = attachWebSocketEndpoint(server, {
    token: TOKEN, maxFrameBytes: 1 << 20, logger: recordingLogger(log),
    onConnection: (ws, remote) => {
      accepted.push(ws);
      acceptHello(ws, { token: TOKEN, logger: recordingLogger(log), remote }).then(() => sendWelcome(ws, { workerId: 'w1', heartbeatMs: 0 }), () => undefined);
    },
    ...opts,
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  const e = { server, wss, url: `ws://127.0.0.1:${port}`, port, log, accepted };
  open.push(e);
  return e;
}

/** The status line of a raw upgrade request with these headers. */
function upgradeStatus(port: number, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', ...headers } });
    req.on('upgrade', (res, socket) => { socket.destroy(); resolve(res.statusCode ?? 0); });
    req.on('response', (res) => { res.resume(); resolve(res.statusCode ?? 0); });
    req.on('error', reject);
    req.end();
  });
}

function connect(e: Endpoint, token = TOKEN): ReturnType<typeof connectPeer> {
  return connectPeer({ address: e.url, maxFrameBytes: 1 << 20, logger: recordingLogger(), onMessage: () => {}, timeoutMs: 5000, hello: { token, role: 'peer', name: 'test' } });
}

function idleSocket(port: number): Promise<Socket> {
  const s = tcpConnect(port, '127.0.0.1');
  sockets.push(s);
  s.on('error', () => undefined);
  return once(s, 'connect').then(() => s);
}

async function until(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('attachWebSocketEndpoint', () => {
  it('answers 401 without upgrading when the token is missing or wrong, and logs the refusal', async () => {
    const e = await endpoint();
    expect(await upgradeStatus(e.port, {})).toBe(401);
    expect(await upgradeStatus(e.port, { authorization: 'Bearer wrong' })).toBe(401);
    expect(await upgradeStatus(e.port, { authorization: TOKEN })).toBe(401); // not a Bearer header
    expect(e.accepted).toHaveLength(0);
    expect(e.wss.clients.size).toBe(0);
    expect(e.log).toContainEqual(expect.objectContaining({ level: 'warn', msg: 'connection refused at upgrade', fields: expect.objectContaining({ reason: 'missing cluster token' }) }));
  });

  it('a peer that presents the token on the upgrade gets a WebSocket and completes the hello', async () => {
    const e = await endpoint();
    expect(await upgradeStatus(e.port, { authorization: `Bearer ${TOKEN}` })).toBe(101);
    const { peer, welcome } = await connect(e);
    expect(welcome).toMatchObject({ t: 'welcome', workerId: 'w1' });
    expect(e.wss.clients.size).toBeGreaterThanOrEqual(1);
    peer.close();
  });

  it('connectPeer with a wrong token fails with UnauthorizedError, never reaching the hello', async () => {
    const e = await endpoint();
    const err = await connect(e, 'wrong').catch((x: unknown) => x) as ShoalError;
    expect(err).toBeInstanceOf(UnauthorizedError);
    expect(err.message).toMatch(/answered the upgrade with HTTP 401/);
    expect(e.accepted).toHaveLength(0);
  });

  it('plain HTTP requests on the same server are still answered', async () => {
    const e = await endpoint();
    const res = await fetch(`http://127.0.0.1:${e.port}/-/healthz`);
    expect(await res.text()).toBe('plain');
  });

  it('caps unauthenticated sockets, closing the oldest, so a flood of idle sockets does not keep a peer out', async () => {
    const e = await endpoint({ maxPendingConnections: 8 });
    const flood = await Promise.all(Array.from({ length: 50 }, () => idleSocket(e.port)));
    await until(() => e.wss.pendingConnections === 8 && flood.filter((s) => s.destroyed || s.readableEnded).length >= 42);
    const { peer } = await connect(e);
    expect(e.wss.pendingConnections).toBeLessThanOrEqual(8);
    // One warning for the burst: at most one a second.
    expect(e.log.filter((l) => l.msg === 'too many unauthenticated connections; closing the oldest')).toHaveLength(1);
    peer.close();
  });

  it('closes a socket that sends nothing within pendingTimeoutMs', async () => {
    const e = await endpoint({ pendingTimeoutMs: 100 });
    const s = await idleSocket(e.port);
    await once(s, 'close');
    expect(e.wss.pendingConnections).toBe(0);
  });

  it('refuses a hello frame over maxHelloBytes before decoding it', async () => {
    const e = await endpoint();
    const ws = new WebSocket(e.url, { headers: { authorization: `Bearer ${TOKEN}` } });
    await once(ws, 'open');
    ws.send(encodeMessage({ t: 'hello', v: PROTOCOL_VERSION, token: TOKEN, role: 'peer', name: 'x'.repeat(300 * 1024) }));
    const [data] = await once(ws, 'message') as [Buffer];
    expect(decodeFrame(data)).toEqual([{ t: 'refuse', code: 'ERR_PROTOCOL', message: expect.stringMatching(/^hello of \d+ bytes is over maxHelloBytes=262144$/) }]);
    ws.terminate();
  });

  it('close() detaches it from the server', async () => {
    const e = await endpoint();
    e.wss.close();
    expect(e.server.listenerCount('upgrade')).toBe(0);
    expect(e.server.listenerCount('connection')).toBe(1); // http's own
  });
});
