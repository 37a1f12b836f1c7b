/**
 * The head node: the controller, the cluster endpoint (workers join over WebSocket; the control API, health and
 * cluster metrics are HTTP on the same port) and, in the embedded default, N local worker processes that serve
 * the public HTTP port themselves (the head binds it and hands it over; it never accepts on it). With no local
 * workers the head serves HTTP through its own ingress and router.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { randomBytes } from 'node:crypto';
import { WebSocketServer, type WebSocket } from 'ws';
import {
  DeployError, InvalidOptionError, NotFoundError, ReplicaUnavailableError, UnauthorizedError, assertModuleFile, realClock, toWireError, validateAppSpec, type AppSpec,
  type Clock, type Logger, type WireHttpRequest, type WireHttpResponse,
} from '@shoal/core';
import {
  PROTOCOL_VERSION, Peer, acceptHello, attachWebSocketEndpoint, sendWelcome, tokenMatches, type Message, type NewRequest, type RouteTable,
  type WorkerStats,
} from '@shoal/protocol';
import { Router, type Dispatch, type ReplicaRef, type Transport } from '@shoal/router';
import { Ingress, OipRoute, readBody, sendError, sendJson, type ExtraRoute } from '@shoal/ingress';
import { Controller, type ClusterOps } from './controller.ts';
import { LocalWorkers, bindSharedSocket, type SharedListenSocket, type WorkerCommand } from './local-workers.ts';
import { HeadMetrics, METRICS_CONTENT_TYPE } from './metrics.ts';

/** A transport-free handler of repository requests (@shoal/oip's createKServeHandler over a repository). */
export type RepositoryHandler = (req: { method: string; path: string; headers: Record<string, string | string[] | undefined>; body: Buffer }) => Promise<{ status: number; headers: Record<string, string>; body: Buffer | readonly Buffer[] }>;

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
  /** Local worker processes to spawn (embedded default); they serve the HTTP port. @default 0 */
  workers?: number;
  /** How to start a local worker process (the CLI's `localWorkerCommand()`); required when `workers` > 0. */
  workerCommand?: WorkerCommand;
  /** Logical CPUs each local worker offers (each is a whole process that may use every core). @default os.cpus().length */
  workerCpus?: number;
  logger: Logger;
  maxFrameBytes?: number;
  heartbeatMs?: number;
  workerTimeoutMs?: number;
  clock?: Clock;
  /** Called when a control call asks the head to shut down. */
  onShutdownRequest?: () => void;
  /** Routes the head's own ingress tries before applications (only when it serves HTTP itself: no local workers). */
  extraRoutes?: ExtraRoute[];
}

export class Head {
  readonly token: string;
  readonly controller: Controller;
  readonly router: Router;
  readonly metrics: HeadMetrics;
  private readonly peers = new Map<string, Peer>();
  /** The head's own ingress, when it has no local workers to serve HTTP. */
  private readonly ingress: Ingress | undefined;
  private readonly oip: OipRoute | undefined;
  /** Answers the model repository extension (index, load, unload) for every ingress; set by `shoal serve`. */
  private repository: RepositoryHandler | undefined;
  private shared: SharedListenSocket | undefined;
  private appsVersion = 0;
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
    if ((opts.workers ?? 0) > 0 && opts.workerCommand === undefined) throw new InvalidOptionError('workerCommand', `is required to spawn ${opts.workers} local workers (the CLI's localWorkerCommand() gives it)`);
    if ((opts.workers ?? 0) === 0) {
      const metrics = { observeHttp: this.metrics.observeHttp.bind(this.metrics), scrape: () => this.metrics.scrape(), contentType: METRICS_CONTENT_TYPE };
      this.oip = new OipRoute({ router: this.router, logger: opts.logger.child('oip'), token: this.token, forwardRepository: (req) => this.repositoryCall(req) });
      this.ingress = new Ingress({ router: this.router, logger: opts.logger.child('ingress'), isReady: () => this.isReady(), metrics, extraRoutes: [...(opts.extraRoutes ?? []), this.oip] });
    } else if (opts.extraRoutes !== undefined && opts.extraRoutes.length > 0) {
      throw new InvalidOptionError('extraRoutes', 'serve only on the head\'s own ingress (workers: 0); with local workers the workers serve HTTP');
    }
  }

  async start(): Promise<void> {
    const host = this.opts.host ?? '127.0.0.1';
    this.server = createServer((req, res) => { void this.control(req, res); });
    this.wss = attachWebSocketEndpoint(this.server, { token: this.token, maxFrameBytes: this.opts.maxFrameBytes, logger: this.opts.logger, onConnection: (ws, remote) => { void this.acceptWorker(ws, remote); } });
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(this.opts.port ?? 7450, host, () => resolve());
    });
    const addr = this.server.address();
    this.clusterAddress = `ws://${host}:${typeof addr === 'object' && addr !== null ? addr.port : 0}`;
    const httpHost = this.opts.httpHost ?? '127.0.0.1';
    if (this.ingress !== undefined) {
      const http = await this.ingress.listen({ port: this.opts.httpPort ?? 8000, host: httpHost });
      this.httpAddress = `http://${http.host}:${http.port}`;
    } else {
      this.shared = bindSharedSocket(httpHost, this.opts.httpPort ?? 8000);
      this.httpAddress = `http://${httpHost.includes(':') ? `[${httpHost}]` : httpHost}:${this.shared.port}`;
    }
    const clock = this.opts.clock ?? realClock;
    let lastTick = clock.monoNow();
    this.loop = setInterval(() => {
      // A tick far later than its period means this process was stalled, not that every worker went quiet.
      const now = clock.monoNow();
      if (now - lastTick > this.opts.workerTimeoutMs / 2) this.controller.headStalled(now - lastTick);
      lastTick = now;
      this.controller.checkWorkers();
      void this.controller.reconcile();
    }, 200);
    this.loop.unref();
    if ((this.opts.workers ?? 0) > 0) {
      this.locals = new LocalWorkers({
        count: this.opts.workers!, address: this.clusterAddress, token: this.token, logger: this.opts.logger.child('local-workers'), command: this.opts.workerCommand!,
        ...(this.opts.workerCpus ? { cpus: this.opts.workerCpus } : {}), ...(this.shared ? { http: this.shared } : {}),
      });
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
    this.publishApps();
    await this.controller.reconcile();
  }

  async deleteApp(name: string): Promise<void> {
    this.controller.deleteApp(name);
    this.publishApps();
    await this.controller.reconcile();
  }

  /** Serves the repository extension of the Open Inference Protocol (shoal serve's model repository). */
  setRepository(handler: RepositoryHandler | undefined): void {
    this.repository = handler;
    this.publishApps();
  }

  private async repositoryCall(req: WireHttpRequest): Promise<WireHttpResponse> {
    if (this.repository === undefined) throw new NotFoundError('this cluster serves no model repository (models come from applications); start one with `shoal serve DIR`');
    const body = Buffer.isBuffer(req.body) ? req.body : Buffer.from(req.body.buffer, req.body.byteOffset, req.body.byteLength);
    const r = await this.repository({ method: req.method, path: req.path, headers: req.headers, body });
    return { status: r.status, headers: r.headers, body: Buffer.isBuffer(r.body) ? r.body : Buffer.concat(r.body as readonly Buffer[]) };
  }

  /** Mounts the applications on every ingress: the head's own, and every worker's. */
  private publishApps(): void {
    const apps = this.controller.appSpecs();
    const repository = this.repository !== undefined;
    this.ingress?.setApps(apps);
    this.oip?.setApps(apps, repository);
    this.appsVersion++;
    for (const p of this.peers.values()) if (!p.closed) p.send({ t: 'apps', version: this.appsVersion, apps: [...apps], repository });
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
    await this.ingress?.close();
    this.shared?.close();
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
      onMessage: (m, p) => this.onWorkerMessage(rec.workerId, m, p),
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
    peer.send({ t: 'apps', version: this.appsVersion, apps: [...this.controller.appSpecs()], repository: this.repository !== undefined });
    void this.controller.reconcile();
  }

  private onWorkerMessage(workerId: string, m: Message, peer: Peer): void {
    if (m.t === 'hb') { this.controller.heartbeat(workerId); return; }
    if (m.t === 'repository') {
      this.repositoryCall(m.req).then((r) => peer.reply(m.id, r), (e: unknown) => peer.replyError(m.id, toWireError(e)));
      return;
    }
    if (m.t === 'scrape') {
      this.metrics.scrape().then((text) => peer.reply(m.id, text), (e: unknown) => peer.replyError(m.id, toWireError(e)));
      return;
    }
    if (m.t === 'replicaState') return; // the controller learns states from start/stop replies; this is for logs
    this.opts.logger.debug('unexpected message from worker', { workerId, type: m.t });
  }

  /** The control API: deploy, delete, status, shutdown; every call presents the cluster token. */
  private async control(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const url = new URL(req.url ?? '/', 'http://head');
      if (url.pathname === '/api/healthz' || url.pathname === '/-/healthz') { sendJson(res, 200, { status: 'ok', protocol: PROTOCOL_VERSION }); return; }
      // Health and metrics need no token, as on the public port: load balancers and Prometheus scrape them.
      if (url.pathname === '/-/ready') { const ready = this.isReady(); sendJson(res, ready ? 200 : 503, { status: ready ? 'ready' : 'not ready' }); return; }
      if (url.pathname === '/-/metrics') {
        const text = await this.metrics.scrape();
        res.writeHead(200, { 'content-type': METRICS_CONTENT_TYPE, 'content-length': Buffer.byteLength(text) }).end(text);
        return;
      }
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
        await assertModuleFile(spec.modulePath);
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
