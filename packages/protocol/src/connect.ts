/**
 * Connection set-up on both sides: the client presents the cluster token on the HTTP upgrade (checked there by
 * attachWebSocketEndpoint, accept.ts), then sends `hello` (protocol version and the token again) as its first
 * frame; the server answers `welcome` or `refuse` and closes. Only after that does either side build a Peer.
 */
import { timingSafeEqual, createHash } from 'node:crypto';
import { WebSocket } from 'ws';
import { PeerGoneError, ProtocolError, UnauthorizedError, type Logger } from '@shoal/core';
import { decodeFrame, encodeMessage } from './codec.ts';
import { PROTOCOL_VERSION, type HelloMessage, type Message, type WelcomeMessage } from './messages.ts';
import { Peer, type PeerOptions } from './peer.ts';

export interface ConnectOptions extends Omit<PeerOptions, 'name'> {
  /** ws://host:port/path */
  address: string;
  hello: Omit<HelloMessage, 't' | 'v'>;
  /** How long to wait for the connection and the answer to hello. @default 10000 */
  timeoutMs?: number;
  /** Name of the remote side, for logs. @default the address */
  name?: string;
  /** Called with the welcome before the Peer is made, so its owner can prepare for the messages that follow it. */
  onWelcome?: (welcome: WelcomeMessage) => void;
}

/** Opens a connection and completes the handshake; rejects with the server's reason if refused. */
export function connectPeer(opts: ConnectOptions): Promise<{ peer: Peer; welcome: WelcomeMessage }> {
  const token = opts.hello.token;
  const ws = new WebSocket(opts.address, {
    maxPayload: opts.maxFrameBytes, perMessageDeflate: false, handshakeTimeout: opts.timeoutMs ?? 10_000,
    ...(typeof token === 'string' ? { headers: { authorization: `Bearer ${token}` } } : {}),
  });
  return new Promise((resolve, reject) => {
    let settled = false;
    const timer = setTimeout(() => finish(new PeerGoneError(`no answer to hello from ${opts.address} within ${opts.timeoutMs ?? 10_000} ms`)), opts.timeoutMs ?? 10_000);
    const finish = (err: Error | undefined, value?: { peer: Peer; welcome: WelcomeMessage }): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err !== undefined) { ws.terminate(); reject(err); } else resolve(value!);
    };
    ws.once('open', () => ws.send(encodeMessage({ t: 'hello', v: PROTOCOL_VERSION, ...opts.hello } as HelloMessage)));
    ws.once('error', (err) => finish(new PeerGoneError(`cannot connect to ${opts.address}: ${err.message}`)));
    // The server refused the upgrade (401: the token), so there is no WebSocket and no refuse message.
    ws.once('unexpected-response', (_req, res) => {
      res.resume();
      const why = `${opts.address} answered the upgrade with HTTP ${res.statusCode}`;
      finish(res.statusCode === 401 ? new UnauthorizedError(`${why}: wrong or missing cluster token`) : new PeerGoneError(why));
    });
    ws.once('close', (code, reason) => finish(new PeerGoneError(`${opts.address} closed the connection during hello (code ${code}${reason.length ? `: ${reason.toString()}` : ''})`)));
    ws.once('message', (data: Buffer) => {
      let first: Message | undefined;
      try { first = decodeFrame(data)[0]; } catch (err) { finish(err as Error); return; }
      if (first?.t === 'refuse') {
        finish(first.code === 'ERR_UNAUTHORIZED' ? new UnauthorizedError(first.message) : new ProtocolError(first.message, first.code === 'ERR_PROTOCOL_VERSION' ? 'ERR_PROTOCOL_VERSION' : 'ERR_PROTOCOL'));
        return;
      }
      if (first?.t !== 'welcome') { finish(new ProtocolError(`expected welcome from ${opts.address}, got ${first?.t}`)); return; }
      ws.removeAllListeners('error');
      ws.removeAllListeners('close');
      // Before the Peer exists: what arrives in the same read as the welcome is handled by then.
      opts.onWelcome?.(first);
      const peer = new Peer(ws, { ...opts, name: opts.name ?? opts.address });
      finish(undefined, { peer, welcome: first });
    });
  });
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/** Compares tokens in constant time. */
export function tokenMatches(expected: string, given: unknown): boolean {
  if (typeof given !== 'string') return false;
  return timingSafeEqual(digest(expected), digest(given));
}

/** @see AcceptOptions.maxHelloBytes */
export const DEFAULT_MAX_HELLO_BYTES = 256 * 1024;

export interface AcceptOptions {
  token: string;
  /**
   * Largest hello frame; a larger first frame is refused before it is decoded. The token was already checked at
   * the upgrade (accept.ts), so this bounds what an authenticated peer's first frame may cost, not a stranger's. A
   * worker that rejoins lists its running replicas in it: 100 replicas and 8 GPUs encode to about 12 KB.
   * @default 262144 (256 KiB)
   */
  maxHelloBytes?: number;
  logger: Logger;
  /** Remote address for the log line of a refusal. */
  remote: string;
  timeoutMs?: number;
}

/**
 * Server side of the handshake: waits for hello, checks version and token. Resolves with the hello, after
 * which the caller sends welcome and builds a Peer; on refusal, sends `refuse`, logs, closes, and rejects.
 */
export function acceptHello(ws: WebSocket, opts: AcceptOptions): Promise<HelloMessage> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => refuse('ERR_PROTOCOL', `no hello within ${opts.timeoutMs ?? 10_000} ms`), opts.timeoutMs ?? 10_000);
    const refuse = (code: string, message: string): void => {
      clearTimeout(timer);
      opts.logger.warn('connection refused', { remote: opts.remote, code, reason: message });
      if (ws.readyState === ws.OPEN) {
        ws.send(encodeMessage({ t: 'refuse', code, message }));
        ws.close(code === 'ERR_UNAUTHORIZED' ? 4001 : 4002, message.slice(0, 100));
      }
      reject(code === 'ERR_UNAUTHORIZED' ? new UnauthorizedError(message) : new ProtocolError(message, code === 'ERR_PROTOCOL_VERSION' ? code : 'ERR_PROTOCOL'));
    };
    ws.once('close', () => { clearTimeout(timer); reject(new PeerGoneError(`${opts.remote} left during hello`)); });
    ws.once('message', (data: Buffer) => {
      const maxHelloBytes = opts.maxHelloBytes ?? DEFAULT_MAX_HELLO_BYTES;
      if (data.length > maxHelloBytes) { refuse('ERR_PROTOCOL', `hello of ${data.length} bytes is over maxHelloBytes=${maxHelloBytes}`); return; }
      let hello: Message | undefined;
      try { hello = decodeFrame(data)[0]; } catch (err) { refuse('ERR_PROTOCOL', (err as Error).message); return; }
      if (hello?.t !== 'hello') { refuse('ERR_PROTOCOL', `first message must be hello, got ${hello?.t}`); return; }
      if (hello.v !== PROTOCOL_VERSION) { refuse('ERR_PROTOCOL_VERSION', `protocol version mismatch: peer speaks ${hello.v}, this side speaks ${PROTOCOL_VERSION}`); return; }
      if (!tokenMatches(opts.token, hello.token)) {
        refuse('ERR_UNAUTHORIZED', hello.token ? 'wrong cluster token' : 'missing cluster token');
        return;
      }
      clearTimeout(timer);
      ws.removeAllListeners('close');
      resolve(hello);
    });
  });
}

export function sendWelcome(ws: WebSocket, welcome: Omit<WelcomeMessage, 't' | 'v'>): void {
  ws.send(encodeMessage({ t: 'welcome', v: PROTOCOL_VERSION, ...welcome }));
}
