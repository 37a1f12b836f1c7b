/**
 * The controller: desired state (applications and their deployments) reconciled into replicas on workers.
 * It talks to workers only through ClusterOps, and to time only through a Clock, so it runs against fakes in
 * unit tests. Every change that alters which replicas are RUNNING publishes a new route table.
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  DeployError, InsufficientResourcesError, NotFoundError, toWireError, type AppSpec, type Clock,
  type CompiledDeploymentResources, type DeploymentSpec, type Logger,
} from '@shoal/core';
import type { ModelSet, ReplicaState, RouteTable, RunningReplica, WorkerResources } from '@shoal/protocol';
import { deviceStates, gpuNeedOf, usesDevicePlacement, type DeviceCharge } from './device-accounting.ts';
import { placeGpuReplicas, type GpuDeviceState, type GpuPlacementOptions } from './gpu-placement.ts';
import { chooseWorker, explainNoFit, fits, type WorkerCapacity } from './scheduler.ts';
import { INITIAL_AUTOSCALING_STATE, decideReplicas, formatAutoscalingDecision, type AutoscalingDecision, type AutoscalingPolicyState } from './autoscaling-policy.ts';
import { AutoscalingWindow } from './autoscaling-window.ts';

/** What the controller asks of the cluster. Implemented over worker connections by the head; faked in tests. */
export interface ClusterOps {
  /** `version`: the deployment version it is started at; the worker reports it back when it rejoins a new head. */
  startReplica(workerId: string, replicaId: string, app: AppSpec, deployment: string, devices?: number[], version?: string): Promise<void>;
  stopReplica(workerId: string, replicaId: string, timeoutMs: number): Promise<void>;
  reconfigure(workerId: string, replicaId: string, userConfig: unknown): Promise<void>;
  checkHealth(workerId: string, replicaId: string, timeoutMs: number): Promise<void>;
  publishRoutes(table: RouteTable, version: number): void;
  /** A worker was declared dead: close its connection (pending calls reject) and, if local, end and replace its process. */
  dropWorker(workerId: string, reason: string): void;
}

export interface WorkerRecord {
  workerId: string;
  name: string;
  resources: WorkerResources;
  dataAddress: string;
  pid: number | undefined;
  /** Spawned on the head's machine (the embedded default): its process is ended and replaced when it is declared dead. */
  local?: boolean;
  /** A warm spare: no replica is placed on it while another worker has room; promoteSpare() makes it a regular one. */
  spare?: boolean;
  /** Monotonic ms (clock.monoNow()). */
  lastHeartbeat: number;
  /**
   * DISCONNECTED: its connection closed, but it may come back (a head-side stall, a short partition): its replicas
   * are out of the route table and kept for adoption until workerTimeoutMs passes, then it is DEAD.
   */
  state: 'ALIVE' | 'DISCONNECTED' | 'DEAD';
  /** Monotonic ms when it disconnected. */
  disconnectedAt?: number;
}

export interface ReplicaRecord {
  replicaId: string;
  app: string;
  deployment: string;
  version: string;
  workerId: string;
  state: ReplicaState;
  /** Monotonic ms (clock.monoNow()), as is nextHealthAt. */
  startedAt: number;
  nextHealthAt: number;
  error?: string;
  /** Device indices on its worker, for a deployment placed by device (gpus, gpuMemory or sharedBlobs). */
  devices?: number[];
}

export interface DeploymentStatus {
  status: 'UPDATING' | 'HEALTHY' | 'UNHEALTHY';
  message: string;
  failures: number;
  /** Monotonic ms (clock.monoNow()) before which a failing deployment is not restarted; 0: no backoff. */
  retryAt: number;
  /** The last start error, while starts keep failing (cleared by a start that succeeds). */
  lastError?: string | undefined;
}

interface DeploymentRecord {
  spec: DeploymentSpec;
  version: string;
  status: DeploymentStatus;
  /** Set when the deployment autoscales: the count kept now, the load window and the policy's memory. */
  autoscale?: { target: number; window: AutoscalingWindow; state: AutoscalingPolicyState; lastSampleAt: number };
}

/** The load a worker reported in its latest heartbeat. */
interface WorkerLoad {
  /** Running plus queued requests per replica. */
  replicas: Map<string, number>;
  /** Requests its router holds for a replica, per deployment key. */
  waiting: Record<string, number>;
  /** The models each of its multiplexed replicas holds, as last reported. */
  models: Map<string, ModelSet>;
}

interface AppRecord {
  spec: AppSpec;
  deployments: Map<string, DeploymentRecord>;
}

export interface ControllerOptions {
  ops: ClusterOps;
  /** Read as monotonic time only (clock.monoNow()): heartbeats, health-check periods and backoff are durations. */
  clock: Clock;
  logger: Logger;
  /** Silence after which a worker is declared dead. @default 3000 */
  workerTimeoutMs?: number;
  /** Upper bound of the restart backoff of a failing deployment. @default 30000 */
  maxBackoffMs?: number;
  /** Device memory kept free when placing by device memory. @default the policy's (5% of a device, at least 256 MiB) */
  placement?: GpuPlacementOptions;
  /** Called whenever a start, stop or health check settles, so the owner runs another pass soon. @default none */
  onSettled?: () => void;
  /**
   * How long an adopted replica (one a worker reports STARTING after a head restart) may stay STARTING before it
   * is stopped: the start deadline of the head that asked for it died with that head. @default 300000
   */
  startTimeoutMs?: number;
  /** Every autoscaling decision, with its numbers (also logged). @default none */
  onAutoscale?: (deployment: string, decision: AutoscalingDecision) => void;
  /** Requests waiting for a replica in routers that do not heartbeat (the head's own), per deployment key. @default none */
  localWaiting?: () => Record<string, number>;
}

export interface ClusterStatus {
  applications: Array<{ name: string; routePrefix: string | null; ingress: string; deployments: Array<{
    name: string; status: string; message: string;
    /** The count kept now (with autoscaling, its current target). */
    numReplicas: number;
    running: number;
    autoscaling?: { target: number; min: number; max: number };
    /** Failed starts in a row, and the last one's error. */
    failures: number;
    lastError?: string;
  }> }>;
  replicas: Array<{ replicaId: string; app: string; deployment: string; state: ReplicaState; workerId: string; devices?: number[]; error?: string }>;
  workers: Array<{ workerId: string; name: string; state: string; pid?: number; dataAddress: string; resources: WorkerResources; used: { cpus: number; gpus: number; memory: number }; replicas: number }>;
}

/** Version of a deployment's code and options: a change replaces replicas; userConfig, numReplicas and autoscaling don't. */
function deploymentVersion(app: AppSpec, d: DeploymentSpec): string {
  const { userConfig: _u, numReplicas: _n, autoscaling: _a, ...rest } = d.options;
  return createHash('sha256').update(JSON.stringify([app.modulePath, app.exportName, d.kind, d.dependencies, d.methods, rest])).digest('hex').slice(0, 12);
}

export class Controller {
  private readonly apps = new Map<string, AppRecord>();
  private readonly replicas = new Map<string, ReplicaRecord>();
  private readonly workers = new Map<string, WorkerRecord>();
  private routesVersion = 0;
  private lastRoutesKey = '';
  private nextReplica = 1;
  private nextWorker = 1;
  private reconciling = false;
  private again = false;
  /** Set while a restarted head waits for its workers to come back: no starts, stops or route tables. */
  private recovering = false;
  /** Part of every replica id this controller makes, so ids never repeat those of replicas a restart adopts. */
  private readonly idPrefix = randomBytes(3).toString('hex');
  /** Adopted replicas still STARTING: the worker's replicaState message says when they run. */
  private readonly adoptedStarting = new Set<string>();
  private readonly opts: Required<ControllerOptions>;
  private readonly loads = new Map<string, WorkerLoad>();

  constructor(opts: ControllerOptions) {
    this.opts = { workerTimeoutMs: 3000, maxBackoffMs: 30_000, placement: {}, onSettled: () => undefined, onAutoscale: () => undefined, localWaiting: () => ({}), startTimeoutMs: 300_000, ...opts };
  }

  // ---- workers ----

  /**
   * A worker joins, or comes back. `previousWorkerId` (a worker that lost its head, or its connection) keeps its id
   * when that id is free or still held by its own DISCONNECTED record; `replicas` are what it still runs, adopted
   * as they are (see adopt()).
   */
  addWorker(w: Omit<WorkerRecord, 'workerId' | 'lastHeartbeat' | 'state'> & { previousWorkerId?: string; replicas?: readonly RunningReplica[] }): WorkerRecord {
    const { previousWorkerId, replicas, ...fields } = w;
    const now = this.opts.clock.monoNow();
    let workerId: string | undefined;
    if (previousWorkerId !== undefined && /^w\d+$/.test(previousWorkerId)) {
      const held = this.workers.get(previousWorkerId);
      // Its own record, still ALIVE, when it came back before its old connection was seen to close (same name:
      // same host and process).
      if (held === undefined || held.name === w.name) workerId = previousWorkerId;
      // The numbering goes on past every id a worker kept, so a new worker never takes one.
      this.nextWorker = Math.max(this.nextWorker, Number(previousWorkerId.slice(1)) + 1);
    }
    workerId ??= `w${this.nextWorker++}`;
    const back = this.workers.get(workerId);
    const rec: WorkerRecord = { ...fields, workerId, lastHeartbeat: now, state: 'ALIVE' };
    this.workers.set(workerId, rec);
    this.opts.logger.info(back !== undefined ? 'worker reconnected' : 'worker joined', { workerId, name: rec.name, cpus: rec.resources.cpus, gpus: rec.resources.gpus, replicas: replicas?.length ?? 0 });
    if (replicas !== undefined && replicas.length > 0) this.adopt(workerId, replicas);
    // Replicas it no longer reports are gone with its old process state.
    for (const r of [...this.replicas.values()]) {
      if (r.workerId === workerId && !(replicas ?? []).some((x) => x.replicaId === r.replicaId)) this.replicas.delete(r.replicaId);
    }
    this.publishRoutes();
    return rec;
  }

  /**
   * Takes over replicas a worker reports as running (after a head restart, or when a worker the head had lost
   * comes back): they keep serving, and reconcile counts them, stopping whatever is beyond the desired count
   * (newest first, so those that served all along stay). Replicas of unknown applications are stopped.
   */
  private adopt(workerId: string, replicas: readonly RunningReplica[]): void {
    const now = this.opts.clock.monoNow();
    for (const x of replicas) {
      const d = this.apps.get(x.app)?.deployments.get(x.deployment);
      const state: ReplicaState = x.state === 'RUNNING' || x.state === 'STARTING' ? x.state : 'DRAINING';
      const existing = this.replicas.get(x.replicaId);
      if (existing !== undefined && existing.workerId !== workerId) {
        this.opts.logger.warn('a rejoining worker reports a replica that runs elsewhere; stopping its copy', { replica: x.replicaId, workerId, elsewhere: existing.workerId });
        // After this turn: the caller registers the worker's connection right after addWorker returns.
        void Promise.resolve().then(() => this.opts.ops.stopReplica(workerId, x.replicaId, 5000)).catch(() => undefined);
        continue;
      }
      const rec: ReplicaRecord = {
        replicaId: x.replicaId, app: x.app, deployment: x.deployment, version: x.version, workerId, state,
        startedAt: existing?.startedAt ?? now, nextHealthAt: now + (d?.spec.options.healthCheckPeriodMs ?? 10_000),
        ...(x.devices !== undefined ? { devices: x.devices } : {}),
      };
      this.replicas.set(x.replicaId, rec);
      if (state === 'STARTING') this.adoptedStarting.add(x.replicaId);
      if (existing === undefined) this.opts.logger.info('adopted a running replica', { replica: x.replicaId, workerId, state, known: d !== undefined });
      if (d === undefined && (state === 'RUNNING' || state === 'STARTING') && !this.recovering) void Promise.resolve().then(() => this.stop(rec));
    }
  }

  /** A worker told of a replica's state change (a start the previous head asked for, finishing after adoption). */
  replicaStateReported(workerId: string, replicaId: string, state: ReplicaState): void {
    const r = this.replicas.get(replicaId);
    if (r === undefined || r.workerId !== workerId) return;
    if (r.state === 'STARTING' && state === 'RUNNING' && this.adoptedStarting.has(replicaId)) {
      this.adoptedStarting.delete(replicaId);
      r.state = 'RUNNING';
      this.publishRoutes();
    } else if (state === 'FAILED' && r.state === 'STARTING' && this.adoptedStarting.has(replicaId)) {
      this.adoptedStarting.delete(replicaId);
      this.replicas.delete(replicaId);
    }
  }

  /**
   * A heartbeat, with the worker's load when it sent one: requests per replica and what its router holds for want
   * of a replica. Returns true when that shows demand for a deployment scaled to zero (the caller runs a pass now).
   */
  heartbeat(workerId: string, load?: { replicas: ReadonlyArray<{ replicaId: string; ongoing: number; queued: number; models?: ModelSet }>; waiting?: Record<string, number> }): boolean {
    const w = this.workers.get(workerId);
    if (w === undefined || w.state !== 'ALIVE') return false;
    w.lastHeartbeat = this.opts.clock.monoNow();
    if (load === undefined) return false;
    const models = new Map<string, ModelSet>();
    for (const r of load.replicas) if (r.models !== undefined) models.set(r.replicaId, r.models);
    const before = this.loads.get(workerId)?.models;
    this.loads.set(workerId, { replicas: new Map(load.replicas.map((r) => [r.replicaId, r.ongoing + r.queued])), waiting: load.waiting ?? {}, models });
    // Routers learn from the route table which replica holds which model (model multiplexing): publish a change.
    if (models.size !== (before?.size ?? 0) || [...models].some(([id, m]) => before?.get(id)?.v !== m.v)) this.publishRoutes();
    for (const key of Object.keys(load.waiting ?? {})) {
      const [app, dep] = splitKey(key);
      if (this.apps.get(app)?.deployments.get(dep)?.autoscale?.target === 0) return true;
    }
    return false;
  }

  /**
   * A worker's connection closed. A local worker whose process exited is dead at once (`dead`); any other may be
   * back soon (the head stalled, a short partition): its replicas leave the route table now, and it is declared
   * dead only if it has not reconnected within workerTimeoutMs.
   */
  workerDisconnected(workerId: string, reason: string, dead = false): void {
    const w = this.workers.get(workerId);
    if (w === undefined || w.state === 'DEAD') return;
    if (dead || this.recovering) { this.workerDead(workerId, reason); return; }
    if (w.state === 'DISCONNECTED') return;
    w.state = 'DISCONNECTED';
    w.disconnectedAt = this.opts.clock.monoNow();
    this.opts.logger.warn('worker disconnected; its replicas wait for it to come back', { workerId, reason, graceMs: this.opts.workerTimeoutMs });
    this.publishRoutes();
  }

  /** Declares a worker dead: its replicas are lost and will be started elsewhere; its connection is dropped. */
  workerDead(workerId: string, reason: string): void {
    const w = this.workers.get(workerId);
    if (w === undefined || w.state === 'DEAD') return;
    w.state = 'DEAD';
    this.opts.logger.warn('worker declared dead', { workerId, reason });
    for (const r of [...this.replicas.values()]) {
      if (r.workerId !== workerId) continue;
      this.replicas.delete(r.replicaId);
      this.opts.logger.warn('replica lost with its worker', { replica: r.replicaId, deployment: `${r.app}/${r.deployment}` });
    }
    this.publishRoutes();
    this.workers.delete(workerId);
    this.loads.delete(workerId);
    // A regular local worker lost: a warm spare takes its place now (its replacement process becomes the spare).
    if (w.local === true && w.spare !== true) this.promoteSpare();
    this.opts.ops.dropWorker(workerId, reason);
  }

  /**
   * This process itself was stalled (stopped, or its event loop blocked) for `ms`: the workers' heartbeats wait
   * unread in the sockets, so their silence is this side's. Every heartbeat clock restarts now.
   */
  headStalled(ms: number): void {
    const now = this.opts.clock.monoNow();
    this.opts.logger.warn('the head was stalled; restarting worker heartbeat clocks', { stalledMs: Math.round(ms), workerTimeoutMs: this.opts.workerTimeoutMs });
    for (const w of this.workers.values()) if (w.state === 'ALIVE') w.lastHeartbeat = now;
  }

  /**
   * Declares dead every worker silent for longer than workerTimeoutMs, and every disconnected one that has not
   * come back within it. Called periodically.
   */
  checkWorkers(): string[] {
    const now = this.opts.clock.monoNow();
    const dead: Array<[string, string]> = [];
    for (const w of this.workers.values()) {
      if (w.state === 'ALIVE' && now - w.lastHeartbeat > this.opts.workerTimeoutMs) dead.push([w.workerId, `no heartbeat for ${Math.round(now - w.lastHeartbeat)} ms (workerTimeoutMs ${this.opts.workerTimeoutMs})`]);
      if (w.state === 'DISCONNECTED' && now - (w.disconnectedAt ?? now) > this.opts.workerTimeoutMs) dead.push([w.workerId, `disconnected and not back within workerTimeoutMs ${this.opts.workerTimeoutMs}`]);
    }
    for (const [id, why] of dead) this.workerDead(id, why);
    return dead.map(([id]) => id);
  }

  /** A restarted head waits for its workers before it changes anything (see Head): no starts, stops or routes. */
  beginRecovery(): void {
    this.recovering = true;
  }

  /** Ends recovery: from now on the controller reconciles what the workers reported against the desired state. */
  endRecovery(): void {
    if (!this.recovering) return;
    this.recovering = false;
    // An autoscaled count is not stored: what the workers still run is what the load needed. Start from that
    // (within the bounds), not from initialReplicas, or the first pass would stop what is serving.
    for (const [appName, app] of this.apps) {
      for (const [depName, d] of app.deployments) {
        const a = d.autoscale;
        const cfg = d.spec.options.autoscaling;
        if (a === undefined || cfg === undefined) continue;
        const adopted = this.replicasOf(appName, depName).filter((r) => r.version === d.version && (r.state === 'RUNNING' || r.state === 'STARTING')).length;
        if (adopted > 0) a.target = Math.min(cfg.maxReplicas, Math.max(cfg.minReplicas, adopted));
      }
    }
    // Adopted replicas of applications that no longer exist go now.
    for (const r of [...this.replicas.values()]) {
      if (this.apps.get(r.app)?.deployments.get(r.deployment) === undefined && (r.state === 'RUNNING' || r.state === 'STARTING')) void this.stop(r);
    }
    this.publishRoutes();
  }

  get isRecovering(): boolean {
    return this.recovering;
  }

  /** Makes one warm spare a regular worker (one of the regular ones died); false when there is none. */
  promoteSpare(): boolean {
    for (const w of this.workers.values()) {
      if (w.state === 'ALIVE' && w.spare === true) {
        w.spare = false;
        this.opts.logger.info('warm spare promoted', { workerId: w.workerId });
        return true;
      }
    }
    return false;
  }

  /** A worker not yet declared dead (alive or disconnected) by its process id. */
  workerByPid(pid: number): WorkerRecord | undefined {
    for (const w of this.workers.values()) if (w.pid === pid && w.state !== 'DEAD') return w;
    return undefined;
  }

  /** Workers alive or in their grace period (disconnected, may come back). */
  knownWorkers(): WorkerRecord[] {
    return [...this.workers.values()].filter((w) => w.state !== 'DEAD');
  }

  aliveWorkers(): WorkerRecord[] {
    return [...this.workers.values()].filter((w) => w.state === 'ALIVE');
  }

  worker(workerId: string): WorkerRecord | undefined {
    return this.workers.get(workerId);
  }

  // ---- applications ----

  /** Records the desired state of an application; replicas follow in reconcile(). */
  deploy(spec: AppSpec): void {
    for (const other of this.apps.values()) {
      if (other.spec.name !== spec.name && spec.routePrefix !== null && other.spec.routePrefix === spec.routePrefix) {
        throw new DeployError(`route prefix "${spec.routePrefix}" is already served by application "${other.spec.name}"`, 409);
      }
    }
    if (!spec.deployments.some((d) => d.name === spec.ingress)) throw new DeployError(`ingress deployment "${spec.ingress}" is not among the deployments of "${spec.name}"`);
    // Refuse what can never fit, with the numbers, rather than leaving replicas pending forever.
    const alive = this.aliveWorkers();
    if (alive.length > 0) {
      for (const d of spec.deployments) {
        const res = d.options.resources;
        const empty = alive.map((w) => this.capacity(w, '', '', true));
        const fitting = empty.filter((w) => fits(w, workerNeed(res)));
        if (d.options.numReplicas > 0 && fitting.length === 0) {
          throw new InsufficientResourcesError(`deployment "${d.name}" of "${spec.name}" fits on no worker: ${explainNoFit(empty, workerNeed(res))}`, { deployment: d.name });
        }
        if (d.options.numReplicas > 0 && usesDevicePlacement(res)) {
          // Against empty devices, like the check above: what other replicas hold now is the reconcile loop's concern.
          const refusal = this.devicesRefuse(d.name, 1, res, new Set(fitting.map((w) => w.workerId)), () => true);
          if (refusal !== undefined) throw new InsufficientResourcesError(`application "${spec.name}": ${refusal.message}`, refusal.details ?? {});
        }
      }
    }
    const previous = this.apps.get(spec.name);
    const deployments = new Map<string, { spec: DeploymentSpec; version: string; status: DeploymentStatus }>();
    for (const d of spec.deployments) {
      const version = deploymentVersion(spec, d);
      const prev = previous?.deployments.get(d.name);
      const rec: DeploymentRecord = { spec: d, version, status: { status: 'UPDATING', message: '', failures: 0, retryAt: 0 } };
      const cfg = d.options.autoscaling;
      if (cfg !== undefined) {
        // The same autoscaling config on a redeploy keeps the count it reached; a changed one starts over.
        // A changed one keeps the count reached too, brought within its new bounds, and starts its window afresh.
        const same = prev?.autoscale !== undefined && JSON.stringify(prev.spec.options.autoscaling) === JSON.stringify(cfg);
        const carried = prev?.autoscale === undefined ? d.options.numReplicas : Math.min(cfg.maxReplicas, Math.max(cfg.minReplicas, prev.autoscale.target));
        rec.autoscale = same ? prev.autoscale : { target: carried, window: AutoscalingWindow.for(cfg), state: INITIAL_AUTOSCALING_STATE, lastSampleAt: Number.NEGATIVE_INFINITY };
      }
      deployments.set(d.name, rec);
      if (prev !== undefined && prev.version === version && JSON.stringify(prev.spec.options.userConfig) !== JSON.stringify(d.options.userConfig)) {
        this.reconfigureRunning(spec.name, d.name, d.options.userConfig);
      }
    }
    this.apps.set(spec.name, { spec, deployments });
    this.opts.logger.info('application deployed', { app: spec.name, deployments: spec.deployments.map((d) => d.name).join(','), routePrefix: spec.routePrefix });
  }

  deleteApp(name: string): void {
    if (!this.apps.delete(name)) throw new NotFoundError(`no application named "${name}"`);
  }

  /** The version id of each deployment of an application (what its replicas run once current). */
  versionsOf(name: string): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [dep, d] of this.apps.get(name)?.deployments ?? []) out[dep] = d.version;
    return out;
  }

  appSpecs(): AppSpec[] {
    return [...this.apps.values()].map((a) => a.spec);
  }

  /** True when every deployment of the app has its replicas RUNNING at the current version. */
  isReady(name: string): boolean {
    const app = this.apps.get(name);
    if (app === undefined) return false;
    for (const [depName, d] of app.deployments) {
      const running = this.replicasOf(name, depName).filter((r) => r.state === 'RUNNING' && r.version === d.version).length;
      if (running < this.target(d)) return false;
    }
    return true;
  }

  deploymentStatus(app: string, deployment: string): DeploymentStatus | undefined {
    return this.apps.get(app)?.deployments.get(deployment)?.status;
  }

  // ---- reconciliation ----

  /**
   * Brings replicas toward the desired state and resolves once the work it started, and the passes that work
   * called for, have settled (for tests and tools that want to wait). The head does not wait: it runs pass().
   */
  async reconcile(): Promise<void> {
    if (this.reconciling) { this.again = true; return; }
    this.reconciling = true;
    try {
      do {
        this.again = false;
        await Promise.all(this.pass());
      } while (this.again);
    } finally {
      this.reconciling = false;
    }
  }

  /**
   * One pass, synchronous: decides every start, stop and health check and returns their promises without waiting
   * on any. Each replica is acted on independently, so one hung start or stop never holds back another; what a
   * settled operation calls for happens in a later pass (onSettled). Safe to call at any time, overlapping too:
   * replicas in flight are STARTING or DRAINING and counted as such.
   */
  pass(): Array<Promise<void>> {
    const work: Array<Promise<void>> = [];
    if (this.recovering) return work;
    const now = this.opts.clock.monoNow();
    // Replicas of deleted apps or deployments, or beyond the desired count.
    for (const r of this.replicas.values()) {
      const d = this.apps.get(r.app)?.deployments.get(r.deployment);
      if (d === undefined && (r.state === 'RUNNING' || r.state === 'STARTING')) work.push(this.stop(r));
      // An adopted start that never finishes: nobody else is timing it.
      else if (r.state === 'STARTING' && this.adoptedStarting.has(r.replicaId) && now - r.startedAt > this.opts.startTimeoutMs) {
        this.adoptedStarting.delete(r.replicaId);
        this.opts.logger.warn('an adopted replica is still starting past the start timeout; stopping it', { replica: r.replicaId, startTimeoutMs: this.opts.startTimeoutMs });
        work.push(this.stop(r));
      }
    }
    for (const [appName, app] of this.apps) {
      for (const [depName, d] of app.deployments) {
        try {
          this.autoscale(now, appName, depName, d);
          this.reconcileDeployment(now, appName, app, depName, d, work);
        } catch (err) {
          // One deployment's surprise must not stop the others, nor escape as an unhandled rejection.
          d.status.message = `reconcile failed: ${toWireError(err).message}`;
          this.opts.logger.error('reconciling a deployment failed', { deployment: `${appName}/${depName}`, error: toWireError(err).message });
        }
        this.updateStatus(appName, depName);
      }
    }
    this.healthChecks(now, work);
    this.publishRoutes();
    return work;
  }

  private reconcileDeployment(now: number, appName: string, app: AppRecord, depName: string, d: DeploymentRecord, work: Array<Promise<void>>): void {
    const mine = this.replicasOf(appName, depName);
    const current = mine.filter((r) => r.version === d.version && (r.state === 'RUNNING' || r.state === 'STARTING'));
    const outdated = mine.filter((r) => r.version !== d.version && (r.state === 'RUNNING' || r.state === 'STARTING'));
    const want = this.target(d);
    // Scale down: STARTING before RUNNING, then the least busy (idle before busy), then the newest.
    if (current.length > want) {
      const busy = (r: ReplicaRecord): number => this.loads.get(r.workerId)?.replicas.get(r.replicaId) ?? 0;
      const victims = [...current].sort((a, b) => (a.state !== b.state ? (a.state === 'STARTING' ? -1 : 1) : busy(a) !== busy(b) ? busy(a) - busy(b) : b.startedAt - a.startedAt)).slice(0, current.length - want);
      for (const v of victims) work.push(this.stop(v));
    }
    // Scale up, unless backing off after failures.
    let placedNow = 0;
    let blocked = false;
    if (current.length < want && now >= d.status.retryAt && usesDevicePlacement(d.spec.options.resources)) {
      // Placed whole or not at all: refuse, with the numbers, rather than start replicas that cannot all fit.
      // Outdated replicas of this deployment are about to go, so their memory counts as free.
      const retiring = (r: ReplicaRecord): boolean => r.app === appName && r.deployment === depName && r.version !== d.version;
      const refusal = this.devicesRefuse(depName, want - current.length, d.spec.options.resources, undefined, retiring);
      if (refusal !== undefined) {
        d.status.message = `cannot place ${want - current.length} replica(s) by device memory: ${refusal.message}`;
        blocked = true;
      }
    }
    if (current.length < want && now >= d.status.retryAt && !blocked) {
      for (let i = current.length; i < want; i++) {
        const placed = this.place(appName, app.spec, depName, d.version, d.spec);
        if (placed === undefined) { blocked = true; break; }
        placedNow++;
        work.push(this.start(placed, app.spec, d.status));
      }
    }
    // Rolling update: outdated replicas stop only once the current version runs at full count, so callers never
    // have fewer replicas than asked for. When the new version has no room beside the old one, retire one
    // outdated replica at a time, and only while nothing new is starting, to make room.
    if (outdated.length > 0) {
      const runningCurrent = current.filter((r) => r.state === 'RUNNING').length;
      if (runningCurrent >= want) {
        for (const v of outdated) work.push(this.stop(v));
      } else if (blocked && placedNow === 0 && current.every((r) => r.state === 'RUNNING')) {
        work.push(this.stop(outdated[0]!));
        this.again = true;
      }
    }
  }

  /** Replicas a deployment should have now: its numReplicas, or the count autoscaling keeps. */
  private target(d: DeploymentRecord): number {
    return d.autoscale?.target ?? d.spec.options.numReplicas;
  }

  /**
   * Samples an autoscaled deployment's load (every metricsIntervalMs, or at once when requests wait for a
   * deployment at zero) and applies the policy's decision to its target.
   */
  private autoscale(now: number, appName: string, depName: string, d: DeploymentRecord): void {
    const a = d.autoscale;
    const cfg = d.spec.options.autoscaling;
    if (a === undefined || cfg === undefined) return;
    const key = `${appName}/${depName}`;
    let ongoing = 0;
    let waiting = this.opts.localWaiting()[key] ?? 0;
    for (const load of this.loads.values()) waiting += load.waiting[key] ?? 0;
    for (const r of this.replicas.values()) {
      if (r.app !== appName || r.deployment !== depName) continue;
      ongoing += this.loads.get(r.workerId)?.replicas.get(r.replicaId) ?? 0;
    }
    const fromZero = a.target === 0 && waiting > 0;
    if (!fromZero && now - a.lastSampleAt < cfg.metricsIntervalMs) return;
    a.lastSampleAt = now;
    a.window.record(now, ongoing + waiting);
    const running = this.replicasOf(appName, depName).filter((r) => r.state === 'RUNNING' && r.version === d.version).length;
    const result = decideReplicas({ config: cfg, currentTarget: a.target, running, samples: a.window.samples(now), state: a.state, now });
    a.state = result.state;
    if (result.decision !== undefined) {
      this.opts.logger.info(formatAutoscalingDecision(key, result.decision));
      this.opts.onAutoscale(key, result.decision);
      a.target = result.desired;
    }
  }

  private place(appName: string, spec: AppSpec, depName: string, version: string, d: DeploymentSpec): ReplicaRecord | undefined {
    return this.placeOn(appName, spec, depName, version, d, (w) => w.spare !== true) ?? this.placeOn(appName, spec, depName, version, d, () => true);
  }

  private placeOn(appName: string, spec: AppSpec, depName: string, version: string, d: DeploymentSpec, eligible: (w: WorkerRecord) => boolean): ReplicaRecord | undefined {
    const res = d.options.resources;
    const caps = this.aliveWorkers().filter(eligible).map((w) => this.capacity(w, appName, depName, false));
    const status = this.apps.get(appName)!.deployments.get(depName)!.status;
    let workerId: string;
    let devices: number[] | undefined;
    if (usesDevicePlacement(res)) {
      const fitting = caps.filter((w) => fits(w, workerNeed(res)));
      if (fitting.length === 0) {
        status.message = `cannot place a replica: ${explainNoFit(caps, workerNeed(res))}`;
        return undefined;
      }
      const states = this.deviceStatesFor(res, new Set(fitting.map((w) => w.workerId)), () => false);
      try {
        const p = placeGpuReplicas(depName, 1, gpuNeedOf(res), states, this.opts.placement).placements[0]!;
        workerId = p.workerId;
        devices = p.devices;
      } catch (err) {
        if (!(err instanceof InsufficientResourcesError)) throw err;
        status.message = `cannot place a replica: ${err.message}`;
        return undefined;
      }
    } else {
      const choice = chooseWorker(caps, res);
      if (choice === undefined) {
        status.message = `cannot place a replica: ${explainNoFit(caps, res)}`;
        return undefined;
      }
      workerId = choice.workerId;
    }
    const rec: ReplicaRecord = {
      replicaId: `${spec.name}.${depName}.${this.idPrefix}${(this.nextReplica++).toString(36)}`,
      app: appName, deployment: depName, version, workerId, state: 'STARTING',
      startedAt: this.opts.clock.monoNow(), nextHealthAt: this.opts.clock.monoNow() + d.options.healthCheckPeriodMs,
      ...(devices !== undefined ? { devices } : {}),
    };
    this.replicas.set(rec.replicaId, rec);
    return rec;
  }

  private async start(r: ReplicaRecord, spec: AppSpec, status: DeploymentStatus): Promise<void> {
    try {
      await this.opts.ops.startReplica(r.workerId, r.replicaId, spec, r.deployment, r.devices, r.version);
      if (this.replicas.get(r.replicaId) !== r || r.state !== 'STARTING') return; // lost or stopped meanwhile
      r.state = 'RUNNING';
      status.failures = 0;
      status.message = '';
      status.lastError = undefined;
    } catch (err) {
      const wire = toWireError(err);
      const message = wire.message;
      // A replica lost with its worker or stopped meanwhile is not a failure of the deployment: no backoff. Nor is
      // one whose worker's connection went: the worker coming back (it reports the replica, or not) or being
      // declared dead decides what became of it.
      const cutOff = wire.code === 'ERR_PEER_GONE' || this.workers.get(r.workerId)?.state !== 'ALIVE';
      if (this.replicas.get(r.replicaId) === r && r.state === 'STARTING' && !cutOff) {
        this.replicas.delete(r.replicaId);
        status.failures++;
        status.lastError = message;
        const backoff = Math.min(this.opts.maxBackoffMs, 250 * 2 ** Math.min(status.failures, 10));
        status.retryAt = this.opts.clock.monoNow() + backoff;
        status.message = `replica failed to start (${status.failures} in a row, retry in ${backoff} ms): ${message}`;
        this.opts.logger.warn('replica failed to start', { replica: r.replicaId, error: message, retryInMs: backoff });
        // A start that timed out may still be running on the worker: stop it there, so it does not linger unseen.
        if (wire.code === 'ERR_DEADLINE_EXCEEDED') void this.opts.ops.stopReplica(r.workerId, r.replicaId, 5000).catch(() => undefined);
      }
    } finally {
      this.updateStatus(r.app, r.deployment);
      this.publishRoutes();
      this.again = true;
      this.opts.onSettled();
    }
  }

  private async stop(r: ReplicaRecord): Promise<void> {
    const d = this.apps.get(r.app)?.deployments.get(r.deployment);
    r.state = 'DRAINING';
    this.publishRoutes();
    try {
      await this.opts.ops.stopReplica(r.workerId, r.replicaId, d?.spec.options.gracefulShutdownTimeoutMs ?? 20_000);
    } catch (err) {
      this.opts.logger.warn('stopping a replica failed', { replica: r.replicaId, error: toWireError(err).message });
    }
    r.state = 'STOPPED';
    if (this.replicas.get(r.replicaId) === r) this.replicas.delete(r.replicaId);
    this.opts.onSettled();
  }

  private healthChecks(now: number, work: Array<Promise<void>>): void {
    for (const r of this.replicas.values()) {
      if (r.state !== 'RUNNING' || now < r.nextHealthAt) continue;
      // A worker in its grace period cannot answer; its replicas wait for it to come back, or to be declared dead.
      if (this.workers.get(r.workerId)?.state !== 'ALIVE') continue;
      const d = this.apps.get(r.app)?.deployments.get(r.deployment);
      if (d === undefined) continue;
      r.nextHealthAt = now + d.spec.options.healthCheckPeriodMs;
      work.push(this.opts.ops.checkHealth(r.workerId, r.replicaId, d.spec.options.healthCheckTimeoutMs).catch(async (err: unknown) => {
        const wire = toWireError(err);
        const message = wire.message;
        // Cut off (its worker disconnected or came back on a new connection), not unhealthy: nothing to replace.
        if (wire.code === 'ERR_PEER_GONE' || wire.code === 'ERR_REPLICA_UNAVAILABLE' || this.workers.get(r.workerId)?.state !== 'ALIVE' || this.replicas.get(r.replicaId) !== r) return;
        this.opts.logger.warn('health check failed; replacing replica', { replica: r.replicaId, error: message });
        d.status.message = `replica ${r.replicaId} failed its health check: ${message}`;
        r.error = message;
        await this.stop(r);
        this.again = true;
      }));
    }
  }

  private reconfigureRunning(app: string, deployment: string, userConfig: unknown): void {
    for (const r of this.replicasOf(app, deployment)) {
      if (r.state !== 'RUNNING') continue;
      this.opts.ops.reconfigure(r.workerId, r.replicaId, userConfig).catch((err: unknown) => {
        this.opts.logger.warn('reconfigure failed', { replica: r.replicaId, error: toWireError(err).message });
      });
    }
  }

  private updateStatus(app: string, deployment: string): void {
    const d = this.apps.get(app)?.deployments.get(deployment);
    if (d === undefined) return;
    const running = this.replicasOf(app, deployment).filter((r) => r.state === 'RUNNING' && r.version === d.version).length;
    if (running >= this.target(d) && this.replicasOf(app, deployment).every((r) => r.version === d.version)) {
      d.status.status = 'HEALTHY';
      // At its count, past failures no longer describe it (a later scale-up starts without their backoff).
      if (running > 0) { d.status.failures = 0; d.status.lastError = undefined; d.status.retryAt = 0; }
      if (d.status.failures === 0) d.status.message = '';
    } else {
      d.status.status = d.status.failures > 0 ? 'UNHEALTHY' : 'UPDATING';
    }
  }

  private replicasOf(app: string, deployment: string): ReplicaRecord[] {
    const out: ReplicaRecord[] = [];
    for (const r of this.replicas.values()) if (r.app === app && r.deployment === deployment) out.push(r);
    return out;
  }

  private capacity(w: WorkerRecord, app: string, deployment: string, empty: boolean): WorkerCapacity {
    const used = { cpus: 0, gpus: 0, memory: 0 };
    let same = 0;
    if (!empty) {
      for (const r of this.replicas.values()) {
        if (r.workerId !== w.workerId || r.state === 'STOPPED' || r.state === 'FAILED') continue;
        const res = this.apps.get(r.app)?.deployments.get(r.deployment)?.spec.options.resources;
        if (res !== undefined) { const n = workerNeed(res); used.cpus += n.cpus; used.gpus += n.gpus; used.memory += n.memory; }
        if (r.app === app && r.deployment === deployment) same++;
      }
    }
    return { workerId: w.workerId, total: { cpus: w.resources.cpus, gpus: w.resources.gpus, memory: w.resources.memory }, used, sameDeployment: same };
  }

  /** Device states of the deployment's device kind on alive workers (all, or `only`), minus every replica's charge. */
  private deviceStatesFor(res: CompiledDeploymentResources, only: ReadonlySet<string> | undefined, skip: (r: ReplicaRecord) => boolean): GpuDeviceState[] {
    const workers = this.aliveWorkers().filter((w) => only === undefined || only.has(w.workerId)).map((w) => ({ workerId: w.workerId, devices: w.resources.devices }));
    const charges: DeviceCharge[] = [];
    for (const r of this.replicas.values()) {
      if (r.devices === undefined || r.state === 'STOPPED' || r.state === 'FAILED' || skip(r)) continue;
      const resources = this.apps.get(r.app)?.deployments.get(r.deployment)?.spec.options.resources;
      if (resources !== undefined) charges.push({ workerId: r.workerId, devices: r.devices, resources });
    }
    return deviceStates(workers, res.device, charges);
  }

  /** Why `count` more replicas cannot be placed by device memory, or undefined when they fit. */
  private devicesRefuse(depName: string, count: number, res: CompiledDeploymentResources, only: ReadonlySet<string> | undefined, skip: (r: ReplicaRecord) => boolean): InsufficientResourcesError | undefined {
    try {
      placeGpuReplicas(depName, count, gpuNeedOf(res), this.deviceStatesFor(res, only, skip), this.opts.placement);
      return undefined;
    } catch (err) {
      if (err instanceof InsufficientResourcesError) return err;
      throw err;
    }
  }

  routeTable(): RouteTable {
    const table: RouteTable = {};
    for (const [appName, app] of this.apps) {
      for (const [depName, d] of app.deployments) {
        table[`${appName}/${depName}`] = {
          maxOngoingRequests: d.spec.options.maxOngoingRequests,
          maxQueuedRequests: d.spec.options.maxQueuedRequests,
          requestTimeoutMs: d.spec.options.requestTimeoutMs,
          replicas: [],
          ...(d.spec.options.idempotentMethods.length > 0 ? { idempotentMethods: [...d.spec.options.idempotentMethods] } : {}),
          ...(d.spec.options.multiplex !== undefined ? { hotOngoingRequests: d.spec.options.multiplex.hotOngoingRequests } : {}),
          // Not for a deployment at zero by choice (autoscaling): its next request must wait for a start, not fail.
          ...(d.status.failures > 0 && d.status.lastError !== undefined && this.target(d) > 0 && !this.hasRunning(appName, depName) ? { unavailable: d.status.lastError } : {}),
        };
      }
    }
    for (const r of this.replicas.values()) {
      if (r.state !== 'RUNNING') continue;
      const entry = table[`${r.app}/${r.deployment}`];
      const w = this.workers.get(r.workerId);
      if (entry === undefined || w === undefined || w.state !== 'ALIVE') continue;
      const models = entry.hotOngoingRequests !== undefined ? this.loads.get(r.workerId)?.models.get(r.replicaId) : undefined;
      entry.replicas.push({ replicaId: r.replicaId, workerId: r.workerId, dataAddress: w.dataAddress, ...(models !== undefined ? { models } : {}) });
    }
    for (const e of Object.values(table)) e.replicas.sort((a, b) => a.replicaId.localeCompare(b.replicaId));
    return table;
  }

  private hasRunning(app: string, deployment: string): boolean {
    for (const r of this.replicas.values()) if (r.app === app && r.deployment === deployment && r.state === 'RUNNING') return true;
    return false;
  }

  /** Publishes the route table when it changed since the last publication (never while recovering). */
  publishRoutes(): void {
    if (this.recovering) return;
    const table = this.routeTable();
    const key = JSON.stringify(table);
    if (key === this.lastRoutesKey) return;
    this.lastRoutesKey = key;
    this.opts.ops.publishRoutes(table, ++this.routesVersion);
  }

  currentRoutes(): { table: RouteTable; version: number } {
    return { table: this.routeTable(), version: this.routesVersion };
  }

  status(): ClusterStatus {
    return {
      applications: [...this.apps.values()].map((a) => ({
        name: a.spec.name, routePrefix: a.spec.routePrefix, ingress: a.spec.ingress,
        deployments: [...a.deployments.entries()].map(([name, d]) => ({
          name, status: d.status.status, message: d.status.message, numReplicas: this.target(d),
          ...(d.autoscale !== undefined ? { autoscaling: { target: d.autoscale.target, min: d.spec.options.autoscaling!.minReplicas, max: d.spec.options.autoscaling!.maxReplicas } } : {}),
          failures: d.status.failures, ...(d.status.lastError !== undefined ? { lastError: d.status.lastError } : {}),
          running: this.replicasOf(a.spec.name, name).filter((r) => r.state === 'RUNNING').length,
        })),
      })),
      replicas: [...this.replicas.values()].map((r) => ({
        replicaId: r.replicaId, app: r.app, deployment: r.deployment, state: r.state, workerId: r.workerId,
        ...(r.devices !== undefined ? { devices: r.devices } : {}), ...(r.error ? { error: r.error } : {}),
      })),
      workers: [...this.workers.values()].map((w) => {
        const cap = this.capacity(w, '', '', false);
        return { workerId: w.workerId, name: w.name, state: w.state, ...(w.pid !== undefined ? { pid: w.pid } : {}), dataAddress: w.dataAddress, resources: w.resources, used: cap.used, replicas: [...this.replicas.values()].filter((r) => r.workerId === w.workerId).length };
      }),
    };
  }
}

/**
 * What a replica takes from its worker's counts. gpus placed on the host backend's pseudo device are a share of
 * that device, not of the worker's CUDA GPUs.
 */
function workerNeed(res: CompiledDeploymentResources): { cpus: number; gpus: number; memory: number } {
  return { cpus: res.cpus, gpus: res.device === 'host' ? 0 : res.gpus, memory: res.memory };
}

function splitKey(key: string): [string, string] {
  const i = key.indexOf('/');
  return i < 0 ? [key, ''] : [key.slice(0, i), key.slice(i + 1)];
}
