/**
 * One application WebSocket: requests multiplexed by id, each routed to the application's ingress deployment
 * through this process's router, answered with chunk/result/end/error messages (ws-messages.ts).
 *
 * Flow control is the HTTP writer's (stream-route.ts's ChunkWriter): every stream on the socket takes chunks only
 * while the socket holds less than maxBufferedBytes unsent; past it they all wait for the socket's 'drain', take
 * no chunk and so grant no credit, and their generators stop with at most a window produced ahead. A cancel
 * message or the socket closing aborts the request's signal, which the router turns into a cancel at the replica
 * (the generator's finally blocks run, its downstream calls are cancelled through its own request's signal).
 *
 * Answers are bounded too: once the socket holds more than maxBufferedBytes unsent, it is no longer read (ws
 * pause(), so TCP pushes back on the client) until it drains; messages ws had already parsed wait in a backlog
 * (at most one read's worth) and are handled, in order, once it has. A cancel is acted on at once.
 */
import type { Duplex } from 'node:stream';
import { WebSocket, type RawData } from 'ws';
import {
  BadRequestError, CancelledError, LIFECYCLE_HOOKS, LazyAbortController, NotFoundError, QueueFullError, newTraceContext, type Logger, type TraceContext,
} from '@shoal/core';
import type { Router } from '@shoal/router';
import { pipeChunks, routeStream } from './stream-route.ts';
import { chunkMessage, endMessage, errorMessage, idJson, parseClientMessage, resultMessage, type WsCall, type WsRequestId } from './ws-messages.ts';
import type { CompiledWebSocketOptions } from './ws-options.ts';

/** What a socket needs of the application it was opened on; read again for every request (apps are re-mounted). */
export interface WsMount {
  /** `app/ingressDeployment`, the router key. */
  key: string;
  app: string;
  /**
   * The deployment's websocketMethods allow-list, or undefined: then every method name but fetch, the lifecycle
   * hooks, Object.prototype's and names starting with `_` is sent to the replica (prototype methods and
   * function-valued instance fields such as continuousBatch() or batch() ones; the replica answers
   * ERR_NOT_FOUND for one it does not have).
   */
  websocketMethods?: readonly string[] | undefined;
  /** The deployment's default deadline (0: none). */
  requestTimeoutMs: number;
}

/** What the upgrade request set for every request on the socket (each message may override timeout and priority). */
export interface WsConnectionDefaults {
  /** From x-shoal-timeout-ms: each request's deadline, from its arrival. @default the deployment's requestTimeoutMs */
  timeoutMs?: number;
  priority?: number;
  modelId?: string;
  /** The upgrade's X-Request-ID: a request's id is `<this>/<message id>`. */
  requestId: string;
  /** The upgrade's traceparent; without it each request starts a trace. */
  trace?: TraceContext;
}

/** Told of the WebSocket traffic of the applications, for metrics. Keep it cheap. */
export interface WebSocketObserver {
  /** The series of one application, bound once per socket. */
  forApp(app: string): WebSocketAppObserver;
}

export interface WebSocketAppObserver {
  opened(): void;
  closed(): void;
  /** A message read from the client. */
  received(): void;
  /** `n` messages sent to the client (chunks, results, ends, errors). */
  sent(n: number): void;
}

export interface WsSessionOptions {
  router: Router;
  logger: Logger;
  limits: CompiledWebSocketOptions;
  /** The application's mount now, or undefined once it is no longer served here. */
  mount: () => WsMount | undefined;
  defaults: WsConnectionDefaults;
  observer?: WebSocketObserver;
}

interface Pending {
  readonly id: WsRequestId;
  readonly idJson: string;
  readonly signal: LazyAbortController;
  /** Set by a cancel message or the socket closing: what the request is answered with. */
  cancelled: Error | undefined;
  /** Set while its stream waits for the socket to drain. */
  wake: (() => void) | undefined;
}

/** Never sent to a replica from a WebSocket: an HTTP entry point, lifecycle hooks, Object.prototype's members. */
const REFUSED: ReadonlySet<string> = new Set(['fetch', ...LIFECYCLE_HOOKS, ...Object.getOwnPropertyNames(Object.prototype)]);

/** What a socket holds now (a test and debugging hook). */
export interface WsSessionStats {
  inflight: number;
  /** ws's bufferedAmount: bytes written and not yet sent. */
  bufferedBytes: number;
  /** True while the socket is not read because it holds more than maxBufferedBytes unsent. */
  readPaused: boolean;
  /** Messages read and not yet handled (they wait for the socket to drain). */
  backlog: number;
}

export class WsSession {
  private readonly pending = new Map<WsRequestId, Pending>();
  private readonly waiting = new Set<Pending>();
  private closed = false;
  private readonly app: string;
  private readonly observer: WebSocketAppObserver | undefined;
  /** Set while reads are paused: messages ws had parsed already, handled once the socket drains. */
  private backlog: Array<[RawData, boolean]> | undefined;
  private readPaused = false;
  /** A ping went out and its pong has not come back. */
  private awaitingPong = false;

  constructor(private readonly ws: WebSocket, private readonly socket: Duplex, app: string, private readonly opts: WsSessionOptions) {
    this.app = app;
    this.observer = opts.observer?.forApp(app);
    ws.on('message', (data, isBinary) => this.onMessage(data, isBinary));
    ws.on('close', () => this.onClose());
    // A frame over maxPayload or a protocol violation: ws closes the socket (1009, 1002) and 'close' follows.
    ws.on('error', (err) => this.opts.logger.debug('WebSocket error', { app, error: err.message }));
    ws.on('pong', () => { this.awaitingPong = false; });
    // 'drain' comes once the socket's buffer empties after a write that found it full.
    socket.on('drain', () => this.onDrain());
    this.observer?.opened();
  }

  /** Requests in flight on this socket. */
  get inflight(): number { return this.pending.size; }

  stats(): WsSessionStats {
    return { inflight: this.pending.size, bufferedBytes: this.ws.bufferedAmount, readPaused: this.readPaused, backlog: this.backlog?.length ?? 0 };
  }

  /** Closes the socket (its requests are cancelled once it has closed). */
  close(code: number, reason: string): void {
    // Reads resume so the client's closing frame is read; what it sent before is no longer handled.
    this.backlog = undefined;
    if (this.readPaused) { this.readPaused = false; this.ws.resume(); }
    this.ws.close(code, reason);
  }

  /**
   * The gateway's heartbeat, every pingIntervalMs: a socket that did not answer the previous ping is cut (its
   * requests are cancelled, as when it closes), any other is pinged. A client that reads nothing for a whole
   * interval gets its ping behind what it did not read, and is cut too.
   */
  heartbeat(): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    if (this.awaitingPong) {
      this.opts.logger.debug('WebSocket peer missed a ping: closing it', { app: this.app, inflight: this.pending.size });
      this.ws.terminate();
      return;
    }
    this.awaitingPong = true;
    this.ws.ping();
  }

  /** Closes the socket at once, without a closing handshake. */
  terminate(): void {
    this.ws.terminate();
  }

  private onMessage(data: RawData, isBinary: boolean): void {
    this.observer?.received();
    if (this.ws.readyState !== WebSocket.OPEN) return;
    if (this.backlog !== undefined) {
      // A cancel is acted on at once; anything else waits its turn behind what was read before it.
      if (!isBinary) {
        const m = parseClientMessage(text(data));
        if (m.kind === 'cancel') { this.cancel(m.id); return; }
      }
      this.backlog.push([data, isBinary]);
      return;
    }
    this.handle(data, isBinary);
  }

  private handle(data: RawData, isBinary: boolean): void {
    if (isBinary) {
      this.sendError('null', new BadRequestError('WebSocket binary messages are not read: send each request as a JSON text message'));
      return;
    }
    const m = parseClientMessage(text(data));
    if (m.kind === 'bad') { this.sendError(idJson(m.id), m.error); return; }
    if (m.kind === 'cancel') { this.cancel(m.id); return; }
    this.call(m);
  }

  private call(m: WsCall): void {
    const id = idJson(m.id);
    if (this.pending.has(m.id)) { this.sendError(id, new BadRequestError(`WebSocket request id ${id} is already in flight on this socket: ids must be unique among requests in flight`)); return; }
    const max = this.opts.limits.maxInflightPerSocket;
    if (this.pending.size >= max) {
      this.sendError(id, new QueueFullError(`too many requests in flight on this WebSocket: inflight=${this.pending.size}, maxInflightPerSocket=${max}`, { inflight: this.pending.size, maxInflightPerSocket: max, retryAfterMs: 100 }));
      return;
    }
    const mount = this.opts.mount();
    if (mount === undefined) { this.sendError(id, new NotFoundError(`application "${this.app}" is no longer served here`)); return; }
    const allowed = mount.websocketMethods;
    const refused = REFUSED.has(m.method) || m.method.startsWith('_');
    if (refused || (allowed !== undefined && !allowed.includes(m.method))) {
      // fetch() takes an HTTP request, which a JSON message does not carry; hooks and private names are not requests.
      const why = !refused && allowed !== undefined ? `its websocketMethods are: ${allowed.join(', ') || 'none'}` : 'fetch, lifecycle hooks, Object.prototype members and names starting with "_" are not';
      this.sendError(id, new NotFoundError(`deployment "${mount.key}" has no method "${m.method}" callable over a WebSocket (${why})`));
      return;
    }
    const p: Pending = { id: m.id, idJson: id, signal: new LazyAbortController(), cancelled: undefined, wake: undefined };
    this.pending.set(m.id, p);
    void this.run(m, p, mount);
  }

  private async run(m: WsCall, p: Pending, mount: WsMount): Promise<void> {
    const d = this.opts.defaults;
    const timeoutMs = m.timeoutMs ?? d.timeoutMs ?? mount.requestTimeoutMs;
    const priority = m.priority ?? d.priority;
    try {
      const answer = await routeStream(this.opts.router, mount.key, { method: m.method, args: m.args }, {
        deadline: timeoutMs > 0 ? Date.now() + timeoutMs : undefined,
        signal: p.signal,
        requestId: `${d.requestId}/${String(m.id)}`,
        trace: d.trace ?? newTraceContext(),
        window: this.opts.limits.window,
        ...(priority === undefined ? {} : { priority }),
        ...(d.modelId === undefined ? {} : { modelId: d.modelId }),
      });
      if (answer.stream === undefined) {
        this.send(resultMessage(p.idJson, answer.value));
      } else {
        await pipeChunks(answer.stream, { write: (chunks) => this.write(p, chunks), drained: () => this.drained(p) });
        this.send(endMessage(p.idJson));
      }
    } catch (err) {
      this.sendError(p.idJson, p.cancelled ?? err);
    } finally {
      this.pending.delete(p.id);
      this.waiting.delete(p);
    }
  }

  /** A stream's chunks, one message each; false once the socket holds more than its bound unsent. */
  private write(p: Pending, chunks: readonly unknown[]): boolean {
    if (this.ws.readyState !== WebSocket.OPEN || p.cancelled !== undefined) return false;
    for (const c of chunks) this.ws.send(chunkMessage(p.idJson, c));
    this.observer?.sent(chunks.length);
    // Reads go on past the bound (the streams wait, so a cancel is read at once); results, ends and errors pause them.
    return this.ws.bufferedAmount <= this.opts.limits.maxBufferedBytes;
  }

  /**
   * Stops reading a socket past its bound. Only while its own buffer is past its high-water mark, which
   * guarantees the 'drain' that resumes it; below that mark the bytes are about to go anyway.
   */
  private pauseReads(): void {
    if (this.readPaused || !this.socket.writableNeedDrain || this.ws.readyState !== WebSocket.OPEN) return;
    this.readPaused = true;
    this.backlog ??= [];
    this.ws.pause();
  }

  /** The socket drained: streams go on, the backlog is handled (until the socket is past its bound again), reads resume. */
  private onDrain(): void {
    this.wakeAll();
    if (!this.readPaused) return;
    this.readPaused = false;
    const backlog = this.backlog;
    if (backlog !== undefined) {
      let i = 0;
      while (i < backlog.length && !this.readPaused && this.ws.readyState === WebSocket.OPEN) {
        const [data, isBinary] = backlog[i++]!;
        this.handle(data, isBinary);
      }
      backlog.splice(0, i);
      if (this.readPaused) return;
      this.backlog = undefined;
    }
    if (this.ws.readyState === WebSocket.OPEN) this.ws.resume();
  }

  /**
   * Resolves when the socket drained, the request was cancelled, or the socket closed. A socket past the bound
   * whose own buffer is below its high-water mark (a bound set under it) has no 'drain' to wait for: go on.
   * A stream that ends meanwhile (the router's deadline cancels it) stops pipeChunks waiting on this, so its error
   * is sent and it leaves `pending` while the client still reads nothing.
   */
  private drained(p: Pending): Promise<void> {
    if (this.closed || p.cancelled !== undefined) return Promise.resolve();
    if (this.ws.readyState === WebSocket.OPEN && !this.socket.writableNeedDrain) return Promise.resolve();
    return new Promise<void>((resolve) => { p.wake = resolve; this.waiting.add(p); });
  }

  private wakeAll(): void {
    if (this.waiting.size === 0) return;
    const ps = [...this.waiting];
    this.waiting.clear();
    for (const p of ps) { const w = p.wake; p.wake = undefined; w?.(); }
  }

  /** A cancel for an id not in flight is ignored: its answer may have crossed the cancel on the wire. */
  private cancel(id: WsRequestId): void {
    const p = this.pending.get(id);
    if (p === undefined) return;
    this.abort(p, new CancelledError(`WebSocket request ${p.idJson} cancelled by the client`));
  }

  private abort(p: Pending, reason: Error): void {
    if (p.cancelled !== undefined) return;
    p.cancelled = reason;
    p.signal.abort(reason);
    this.waiting.delete(p);
    const w = p.wake;
    p.wake = undefined;
    w?.();
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.backlog = undefined;
    const reason = new CancelledError('WebSocket client disconnected');
    for (const p of this.pending.values()) this.abort(p, reason);
    this.wakeAll();
    this.observer?.closed();
  }

  private send(message: string): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    this.ws.send(message);
    this.observer?.sent(1);
    if (this.ws.bufferedAmount > this.opts.limits.maxBufferedBytes) this.pauseReads();
  }

  private sendError(id: string, err: unknown): void {
    this.send(errorMessage(id, err));
  }
}

function text(data: RawData): string {
  return Array.isArray(data) ? Buffer.concat(data).toString() : Buffer.isBuffer(data) ? data.toString() : Buffer.from(data).toString();
}
