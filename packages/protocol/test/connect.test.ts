import { once } from 'node:events';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { PeerGoneError, ProtocolError, UnauthorizedError, type ShoalError } from '@shoal/core';
import {
  acceptHello, connectPeer, decodeFrame, encodeMessage, Peer, PROTOCOL_VERSION, sendWelcome, tokenMatches,
  type ConnectOptions, type HelloMessage,
} from '../src/index.ts';
import { recordingLogger, startServer, type LogLine, type Server } from './ws-pair.ts';

const TOKEN = 'secret-token-1234';

let server: Server;
let serverLog: LogLine[];
/** What acceptHello did with each connection: the hello, or the error it rejected with. */
let outcomes: Array<Promise<{ hello?: HelloMessage; error?: ShoalError }>>;

beforeEach(async () => {
  server = await startServer();
  serverLog = [];
  outcomes = [];
  server.wss.on('connection', (ws) => {
    outcomes.push(acceptHello(ws, { token: TOKEN, logger: recordingLogger(serverLog), remote: 'test-client', timeoutMs: 5000 }).then(
      (hello) => {
        sendWelcome(ws, { workerId: 'w1', heartbeatMs: 500 });
        new Peer(ws, { name: 'client', maxFrameBytes: 1 << 20, logger: recordingLogger(), onMessage: (m, p) => { if (m.t === 'health') p.reply(m.id, 'healthy'); } });
        return { hello };
      },
      (error: ShoalError) => ({ error }),
    ));
  });
});
afterEach(async () => { await server.close(); });

function connect(hello: Partial<HelloMessage> = {}, extra: Partial<ConnectOptions> = {}): ReturnType<typeof connectPeer> {
  return connectPeer({
    address: server.url, maxFrameBytes: 1 << 20, logger: recordingLogger(), onMessage: () => {}, timeoutMs: 5000,
    hello: { token: TOKEN, role: 'worker', name: 'w-test', ...hello } as ConnectOptions['hello'],
    ...extra,
  });
}

async function serverOutcome(): Promise<{ hello?: HelloMessage; error?: ShoalError }> {
  while (outcomes.length === 0) await new Promise((r) => setImmediate(r));
  return outcomes[0]!;
}

describe('handshake', () => {
  it('accepts the right version and token, and the peer works', async () => {
    const { peer, welcome } = await connect();
    expect(welcome).toEqual({ t: 'welcome', v: PROTOCOL_VERSION, workerId: 'w1', heartbeatMs: 500 });
    expect((await serverOutcome()).hello).toMatchObject({ t: 'hello', v: PROTOCOL_VERSION, token: TOKEN, role: 'worker', name: 'w-test' });
    expect(await peer.call({ t: 'health', replicaId: 'r', timeoutMs: 1 })).toBe('healthy');
    peer.close();
  });

  it('refuses a wrong protocol version on both sides, naming both versions', async () => {
    // A client from another release: its hello carries another version.
    const err = await connect({ v: PROTOCOL_VERSION + 1 } as Partial<HelloMessage>).catch((e: unknown) => e) as ProtocolError;
    expect(err).toBeInstanceOf(ProtocolError);
    expect(err.code).toBe('ERR_PROTOCOL_VERSION');
    expect(err.message).toBe(`protocol version mismatch: peer speaks ${PROTOCOL_VERSION + 1}, this side speaks ${PROTOCOL_VERSION}`);
    const { error } = await serverOutcome();
    expect(error).toBeInstanceOf(ProtocolError);
    expect(error!.code).toBe('ERR_PROTOCOL_VERSION');
    expect(serverLog.some((l) => l.level === 'warn' && l.fields?.code === 'ERR_PROTOCOL_VERSION' && l.fields?.remote === 'test-client')).toBe(true);
  });

  it('refuses a wrong token with a clear error, and logs it', async () => {
    const err = await connect({ token: 'wrong' }).catch((e: unknown) => e) as UnauthorizedError;
    expect(err).toBeInstanceOf(UnauthorizedError);
    expect(err.code).toBe('ERR_UNAUTHORIZED');
    expect(err.message).toBe('wrong cluster token');
    const { error } = await serverOutcome();
    expect(error).toBeInstanceOf(UnauthorizedError);
    expect(serverLog).toContainEqual(expect.objectContaining({ level: 'warn', msg: 'connection refused', fields: expect.objectContaining({ code: 'ERR_UNAUTHORIZED', reason: 'wrong cluster token' }) }));
  });

  it.each([['an empty token', ''], ['no token at all', undefined]])('refuses %s as a missing token', async (_name, token) => {
    const err = await connect({ token } as Partial<HelloMessage>).catch((e: unknown) => e) as UnauthorizedError;
    expect(err).toBeInstanceOf(UnauthorizedError);
    expect(err.message).toBe('missing cluster token');
    expect((await serverOutcome()).error).toBeInstanceOf(UnauthorizedError);
  });

  it('refuses a token that differs only in length or suffix', async () => {
    for (const token of [`${TOKEN}x`, TOKEN.slice(0, -1)]) {
      await expect(connect({ token })).rejects.toBeInstanceOf(UnauthorizedError);
    }
    expect(tokenMatches(TOKEN, TOKEN)).toBe(true);
    expect(tokenMatches(TOKEN, 42)).toBe(false);
  });

  it('sends the refusal as a message and closes with 4001 for a bad token (raw client)', async () => {
    const ws = new WebSocket(server.url);
    await once(ws, 'open');
    const firstMessage = once(ws, 'message');
    const closed = once(ws, 'close');
    ws.send(encodeMessage({ t: 'hello', v: PROTOCOL_VERSION, token: 'nope', role: 'worker', name: 'raw' }));
    const [data] = await firstMessage as [Buffer];
    expect(decodeFrame(data)).toEqual([{ t: 'refuse', code: 'ERR_UNAUTHORIZED', message: 'wrong cluster token' }]);
    const [code] = await closed as [number];
    expect(code).toBe(4001);
  });

  it('refuses a first message that is not hello', async () => {
    const ws = new WebSocket(server.url);
    await once(ws, 'open');
    const closed = once(ws, 'close');
    ws.send(encodeMessage({ t: 'call', id: 1, replicaId: 'r', method: 'm', args: [] }));
    const [code] = await closed as [number];
    expect(code).toBe(4002);
    const { error } = await serverOutcome();
    expect(error).toBeInstanceOf(ProtocolError);
    expect(error!.message).toContain('first message must be hello, got call');
  });

  it('refuses garbage as the first frame', async () => {
    const ws = new WebSocket(server.url);
    await once(ws, 'open');
    const closed = once(ws, 'close');
    ws.send(Buffer.from([0xc1]));
    await closed;
    expect((await serverOutcome()).error).toBeInstanceOf(ProtocolError);
  });

  it('rejects acceptHello when the client leaves before hello', async () => {
    const ws = new WebSocket(server.url);
    await once(ws, 'open');
    ws.terminate();
    expect((await serverOutcome()).error).toBeInstanceOf(PeerGoneError);
  });

  it('fails with PeerGoneError when nothing listens at the address', async () => {
    const url = server.url;
    await server.close();
    const err = await connectPeer({
      address: url, maxFrameBytes: 1024, logger: recordingLogger(), onMessage: () => {}, timeoutMs: 5000,
      hello: { token: TOKEN, role: 'worker', name: 'w' },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PeerGoneError);
    expect((err as Error).message).toContain(`cannot connect to ${url}`);
    server = await startServer();
  });
});
