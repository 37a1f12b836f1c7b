/**
 * The HTTP ingress: each application mounts at its route prefix; a request goes through the router straight to
 * the worker hosting the chosen replica of the application's ingress deployment. Also /-/healthz (liveness) and
 * /-/ready (readiness: every application's replicas running), /-/routes, and /-/metrics (Prometheus, when the
 * head gives a metrics source).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { CancelledError, InvalidOptionError, NotFoundError, type AppSpec, type Logger, type WireHttpRequest } from '@shoal/core';
import { CancelToken, type Router } from '@shoal/router';
import { readBody, sendError, sendJson } from './http-util.ts';

interface Mount { prefix: string; key: string; app: string; maxRequestBytes: number; requestTimeoutMs: number }

export interface IngressOptions {
  router: Router;
  logger: Logger;
  isReady: () => boolean;
  /** Extra routes tried before application prefixes (the KServe v2 protocol mounts here). Return true if handled. */
  extraRoutes?: Array<(req: IncomingMessage, res: ServerResponse) => boolean>;
  /** Told of every answered application request; serves /-/metrics. @default none (no /-/metrics) */
  metrics?: IngressMetrics;
}

export interface IngressMetrics {
  observeHttp(app: string, code: number, seconds: number): void;
  /** The Prometheus text exposition. */
  scrape(): Promise<string>;
  contentType: string;
}

/** Header that sets a request's deadline in ms from arrival. */
const EMPTY = Buffer.alloc(0);
const INFLIGHT = Symbol('shoal.inflight');
/** Marks a connection whose close listener is installed but has no request in flight. */
const DONE = new CancelToken();
DONE.cancel(new CancelledError('done'));

export const TIMEOUT_HEADER = 'x-shoal-timeout-ms';
/** An integer priority for the request (higher is dequeued first by batched methods); it flows to downstream calls. */
export const PRIORITY_HEADER = 'x-shoal-priority';

export class Ingress {
  private mounts: Mount[] = [];
  private server: Server | undefined;
  private readonly opts: IngressOptions;

  constructor(opts: IngressOptions) {
    this.opts = opts;
  }

  /** Re-mounts every application (longest prefix first). */
  setApps(apps: readonly AppSpec[]): void {
    const mounts: Mount[] = [];
    for (const a of apps) {
      if (a.routePrefix === null) continue;
      const ingress = a.deployments.find((d) => d.name === a.ingress);
      if (ingress === undefined) continue;
      mounts.push({ prefix: a.routePrefix.replace(/\/+$/, ''), key: `${a.name}/${a.ingress}`, app: a.name, maxRequestBytes: ingress.options.maxRequestBytes, requestTimeoutMs: ingress.options.requestTimeoutMs });
    }
    mounts.sort((x, y) => y.prefix.length - x.prefix.length);
    this.mounts = mounts;
  }

  listen(port: number, host: string): Promise<{ port: number; host: string }> {
    const server = createServer({ keepAliveTimeout: 65_000 }, (req, res) => this.handle(req, res));
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        const addr = server.address();
        resolve({ port: typeof addr === 'object' && addr !== null ? addr.port : port, host });
      });
    });
  }

  close(): Promise<void> {
    const server = this.server;
    if (server === undefined) return Promise.resolve();
    server.closeAllConnections();
    return new Promise((resolve) => server.close(() => resolve()));
  }

  private match(pathname: string): { mount: Mount; rest: string } | undefined {
    for (const m of this.mounts) {
      if (m.prefix === '') return { mount: m, rest: pathname };
      if (pathname === m.prefix || pathname.startsWith(`${m.prefix}/`)) return { mount: m, rest: pathname.slice(m.prefix.length) || '/' };
    }
    return undefined;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const pathname = q < 0 ? url : url.slice(0, q);
    if (pathname.startsWith('/-/')) { this.builtin(pathname, res); return; }
    for (const extra of this.opts.extraRoutes ?? []) if (extra(req, res)) return;
    const hit = this.match(pathname);
    if (hit === undefined) {
      req.resume();
      sendError(res, new NotFoundError(`no application serves ${pathname}`));
      return;
    }
    void this.forward(req, res, hit.mount, hit.rest, q < 0 ? '' : url.slice(q + 1));
  }

  private async forward(req: IncomingMessage, res: ServerResponse, mount: Mount, path: string, query: string): Promise<void> {
    const arrived = Date.now();
    const started = process.hrtime.bigint();
    let deadline: number | undefined;
    try {
      const header = req.headers[TIMEOUT_HEADER];
      if (header !== undefined) {
        const ms = Number(header);
        if (!Number.isFinite(ms) || ms <= 0) throw new InvalidOptionError(`header ${TIMEOUT_HEADER}`, 'must be a positive number of milliseconds', header);
        deadline = arrived + ms;
      } else if (mount.requestTimeoutMs > 0) {
        deadline = arrived + mount.requestTimeoutMs;
      }
      let priority: number | undefined;
      const ph = req.headers[PRIORITY_HEADER];
      if (ph !== undefined) {
        priority = Number(ph);
        if (!Number.isSafeInteger(priority) || typeof ph !== 'string' || ph.trim() === '') throw new InvalidOptionError(`header ${PRIORITY_HEADER}`, 'must be an integer', ph);
      }
      // No content-length and no transfer-encoding: HTTP/1.1 says there is no body, so do not wait for 'end'.
      const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
      const body = hasBody ? await readBody(req, mount.maxRequestBytes, `deployment "${mount.key}"`) : EMPTY;
      const wire: WireHttpRequest = { method: req.method ?? 'GET', path, query, headers: req.headers, body };
      // One 'close' listener per connection (not per request) cancels the request in flight on it.
      const cancel = new CancelToken();
      const socket = req.socket as Socket & { [INFLIGHT]?: CancelToken };
      if (socket[INFLIGHT] === undefined) socket.once('close', () => socket[INFLIGHT]?.cancel(new CancelledError('HTTP client disconnected')));
      socket[INFLIGHT] = cancel;
      let out;
      try {
        out = await this.opts.router.http(mount.key, wire, { deadline, cancel, ...(priority === undefined ? {} : { priority }) });
      } finally {
        if (socket[INFLIGHT] === cancel) socket[INFLIGHT] = DONE;
      }
      if (res.destroyed) return;
      const headers = out.headers;
      headers['content-length'] = String(out.body.byteLength);
      res.writeHead(out.status, headers);
      res.end(out.body);
    } catch (err) {
      if (res.destroyed) return;
      if (req.readable && !req.readableEnded) { res.setHeader('connection', 'close'); req.resume(); }
      sendError(res, err);
    } finally {
      // 499: the client went away before an answer was written.
      this.opts.metrics?.observeHttp(mount.app, res.headersSent ? res.statusCode : 499, Number(process.hrtime.bigint() - started) / 1e9);
    }
  }

  private builtin(pathname: string, res: ServerResponse): void {
    if (pathname === '/-/healthz') { sendJson(res, 200, { status: 'ok' }); return; }
    if (pathname === '/-/ready') {
      const ready = this.opts.isReady();
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
