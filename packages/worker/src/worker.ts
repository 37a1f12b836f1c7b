/**
 * A worker process: joins a head, reports its resources, hosts replica actors, heartbeats, and serves data
 * connections from other workers so handle calls go worker to worker.
 */
import { hostname, cpus, totalmem } from 'node:os';
import { createServer, type Server } from 'node:http';
import { WebSocketServer, type WebSocket } from 'ws';
import {
  CancelledError, ChunkStream, Deadline, DeadlineExceededError, LazyAbortController, PeerGoneError, ProtocolError, StreamPump, UnauthorizedError, chunkBytes, isNotRun, windowFromWire, processLogRing, ReplicaUnavailableError, realClock, setProcessLogWorker, toWireError, type AppSpec, type Logger,
  requestIdOf, traceContextOf, type WireError, type WireHttpResponse,
} from '@shoal/core';
import {
  acceptHello, attachWebSocketEndpoint, connectPeer, sendWelcome, Peer, type DeviceInfo, type Message, type NewRequest, type ReplyMessage,
  type WorkerResources, type WorkerStats, type RunningReplica,
  type CallMessage, type HttpMessage,
} from '@shoal/protocol';
import { Router } from '@shoal/router';
import { ConsumerSet } from '@shoal/broker';
import { Ingress, OipRoute, gatheredBody, type ListenTarget } from '@shoal/ingress';
import { Replica } from './replica.ts';
import { WorkerSemanticCaches } from './semantic-caches.ts';
import { buildInstance } from './module-loader.ts';
import { WorkerTransport } from './transport.ts';
import { ChunkBatcher, ReplicaStream } from './stream-replica.ts';
import { WorkerMetrics, type NativeGaugeSample } from './worker-metrics.ts';
import { WorkerLogService } from './log-service.ts';

export interface WorkerOptions {
  /** Head cluster address, ws://host:port. */
  address: string;
  token: string;
  logger: Logger;
  /** Interface the data server listens on. @default '127.0.0.1' */
  host?: string;
  /** Host other workers use to reach this one. @default host */
  advertiseHost?: string;
  /** Data port. @default 0 (any free port) */
  dataPort?: number;
  /** CPU cores offered to replicas. @default os.cpus().length */
  cpus?: number;
  /** Memory bytes offered to replicas. @default os.totalmem() */
  memory?: number;
  /** GPU devices (filled by the native addon when present). @default [] */
  devices?: DeviceInfo[];
  maxFrameBytes: number;
  /**
   * Spawned by a head on this machine (the embedded default): the hello says so, and a restarted head counts this
   * worker among its local ones. @default false
   */
  local?: boolean;
  /**
   * How long start() keeps trying to reach the head for the first time (it may not be up yet: pods start in any
   * order), retrying 200 ms after a failure and then with doubling waits up to 5 s; 0 tries for ever. A wrong
   * token or protocol version is not retried. @default 0 (for ever; `shoal worker`: $SHOAL_CONNECT_TIMEOUT_MS)
   */
  connectTimeoutMs?: number;
  /** Longest wait between attempts to reach a head that was lost (the first waits 100 ms, then doubling). @default 250 */
  maxReconnectDelayMs?: number;
  /** How long a graceful stop (SIGTERM) waits for work in flight before it closes what is left. @default 10000 */
  drainTimeoutMs?: number;
  /** The native addon's gauges, for this worker's metrics. @default none (the addon is not loaded) */
  nativeMetrics?: () => NativeGaugeSample[];
  /**
   * Where this worker's HTTP ingress listens: a port (a remote worker behind an outside load balancer), or the
   * head's public socket handed over by the parent process (the embedded default; a promise of it). The ingress
   * starts serving once the head has sent the applications. @default none (no HTTP in this worker)
   */
  http?: ListenTarget | Promise<ListenTarget>;
  /** How long /-/metrics on this worker waits for the head's cluster-wide scrape before answering its own. @default 2000 */
  scrapeTimeoutMs?: number;
}

/** The first retry of a head not reached yet comes after this; each next one after twice the last, up to the max. */
const FIRST_CONNECT_DELAY_MS = 200;
const MAX_FIRST_CONNECT_DELAY_MS = 5000;

/** A caller that sent no window gets the whole stream at once: the pump never waits for credit. */
const GATHER_WINDOW = { chunks: Number.MAX_SAFE_INTEGER, bytes: Number.MAX_SAFE_INTEGER };

export class Worker {
  readonly name: string;
  workerId = '';
  private readonly replicas = new Map<string, Replica>();
  private readonly inflight = new WeakMap<Peer, Map<number, LazyAbortController>>();
  /** Streams this worker's replicas are sending to callers on each connection, by request id: credit goes to them. */
  private readonly pumps = new WeakMap<Peer, Map<number, StreamPump>>();
  private head: Peer | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private server: Server | undefined;
  private wss: WebSocketServer | undefined;
  private dataAddress = '';
  private readonly router: Router;
  private readonly transport: WorkerTransport;
  private readonly metrics: WorkerMetrics;
  /** `shoal logs`: this process's log ring, queried and followed by the head. */
  private readonly logs = new WorkerLogService(processLogRing(), () => this.workerId || this.name);
  private readonly ingress: Ingress;
  private readonly oip: OipRoute;
  private ingressStarted = false;
  private appsVersion = -1;
  /** The head has sent applications at least once (a later head's may replace them). */
  private appsSeen = false;
  /** The head has sent a route table at least once: requests can be routed from it, head or no head. */
  private routesSeen = false;
  private apps: AppSpec[] = [];
  /** Where the ingress listens, once it does. */
  httpAddress = '';
  private readonly traffic = { ingressRequests: 0, dataIn: { call: 0, http: 0 } };
  private stopping = false;
  /** The head's run this worker last joined (WelcomeMessage.session). */
  private headSession: string | undefined;
  /** What the head told at welcome: ping period and silence timeout, also used on data connections. */
  private liveness: { intervalMs: number; timeoutMs: number } | undefined;
  private reconnecting = false;
  private lastDemandAt = Number.NEGATIVE_INFINITY;
  /** Deployment version each replica was started at, reported to a head this worker rejoins. */
  private readonly versions = new Map<string, string>();
  /** Semantic caches of the deployments that declare one, per version, shared by this worker's replicas of it. */
  private readonly semanticCaches = new WorkerSemanticCaches();
  /** Broker ingress: a consumer per `consume` source of the deployments pushed, calling them through this router. */
  private readonly consumers: ConsumerSet;

  constructor(private readonly opts: WorkerOptions) {
    this.name = `${hostname()}-${process.pid}`;
    this.transport = new WorkerTransport({
      workerId: () => this.workerId,
      token: opts.token,
      name: this.name,
      maxFrameBytes: opts.maxFrameBytes,
      logger: opts.logger,
      local: { dispatchLocal: (m, c) => this.dispatchLocal(m, c) },
      onMessage: (m, p) => this.onDataMessage(m, p),
      liveness: () => this.liveness,
    });
    this.router = new Router({
      transport: this.transport, clock: realClock, logger: opts.logger, localWorkerId: () => this.workerId || undefined,
      // Demand for a deployment with no replica (scaled to zero): tell the head now, at most every 50 ms.
      onNoReplica: () => {
        const now = performance.now();
        if (now - this.lastDemandAt < 50) return;
        this.lastDemandAt = now;
        queueMicrotask(() => this.sendHeartbeat());
      },
      onAnswered: (key, elapsedMs, ok) => this.metrics.routes.observeAnswered(key, elapsedMs, ok),
      onQueued: (key, waitedMs) => this.metrics.routes.observeQueued(key, waitedMs),
      cacheObserver: { deployment: (key) => this.metrics.cache.deployment(key) },
      onStream: { started: (key, ms) => this.metrics.routes.observeStreamStarted(key, ms), ended: (key, reason, chunks) => this.metrics.routes.observeStreamEnded(key, reason, chunks) },
    });
    this.metrics = new WorkerMetrics({
      workerId: () => this.workerId, stats: () => this.stats(), logger: opts.logger, cacheStats: () => this.router.cacheStats(),
      semanticCaches: () => this.semanticCaches.sizes(),
      brokerConsumers: () => this.consumers.samples(),
      ...(opts.nativeMetrics ? { native: opts.nativeMetrics } : {}),
    });
    this.consumers = new ConsumerSet({
      consumerName: this.name, logger: opts.logger,
      call: (key, method, arg, o) => this.router.call(key, method, [arg], { deadline: Deadline.after(realClock, o.timeoutMs), signal: o.signal }),
      ready: (key) => this.router.replicaCount(key) > 0,
      observer: (app, deployment, source) => this.metrics.broker.observer(app, deployment, source),
    });
    this.oip = new OipRoute({
      router: this.router, logger: opts.logger.child('oip'), token: opts.token,
      forwardRepository: async (req) => {
        const head = this.head;
        if (head === undefined || head.closed) throw new ReplicaUnavailableError('the head is not connected: repository calls go to it');
        return await head.call({ t: 'repository', req }) as WireHttpResponse;
      },
    });
    this.ingress = new Ingress({
      router: this.router,
      logger: opts.logger.child('ingress'),
      isReady: () => this.isReady(),
      isWorkerReady: () => this.isWorkerReady(),
      extraRoutes: [this.oip],
      metrics: {
        observeHttp: (app, code, seconds) => { this.traffic.ingressRequests++; this.metrics.observeHttp(app, code, seconds); },
        scrape: () => this.scrape(),
        contentType: this.metrics.contentType,
        websocket: this.metrics.websocket,
      },
    });
  }

  /** Ready when the head has sent the applications and every deployment of each has a running replica. */
  isReady(): boolean {
    return this.appsSeen && this.apps.every((a) => a.deployments.every((d) => this.router.replicaCount(`${a.name}/${d.name}`) > 0));
  }

  /**
   * This worker can route requests itself (/-/ready/worker, a pod's readiness): it has joined a head once and has
   * the applications and a route table, and is not stopping. Unlike isReady, a deployment with no replica anywhere
   * (scaled to zero, or failing to start) does not make it false, nor does the head being away: requests still
   * arrive, wait for a replica or get a clear error, and ask the head to scale up.
   */
  isWorkerReady(): boolean {
    return this.appsSeen && this.routesSeen && !this.stopping;
  }

  /** The cluster's metrics from the head; this worker's own when the head does not answer in time. */
  private async scrape(): Promise<string> {
    const head = this.head;
    if (head !== undefined && !head.closed) {
      const { id, reply } = head.requestWithId({ t: 'scrape' });
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<undefined>((resolve) => { timer = setTimeout(() => resolve(undefined), this.opts.scrapeTimeoutMs ?? 2000); });
      try {
        const r = await Promise.race([reply, timeout]);
        if (r !== undefined && r.ok && typeof r.value === 'string') return r.value;
        if (r === undefined) head.forget(id);
        this.opts.logger.warn('the head did not answer a metrics scrape; answering with this worker\'s own metrics', { reason: r === undefined ? 'timeout' : r.ok ? 'not text' : r.error.message });
      } catch (err) {
        this.opts.logger.warn('the head did not answer a metrics scrape; answering with this worker\'s own metrics', { reason: (err as Error).message });
      } finally {
        clearTimeout(timer);
      }
    }
    return this.metrics.text();
  }

  /** Mounts the applications; the first set starts the ingress (so it never answers 404 for want of them). */
  private setApps(version: number, apps: AppSpec[], repository: boolean): void {
    if (version <= this.appsVersion) return;
    this.appsVersion = version;
    this.appsSeen = true;
    this.apps = apps;
    this.ingress.setApps(apps);
    this.oip.setApps(apps, repository);
    if (!this.stopping) this.consumers.update(apps);
    if (this.opts.http !== undefined && !this.ingressStarted && !this.stopping) {
      this.ingressStarted = true;
      void Promise.resolve(this.opts.http).then((target) => this.ingress.listen(target)).then(
        ({ port, host }) => {
          // The socket can arrive after stop() began: close what it opened rather than leave it accepting.
          if (this.stopping) { void this.ingress.close(); return; }
          this.httpAddress = `http://${host || '127.0.0.1'}:${port}`;
          this.opts.logger.info('ingress serving', { http: this.httpAddress });
        },
        (err: unknown) => { this.opts.logger.error('ingress failed to listen', { error: (err as Error).message }); },
      );
    }
  }


  /**
   * Joins the head, retrying while it cannot be reached (see connectTimeoutMs). A refusal that retrying cannot
   * change (a wrong token, another protocol version) is thrown at once, as is the last failure once
   * connectTimeoutMs has passed. A stop() meanwhile ends the wait.
   */
  async start(): Promise<void> {
    await this.listenData();
    await this.firstJoin();
  }

  private async firstJoin(): Promise<void> {
    const timeoutMs = this.opts.connectTimeoutMs ?? 0;
    const startedAt = performance.now();
    let delay = FIRST_CONNECT_DELAY_MS;
    let lastLog = -Infinity;
    for (let attempts = 1; ; attempts++) {
      try {
        await this.joinHead();
        if (attempts > 1) this.opts.logger.info('reached the head', { head: this.opts.address, attempts });
        return;
      } catch (err) {
        // A stop (SIGTERM) while waiting for the head ends the wait: stop() does the rest.
        if (this.stopping) return;
        if (err instanceof UnauthorizedError || err instanceof ProtocolError) throw err;
        const elapsed = performance.now() - startedAt;
        if (timeoutMs > 0 && elapsed + delay > timeoutMs) {
          throw new PeerGoneError(`could not reach the head at ${this.opts.address} within connectTimeoutMs=${timeoutMs} (SHOAL_CONNECT_TIMEOUT_MS for shoal worker; ${attempts} attempts): ${(err as Error).message}`);
        }
        // The first failure, then one line per 10 s at most: a head that takes minutes to come must not flood the log.
        if (performance.now() - lastLog >= 10_000) {
          lastLog = performance.now();
          this.opts.logger.warn('cannot reach the head yet; retrying', { head: this.opts.address, attempts, error: (err as Error).message, nextInMs: delay, ...(timeoutMs > 0 ? { giveUpInMs: Math.round(timeoutMs - elapsed) } : {}) });
        }
        await new Promise((r) => setTimeout(r, delay));
        if (this.stopping) return;
        delay = Math.min(MAX_FIRST_CONNECT_DELAY_MS, delay * 2);
      }
    }
  }

  private async joinHead(): Promise<void> {
    const resources: WorkerResources = {
      cpus: this.opts.cpus ?? cpus().length,
      memory: this.opts.memory ?? totalmem(),
      gpus: (this.opts.devices ?? []).filter((d) => d.kind === 'cuda').length,
      devices: this.opts.devices ?? [],
    };
    const replicas: RunningReplica[] = [...this.replicas.values()]
      .filter((r) => r.state === 'RUNNING' || r.state === 'STARTING')
      .map((r) => ({ replicaId: r.replicaId, app: r.app, deployment: r.deployment, version: this.versions.get(r.replicaId) ?? '', state: r.state, ...(r.devices !== undefined ? { devices: [...r.devices] } : {}) }));
    const rejoined = this.workerId !== '';
    const { peer, welcome } = await connectPeer({
      address: this.opts.address,
      name: 'head',
      hello: {
        token: this.opts.token, role: 'worker', name: this.name, resources, dataAddress: this.dataAddress, pid: process.pid,
        ...(this.opts.local === true ? { local: true } : {}),
        ...(this.workerId !== '' ? { previousWorkerId: this.workerId, replicas } : {}),
      },
      maxFrameBytes: this.opts.maxFrameBytes,
      logger: this.opts.logger,
      onWelcome: (w) => {
        // Also before the messages that follow: a route table is read against this worker's id.
        this.workerId = w.workerId;
        setProcessLogWorker(w.workerId);
        if (w.session === this.headSession) return;
        // A new head numbers its route tables and application sets afresh: take its next ones (which may arrive
        // in the same read as this welcome) whatever their version. Until then this worker serves from what it had.
        this.router.resetRoutesVersion();
        this.appsVersion = -1;
        this.headSession = w.session;
      },
      onMessage: (m, p) => this.onHeadMessage(m, p),
      onClose: (err, p) => {
        this.logs.closePeer(p);
        // The head's router reads streams over this connection too: a pump out of credit or waiting in next() would
        // never notice the caller is gone and hold its replica slot, so end what the head had in flight, as for a data peer.
        this.abortAll(p, 'head connection closed');
        if (this.head === p) this.onHeadClosed(err.message);
      },
    });
    if (this.stopping) { peer.close(1000, 'worker stopping'); return; }
    this.head = peer;
    this.workerId = welcome.workerId;
    this.liveness = { intervalMs: welcome.heartbeatMs, timeoutMs: welcome.timeoutMs ?? Math.max(3000, welcome.heartbeatMs * 6) };
    peer.watchLiveness(this.liveness);
    // A replica whose state changed during the handshake told the old connection: tell the new head now.
    for (const x of replicas) {
      const r = this.replicas.get(x.replicaId);
      if (r !== undefined && r.state !== x.state) peer.send({ t: 'replicaState', replicaId: r.replicaId, state: r.state });
    }
    this.opts.logger.info(rejoined ? 'rejoined head' : 'joined head', { workerId: this.workerId, head: this.opts.address, data: this.dataAddress, replicas: replicas.length });
    clearInterval(this.heartbeat);
    this.heartbeat = setInterval(() => this.sendHeartbeat(), welcome.heartbeatMs);
    this.heartbeat.unref();
  }

  /**
   * The head is gone (it died, restarted, or the link broke): keep serving HTTP and handle calls from the last
   * route table, and try to rejoin, 100 ms after the loss and then with doubling waits up to maxReconnectDelayMs.
   */
  private async reconnect(): Promise<void> {
    if (this.reconnecting || this.stopping) return;
    this.reconnecting = true;
    const maxDelay = this.opts.maxReconnectDelayMs ?? 250;
    let delay = 100;
    let attempts = 0;
    let lastLog = 0;
    try {
      while (!this.stopping) {
        await new Promise((r) => setTimeout(r, delay));
        if (this.stopping) return;
        attempts++;
        try {
          await this.joinHead();
          return;
        } catch (err) {
          // One line per 10 s at most: a head that stays away for an hour must not flood the log.
          if (Date.now() - lastLog > 10_000) {
            lastLog = Date.now();
            this.opts.logger.warn('cannot reach the head; serving from the last route table and retrying', { attempts, error: (err as Error).message, nextInMs: delay });
          }
          delay = Math.min(maxDelay, delay * 2);
        }
      }
    } finally {
      this.reconnecting = false;
    }
  }

  /**
   * Graceful stop (SIGTERM): stops accepting HTTP, lets what is in flight finish (up to drainTimeoutMs), drains
   * every replica (each up to its gracefulShutdownTimeoutMs, within the same bound), and leaves the head.
   */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    // Heartbeats go on while draining: a silent worker would be declared dead, and a local one killed mid-drain.
    this.metrics.close();
    const drainMs = this.opts.drainTimeoutMs ?? 10_000;
    const end = performance.now() + drainMs;
    // Consumers stop taking messages at once, and finish (or hand back) theirs while the replicas still run.
    await Promise.all([this.ingress.close(drainMs), this.consumers.stop(drainMs)]);
    const left = Math.max(0, end - performance.now());
    await Promise.all([...this.replicas.values()].map((r) => r.drain(Math.min(left, r.gracefulShutdownTimeoutMs)).catch(() => undefined)));
    clearInterval(this.heartbeat);
    this.router.close();
    await this.transport.close();
    this.head?.close(1000, 'worker stopping');
    for (const c of this.wss?.clients ?? []) c.terminate();
    this.wss?.close();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  private onHeadClosed(reason: string): void {
    clearInterval(this.heartbeat);
    if (this.stopping) return;
    this.opts.logger.warn('lost the head; still serving, and trying to rejoin', { reason });
    void this.reconnect();
  }

  private sendHeartbeat(): void {
    if (this.head === undefined || this.head.closed) return;
    const waiting: Record<string, number> = {};
    for (const [key, s] of Object.entries(this.router.stats())) if (s.waiting > 0) waiting[key] = s.waiting;
    const replicas = [...this.replicas.values()].map((r) => {
      const p = r.loadProgress;
      return {
        replicaId: r.replicaId, ongoing: r.ongoingCount, queued: r.queuedCount,
        ...(p !== undefined ? { p: [p[0], p[1]] as [number, number] } : {}),
        ...(r.modelSet !== undefined ? { models: r.modelSet } : {}),
        ...(r.outcomes.requests > 0 ? { o: { n: r.outcomes.requests, e: r.outcomes.errors, h: r.outcomes.sparse() } } : {}),
        b: Math.round(r.busyMs),
      };
    });
    const shadow = this.router.shadowCounts();
    const assign = this.router.takeAssignments();
    this.head.send({ t: 'hb', at: Date.now(), replicas, waiting, ...(Object.keys(shadow).length > 0 ? { shadow } : {}), ...(assign.length > 0 ? { assign } : {}) });
  }

  private listenData(): Promise<void> {
    const host = this.opts.host ?? '127.0.0.1';
    this.server = createServer((_req, res) => { res.writeHead(426).end('WebSocket only'); });
    this.wss = attachWebSocketEndpoint(this.server, { token: this.opts.token, maxFrameBytes: this.opts.maxFrameBytes, logger: this.opts.logger, onConnection: (ws, remote) => { void this.acceptData(ws, remote); } });
    return new Promise((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(this.opts.dataPort ?? 0, host, () => {
        const addr = this.server!.address();
        const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
        this.dataAddress = `ws://${this.opts.advertiseHost ?? host}:${port}`;
        resolve();
      });
    });
  }

  private async acceptData(ws: WebSocket, remote: string): Promise<void> {
    try {
      const hello = await acceptHello(ws, { token: this.opts.token, logger: this.opts.logger, remote });
      sendWelcome(ws, { workerId: this.workerId, heartbeatMs: 0 });
      const peer = new Peer(ws, {
        name: `peer ${hello.name}`,
        maxFrameBytes: this.opts.maxFrameBytes,
        logger: this.opts.logger,
        ...(this.liveness !== undefined ? { liveness: this.liveness } : {}),
        onMessage: (m, p) => this.onDataMessage(m, p),
        onClose: (_e, p) => this.abortAll(p, 'caller connection closed'),
      });
      void peer;
    } catch {
      // acceptHello logged the refusal.
    }
  }

  private onHeadMessage(m: Message, peer: Peer): void {
    switch (m.t) {
      case 'start': if (m.version !== undefined) this.versions.set(m.replicaId, m.version); void this.startReplica(m.id, m.replicaId, m.app, m.deployment, m.devices, peer); return;
      case 'stop': void this.stopReplica(m.id, m.replicaId, m.timeoutMs, peer); return;
      case 'reconfigure': {
        const r = this.replicas.get(m.replicaId);
        if (r === undefined) { peer.replyError(m.id, toWireError(new ReplicaUnavailableError(`no replica ${m.replicaId} on worker ${this.workerId}`))); return; }
        // Answers computed from here on may be the new userConfig's: none goes into the old config's semantic cache.
        this.semanticCaches.reconfiguring(m.replicaId);
        r.reconfigure(m.userConfig).then(() => {
          const semantic = this.semanticCaches.reconfigured(m.replicaId, m.userConfig);
          if (semantic !== undefined) r.useSemanticCache(semantic);
          peer.reply(m.id, null);
        }, (e: unknown) => peer.replyError(m.id, toWireError(e)));
        return;
      }
      case 'health': {
        const r = this.replicas.get(m.replicaId);
        if (r === undefined) { peer.replyError(m.id, toWireError(new ReplicaUnavailableError(`no replica ${m.replicaId} on worker ${this.workerId}`))); return; }
        r.checkHealth(m.timeoutMs).then(() => peer.reply(m.id, null), (e: unknown) => peer.replyError(m.id, toWireError(e)));
        return;
      }
      case 'stats': peer.reply(m.id, this.stats()); return;
      case 'metrics': this.metrics.json().then((v) => peer.reply(m.id, v), (e: unknown) => peer.replyError(m.id, toWireError(e))); return;
      case 'logs': case 'logsFollow': case 'logsUnfollow': this.logs.handle(m, peer); return;
      case 'routes': this.routesSeen = true; this.router.updateRoutes(m.table, m.version); return;
      case 'apps': this.setApps(m.version, m.apps, m.repository === true); return;
      default: this.onDataMessage(m, peer);
    }
  }

  private async startReplica(id: number, replicaId: string, app: import('@shoal/core').AppSpec, deployment: string, devices: number[] | undefined, head: Peer): Promise<void> {
    const spec = app.deployments.find((d) => d.name === deployment);
    if (spec === undefined) { head.replyError(id, toWireError(new ReplicaUnavailableError(`application "${app.name}" has no deployment "${deployment}"`))); return; }
    const replica = new Replica({
      replicaId, app: app.name, deployment, options: spec.options, logger: this.opts.logger, ...(devices === undefined ? {} : { devices }),
      observer: this.metrics.replicaObserver(app.name, deployment),
      ...(spec.options.semanticCache === undefined ? {} : {
        semanticCache: this.semanticCaches.acquire(replicaId, app.name, deployment, this.versions.get(replicaId) ?? app.codeHash ?? '', spec.options, this.metrics.semantic.observer(app.name, deployment)),
      }),
      // To whichever head this worker is joined to now: a start asked by a head that since restarted ends at the next.
      onState: (state, error) => { const h = this.head; if (h !== undefined && !h.closed) h.send({ t: 'replicaState', replicaId, state, ...(error ? { error } : {}) }); },
    });
    this.replicas.set(replicaId, replica);
    try {
      await replica.start(() => buildInstance(app, deployment, this.router));
      // The instance's streaming fields (continuous methods): the head puts them on the route entry for handles.
      head.reply(id, replica.streamFields.length > 0 ? { streams: replica.streamFields } : null);
    } catch (err) {
      this.replicas.delete(replicaId);
      this.versions.delete(replicaId);
      this.semanticCaches.release(replicaId);
      head.replyError(id, toWireError(err));
    }
  }

  private async stopReplica(id: number, replicaId: string, timeoutMs: number, head: Peer): Promise<void> {
    const r = this.replicas.get(replicaId);
    if (r === undefined) { head.reply(id, null); return; }
    await r.drain(timeoutMs);
    this.replicas.delete(replicaId);
    this.versions.delete(replicaId);
    this.semanticCaches.release(replicaId);
    head.reply(id, null);
  }

  /** call / http / cancel, from the head's ingress or another worker. */
  private onDataMessage(m: Message, peer: Peer): void {
    if (m.t === 'cancel') {
      const c = this.inflight.get(peer)?.get(m.id);
      c?.abort(new CancelledError('cancelled by the caller'));
      return;
    }
    if (m.t === 'credit') { this.pumps.get(peer)?.get(m.id)?.credit(m.n); return; }
    if (m.t !== 'call' && m.t !== 'http') return;
    this.traffic.dataIn[m.t]++;
    let table = this.inflight.get(peer);
    if (table === undefined) { table = new Map(); this.inflight.set(peer, table); }
    const controller = new LazyAbortController();
    table.set(m.id, controller);
    const t = table;
    this.run(m, controller, true, peer, m.id).then((reply) => {
      t.delete(m.id);
      if (!peer.closed) peer.send({ ...reply, id: m.id });
    });
  }

  /** A request from this process's own router: that router enforces its deadline, so no second timer here. */
  private dispatchLocal(message: NewRequest, controller: LazyAbortController): Promise<ReplyMessage> {
    return this.run(message as CallMessage | HttpMessage, controller, false);
  }

  /**
   * Runs a call or HTTP request on a local replica; always resolves with a reply (never rejects). `armDeadline`:
   * enforce the deadline here (a request from another process); a local caller's router already does.
   */
  private run(m: Omit<CallMessage, 'id'> | Omit<HttpMessage, 'id'>, controller: LazyAbortController, armDeadline = true, peer?: Peer, id?: number): Promise<ReplyMessage> {
    const replica = this.replicas.get(m.replicaId);
    if (replica === undefined) {
      return Promise.resolve({ t: 'reply', id: 0, ok: false, error: toWireError(new ReplicaUnavailableError(`replica ${m.replicaId} is not on worker ${this.workerId || this.name}`)), nr: true });
    }
    let timer: NodeJS.Timeout | undefined;
    if (m.deadline !== undefined) {
      const left = m.deadline - Date.now();
      if (left <= 0) return Promise.resolve({ t: 'reply', id: 0, ok: false, error: toWireError(new DeadlineExceededError(`deadline passed before "${replica.deployment}" ran the request`)), q: replica.load });
      if (armDeadline) timer = setTimeout(() => controller.abort(new DeadlineExceededError(`deadline exceeded in "${replica.deployment}"`)), left);
    }
    // From another process they are checked (a malformed trace id would get a whole export refused); this
    // process's own router made them itself.
    const tc = !armDeadline || m.tc === undefined ? m.tc : traceContextOf(m.tc);
    const rid = !armDeadline || m.rid === undefined ? m.rid : requestIdOf(m.rid);
    const running = m.t === 'http'
      ? replica.http(m.req, controller, m.deadline, m.priority, m.modelId, rid, tc)
      : replica.call(m.method, m.args, controller, m.deadline, m.priority, m.modelId, rid, tc, m.nc === true);
    const replied = running.then(
      (value): ReplyMessage | Promise<ReplyMessage> => {
        if (ReplicaStream.is(value)) return this.stream(m, value, controller, timer, replica, peer, id);
        if (timer !== undefined) clearTimeout(timer);
        // Past the deadline the answer is 504, even when user code returned late.
        if (controller.reason instanceof DeadlineExceededError) return { t: 'reply', id: 0, ok: false, error: toWireError(controller.reason), q: replica.load };
        return { t: 'reply', id: 0, ok: true, value, q: replica.load };
      },
      (err: unknown): ReplyMessage => {
        if (timer !== undefined) clearTimeout(timer);
        // Past the deadline the answer is 504, whatever user code threw after its signal aborted (what its own
        // cancelled downstream calls threw, say).
        const reason: unknown = controller.reason;
        const wire: WireError = toWireError(reason instanceof DeadlineExceededError ? reason : err);
        // Refused before user code saw it (draining, queue full): the caller's router may send it elsewhere.
        if (isNotRun(err) && !(reason instanceof DeadlineExceededError)) return { t: 'reply', id: 0, ok: false, error: wire, q: replica.load, nr: true };
        return { t: 'reply', id: 0, ok: false, error: wire, q: replica.load };
      },
    );
    if (m.modelId === undefined) return replied;
    // The models the replica holds now, so the router that sent it learns before the next route table.
    return replied.then((reply) => {
      const models = replica.modelSet;
      if (models !== undefined) reply.models = models;
      return reply;
    });
  }

  /**
   * Sends a streamed answer: to a ChunkStream in this process (the caller's router reads it), as `chunk` messages
   * to another (credit comes back as `credit` messages), or gathered into one answer for a caller that sent no
   * window. Resolves with the reply that ends it: once the stream is over for a remote caller, at its first chunk
   * for a local one (whose stream then carries the end). The request's controller (cancel, deadline, the caller
   * leaving) cancels it.
   */
  private stream(m: Omit<CallMessage, 'id'> | Omit<HttpMessage, 'id'>, rs: ReplicaStream, controller: LazyAbortController, timer: NodeJS.Timeout | undefined, replica: Replica, peer: Peer | undefined, id: number | undefined): Promise<ReplyMessage> {
    const endReply = (err: Error | undefined, value: unknown): ReplyMessage => {
      if (timer !== undefined) clearTimeout(timer);
      const reason: unknown = controller.reason;
      if (reason instanceof DeadlineExceededError) return { t: 'reply', id: 0, ok: false, error: toWireError(reason), q: replica.load };
      if (err !== undefined) return { t: 'reply', id: 0, ok: false, error: toWireError(err), q: replica.load };
      return { t: 'reply', id: 0, ok: true, value, q: replica.load };
    };
    return new Promise<ReplyMessage>((resolve) => {
      let pump: StreamPump;
      let idle: { ms: number; expired: () => void } | undefined;
      rs.stopper = (reason) => controller.abort(reason);
      if (m.s === undefined) {
        // A caller that cannot take a stream: the chunks gathered, within the frame bound the answer must fit.
        const chunks: unknown[] = [];
        let bytes = 0;
        const max = this.opts.maxFrameBytes;
        pump = new StreamPump(rs, GATHER_WINDOW, {
          chunk: (v) => {
            chunks.push(v);
            bytes += chunkBytes(v);
            if (bytes > max) pump.cancel(new ProtocolError(`stream of "${replica.deployment}" gathered for a caller that takes no streams passed maxFrameBytes=${max} after ${chunks.length} chunks`, 'ERR_FRAME_TOO_LARGE'));
          },
          done: (err) => {
            if (err !== undefined || m.t !== 'http') { resolve(endReply(err, chunks)); return; }
            const { contentType, body } = gatheredBody(chunks);
            resolve(endReply(undefined, { status: 200, headers: { 'content-type': contentType }, body } satisfies WireHttpResponse));
          },
        });
      } else {
        let window;
        try {
          // Capped at half the frame bound: a window's bytes (and so one message of chunks) always fit a frame.
          window = windowFromWire(`${m.t} message field s`, m.s, this.opts.maxFrameBytes / 2);
        } catch (err) {
          void rs.return();
          resolve(endReply(err as Error, undefined));
          return;
        }
        const idleMs = replica.streamIdleTimeoutMs;
        if (idleMs !== undefined) {
          idle = { ms: idleMs, expired: () => controller.abort(new CancelledError(`stream of "${replica.deployment}" cancelled: its consumer took no chunk for streamIdleTimeoutMs=${idleMs} ms`)) };
        }
        if (peer === undefined || id === undefined) {
          // In process: the caller reads a ChunkStream fed directly, with the same window.
          let stream: ChunkStream | undefined;
          const source = { credit: (n: number) => pump.credit(n), cancel: (reason: Error) => controller.abort(reason) };
          pump = new StreamPump(rs, window, {
            chunk: (v) => {
              if (stream !== undefined) { stream.push([v]); return; }
              stream = new ChunkStream(source, window);
              stream.push([v]);
              resolve({ t: 'reply', id: 0, ok: true, value: stream, stream, q: replica.load });
            },
            done: (err) => {
              if (stream !== undefined) {
                if (timer !== undefined) clearTimeout(timer);
                const reason: unknown = controller.reason;
                const e = reason instanceof DeadlineExceededError ? reason : err;
                if (e === undefined) stream.end(); else stream.fail(e);
                return;
              }
              const reply = endReply(err, undefined);
              if (!reply.ok) { resolve(reply); return; }
              stream = new ChunkStream(source, window);
              stream.end();
              resolve({ ...reply, value: stream, stream });
            },
          }, idle);
        } else {
          let table = this.pumps.get(peer);
          if (table === undefined) { table = new Map(); this.pumps.set(peer, table); }
          const t = table;
          let sendError: Error | undefined;
          const send = (v: unknown[]): boolean => {
            try { peer.send({ t: 'chunk', id, v }); return true; } catch (err) { sendError = err as Error; return false; }
          };
          const batcher = new ChunkBatcher((v) => {
            if (peer.closed) { pump.cancel(new CancelledError('caller connection closed')); return 0; }
            if (send(v)) return v.length;
            // A chunk the codec cannot encode (a cycle) fails the stream with ERR_ENCODE, never the worker; the
            // chunks before it in the batch still go, one by one.
            let n = 0;
            if (v.length > 1) while (n < v.length && send([v[n]])) n++;
            pump.cancel(sendError!);
            return n;
          }, window.chunks, this.opts.maxFrameBytes / 4);
          pump = new StreamPump(rs, window, {
            chunk: (v, bytes) => batcher.add(v, bytes),
            done: (err) => {
              t.delete(id);
              if (!peer.closed) batcher.flush();
              const reply = endReply(err ?? sendError, null);
              // A stream with no chunks still starts at the caller, so the reply that follows ends a stream.
              if (!peer.closed && reply.ok && batcher.sent === 0) peer.send({ t: 'chunk', id, v: [] });
              resolve(reply);
            },
          }, idle);
          t.set(id, pump);
        }
      }
      controller.listen((reason) => pump.cancel(reason instanceof Error ? reason : new CancelledError(String(reason))));
      if (controller.aborted) pump.cancel(controller.reason instanceof Error ? controller.reason : new CancelledError('cancelled'));
      else pump.start();
    });
  }

  private abortAll(peer: Peer, reason: string): void {
    const table = this.inflight.get(peer);
    if (table === undefined) return;
    for (const c of table.values()) c.abort(new CancelledError(reason));
    table.clear();
  }

  /** Gauges of every replica (batch queues included) and of this worker's router. */
  stats(): WorkerStats {
    return { workerId: this.workerId, replicas: [...this.replicas.values()].map((r) => r.stats()), router: this.router.stats(), traffic: { ingressRequests: this.traffic.ingressRequests, dataIn: { ...this.traffic.dataIn } } };
  }

  /** For tests and status: replica ids and states. */
  replicaStates(): Array<{ replicaId: string; state: string; load: number }> {
    return [...this.replicas.values()].map((r) => ({ replicaId: r.replicaId, state: r.state, load: r.load }));
  }
}
