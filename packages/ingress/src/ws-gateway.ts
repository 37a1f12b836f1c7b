/**
 * WebSocket upgrades on an application's route prefix (docs/streaming.md, "WebSocket"). The HTTP server's
 * 'upgrade' event lands here, never the request path: plain HTTP pays nothing for it. An upgrade reads the same
 * headers as an HTTP request on the route (x-shoal-timeout-ms, x-shoal-priority, x-shoal-model-id, X-Request-ID,
 * traceparent) as defaults for every request on the socket, and its frames are bounded by the ingress deployment's
 * maxRequestBytes, as a request body is.
 */
import { STATUS_CODES, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import {
  InvalidOptionError, MODEL_ID_HEADER, QueueFullError, REQUEST_ID_HEADER, ReplicaUnavailableError, TRACEPARENT_HEADER, checkModelId, parseTraceparent,
  requestIdOf, toWireError, type Logger,
} from '@shoal/core';
import type { Router } from '@shoal/router';
import type { CompiledWebSocketOptions } from './ws-options.ts';
import { WsSession, type WebSocketObserver, type WsConnectionDefaults, type WsMount, type WsSessionStats } from './ws-session.ts';

/** The headers an upgrade shares with HTTP requests (ingress.ts defines them; repeated to keep this file below it). */
const TIMEOUT_HEADER = 'x-shoal-timeout-ms';
const PRIORITY_HEADER = 'x-shoal-priority';

/** A mount as the gateway needs it: the session's view plus the frame bound. */
export interface WsGatewayMount extends WsMount {
  /** The ingress deployment's maxRequestBytes: the largest frame a client may send. */
  maxRequestBytes: number;
}

export interface WsGatewayOptions {
  router: Router;
  logger: Logger;
  limits: CompiledWebSocketOptions;
  /** The mount of an application key now (applications are re-mounted while sockets stay open). */
  mountOf: (key: string) => WsMount | undefined;
  observer?: WebSocketObserver;
}

export class WsGateway {
  /** One noServer WebSocketServer per frame bound in use (ws takes maxPayload per server); a handful at most. */
  private readonly servers = new Map<number, WebSocketServer>();
  private readonly sessions = new Set<WsSession>();
  private closing = false;
  /** One timer pings every socket (pingIntervalMs); running while any is open. */
  private heartbeat: NodeJS.Timeout | undefined;

  constructor(private readonly opts: WsGatewayOptions) {}

  /** Open sockets. */
  get connections(): number { return this.sessions.size; }

  /** Requests in flight on every socket. */
  get inflight(): number {
    let n = 0;
    for (const s of this.sessions) n += s.inflight;
    return n;
  }

  /** Each open socket's state now (a test and debugging hook). */
  stats(): WsSessionStats[] {
    return [...this.sessions].map((s) => s.stats());
  }

  /** Completes the handshake of an upgrade to `mount`, or answers it with an HTTP error and closes the socket. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, mount: WsGatewayMount): void {
    let defaults: WsConnectionDefaults;
    try {
      if (this.closing) throw new ReplicaUnavailableError('this ingress is shutting down: open the WebSocket again, another process serves it');
      const max = this.opts.limits.maxConnections;
      if (this.sessions.size >= max) throw new QueueFullError(`too many WebSocket connections: connections=${this.sessions.size}, maxConnections=${max}`, { connections: this.sessions.size, maxConnections: max, retryAfterMs: 1000 });
      defaults = connectionDefaults(req);
    } catch (err) {
      refuseUpgrade(socket, err);
      return;
    }
    const key = mount.key;
    this.serverFor(mount.maxRequestBytes).handleUpgrade(req, socket, head, (ws) => {
      const session = new WsSession(ws, socket, mount.app, {
        router: this.opts.router, logger: this.opts.logger, limits: this.opts.limits, defaults,
        mount: () => this.opts.mountOf(key),
        ...(this.opts.observer === undefined ? {} : { observer: this.opts.observer }),
      });
      this.sessions.add(session);
      this.startHeartbeat();
      ws.once('close', () => {
        this.sessions.delete(session);
        if (this.sessions.size === 0) this.stopHeartbeat();
      });
    });
  }

  /**
   * Refuses new upgrades; requests in flight get up to `drainMs` to finish, then every socket is closed (1001,
   * going away) and, a moment later, any that did not finish its closing handshake is cut.
   */
  async close(drainMs = 0): Promise<void> {
    this.closing = true;
    this.stopHeartbeat();
    const end = performance.now() + drainMs;
    while (this.inflight > 0 && performance.now() < end) await new Promise((r) => setTimeout(r, 20));
    for (const s of this.sessions) s.close(1001, 'server shutting down');
    const cut = performance.now() + 1000;
    while (this.sessions.size > 0 && performance.now() < cut) await new Promise((r) => setTimeout(r, 20));
    for (const s of this.sessions) s.terminate();
    for (const wss of this.servers.values()) wss.close();
    this.servers.clear();
  }

  private startHeartbeat(): void {
    const ms = this.opts.limits.pingIntervalMs;
    if (ms === 0 || this.heartbeat !== undefined || this.closing) return;
    this.heartbeat = setInterval(() => { for (const s of this.sessions) s.heartbeat(); }, ms);
    this.heartbeat.unref();
  }

  private stopHeartbeat(): void {
    if (this.heartbeat === undefined) return;
    clearInterval(this.heartbeat);
    this.heartbeat = undefined;
  }

  private serverFor(maxPayload: number): WebSocketServer {
    let wss = this.servers.get(maxPayload);
    if (wss === undefined) {
      // No compression: a chunk is small and the per-message deflate context costs memory per socket.
      wss = new WebSocketServer({ noServer: true, maxPayload, perMessageDeflate: false, clientTracking: false });
      this.servers.set(maxPayload, wss);
    }
    return wss;
  }
}

/** The upgrade's headers, read as an HTTP request's are; a bad one refuses the upgrade with 400 naming it. */
export function connectionDefaults(req: IncomingMessage): WsConnectionDefaults {
  const d: WsConnectionDefaults = { requestId: requestIdOf(req.headers[REQUEST_ID_HEADER]) };
  const t = req.headers[TIMEOUT_HEADER];
  if (t !== undefined) {
    const ms = Number(t);
    if (!Number.isFinite(ms) || ms <= 0) throw new InvalidOptionError(`header ${TIMEOUT_HEADER}`, 'must be a positive number of milliseconds', t);
    d.timeoutMs = ms;
  }
  const p = req.headers[PRIORITY_HEADER];
  if (p !== undefined) {
    const priority = Number(p);
    if (typeof p !== 'string' || p.trim() === '' || !Number.isSafeInteger(priority)) throw new InvalidOptionError(`header ${PRIORITY_HEADER}`, 'must be an integer', p);
    d.priority = priority;
  }
  const model = req.headersDistinct[MODEL_ID_HEADER];
  if (model !== undefined) {
    if (model.length > 1) throw new InvalidOptionError(`header ${MODEL_ID_HEADER}`, `must be given once, got ${model.length} values`);
    d.modelId = checkModelId(`header ${MODEL_ID_HEADER}`, model[0]);
  }
  const trace = parseTraceparent(req.headers[TRACEPARENT_HEADER]);
  if (trace !== undefined) d.trace = trace;
  return d;
}

/** Answers an upgrade with the error's HTTP status and {"error","code"}, as a refused HTTP request is, and closes. */
export function refuseUpgrade(socket: Duplex, err: unknown): void {
  const w = toWireError(err);
  const status = w.httpStatus ?? 500;
  const body = JSON.stringify({ error: w.message, code: w.code });
  const retry = status === 503 ? `retry-after: ${Math.max(1, Math.ceil(Number(w.details?.retryAfterMs ?? 1000) / 1000))}\r\n` : '';
  socket.on('error', () => socket.destroy());
  socket.once('finish', () => socket.destroy());
  socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${retry}\r\n${body}`);
}
