/**
 * The head node: the controller, the cluster endpoint (workers join over WebSocket; the control API is HTTP on the
 * same port), the HTTP ingress, and, in the embedded default, N local worker processes.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { randomBytes } from 'node:crypto';
import { WebSocketServer, type WebSocket } from 'ws';
import {
  DeployError, NotFoundError, ReplicaUnavailableError, UnauthorizedError, realClock, toWireError, validateAppSpec, type AppSpec,
  type Clock, type Logger,
} from '@shoal/core';
import {
  PROTOCOL_VERSION, Peer, acceptHello, sendWelcome, tokenMatches, type Message, type NewRequest, type RouteTable,
  type WorkerStats,
} from '@shoal/protocol';
import { Router, type Dispatch, type ReplicaRef, type Transport } from '@shoal/router';
import { Controller, type ClusterOps } from './controller.ts';
import { Ingress, type IngressOptions } from './ingress.ts';
import { readBody, sendError, sendJson } from './http-util.ts';
import { LocalWorkers } from './local-workers.ts';
import { HeadMetrics, METRICS_CONTENT_TYPE } from './metrics.ts';

export interface HeadOptions {
  /** Cluster token; generated when not given. */
  token?: string;
  /** Interface of the cluster endpoint and control API. @default '127.0.0.1' */
  host?: string;
  /** Cluster port. @default 7450 */
  port?: number;
  /** Interface of the HTTP ingress. @default '127.0.0.1' */
  httpHost?: string;
  /** HTTP ingress port. @default 8000 */
  httpPort?: number;
  /** Local worker processes to spawn (embedded default). @default 0 */
  workers?: number;
  /** Logical CPUs each local worker offers (each is a whole process that may use every core). @default os.cpus().length */
  workerCpus?: number;
  logger: Logger;
  maxFrameBytes?: number;
  heartbeatMs?: number;
  workerTimeoutMs?: number;
  clock?: Clock;
  /** Called when a control call asks the head to shut down. */
  onShutdownRequest?: () => void;
  extraRoutes?: IngressOptions['extraRoutes'];
}

export class Head {
  readonly token: string;
  readonly controller: Controller;
  readonly router: Router;
  readonly metrics: HeadMetrics;
  private readonly peers = new Map<string, Peer>();
  private readonly ingress: Ingress;
  private server: Server | undefined;
  private wss: WebSocketServer | undefined;
  private loop: NodeJS.Timeout | undefined;
  private locals: LocalWorkers | undefined;
  private readonly opts: HeadOptions & { maxFrameBytes: number; heartbeatMs: number; workerTimeoutMs: number };
  clusterAddress = '';
  httpAddress = '';
  private stopped = false;

  constructor(opts: HeadOptions) {
    this.opts = { maxFrameBytes: 64 * 1024 * 1024, heartbeatMs: 500, workerTimeoutMs: 3000, ...opts };
    this.token = opts.token ?? randomBytes(24).toString('base64url');
    const clock = opts.clock ?? realClock;
    const ops: ClusterOps = {
      startReplica: (w, r, app, d, devices) => this.callWorker(w, { t: 'start', replicaId: r, app, deployment: d, ...(devices === undefined ? {} : { devices }) }),
      stopReplica: (w, r, timeoutMs) => this.callWorker(w, { t: 'stop', replicaId: r, timeoutMs }),
      reconfigure: (w, r, userConfig) => this.callWorker(w, { t: 'reconfigure', replicaId: r, userConfig }),
      checkHealth: (w, r, timeoutMs) => this.callWorker(w, { t: 'health', replicaId: r, timeoutMs }),
      publishRoutes: (table, version) => this.publishRoutes(table, version),
    };
    this.controller = new Controller({ ops, clock, logger: opts.logger.child('controller'), workerTimeoutMs: this.opts.workerTimeoutMs });
    const transport: Transport = { dispatch: (ref, m) => this.dispatch(ref, m) };
    this.router = new Router({ transport, clock, logger: opts.logger.child('router') });
    this.metrics = new HeadMetrics({
      status: () => this.controller.status(), router: () => this.router.stats(), logger: opts.logger.child('metrics'),
      workers: () => [...this.peers.entries()].filter(([, p]) => !p.closed).map(([workerId, p]) => ({
        workerId,
        request: () => {
          const { id, reply } = p.requestWithId({ t: 'metrics' });
          return { reply: reply.then((r) => (r.ok ? r.value : Promise.reject(new Error(r.error.message)))), abandon: () => p.forget(id) };
        },
      })),
    });
    const metrics = { observeHttp: this.metrics.observeHttp.bind(this.metrics), scrape: () => this.metrics.scrape(), contentType: METRICS_CONTENT_TYPE };
    this.ingress = new Ingress({ router: this.router, logger: opts.logger.child('ingress'), isReady: () => this.isReady(), metrics, ...(opts.extraRoutes ? { extraRoutes: opts.extraRoutes } : {}) });
  }

  async start(): Promise<void> {
    const host = this.opts.host ?? '127.0.0.1';
    this.server = createServer((req, res) => { void this.control(req, res); });
    this.wss = new WebSocketServer({ server: this.server, maxPayload: this.opts.maxFrameBytes, perMessageDeflate: false });
    this.wss.on('connection', (ws: WebSocket, req) => { void this.acceptWorker(ws, `${req.socket.remoteAddress}:${req.socket.remotePort}`); });
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(this.opts.port ?? 7450, host, () => resolve());
    });
    const addr = this.server.address();
    this.clusterAddress = `ws://${host}:${typeof addr === 'object' && addr !== null ? addr.port : 0}`;
    const http = await this.ingress.listen(this.opts.httpPort ?? 8000, this.opts.httpHost ?? '127.0.0.1');
    this.httpAddress = `http://${http.host}:${http.port}`;
    this.loop = setInterval(() => {
      this.controller.checkWorkers();
      void this.controller.reconcile();
    }, 200);
    this.loop.unref();
    if ((this.opts.workers ?? 0) > 0) {
      this.locals = new LocalWorkers({ count: this.opts.workers!, address: this.clusterAddress, token: this.token, logger: this.opts.logger.child('local-workers'), ...(this.opts.workerCpus ? { cpus: this.opts.workerCpus } : {}) });
      this.locals.start();
    }
    this.opts.logger.info('head started', { cluster: this.clusterAddress, http: this.httpAddress });
  }

  /** Waits until n workers have joined. */
  async waitForWorkers(n: number, timeoutMs = 30_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (this.controller.aliveWorkers().length < n) {
      if (Date.now() > end) throw new ReplicaUnavailableError(`only ${this.controller.aliveWorkers().length} of ${n} workers joined within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async deploy(spec: AppSpec): Promise<void> {
    this.controller.deploy(spec);
    this.ingress.setApps(this.controller.appSpecs());
    await this.controller.reconcile();
  }

  async deleteApp(name: string): Promise<void> {
    this.controller.deleteApp(name);
    this.ingress.setApps(this.controller.appSpecs());
    await this.controller.reconcile();
  }

  /** Waits until the application's replicas are running; throws with the deployment's status message if not. */
  async waitReady(app: string, timeoutMs = 60_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!this.controller.isReady(app)) {
      if (Date.now() > end) {
        const st = this.controller.status().applications.find((a) => a.name === app);
        const why = st?.deployments.filter((d) => d.status !== 'HEALTHY').map((d) => `${d.name}: ${d.status} ${d.message}`).join('; ');
        throw new DeployError(`application "${app}" not ready within ${timeoutMs} ms: ${why ?? 'unknown application'}`, 503);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  isReady(): boolean {
    const apps = this.controller.appSpecs();
    return this.controller.aliveWorkers().length > 0 && apps.every((a) => this.controller.isReady(a.name));
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.loop);
    this.router.close();
    for (const p of this.peers.values()) p.close(1001, 'head stopping');
    await this.locals?.stop();
    await this.ingress.close();
    for (const c of this.wss?.clients ?? []) c.terminate();
    this.wss?.close();
    const server = this.server;
    if (server !== undefined) {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    this.opts.logger.info('head stopped');
  }

  /**
   * Gauges of the whole cluster, for metrics and tests: this head's router (the HTTP ingress and handles made
   * here) and, per connected worker, its replicas (batch queues included) and its router.
   */
  async stats(): Promise<{ router: ReturnType<Router['stats']>; workers: WorkerStats[] }> {
    const workers = await Promise.all([...this.peers.values()].filter((p) => !p.closed).map((p) => p.call({ t: 'stats' }) as Promise<WorkerStats>));
    return { router: this.router.stats(), workers };
  }

  /** Local worker pids, for tests and the CLI. */
  localWorkerPids(): number[] {
    return this.locals?.pids() ?? [];
  }

  private async callWorker(workerId: string, message: NewRequest): Promise<void> {
    const peer = this.peers.get(workerId);
    if (peer === undefined) throw new ReplicaUnavailableError(`worker ${workerId} is not connected`);
    await peer.call(message);
  }

  private dispatch(ref: ReplicaRef, message: NewRequest): Dispatch {
    const peer = this.peers.get(ref.workerId);
    if (peer === undefined || peer.closed) {
      return { reply: Promise.reject(new ReplicaUnavailableError(`worker ${ref.workerId} of replica ${ref.replicaId} is not connected`)), cancel: () => undefined };
    }
    const { id, reply } = peer.requestWithId(message);
    return {
      reply,
      cancel: () => {
        if (peer.closed) return;
        peer.forget(id);
        peer.send({ t: 'cancel', id });
      },
    };
  }

  private publishRoutes(table: RouteTable, version: number): void {
    this.router.updateRoutes(table, version);
    for (const p of this.peers.values()) if (!p.closed) p.send({ t: 'routes', version, table });
  }

  private async acceptWorker(ws: WebSocket, remote: string): Promise<void> {
    const log = this.opts.logger;
    let hello;
    try {
      hello = await acceptHello(ws, { token: this.token, logger: log, remote });
    } catch {
      return; // refused and logged
    }
    if (hello.role !== 'worker' || hello.resources === undefined || hello.dataAddress === undefined) {
      ws.close(4002, 'only workers join the cluster endpoint');
      return;
    }
    const rec = this.controller.addWorker({ name: hello.name, resources: hello.resources, dataAddress: hello.dataAddress, pid: hello.pid });
    sendWelcome(ws, { workerId: rec.workerId, heartbeatMs: this.opts.heartbeatMs });
    const peer = new Peer(ws, {
      name: `worker ${rec.workerId} (${hello.name})`,
      maxFrameBytes: this.opts.maxFrameBytes,
      logger: log,
      onMessage: (m) => this.onWorkerMessage(rec.workerId, m),
      onClose: (err) => {
        this.peers.delete(rec.workerId);
        if (this.stopped) return; // the head is going away: nothing to re-place
        this.router.dropWorker(rec.workerId);
        this.controller.workerDead(rec.workerId, err.message);
        void this.controller.reconcile();
      },
    });
    this.peers.set(rec.workerId, peer);
    const routes = this.controller.currentRoutes();
    peer.send({ t: 'routes', version: routes.version, table: routes.table });
    void this.controller.reconcile();
  }

  private onWorkerMessage(workerId: string, m: Message): void {
    if (m.t === 'hb') { this.controller.heartbeat(workerId); return; }
    if (m.t === 'replicaState') return; // the controller learns states from start/stop replies; this is for logs
    this.opts.logger.debug('unexpected message from worker', { workerId, type: m.t });
  }

  /** The control API: deploy, delete, status, shutdown; every call presents the cluster token. */
  private async control(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const url = new URL(req.url ?? '/', 'http://head');
      if (url.pathname === '/api/healthz') { sendJson(res, 200, { status: 'ok', protocol: PROTOCOL_VERSION }); return; }
      const auth = req.headers.authorization;
      const given = auth?.startsWith('Bearer ') ? auth.slice(7) : undefined;
      if (!tokenMatches(this.token, given)) {
        this.opts.logger.warn('control call refused', { remote: req.socket.remoteAddress, path: url.pathname, reason: given ? 'wrong token' : 'missing token' });
        req.resume();
        throw new UnauthorizedError(given ? 'wrong cluster token' : 'missing cluster token: send "Authorization: Bearer <token>"');
      }
      if (req.method === 'GET' && url.pathname === '/api/status') { sendJson(res, 200, { ...this.controller.status(), cluster: this.clusterAddress, http: this.httpAddress }); return; }
      if (req.method === 'GET' && url.pathname === '/api/stats') { sendJson(res, 200, await this.stats()); return; }
      if (req.method === 'POST' && url.pathname === '/api/apps') {
        // Re-validated and compiled here: the body comes from outside, whatever built it.
        const spec = validateAppSpec(JSON.parse((await readBody(req, 16 * 1024 * 1024, 'the control API')).toString()));
        await this.deploy(spec);
        const wait = url.searchParams.get('wait');
        if (wait !== null) await this.waitReady(spec.name, Number(wait) || 60_000);
        sendJson(res, 200, { ok: true, app: spec.name, http: this.httpAddress });
        return;
      }
      const del = /^\/api\/apps\/([^/]+)$/.exec(url.pathname);
      if (req.method === 'DELETE' && del !== null) { await this.deleteApp(decodeURIComponent(del[1]!)); sendJson(res, 200, { ok: true }); return; }
      if (req.method === 'POST' && url.pathname === '/api/shutdown') {
        sendJson(res, 200, { ok: true });
        setImmediate(() => (this.opts.onShutdownRequest ? this.opts.onShutdownRequest() : void this.stop()));
        return;
      }
      req.resume();
      throw new NotFoundError(`no control endpoint ${req.method} ${url.pathname}`);
    } catch (err) {
      if (err instanceof SyntaxError) { sendJson(res, 400, { error: `malformed JSON: ${err.message}`, code: 'ERR_BAD_REQUEST' }); return; }
      this.opts.logger.debug('control call failed', { error: toWireError(err).message });
      sendError(res, err);
    }
  }
}
