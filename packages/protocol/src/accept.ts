/**
 * The server side of a cluster or data endpoint, on an http.Server: WebSocket upgrades that carry the cluster
 * token, and a bound on connections that have not yet shown it.
 *
 * - The token is checked at the HTTP upgrade (`Authorization: Bearer <token>`, which connectPeer sends): a peer
 *   without it is answered 401 and never gets a WebSocket, so it cannot make this process buffer a frame of
 *   maxFrameBytes. The hello's own token check (acceptHello) stays, as a second gate.
 * - A socket that has sent neither a complete HTTP request nor an authenticated upgrade is pending. At most
 *   maxPendingConnections are pending; past it the oldest pending socket is destroyed, so a flood of idle sockets
 *   cannot keep a real peer (which sends its upgrade at once) from joining. A pending socket is destroyed after
 *   pendingTimeoutMs.
 *
 *   const wss = attachWebSocketEndpoint(server, { token, maxFrameBytes, logger, onConnection: (ws, remote) => ... });
 *   server.listen(port);   // wss.clients and wss.close() as usual
 */
import type { IncomingMessage, Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { checkInt, type Logger } from '@shoal/core';
import { tokenMatches } from './connect.ts';

/** @see WebSocketEndpointOptions.maxPendingConnections */
export const DEFAULT_MAX_PENDING_CONNECTIONS = 64;
/** @see WebSocketEndpointOptions.pendingTimeoutMs */
export const DEFAULT_PENDING_TIMEOUT_MS = 10_000;
/** At most one warning per this many ms for shed sockets and for refused upgrades, each. */
const WARN_INTERVAL_MS = 1000;

export interface WebSocketEndpointOptions {
  /** The cluster token every upgrade request must present as `Authorization: Bearer <token>`. */
  token: string;
  /** Largest frame an authenticated connection may send (ws's maxPayload). */
  maxFrameBytes: number;
  /**
   * Sockets that have completed neither an HTTP request nor an authenticated upgrade; past it the oldest is
   * destroyed. @default 64
   */
  maxPendingConnections?: number;
  /** How long a new socket may take to complete its first request or upgrade. @default 10000 */
  pendingTimeoutMs?: number;
  logger: Logger;
  /** An authenticated WebSocket; `remote` is "address:port" for logs. */
  onConnection: (ws: WebSocket, remote: string) => void;
}

/** Counts a repeated event and logs it at most once per WARN_INTERVAL_MS, with how many happened since. */
class RateLimitedWarning {
  private last = -Infinity;
  private count = 0;
  constructor(private readonly logger: Logger, private readonly msg: string) {}

  hit(fields: Record<string, unknown>): void {
    this.count++;
    const now = performance.now();
    if (now - this.last < WARN_INTERVAL_MS) return;
    this.logger.warn(this.msg, { ...fields, sinceLastWarning: this.count });
    this.last = now;
    this.count = 0;
  }
}

function bearer(header: string | undefined): string | undefined {
  return header?.startsWith('Bearer ') ? header.slice(7) : undefined;
}

function remoteOf(socket: Socket | Duplex): string {
  const s = socket as Socket;
  return `${s.remoteAddress ?? '?'}:${s.remotePort ?? '?'}`;
}

/** Answers an upgrade request with a plain HTTP error and closes the socket; no WebSocket is made. */
function refuseUpgrade(socket: Duplex, status: number, reason: string, message: string): void {
  if (socket.writable) {
    socket.end(`HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(message)}\r\n\r\n${message}`);
  }
  socket.destroy();
}

/**
 * A WebSocketServer in noServer mode that takes the upgrades of one http.Server. `clients` are the accepted
 * connections; `close()` also detaches it from the server.
 */
export class WebSocketEndpoint extends WebSocketServer {
  /** Pending sockets in arrival order (a Map keeps it), each with the timer that destroys it. */
  private readonly pending = new Map<Socket | Duplex, NodeJS.Timeout>();
  private readonly detach: () => void;

  constructor(server: Server, opts: WebSocketEndpointOptions) {
    const maxPending = checkInt('maxPendingConnections', opts.maxPendingConnections, 1, DEFAULT_MAX_PENDING_CONNECTIONS);
    const pendingTimeoutMs = checkInt('pendingTimeoutMs', opts.pendingTimeoutMs, 1, DEFAULT_PENDING_TIMEOUT_MS);
    super({ noServer: true, maxPayload: checkInt('maxFrameBytes', opts.maxFrameBytes, 1, 0), perMessageDeflate: false });
    const pending = this.pending;
    const shed = new RateLimitedWarning(opts.logger, 'too many unauthenticated connections; closing the oldest');
    const refused = new RateLimitedWarning(opts.logger, 'connection refused at upgrade');
    const settle = (socket: Socket | Duplex): void => {
      const timer = pending.get(socket);
      if (timer === undefined) return;
      clearTimeout(timer);
      pending.delete(socket);
    };

    const onSocket = (socket: Socket): void => {
      if (pending.size >= maxPending) {
        const oldest = pending.keys().next().value!;
        settle(oldest);
        oldest.destroy();
        shed.hit({ maxPendingConnections: maxPending, closed: remoteOf(oldest) });
      }
      const timer = setTimeout(() => { settle(socket); socket.destroy(); }, pendingTimeoutMs);
      timer.unref();
      pending.set(socket, timer);
      socket.once('close', () => settle(socket));
    };

    const onRequest = (req: IncomingMessage): void => settle(req.socket);

    const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
      const given = bearer(req.headers.authorization);
      if (!tokenMatches(opts.token, given)) {
        settle(socket);
        const reason = given === undefined ? 'missing cluster token' : 'wrong cluster token';
        refused.hit({ remote: remoteOf(socket), code: 'ERR_UNAUTHORIZED', reason });
        refuseUpgrade(socket, 401, 'Unauthorized', given === undefined ? `${reason}: send "Authorization: Bearer <token>"` : reason);
        return;
      }
      // An invalid WebSocket handshake is answered 400 by ws and its socket closed, which settles it.
      this.handleUpgrade(req, socket, head, (ws) => {
        settle(socket);
        opts.onConnection(ws, remoteOf(socket));
      });
    };

    server.on('connection', onSocket);
    server.on('request', onRequest);
    server.on('upgrade', onUpgrade);
    this.detach = () => {
      server.off('connection', onSocket);
      server.off('request', onRequest);
      server.off('upgrade', onUpgrade);
      for (const timer of pending.values()) clearTimeout(timer);
      pending.clear();
    };
    server.once('close', this.detach);
  }

  /** Sockets that have shown neither a request nor the token yet. */
  get pendingConnections(): number { return this.pending.size; }

  /** Detaches from the server at once, then closes as ws does (emitting 'close' once its clients are gone). */
  override close(cb?: (err?: Error) => void): void {
    this.detach();
    super.close(cb);
  }
}

/** Serves authenticated WebSocket upgrades on `server` and caps its unauthenticated sockets (see the file's doc). */
export function attachWebSocketEndpoint(server: Server, opts: WebSocketEndpointOptions): WebSocketEndpoint {
  return new WebSocketEndpoint(server, opts);
}
