/**
 * The HTTP ingress. Every worker runs one (in the embedded default they share the head's public port, handed to
 * them as a listening socket); the head runs one only when it has no local workers. Each application mounts at
 * its route prefix; a request goes through this process's router to a replica of the application's ingress
 * deployment: in process when the chosen replica is local (no hop), else over one data-plane connection.
 * Also /-/healthz (liveness), /-/ready (readiness; /-/ready/worker: this process's own, where given), /-/routes, and /-/metrics (Prometheus) when a metrics source is
 * given. Extra routes (the Open Inference Protocol) run inside the same pipeline: deadline, cancellation when the
 * client leaves, priority, request metrics.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import {
  CancelledError, ChunkStream, DEFAULT_STREAM_WINDOW, InvalidOptionError, LazyAbortController, MODEL_ID_HEADER, NotFoundError, REQUEST_ID_HEADER, SpanKinds, TRACEPARENT_HEADER, checkModelId, newTraceContext,
  parseTraceparent, requestIdOf, startSpan, tracingActive, type AppSpec, type Logger, type ShoalSpan, type TraceContext, type WireHttpRequest,
} from '@shoal/core';
import type { Router } from '@shoal/router';
import { readBody, sendError, sendJson, sendResponse, type HttpAnswer } from './http-util.ts';
import { chunkedBytes, chunkedContentType, framingFor, SSE_CONTENT_TYPE, SSE_END, sseError, sseEvent } from './stream-framing.ts';
import { pipeChunks, type ChunkWriter } from './stream-route.ts';
import { refuseUpgrade, WsGateway } from './ws-gateway.ts';
import { compileWebSocketOptions, type CompiledWebSocketOptions, type WebSocketOptions } from './ws-options.ts';
import type { WebSocketObserver } from './ws-session.ts';

interface Mount { prefix: string; key: string; app: string; maxRequestBytes: number; requestTimeoutMs: number; methods: readonly string[]; websocketMethods: readonly string[] | undefined }

/** What an extra route learns about a request that went through the pipeline's first steps. */
export interface RequestScope {
  /** Absolute deadline (Date.now() ms), from x-shoal-timeout-ms; undefined for none. */
  deadline: number | undefined;
  priority: number | undefined;
  /** Aborted when the client disconnects. */
  signal: LazyAbortController;
  /** X-Request-ID (the client's, or a new one; echoed in the answer). */
  requestId: string;
  /** The ingress span's context (or the client's traceparent, or a new trace, when tracing is off). */
  trace: TraceContext;
}

/**
 * A protocol mounted beside the applications (the Open Inference Protocol at /v2). `match` claims a path;
 * `serve` answers a claimed request whose body has been read, inside the same pipeline as application requests.
 */
export interface ExtraRoute {
  /** For metrics: the app label of the requests this route answers. */
  readonly name: string;
  match(pathname: string): boolean;
  /** Body bound and default deadline of a claimed path (a model's deployment options, for OIP infer). */
  limits(pathname: string): { maxRequestBytes: number; requestTimeoutMs: number };
  serve(req: WireHttpRequest, scope: RequestScope): Promise<HttpAnswer>;
}

export interface IngressOptions {
  router: Router;
  logger: Logger;
  /** /-/ready answers 200 when this is true. */
  isReady: () => boolean;
  /**
   * /-/ready/worker answers 200 when this is true: this process can take requests itself, whatever the rest of the
   * cluster's state (a pod's readiness; /-/ready is the cluster's). @default none (/-/ready/worker answers 404)
   */
  isWorkerReady?: () => boolean;
  /** Routes tried before application prefixes. @default none */
  extraRoutes?: ExtraRoute[];
  /** Told of every answered application request; serves /-/metrics. @default none (no /-/metrics) */
  metrics?: IngressMetrics;
  /** Connections idle longer than this are closed. @default 65000 */
  keepAliveTimeoutMs?: number;
  /** Bounds of WebSocket upgrades on application routes (docs/streaming.md, "WebSocket"). @default see WebSocketOptions */
  websocket?: WebSocketOptions;
}

export interface IngressMetrics {
  observeHttp(app: string, code: number, seconds: number): void;
  /** The Prometheus text exposition. */
  scrape(): Promise<string>;
  contentType: string;
  /** Told of WebSocket connections and messages. @default none */
  websocket?: WebSocketObserver;
}

/** Where to serve: a port and interface, or a listening handle passed in by a parent process. */
export type ListenTarget = { port: number; host: string } | { handle: object };

const EMPTY = Buffer.alloc(0);
const INFLIGHT = Symbol('shoal.inflight');
/** Marks a connection whose close listener is installed but has no request in flight. */
const DONE = new LazyAbortController();
DONE.abort(new CancelledError('done'));

/** Header that sets a request's deadline in ms from arrival. */
export const TIMEOUT_HEADER = 'x-shoal-timeout-ms';
/** An integer priority for the request (higher is dequeued first by batched methods); it flows to downstream calls. */
export const PRIORITY_HEADER = 'x-shoal-priority';
/** The model a multiplexed deployment serves the request with (1-256 characters, no control characters); it flows to downstream calls. */
export { MODEL_ID_HEADER };

/** Where a request goes: an application's ingress deployment, or an extra route. */
type Target = { kind: 'app'; mount: Mount; path: string } | { kind: 'extra'; route: ExtraRoute; path: string; limits: { maxRequestBytes: number; requestTimeoutMs: number } };

export class Ingress {
  private mounts: Mount[] = [];
  private server: Server | undefined;
  private inflight = 0;
  /** Set by close(): answers say `connection: close`, so keep-alive clients move to another process. */
  private closing = false;
  private readonly opts: IngressOptions;
  private readonly wsLimits: CompiledWebSocketOptions;
  /** Made at the first WebSocket upgrade. */
  private ws: WsGateway | undefined;

  constructor(opts: IngressOptions) {
    this.opts = opts;
    this.wsLimits = compileWebSocketOptions(opts.websocket);
  }

  /** Re-mounts every application (longest prefix first). */
  setApps(apps: readonly AppSpec[]): void {
    const mounts: Mount[] = [];
    for (const a of apps) {
      if (a.routePrefix === null) continue;
      const ingress = a.deployments.find((d) => d.name === a.ingress);
      if (ingress === undefined) continue;
      mounts.push({ prefix: a.routePrefix.replace(/\/+$/, ''), key: `${a.name}/${a.ingress}`, app: a.name, maxRequestBytes: ingress.options.maxRequestBytes, requestTimeoutMs: ingress.options.requestTimeoutMs, methods: ingress.methods, websocketMethods: ingress.options.websocketMethods });
    }
    mounts.sort((x, y) => y.prefix.length - x.prefix.length);
    this.mounts = mounts;
  }

  /** Starts serving; resolves with the port (the handle's own port when given one). */
  listen(target: ListenTarget): Promise<{ port: number; host: string }> {
    const server = createServer({ keepAliveTimeout: this.opts.keepAliveTimeoutMs ?? 65_000 }, (req, res) => this.handle(req, res));
    // Upgrades arrive on their own event, off the request path.
    server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => this.upgrade(req, socket, head));
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      const done = (): void => {
        const addr = server.address();
        const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
        const host = typeof addr === 'object' && addr !== null ? addr.address : '';
        resolve({ port, host: 'host' in target ? target.host : host });
      };
      if ('handle' in target) server.listen(target.handle, done);
      else server.listen(target.port, target.host, done);
    });
  }

  /**
   * Stops accepting; requests in flight get up to `drainMs` to be answered (each with `connection: close`, and
   * idle keep-alive connections are closed at once), then every connection still open is closed.
   */
  async close(drainMs = 0): Promise<void> {
    const server = this.server;
    if (server === undefined) return;
    this.server = undefined;
    this.closing = true;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    const end = performance.now() + drainMs;
    while (this.inflight > 0 && performance.now() < end) {
      await new Promise((r) => setTimeout(r, 20));
      server.closeIdleConnections();
    }
    server.closeAllConnections();
    await this.ws?.close(Math.max(0, end - performance.now()));
    await closed;
  }

  /** HTTP requests being handled now. */
  get inflightRequests(): number { return this.inflight; }

  private match(pathname: string): Target | undefined {
    for (const r of this.opts.extraRoutes ?? []) if (r.match(pathname)) return { kind: 'extra', route: r, path: pathname, limits: r.limits(pathname) };
    for (const m of this.mounts) {
      if (m.prefix === '') return { kind: 'app', mount: m, path: pathname };
      if (pathname === m.prefix || pathname.startsWith(`${m.prefix}/`)) return { kind: 'app', mount: m, path: pathname.slice(m.prefix.length) || '/' };
    }
    return undefined;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const pathname = q < 0 ? url : url.slice(0, q);
    // Every answer carries the request's id, a 404 or a built-in endpoint's too.
    const requestId = requestIdOf(req.headers[REQUEST_ID_HEADER]);
    res.setHeader(REQUEST_ID_HEADER, requestId);
    if (pathname.startsWith('/-/')) { req.resume(); this.builtin(pathname, res); return; }
    const target = this.match(pathname);
    if (target === undefined) {
      req.resume();
      sendError(res, new NotFoundError(`no application serves ${pathname}`));
      return;
    }
    void this.forward(req, res, target, pathname, q < 0 ? '' : url.slice(q + 1), requestId);
  }

  private async forward(req: IncomingMessage, res: ServerResponse, target: Target, pathname: string, query: string, requestId: string): Promise<void> {
    const arrived = Date.now();
    const started = performance.now();
    const label = target.kind === 'app' ? target.mount.app : target.route.name;
    this.inflight++;
    const parent = parseTraceparent(req.headers[TRACEPARENT_HEADER]);
    let span: ShoalSpan | undefined;
    if (tracingActive()) {
      span = startSpan(`${req.method ?? 'GET'} ${target.kind === 'app' ? target.mount.prefix || '/' : target.route.name}`, parent, SpanKinds.SERVER, undefined, started);
      if (span.context.sampled) {
        span.setAttribute('http.request.method', req.method ?? 'GET');
        span.setAttribute('url.path', pathname);
        span.setAttribute('shoal.request_id', requestId);
      } else {
        span = undefined;
      }
    }
    const trace = span?.context ?? parent ?? newTraceContext();
    try {
      const header = req.headers[TIMEOUT_HEADER];
      let deadline: number | undefined;
      if (header !== undefined) {
        const ms = Number(header);
        if (!Number.isFinite(ms) || ms <= 0) throw new InvalidOptionError(`header ${TIMEOUT_HEADER}`, 'must be a positive number of milliseconds', header);
        deadline = arrived + ms;
      } else {
        const timeoutMs = target.kind === 'app' ? target.mount.requestTimeoutMs : target.limits.requestTimeoutMs;
        if (timeoutMs > 0) deadline = arrived + timeoutMs;
      }
      let priority: number | undefined;
      const ph = req.headers[PRIORITY_HEADER];
      if (ph !== undefined) {
        priority = Number(ph);
        if (!Number.isSafeInteger(priority) || typeof ph !== 'string' || ph.trim() === '') throw new InvalidOptionError(`header ${PRIORITY_HEADER}`, 'must be an integer', ph);
      }
      const modelId = modelIdOf(req);
      // No content-length and no transfer-encoding: HTTP/1.1 says there is no body, so do not wait for 'end'.
      const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
      const limit = target.kind === 'app' ? target.mount.maxRequestBytes : target.limits.maxRequestBytes;
      const what = target.kind === 'app' ? `deployment "${target.mount.key}"` : `${target.route.name} ${target.path}`;
      const body = hasBody ? await readBody(req, limit, what) : EMPTY;
      const wire: WireHttpRequest = { method: req.method ?? 'GET', path: target.path, query, headers: req.headers, body };
      // One 'close' listener per connection (not per request) cancels the request in flight on it.
      const signal = new LazyAbortController();
      const socket = req.socket as Socket & { [INFLIGHT]?: LazyAbortController };
      if (socket[INFLIGHT] === undefined) socket.once('close', () => socket[INFLIGHT]?.abort(new CancelledError('HTTP client disconnected')));
      socket[INFLIGHT] = signal;
      let out: HttpAnswer | ChunkStream;
      try {
        // Every application request can take a streamed answer: a fetch() that streams is sent as SSE or chunked.
        out = target.kind === 'app'
          ? await this.opts.router.http(target.mount.key, wire, { deadline, signal, priority, requestId, trace, stream: DEFAULT_STREAM_WINDOW, ...(modelId === undefined ? {} : { modelId }) })
          : await target.route.serve(wire, { deadline, priority, signal, requestId, trace });
        // Still the connection's request in flight while it streams: the client leaving cancels the stream.
        if (ChunkStream.is(out)) { await this.writeStream(req, res, out); return; }
      } finally {
        if (socket[INFLIGHT] === signal) socket[INFLIGHT] = DONE;
      }
      if (res.destroyed) return;
      if (this.closing) res.setHeader('connection', 'close');
      sendResponse(res, out);
    } catch (err) {
      if (res.destroyed) return;
      if (this.closing || (req.readable && !req.readableEnded)) {
        res.setHeader('connection', 'close');
        // A client still sending a body refused here (413) would see the connection reset, not this answer:
        // read and drop the rest first, within bounds.
        if (req.readable && !req.readableEnded) await discardBody(req);
        if (res.destroyed) return;
      }
      sendError(res, err);
    } finally {
      this.inflight--;
      // 499: the client went away before an answer was written.
      const code = res.headersSent ? res.statusCode : 499;
      this.opts.metrics?.observeHttp(label, code, (performance.now() - started) / 1e3);
      if (span !== undefined) {
        span.setAttribute('http.response.status_code', code);
        span.end(code >= 500 ? `HTTP ${code}` : undefined);
      }
    }
  }

  /**
   * Writes a streamed answer (docs/streaming.md): SSE when the client accepts text/event-stream, else chunked
   * transfer. Credit is granted only as chunks are written: while res.write() says the socket is full, no chunk is
   * taken until 'drain', so the generator pauses with at most a window of chunks ahead.
   */
  private async writeStream(req: IncomingMessage, res: ServerResponse, stream: ChunkStream): Promise<void> {
    const sse = framingFor(req.headers.accept) === 'sse';
    let started = false;
    const start = (first: unknown): void => {
      const headers: Record<string, string> = sse
        ? { 'content-type': SSE_CONTENT_TYPE, 'cache-control': 'no-cache', 'x-accel-buffering': 'no' }
        : { 'content-type': chunkedContentType(first) };
      if (this.closing) headers.connection = 'close';
      res.writeHead(200, headers);
      started = true;
    };
    const writer: ChunkWriter = {
      write: (chunks) => {
        if (res.destroyed) return false;
        if (!started) start(chunks[0]);
        if (sse) return res.write(chunks.map(sseEvent).join(''));
        if (chunks.length === 1) return res.write(chunkedBytes(chunks[0]));
        let ok = true;
        res.cork();
        for (const c of chunks) ok = res.write(chunkedBytes(c));
        res.uncork();
        return ok;
      },
      drained: () => (res.destroyed ? Promise.resolve() : new Promise<void>((resolve) => {
        const done = (): void => { res.off('drain', done); res.off('close', done); resolve(); };
        res.once('drain', done);
        res.once('close', done);
      })),
    };
    try {
      await pipeChunks(stream, writer);
      if (res.destroyed) return;
      if (!started) start(undefined);
      res.end(sse ? SSE_END : undefined);
    } catch (err) {
      if (res.destroyed) return;
      if (!started) { sendError(res, err); return; }
      // Cancelled (a deadline) while the client had stopped reading: what is written would wait for it forever, so
      // the socket is freed now rather than holding it.
      if (res.writableNeedDrain) { res.destroy(); return; }
      // SSE can say why; a chunked body can only be cut short, so the client cannot take it for complete.
      if (sse) res.end(sseError(err)); else res.destroy();
    }
  }

  /** A WebSocket upgrade: on an application's route prefix, to its ingress deployment; anywhere else, 404. */
  private upgrade(req: IncomingMessage, socket: Socket, head: Buffer): void {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const pathname = q < 0 ? url : url.slice(0, q);
    const target = pathname.startsWith('/-/') ? undefined : this.match(pathname);
    if (target?.kind !== 'app') { refuseUpgrade(socket, new NotFoundError(`no application takes WebSocket upgrades at ${pathname}`)); return; }
    this.ws ??= new WsGateway({
      router: this.opts.router, logger: this.opts.logger, limits: this.wsLimits,
      mountOf: (key) => this.mounts.find((m) => m.key === key),
      ...(this.opts.metrics?.websocket === undefined ? {} : { observer: this.opts.metrics.websocket }),
    });
    this.ws.upgrade(req, socket, head, target.mount);
  }

  private builtin(pathname: string, res: ServerResponse): void {
    if (pathname === '/-/healthz') { sendJson(res, 200, { status: 'ok' }); return; }
    if (pathname === '/-/ready') {
      const ready = this.opts.isReady();
      sendJson(res, ready ? 200 : 503, { status: ready ? 'ready' : 'not ready' });
      return;
    }
    const workerReady = this.opts.isWorkerReady;
    if (pathname === '/-/ready/worker' && workerReady !== undefined) {
      const ready = workerReady();
      sendJson(res, ready ? 200 : 503, { status: ready ? 'ready' : 'not ready' });
      return;
    }
    if (pathname === '/-/routes') { sendJson(res, 200, Object.fromEntries(this.mounts.map((m) => [m.prefix || '/', m.app]))); return; }
    const metrics = this.opts.metrics;
    if (pathname === '/-/metrics' && metrics !== undefined) {
      metrics.scrape().then(
        (text) => { res.writeHead(200, { 'content-type': metrics.contentType, 'content-length': Buffer.byteLength(text) }).end(text); },
        (err: unknown) => sendError(res, err),
      );
      return;
    }
    sendError(res, new NotFoundError(`no built-in endpoint ${pathname}`));
  }
}

/** The request's model id (header x-shoal-model-id), checked; a header given twice is refused, not joined. */
function modelIdOf(req: IncomingMessage): string | undefined {
  const given = req.headersDistinct[MODEL_ID_HEADER];
  if (given === undefined) return undefined;
  if (given.length > 1) throw new InvalidOptionError(`header ${MODEL_ID_HEADER}`, `must be given once, got ${given.length} values`);
  return checkModelId(`header ${MODEL_ID_HEADER}`, given[0]);
}

/** How much of a refused request body is read and dropped before answering, and for how long at most. */
const DISCARD_MAX_BYTES = 64 * 1024 * 1024;
const DISCARD_MAX_MS = 5000;

function discardBody(req: IncomingMessage): Promise<void> {
  return new Promise((resolve) => {
    let bytes = 0;
    const done = (): void => { clearTimeout(timer); req.off('data', onData); resolve(); };
    const onData = (chunk: Buffer): void => { bytes += chunk.byteLength; if (bytes > DISCARD_MAX_BYTES) done(); };
    const timer = setTimeout(done, DISCARD_MAX_MS);
    req.removeAllListeners('data');
    req.on('data', onData);
    req.once('end', done);
    req.once('close', done);
    req.once('error', done);
    req.resume();
  });
}
