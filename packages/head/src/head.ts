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
  BadRequestError, DeadlineExceededError, DeployError, InvalidOptionError, NotFoundError, ReplicaUnavailableError, UnauthorizedError, assertModuleFile, moduleCodeHash, realClock, toWireError, validateAppSpec, type AppSpec,
  type Clock, type Logger, type WireHttpRequest, type WireHttpResponse, processLogRing,
} from '@shoal/core';
import {
  PROTOCOL_VERSION, Peer, acceptHello, attachWebSocketEndpoint, probePort, sendWelcome, tokenMatches, type Message, type NewRequest, type RouteTable,
  type WorkerStats,
} from '@shoal/protocol';
import { Router, variantName, type Dispatch, type ReplicaRef, type Transport } from '@shoal/router';
import { rebuildError } from '@shoal/core';
import { Ingress, OipRoute, readBody, sendError, sendJson, type ExtraRoute } from '@shoal/ingress';
import { Controller, type ClusterOps } from './controller.ts';
import { LocalWorkers, bindSharedSocket, type SharedListenSocket, type WorkerCommand } from './local-workers.ts';
import type { StateStore, SeenWorker } from './state/state-store.ts';
import { HeadMetrics, METRICS_CONTENT_TYPE } from './metrics.ts';
import { compilePrices, type PriceOptions } from './slo/index.ts';
import { HeadLogs } from './logs-api.ts';
import { Experiment, compileExperimentOptions, type ExperimentOptions } from './experiments/index.ts';
import type { RolloutDecision } from './rollout.ts';
import { Dashboard, DASHBOARD_PATH, isDashboardPath } from './dashboard/index.ts';
import { routesView } from './routes-api.ts';

/** Experiments kept (running or finished) for their reports; past it, the oldest finished one goes. */
const MAX_EXPERIMENTS = 100;
/** Outcomes one control call may report at once. */
const MAX_OUTCOMES_PER_CALL = 10_000;

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
  /** Called when a control call asks the head to shut down (`keepWorkers`: a restart; leave the workers serving). */
  onShutdownRequest?: (opts: { keepWorkers: boolean }) => void;
  /** Routes the head's own ingress tries before applications (only when it serves HTTP itself: no local workers). */
  extraRoutes?: ExtraRoute[];
  /**
   * Where the desired state (applications) and the workers last seen are kept, so a restarted head carries on:
   * it reloads the applications, waits for its workers to come back and adopts their replicas. The store's lease
   * keeps a second head off it. @default none (the state lives in this process only)
   */
  store?: StateStore;
  /** When another head holds the store: wait as a standby and take over when it goes (else fail at once). @default false */
  standby?: boolean;
  /** The store's lease was lost to another head: this one must stop acting (the CLI exits). @default stop() */
  onLeaseLost?: (err: Error) => void;
  /**
   * Local workers kept beyond `workers` with no replicas placed on them while others have room: one takes over at
   * once from a local worker that dies, so re-placement pays the replica's start, not a process spawn. @default 0
   */
  spareWorkers?: number;
  /** How long a replica's start (construction and init()) may take before it counts as failed. @default 300000 */
  startTimeoutMs?: number;
  /**
   * How long a restarted head waits for the workers it last saw before it reconciles without the missing ones.
   * @default workerTimeoutMs
   */
  recoveryTimeoutMs?: number;
  /** Prices per core-hour and device-hour: status and metrics then show cost per 1,000 requests (docs/slo.md). @default none */
  prices?: PriceOptions;
}

/** How long a stats, metrics or reconfigure call to a worker may take. */
const WORKER_CALL_TIMEOUT_MS = 5000;
/** Beyond a stop's or health check's own timeout (which the worker enforces), the head's: for a stuck worker. */
const WORKER_GRACE_MS = 5000;

export class Head {
  readonly token: string;
  readonly controller: Controller;
  readonly router: Router;
  /** Requests waiting outside the cluster (POST /api/demand), per deployment key, until they go stale. */
  private readonly demand = new Map<string, { waiting: number; until: number }>();
  readonly metrics: HeadMetrics;
  /** GET /api/logs: this process's log ring and every live worker's, merged or followed. */
  readonly logs = new HeadLogs({ ring: processLogRing(), workers: () => [...this.peers.entries()].filter(([, p]) => !p.closed) });
  /** The live dashboard page at /dashboard on the control port. */
  readonly dashboard: Dashboard;
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
  private readonly opts: HeadOptions & { maxFrameBytes: number; heartbeatMs: number; workerTimeoutMs: number; startTimeoutMs: number };
  clusterAddress = '';
  httpAddress = '';
  private stopped = false;
  /** This run of the head: workers that join a new session take its tables whatever their version. */
  readonly session = randomBytes(6).toString('hex');
  /** Names of the workers a restarted head waits for, and when it stops waiting (monotonic ms). */
  private expected = new Set<string>();
  private recoveryEndsAt = 0;
  private passScheduled = false;
  /** What each worker said of itself at hello (its pid, whether it is local), kept until it is declared dead. */
  private readonly joined = new Map<string, { pid?: number; local: boolean }>();
  /** A/B experiments by name, running or finished (their reports stay). */
  private readonly experiments = new Map<string, Experiment>();

  constructor(opts: HeadOptions) {
    this.opts = { maxFrameBytes: 64 * 1024 * 1024, heartbeatMs: 500, workerTimeoutMs: 3000, startTimeoutMs: 300_000, ...opts };
    this.token = opts.token ?? randomBytes(24).toString('base64url');
    const clock = opts.clock ?? realClock;
    // Every call to a worker has a deadline: a stuck worker fails the one operation, with what and how long.
    const ops: ClusterOps = {
      startReplica: (w, r, app, d, devices, version) => {
        const t0 = performance.now();
        return this.askWorker(w, { t: 'start', replicaId: r, app, deployment: d, ...(devices === undefined ? {} : { devices }), ...(version === undefined ? {} : { version }) }, this.opts.startTimeoutMs, `start of replica ${r}`)
          .then((started) => { this.metrics.observeReplicaStart(`${app.name}/${d}`, (performance.now() - t0) / 1000); return started as { streams?: string[] } | null; });
      },
      stopReplica: (w, r, timeoutMs) => this.callWorker(w, { t: 'stop', replicaId: r, timeoutMs }, timeoutMs + WORKER_GRACE_MS, `stop of replica ${r}`),
      reconfigure: (w, r, userConfig) => this.callWorker(w, { t: 'reconfigure', replicaId: r, userConfig }, WORKER_CALL_TIMEOUT_MS, `reconfigure of replica ${r}`),
      checkHealth: (w, r, timeoutMs) => this.callWorker(w, { t: 'health', replicaId: r, timeoutMs }, timeoutMs + WORKER_GRACE_MS, `health check of replica ${r}`),
      publishRoutes: (table, version) => this.publishRoutes(table, version),
      dropWorker: (w, reason) => this.dropWorker(w, reason),
    };
    this.controller = new Controller({
      ops, clock, logger: opts.logger.child('controller'), workerTimeoutMs: this.opts.workerTimeoutMs, startTimeoutMs: this.opts.startTimeoutMs, onSettled: () => this.schedulePass(),
      prices: compilePrices(opts.prices),
      onAutoscale: (deployment, decision) => this.metrics.observeAutoscale(deployment, decision.reason),
      localWaiting: () => {
        const out: Record<string, number> = {};
        for (const [key, st] of Object.entries(this.router.stats())) if (st.waiting > 0) out[key] = st.waiting;
        // Demand that clients outside the cluster reported (POST /api/demand: `shoal batch`), while it is fresh.
        const now = clock.monoNow();
        for (const [key, d] of this.demand) {
          if (d.until <= now) this.demand.delete(key);
          else out[key] = (out[key] ?? 0) + d.waiting;
        }
        return out;
      },
      localShadow: () => this.router.shadowCounts(),
      onRollout: (d) => this.onRollout(d),
      onExperimentStart: (name, cfg, variants) => {
        try {
          this.openExperiment(name, { name, metric: cfg.metric, ...cfg.stats, variants: variants.map((v) => ({ name: v.name, weight: v.percent })) } as ExperimentOptions);
        } catch (err) {
          this.opts.logger.error('could not open the experiment', { experiment: name, error: toWireError(err).message });
        }
      },
    });
    const transport: Transport = { dispatch: (ref, m) => this.dispatch(ref, m) };
    this.router = new Router({
      transport, clock, logger: opts.logger.child('router'), onNoReplica: () => this.schedulePass(),
      onAnswered: (key, elapsedMs, ok) => this.metrics.routes.observeAnswered(key, elapsedMs, ok),
      onQueued: (key, waitedMs) => this.metrics.routes.observeQueued(key, waitedMs),
      onStream: { started: (key, ms) => this.metrics.routes.observeStreamStarted(key, ms), ended: (key, reason, chunks) => this.metrics.routes.observeStreamEnded(key, reason, chunks) },
    });
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
    this.dashboard = new Dashboard({
      token: this.token, logger: opts.logger.child('dashboard'), clock,
      source: async () => ({ status: { ...this.controller.status(), cluster: this.clusterAddress, http: this.httpAddress }, stats: await this.stats() }),
    });
    if ((opts.workers ?? 0) > 0 && opts.workerCommand === undefined) throw new InvalidOptionError('workerCommand', `is required to spawn ${opts.workers} local workers (the CLI's localWorkerCommand() gives it)`);
    if ((opts.workers ?? 0) === 0) {
      const metrics = { observeHttp: this.metrics.observeHttp.bind(this.metrics), scrape: () => this.metrics.scrape(), contentType: METRICS_CONTENT_TYPE, websocket: this.metrics.websocket };
      this.oip = new OipRoute({ router: this.router, logger: opts.logger.child('oip'), token: this.token, forwardRepository: (req) => this.repositoryCall(req) });
      this.ingress = new Ingress({ router: this.router, logger: opts.logger.child('ingress'), isReady: () => this.isReady(), metrics, extraRoutes: [...(opts.extraRoutes ?? []), this.oip] });
    } else if (opts.extraRoutes !== undefined && opts.extraRoutes.length > 0) {
      throw new InvalidOptionError('extraRoutes', 'serve only on the head\'s own ingress (workers: 0); with local workers the workers serve HTTP');
    }
  }

  async start(): Promise<void> {
    try {
      await this.startInner();
    } catch (err) {
      // Nothing half-started stays behind: the ports and the store's lease are let go.
      await this.stop({ keepWorkers: true }).catch(() => undefined);
      throw err;
    }
  }

  private async startInner(): Promise<void> {
    const store = this.opts.store;
    let adoptLocal = false;
    if (store !== undefined) {
      await store.open({
        standby: this.opts.standby === true,
        onLeaseLost: (err) => {
          this.opts.logger.error('lost the state store to another head; stopping', { error: err.message });
          if (this.opts.onLeaseLost) this.opts.onLeaseLost(err); else void this.stop({ keepWorkers: true });
        },
      });
      const state = await store.load();
      for (const { spec, history, meta } of Object.values(state.apps)) {
        try {
          this.controller.deploy(spec);
          for (const d of spec.deployments) {
            const versions = (history[d.name] ?? []).filter((v) => v.spec !== undefined).map((v) => ({
              id: v.versionId, spec: v.spec!, createdAtMs: v.atMs,
              app: { ...spec, ...(v.code ?? {}), deployments: spec.deployments.map((x) => (x.name === d.name ? v.spec! : x)) },
            }));
            this.controller.restoreHistory(spec.name, d.name, versions, meta.rollouts?.[d.name]);
          }
        } catch (err) {
          this.opts.logger.error('a stored application no longer deploys; skipped', { app: spec.name, error: toWireError(err).message });
        }
      }
      if (state.workers.length > 0) {
        // A restart: wait for the workers last seen, and change nothing until they are back or the wait ends.
        this.expected = new Set(state.workers.map((w) => w.name));
        adoptLocal = state.workers.some((w) => w.local);
        this.controller.beginRecovery();
      }
      this.opts.logger.info('state loaded', { store: store.description, apps: Object.keys(state.apps).length, workers: state.workers.length });
    }
    const host = this.opts.host ?? '127.0.0.1';
    this.server = createServer((req, res) => { void this.control(req, res); });
    this.wss = attachWebSocketEndpoint(this.server, { token: this.token, maxFrameBytes: this.opts.maxFrameBytes, logger: this.opts.logger, onConnection: (ws, remote) => { this.acceptWorker(ws, remote).catch((err: unknown) => { this.opts.logger.error('accepting a worker failed', { remote, error: toWireError(err).message }); ws.terminate(); }); } });
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(this.opts.port ?? 7450, host, () => resolve());
    });
    const addr = this.server.address();
    this.clusterAddress = `ws://${host}:${typeof addr === 'object' && addr !== null ? addr.port : 0}`;
    const httpHost = this.opts.httpHost ?? '127.0.0.1';
    let shared: SharedListenSocket | Promise<SharedListenSocket> | undefined;
    if (this.ingress !== undefined) {
      const http = await this.ingress.listen({ port: this.opts.httpPort ?? 8000, host: httpHost });
      this.httpAddress = `http://${http.host}:${http.port}`;
    } else {
      const bound = await this.bindHttp(httpHost, this.opts.httpPort ?? 8000, adoptLocal);
      shared = 'now' in bound ? bound.now : bound.later;
      const port = shared instanceof Promise ? this.opts.httpPort ?? 8000 : shared.port;
      this.httpAddress = `http://${httpHost.includes(':') ? `[${httpHost}]` : httpHost}:${port}`;
    }
    const clock = this.opts.clock ?? realClock;
    this.recoveryEndsAt = clock.monoNow() + (this.opts.recoveryTimeoutMs ?? this.opts.workerTimeoutMs);
    let lastTick = clock.monoNow();
    this.loop = setInterval(() => {
      // A tick far later than its period means this process was stalled, not that every worker went quiet.
      const now = clock.monoNow();
      if (now - lastTick > this.opts.workerTimeoutMs / 2) this.controller.headStalled(now - lastTick);
      lastTick = now;
      if (this.controller.isRecovering && now >= this.recoveryEndsAt) this.endRecovery(`waited ${this.opts.recoveryTimeoutMs ?? this.opts.workerTimeoutMs} ms; missing: ${[...this.expected].join(', ')}`);
      this.controller.checkWorkers();
      this.recordAssignments(this.router.takeAssignments());
      this.runPass();
    }, 200);
    this.loop.unref();
    if ((this.opts.workers ?? 0) > 0) {
      this.locals = new LocalWorkers({
        count: this.opts.workers! + (this.opts.spareWorkers ?? 0), address: this.clusterAddress, token: this.token, logger: this.opts.logger.child('local-workers'), command: this.opts.workerCommand!,
        ...(this.opts.workerCpus ? { cpus: this.opts.workerCpus } : {}), ...(shared ? { http: shared } : {}),
        onExit: (pid) => this.localExited(pid),
      });
      // A restarted head starts its local workers once it knows how many of the old ones came back.
      if (!this.controller.isRecovering) this.locals.start();
    }
    this.opts.logger.info('head started', { cluster: this.clusterAddress, http: this.httpAddress, session: this.session, recovering: this.controller.isRecovering });
  }

  /**
   * Binds the public HTTP socket for local workers. A restarted head may find it still held by the workers of the
   * previous head, which keep serving on it: it then binds it once they are gone, for the workers it starts itself.
   */
  private async bindHttp(host: string, port: number, adoptLocal: boolean): Promise<{ now: SharedListenSocket } | { later: Promise<SharedListenSocket> }> {
    // libuv reports a busy port only at listen(), which the workers do: find out here, with a probe that listens.
    let busy = false;
    try {
      await probePort('httpPort', host, port);
    } catch (err) {
      if (!adoptLocal || !/already in use|EADDRINUSE/.test((err as Error).message)) throw err;
      busy = true;
    }
    if (!busy) return { now: this.shared = bindSharedSocket(host, port) };
    this.opts.logger.info('the HTTP port is held by the previous head\'s workers; binding it once they are gone', { host, port });
    // Wrapped, so that awaiting this method does not wait for the port.
    return { later: new Promise<SharedListenSocket>((resolve) => {
      const retry = setInterval(() => {
        if (this.stopped) { clearInterval(retry); return; }
        probePort('httpPort', host, port).then(() => {
          if (this.shared !== undefined || this.stopped) return;
          this.shared = bindSharedSocket(host, port);
          clearInterval(retry);
          resolve(this.shared);
        }, () => undefined /* still held */);
      }, 500);
      retry.unref();
    }) };
  }

  /** A pass of the controller now; completions ask for another soon after (once per tick at most). */
  private runPass(): void {
    if (this.stopped) return;
    for (const w of this.controller.pass()) w.catch((err: unknown) => this.opts.logger.error('reconcile work failed', { error: toWireError(err).message }));
  }

  /** Whether `app/name` is a deployment of a deployed application. */
  private knowsDeployment(key: string): boolean {
    const [app, name] = key.split('/');
    return this.controller.appSpec(app!)?.deployments.some((d) => d.name === name) === true;
  }

  private schedulePass(): void {
    if (this.passScheduled || this.stopped) return;
    this.passScheduled = true;
    setImmediate(() => { this.passScheduled = false; this.runPass(); });
  }

  private endRecovery(why: string): void {
    if (!this.controller.isRecovering) return;
    this.opts.logger.info('recovery over; reconciling', { why, adoptedReplicas: this.controller.status().replicas.length });
    this.expected.clear();
    this.controller.endRecovery();
    const adopted = this.controller.aliveWorkers().filter((w) => w.local === true).length;
    this.locals?.start(adopted);
    this.publishApps();
    this.saveWorkers();
    this.runPass();
  }

  /** Waits until n workers have joined. */
  async waitForWorkers(n: number, timeoutMs = 30_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (this.controller.aliveWorkers().length < n) {
      if (Date.now() > end) throw new ReplicaUnavailableError(`only ${this.controller.aliveWorkers().length} of ${n} workers joined within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /**
   * Records the application (in the store first, when there is one: a deploy the head acknowledged survives its
   * restart) and starts reconciling; it does not wait for replicas (waitReady() does).
   */
  async deploy(given: AppSpec): Promise<void> {
    // The module's content is part of every version: an edited file rolls out; an unchanged one changes nothing.
    // (A module the head cannot read keeps what the spec said: its workers report what they find.)
    const codeHash = await moduleCodeHash(given.modulePath).catch(() => given.codeHash);
    const spec: AppSpec = codeHash === undefined ? given : { ...given, codeHash };
    checkExperimentOptions(spec);
    const previous = this.controller.appSpecs().find((a) => a.name === spec.name);
    this.controller.deploy(spec);
    try {
      await this.opts.store?.putApp(spec, this.metaOf(spec.name));
    } catch (err) {
      // Not stored, so not deployed: put back what was there.
      if (previous !== undefined) this.controller.deploy(previous); else this.controller.deleteApp(spec.name);
      throw err;
    }
    this.publishApps();
    this.runPass();
  }

  async deleteApp(name: string): Promise<void> {
    const previous = this.controller.appSpecs().find((a) => a.name === name);
    this.controller.deleteApp(name);
    try {
      await this.opts.store?.deleteApp(name);
    } catch (err) {
      // Not removed from the store, so not deleted: it would come back after a restart.
      if (previous !== undefined) this.controller.deploy(previous);
      throw err;
    }
    this.publishApps();
    this.runPass();
  }

  /**
   * Returns a deployment to its previous version (see Controller.rollback) and stores the spec that results. A
   * version whose module file has changed on disk since cannot come back: refused, naming the file.
   */
  async rollback(app: string, deployment: string): Promise<{ from: string; to: string }> {
    const before = this.controller.appSpecs().find((a) => a.name === app);
    const r = this.controller.rollback(app, deployment);
    try {
      await this.opts.store?.putApp(r.spec, this.metaOf(app));
    } catch (err) {
      if (before !== undefined) this.controller.deploy(before, { rollout: false });
      throw err;
    }
    this.publishApps();
    this.runPass();
    return { from: r.from, to: r.to };
  }

  /** Ends a shadow, canary or experiment phase early: the new version rolls out to the full count. */
  promote(app: string, deployment: string): { version: string } {
    const r = this.controller.promote(app, deployment);
    this.runPass();
    return r;
  }

  /** An experiment by name (running, or finished with its last report). */
  experiment(name: string): Experiment {
    const e = this.experiments.get(name);
    if (e === undefined) throw new NotFoundError(`no experiment named "${name}" (experiments: ${[...this.experiments.keys()].join(', ') || 'none'})`);
    return e;
  }

  /** Opens (or reopens, starting afresh) an experiment. */
  openExperiment(name: string, options: ExperimentOptions): Experiment {
    const e = new Experiment(options, { path: `experiment "${name}"` });
    if (this.experiments.has(name)) this.opts.logger.warn('an experiment of this name starts again; the previous one is discarded', { experiment: name });
    this.experiments.delete(name);
    this.experiments.set(name, e);
    while (this.experiments.size > MAX_EXPERIMENTS) this.experiments.delete(this.experiments.keys().next().value!);
    this.opts.logger.info('experiment opened', { experiment: name, variants: e.variants.join(','), metric: e.options.metric, mode: e.options.mode });
    return e;
  }

  private recordAssignments(assign: ReadonlyArray<readonly [string, string, number]>): void {
    for (const [name, requestId, index] of assign) {
      const e = this.experiments.get(name);
      if (e === undefined || typeof requestId !== 'string' || !Number.isInteger(index)) continue;
      try { e.recordAssignment(requestId, variantName(index)); } catch { /* a malformed id from a client header: not counted */ }
    }
  }

  /** What the store keeps with an application: its versions and the rollouts in progress. */
  private metaOf(app: string): { deployedAtMs: number; versions: Record<string, string>; rollouts: Record<string, { from: string; phase: 'shadow' | 'canary' | 'experiment' | 'rolling'; step: number }> } {
    return { deployedAtMs: Date.now(), versions: this.controller.versionsOf(app), rollouts: this.controller.rolloutsOf(app) };
  }

  private onRollout(d: RolloutDecision): void {
    this.metrics.observeRollout(d.deployment, d.action);
    // Every decision changes what a restarted head must go on with (the phase, the step; a rollback the spec).
    const app = d.deployment.slice(0, d.deployment.indexOf('/'));
    const spec = this.controller.appSpec(app);
    if (spec === undefined || d.action === 'start') return; // a start is stored by the deploy that began it
    if (d.action === 'rollback' || d.action === 'failed' || d.action === 'abort') this.publishApps();
    // After this turn: the controller finishes the decision (its rollout state) before the store reads it.
    queueMicrotask(() => this.opts.store?.putApp(this.controller.appSpec(app) ?? spec, this.metaOf(app)).catch((err: unknown) => {
      this.opts.logger.warn('could not store the rollout decision', { app, action: d.action, error: toWireError(err).message });
    }));
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

  /**
   * Stops the head. By default its local workers drain and stop with it; `keepWorkers` (a head restart) leaves
   * every worker serving from its last route table, to rejoin the next head on the same store.
   */
  async stop(opts: { keepWorkers?: boolean; drainMs?: number } = {}): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.loop);
    this.logs.closeAll();
    // Its own ingress (no local workers) drains first, while the router and the workers can still answer.
    await this.ingress?.close(opts.drainMs ?? 10_000);
    this.router.close();
    this.metrics.close();
    for (const p of this.peers.values()) p.close(1001, opts.keepWorkers ? 'head restarting' : 'head stopping');
    if (opts.keepWorkers) this.locals?.detach();
    else await Promise.all([this.locals?.stop(), this.stopAdoptedLocals()]);
    // The workers last seen stay in the store on a restart (the next head waits for them); a full stop forgets them.
    if (!opts.keepWorkers) await this.opts.store?.putWorkers([]).catch((err: unknown) => this.opts.logger.warn('could not clear the stored workers', { error: toWireError(err).message }));
    await this.opts.store?.close().catch(() => undefined);
    await this.ingress?.close();
    this.shared?.close();
    for (const c of this.wss?.clients ?? []) c.terminate();
    this.wss?.close();
    this.dashboard.close();
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
  /** The dashboard's address on the control port; with the token, the one that signs a browser in. */
  dashboardUrl(withToken = false): string {
    const base = `${this.clusterAddress.replace(/^ws:/, 'http:')}${DASHBOARD_PATH}`;
    return withToken ? `${base}?token=${encodeURIComponent(this.token)}` : base;
  }

  async stats(): Promise<{ router: ReturnType<Router['stats']>; workers: WorkerStats[] }> {
    const answers = await Promise.all([...this.peers.entries()].filter(([, p]) => !p.closed).map(([id, p]) => this.callPeer(p, { t: 'stats' }, WORKER_CALL_TIMEOUT_MS, `stats of worker ${id}`).then(
      (v) => v as WorkerStats,
      (err: unknown) => { this.opts.logger.warn('a worker did not answer stats', { workerId: id, error: toWireError(err).message }); return undefined; },
    )));
    return { router: this.router.stats(), workers: answers.filter((w): w is WorkerStats => w !== undefined) };
  }

  /** Local worker pids, for tests and the CLI. */
  localWorkerPids(): number[] {
    return this.locals?.pids() ?? [];
  }

  private async callWorker(workerId: string, message: NewRequest, timeoutMs: number, what: string): Promise<void> {
    await this.askWorker(workerId, message, timeoutMs, what);
  }

  /** As callWorker, resolving with the worker's answer (a start's: the instance's streaming fields, or null). */
  private async askWorker(workerId: string, message: NewRequest, timeoutMs: number, what: string): Promise<unknown> {
    const peer = this.peers.get(workerId);
    if (peer === undefined || peer.closed) throw new ReplicaUnavailableError(`worker ${workerId} is not connected (${what})`);
    return await this.callPeer(peer, message, timeoutMs, `${what} on worker ${workerId}`);
  }

  /** A request to a worker with a deadline: past it, DeadlineExceededError naming the operation and the time. */
  private callPeer(peer: Peer, message: NewRequest, timeoutMs: number, what: string): Promise<unknown> {
    const { id, reply } = peer.requestWithId(message);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => { peer.forget(id); reject(new DeadlineExceededError(`${what} took over ${timeoutMs} ms`)); }, timeoutMs);
    });
    return Promise.race([reply, timeout]).then(
      (r) => { clearTimeout(timer); if (r.ok) return r.value; throw rebuildError(r.error); },
      (err: unknown) => { clearTimeout(timer); throw err; },
    );
  }

  /** The controller declared a worker dead: cut its connection, and end a local worker's process (it is replaced). */
  private dropWorker(workerId: string, reason: string): void {
    this.metrics.observeWorkerLost(/no heartbeat|liveness timeout/.test(reason) ? 'timeout' : /not back/.test(reason) ? 'disconnected' : /exited/.test(reason) ? 'exited' : 'other');
    const peer = this.peers.get(workerId);
    this.peers.delete(workerId);
    this.router.dropWorker(workerId);
    // Its connection may be gone already (the liveness check cut it): what it said at hello is kept apart.
    const who = this.joined.get(workerId);
    this.joined.delete(workerId);
    const pid = who?.pid;
    if (peer !== undefined && !peer.closed) peer.terminate(`declared dead: ${reason}`);
    if (who?.local === true && pid !== undefined && !this.stopped) {
      // Stopped (SIGSTOP) or cut off: a local process that is not answering is ended, and another takes its place.
      // One this head spawned is replaced by its own exit handler (once, whether it exited first or is killed now);
      // one it adopted from a previous head is killed and replaced here.
      if (this.locals?.owns(pid) === true) this.locals.kill(pid);
      else {
        try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
        this.locals?.replace();
      }
    }
    this.saveWorkers();
  }

  /**
   * Local workers a previous head started and this one adopted are not its children: on a full stop they get
   * SIGTERM (they drain) and, if still there after 12 s, SIGKILL, as its own children do.
   */
  private async stopAdoptedLocals(): Promise<void> {
    const mine = new Set(this.locals?.pids() ?? []);
    const adopted = this.controller.status().workers.filter((w) => w.pid !== undefined && this.controller.worker(w.workerId)?.local === true && !mine.has(w.pid)).map((w) => w.pid!);
    for (const pid of adopted) { try { process.kill(pid, 'SIGTERM'); } catch { /* gone */ } }
    const end = Date.now() + 12_000;
    while (adopted.some(processAlive) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    for (const pid of adopted) if (processAlive(pid)) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
  }

  /** A local worker process exited: it is dead now, not after the timeout. */
  private localExited(pid: number | undefined): void {
    if (pid === undefined) return;
    // Alive or already disconnected (its socket closed a moment before the exit was seen): dead either way.
    const w = this.controller.workerByPid(pid);
    if (w !== undefined) { this.controller.workerDead(w.workerId, `its process (pid ${pid}) exited`); this.runPass(); }
  }

  /** Records the workers now alive, for a restarted head to wait for. */
  private saveWorkers(): void {
    const store = this.opts.store;
    if (store === undefined || this.controller.isRecovering || this.stopped) return;
    // Disconnected ones too: a head restarted now must wait for them rather than place their replicas again.
    const seen: SeenWorker[] = this.controller.knownWorkers().map((w) => ({ name: w.name, dataAddress: w.dataAddress, workerId: w.workerId, local: w.local === true, ...(w.pid !== undefined ? { pid: w.pid } : {}) }));
    store.putWorkers(seen).catch((err: unknown) => this.opts.logger.warn('could not store the workers', { error: toWireError(err).message }));
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
    if (this.stopped) { ws.close(1001, 'head stopping'); return; }
    // A worker coming back may still have its old connection open here (it saw the break first): drop that one.
    if (hello.previousWorkerId !== undefined) {
      const old = this.peers.get(hello.previousWorkerId);
      if (old !== undefined && !old.closed) { this.peers.delete(hello.previousWorkerId); old.terminate('the worker reconnected'); }
    }
    // A local worker beyond `workers` regular ones is a warm spare.
    const regular = this.controller.aliveWorkers().filter((w) => w.local === true && w.spare !== true).length;
    const back = hello.previousWorkerId === undefined ? undefined : this.controller.worker(hello.previousWorkerId);
    const spare = back !== undefined && back.name === hello.name ? back.spare === true
      : hello.local === true && (this.opts.spareWorkers ?? 0) > 0 && regular >= (this.opts.workers ?? 0) && (hello.replicas?.length ?? 0) === 0;
    const rec = this.controller.addWorker({
      name: hello.name, resources: hello.resources, dataAddress: hello.dataAddress, pid: hello.pid, local: hello.local === true, spare,
      ...(hello.previousWorkerId !== undefined ? { previousWorkerId: hello.previousWorkerId } : {}),
      ...(hello.replicas !== undefined ? { replicas: hello.replicas } : {}),
    });
    sendWelcome(ws, { workerId: rec.workerId, heartbeatMs: this.opts.heartbeatMs, timeoutMs: this.opts.workerTimeoutMs, session: this.session });
    const peer = new Peer(ws, {
      name: `worker ${rec.workerId} (${hello.name})`,
      maxFrameBytes: this.opts.maxFrameBytes,
      logger: log,
      liveness: { intervalMs: this.opts.heartbeatMs, timeoutMs: this.opts.workerTimeoutMs },
      onMessage: (m, p) => this.onWorkerMessage(rec.workerId, m, p),
      onClose: (err, p) => {
        this.logs.workerLeft(rec.workerId, p); // this connection's log subscriptions, whether or not it was replaced
        if (this.peers.get(rec.workerId) !== p) return; // replaced by a newer connection, or dropped on purpose
        this.peers.delete(rec.workerId);
        if (this.stopped) return; // the head is going away: nothing to re-place
        this.router.dropWorker(rec.workerId);
        // A local process that is gone is dead now; anything else may come back within the timeout.
        // Silent past the timeout (our liveness check cut it) has waited long enough already.
        const gone = (hello.local === true && hello.pid !== undefined && !processAlive(hello.pid)) || /worker stopping|liveness timeout/.test(err.message);
        this.controller.workerDisconnected(rec.workerId, err.message, gone);
        this.runPass();
      },
    });
    peer.meta = { pid: hello.pid, local: hello.local === true };
    this.peers.set(rec.workerId, peer);
    this.logs.workerJoined(rec.workerId, peer);
    this.joined.set(rec.workerId, { ...(hello.pid !== undefined ? { pid: hello.pid } : {}), local: hello.local === true });
    if (!this.controller.isRecovering) {
      const routes = this.controller.currentRoutes();
      peer.send({ t: 'routes', version: routes.version, table: routes.table });
    }
    peer.send({ t: 'apps', version: this.appsVersion, apps: [...this.controller.appSpecs()], repository: this.repository !== undefined });
    if (this.expected.delete(hello.name) && this.expected.size === 0) this.endRecovery('every worker last seen is back');
    this.saveWorkers();
    this.runPass();
  }

  private onWorkerMessage(workerId: string, m: Message, peer: Peer): void {
    if (m.t === 'hb') {
      // Requests waiting for a deployment at zero replicas: scale it up now, not at the next tick.
      if (this.controller.heartbeat(workerId, { replicas: m.replicas, ...(m.waiting !== undefined ? { waiting: m.waiting } : {}), ...(m.shadow !== undefined ? { shadow: m.shadow } : {}) })) this.schedulePass();
      if (m.assign !== undefined) this.recordAssignments(m.assign);
      return;
    }
    if (m.t === 'repository') {
      this.repositoryCall(m.req).then((r) => peer.reply(m.id, r), (e: unknown) => peer.replyError(m.id, toWireError(e)));
      return;
    }
    if (m.t === 'logsPush') { this.logs.onPush(workerId, m); return; }
    if (m.t === 'scrape') {
      this.metrics.scrape().then((text) => peer.reply(m.id, text), (e: unknown) => peer.replyError(m.id, toWireError(e)));
      return;
    }
    // The controller learns states from start/stop replies; this tells of starts a previous head asked for.
    if (m.t === 'replicaState') { this.controller.replicaStateReported(workerId, m.replicaId, m.state); return; }
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
      // The dashboard checks its own credential: a browser brings a session cookie, not an Authorization header.
      if (isDashboardPath(url.pathname)) { this.dashboard.handle(req, res, url); return; }
      const auth = req.headers.authorization;
      const given = auth?.startsWith('Bearer ') ? auth.slice(7) : undefined;
      if (!tokenMatches(this.token, given)) {
        this.opts.logger.warn('control call refused', { remote: req.socket.remoteAddress, path: url.pathname, reason: given ? 'wrong token' : 'missing token' });
        req.resume();
        throw new UnauthorizedError(given ? 'wrong cluster token' : 'missing cluster token: send "Authorization: Bearer <token>"');
      }
      if (req.method === 'GET' && url.pathname === '/api/status') { sendJson(res, 200, { ...this.controller.status(), cluster: this.clusterAddress, http: this.httpAddress }); return; }
      if (req.method === 'GET' && url.pathname === '/api/routes') { sendJson(res, 200, routesView(this.controller)); return; }
      // The deployed specs as the head holds them (codeHash filled): what `shoal deploy CONFIG` diffs its file against.
      if (req.method === 'GET' && url.pathname === '/api/apps') { sendJson(res, 200, { applications: this.controller.appSpecs() }); return; }
      if (req.method === 'POST' && url.pathname === '/api/demand') {
        const { deployment, waiting } = parseDemand(JSON.parse((await readBody(req, 64 * 1024, 'the demand API')).toString()), (key) => this.knowsDeployment(key));
        this.demand.set(deployment, { waiting, until: (this.opts.clock ?? realClock).monoNow() + DEMAND_TTL_MS });
        this.schedulePass();
        sendJson(res, 200, { ok: true, deployment, waiting });
        return;
      }
      if (req.method === 'GET' && url.pathname === '/api/logs') { await this.logs.serve(url, req, res); return; }
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
      const act = /^\/api\/apps\/([^/]+)\/deployments\/([^/]+)\/(rollback|promote)$/.exec(url.pathname);
      if (req.method === 'POST' && act !== null) {
        req.resume();
        const [app, dep] = [decodeURIComponent(act[1]!), decodeURIComponent(act[2]!)];
        sendJson(res, 200, { ok: true, ...(act[3] === 'rollback' ? await this.rollback(app, dep) : this.promote(app, dep)) });
        return;
      }
      if (req.method === 'GET' && url.pathname === '/api/experiments') { sendJson(res, 200, { experiments: [...this.experiments.values()].map((e) => e.report()) }); return; }
      const exp = /^\/api\/experiments\/([^/]+)(\/outcomes)?$/.exec(url.pathname);
      if (exp !== null && req.method === 'GET' && exp[2] === undefined) {
        const e = this.experiment(decodeURIComponent(exp[1]!));
        if (url.searchParams.get('format') === 'text') { const text = e.format(); res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text) }).end(text); return; }
        sendJson(res, 200, e.report());
        return;
      }
      if (exp !== null && req.method === 'POST' && exp[2] !== undefined) {
        const e = this.experiment(decodeURIComponent(exp[1]!));
        const body: unknown = JSON.parse((await readBody(req, 16 * 1024 * 1024, 'the outcomes API')).toString());
        sendJson(res, 200, recordOutcomes(e, body));
        return;
      }
      const del = /^\/api\/apps\/([^/]+)$/.exec(url.pathname);
      if (req.method === 'DELETE' && del !== null) { await this.deleteApp(decodeURIComponent(del[1]!)); sendJson(res, 200, { ok: true }); return; }
      if (req.method === 'POST' && url.pathname === '/api/shutdown') {
        const keepWorkers = url.searchParams.get('keepWorkers') === '1' || url.searchParams.get('keepWorkers') === 'true';
        sendJson(res, 200, { ok: true, keepWorkers });
        setImmediate(() => (this.opts.onShutdownRequest ? this.opts.onShutdownRequest({ keepWorkers }) : void this.stop({ keepWorkers })));
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

/**
 * Outcomes for an experiment: one `{ requestId, value }`, or `{ outcomes: [...] }`. One outcome answers with its
 * receipt or its error (404 unknown id, 409 a second outcome, 400 a bad value); a list counts each one it can and
 * lists the others' errors by index, so one bad entry does not lose the rest.
 */
function recordOutcomes(e: Experiment, body: unknown): unknown {
  if (typeof body === 'object' && body !== null && Array.isArray((body as { outcomes?: unknown }).outcomes)) {
    const list = (body as { outcomes: unknown[] }).outcomes;
    if (list.length > MAX_OUTCOMES_PER_CALL) throw new BadRequestError(`outcomes: ${list.length} in one call, over the bound of ${MAX_OUTCOMES_PER_CALL}`);
    let counted = 0;
    const errors: Array<{ index: number; code: string; error: string }> = [];
    list.forEach((o, index) => {
      try { e.recordOutcome(asOutcome(o, `outcomes[${index}]`)); counted++; } catch (err) { const w = toWireError(err); errors.push({ index, code: w.code, error: w.message }); }
    });
    return { ok: errors.length === 0, counted, errors };
  }
  return { ok: true, ...e.recordOutcome(asOutcome(body, 'body')) };
}

function asOutcome(o: unknown, path: string): { requestId: string; value: unknown } {
  if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new BadRequestError(`${path} must be an object { requestId, value }`);
  const { requestId, value } = o as Record<string, unknown>;
  if (typeof requestId !== 'string') throw new BadRequestError(`${path}.requestId must be a string (the x-request-id the answer carried)`);
  return { requestId, value };
}

/** Refuses, at deploy, experiment statistics options the experiment would refuse when it opens. */
function checkExperimentOptions(spec: AppSpec): void {
  spec.deployments.forEach((d, i) => {
    const e = d.options.rollout.experiment;
    if (e === undefined) return;
    compileExperimentOptions({ name: e.name ?? `${spec.name}.${d.name}`, metric: e.metric, ...e.stats, variants: [{ name: 'A', weight: 100 - e.percent }, { name: 'B', weight: e.percent }] } as ExperimentOptions, `app.deployments[${i}].options.rollout.experiment.stats`);
  });
}

function processAlive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch (err) { return (err as NodeJS.ErrnoException).code === 'EPERM'; }
}

/** How long a reported demand counts: a client that still waits reports again (`shoal batch`: at most every second). */
const DEMAND_TTL_MS = 5000;

/** The body of POST /api/demand: `{ deployment: "app/name", waiting: n }`, for a deployment the head knows. */
export function parseDemand(body: unknown, known: (key: string) => boolean): { deployment: string; waiting: number } {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new BadRequestError('the demand API takes a JSON object { "deployment": "app/name", "waiting": n }');
  const { deployment, waiting } = body as { deployment?: unknown; waiting?: unknown };
  if (typeof deployment !== 'string' || !/^[^/]+\/[^/]+$/.test(deployment)) throw new BadRequestError(`demand.deployment must be "app/name", got ${JSON.stringify(deployment)}`);
  if (typeof waiting !== 'number' || !Number.isInteger(waiting) || waiting < 1 || waiting > 1_000_000) throw new BadRequestError(`demand.waiting must be an integer in [1, 1000000], got ${JSON.stringify(waiting)}`);
  if (!known(deployment)) throw new NotFoundError(`no deployment "${deployment}"`);
  return { deployment, waiting };
}
