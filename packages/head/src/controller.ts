/**
 * The controller: desired state (applications and their deployments) reconciled into replicas on workers.
 * It talks to workers only through ClusterOps, and to time only through a Clock, so it runs against fakes in
 * unit tests. Every change that alters which replicas are RUNNING publishes a new route table.
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  DeployError, InsufficientResourcesError, NotFoundError, addCounts, denseCounts, emptyCounts, resolveCount, subtractCounts, toWireError, type AppSpec, type Clock,
  type CompiledDeploymentResources, type CompiledExperimentRollout, type DeploymentSpec, type Logger, type OutcomeCounts,
} from '@shoal/core';
import type { ModelSet, ReplicaState, RouteTable, RouteTraffic, RunningReplica, ShadowCounts, WorkerResources } from '@shoal/protocol';
import { emptyShadowCounts } from '@shoal/router';
import {
  addShadow, judgeCanary, judgeShadow, shadowSince, sideReplicas, summarizeShadow, windowOf,
  type RolloutDecision, type RolloutPhase, type ShadowSummary, type VersionWindow,
} from './rollout.ts';
import { deviceStates, gpuNeedOf, usesDevicePlacement, type DeviceCharge } from './device-accounting.ts';
import { placeGpuReplicas, type GpuDeviceState, type GpuPlacementOptions } from './gpu-placement.ts';
import { chooseWorker, explainNoFit, fits, type WorkerCapacity } from './scheduler.ts';
import { INITIAL_AUTOSCALING_STATE, decideReplicas, formatAutoscalingDecision, type AutoscalingDecision, type AutoscalingPolicyState } from './autoscaling-policy.ts';
import { AutoscalingWindow } from './autoscaling-window.ts';
import { SloTracker, type DeploymentCost, type Prices, type SloStatus, type TrafficFigures } from './slo/index.ts';

/** What the controller asks of the cluster. Implemented over worker connections by the head; faked in tests. */
export interface ClusterOps {
  /** `version`: the deployment version it is started at; the worker reports it back when it rejoins a new head. */
  /** Resolves with the worker's start reply: the instance's streaming fields, when it has any. */
  startReplica(workerId: string, replicaId: string, app: AppSpec, deployment: string, devices?: number[], version?: string): Promise<{ streams?: string[] } | null | void>;
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
  /** The instance's streaming fields, as its start reply said (the route entry's `streams`). */
  streams?: string[];
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

/** One version of a deployment: what its replicas run. */
export interface VersionInfo {
  id: string;
  spec: DeploymentSpec;
  /** The application spec its replicas are started from (its module, its deployments' methods). */
  app: AppSpec;
  /** Wall ms (epoch) it was deployed. */
  createdAtMs: number;
}

/** A rollout in progress: `from` serves while `to` (the deployment's current version) proves itself. */
interface Rollout {
  from: VersionInfo;
  phase: RolloutPhase;
  /** Monotonic ms the phase (or its canary step) began. */
  phaseStartedAt: number;
  step: number;
  /** The new version's share of live traffic now (canary), in percent. */
  weight: number;
  /** Replica outcome counts when the step began, subtracted to judge the step's window. */
  baseline: Map<string, OutcomeCounts>;
  /** Shadow comparison counts (summed over routers) when the shadow phase began. */
  shadowBaseline: ShadowCounts;
  /** Failed starts and health checks of the new version during this rollout. */
  failures: number;
  /** The latest verdict's explanation (status shows it). */
  note: string;
  /** Set when an experiment holds the split: its name. */
  experiment?: string;
}

interface DeploymentRecord {
  spec: DeploymentSpec;
  version: string;
  /** The application spec the current version runs from. */
  app: AppSpec;
  status: DeploymentStatus;
  /** Versions deployed, oldest first (at most HISTORY_LIMIT), the current one last. */
  history: VersionInfo[];
  rollout?: Rollout;
  /** The latest rollout decisions, oldest first (at most DECISIONS_LIMIT). */
  decisions: RolloutDecision[];
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
  /** Model load progress of its starting replicas, [bytes loaded, bytes total], as last reported. */
  progress?: Map<string, [number, number]>;
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
  /** Every rollout decision, with its numbers (also logged and kept in status). @default none */
  onRollout?: (decision: RolloutDecision) => void;
  /** An experiment split begins: the head opens the experiment that outcomes are reported to. @default none */
  onExperimentStart?: (name: string, cfg: CompiledExperimentRollout, variants: Array<{ name: string; version: string; percent: number }>) => void;
  /** Shadow comparisons of routers that do not heartbeat (the head's own), cumulative. @default none */
  localShadow?: () => Record<string, ShadowCounts>;
  /** Prices per core-hour and device-hour, for status's cost per 1,000 requests. @default none (no cost, idle share only) */
  prices?: Prices | undefined;
}

const HISTORY_LIMIT = 10;
/** The latency buckets of a replica that has answered nothing yet. */
const NO_COUNTS: readonly number[] = Object.freeze(emptyCounts().counts);
const DECISIONS_LIMIT = 50;

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
    /** The current version and the ones before it (newest last). */
    version: string;
    versions: Array<{ id: string; createdAtMs: number; current: boolean; running: number }>;
    rollout?: DeploymentRolloutStatus;
    decisions: RolloutDecision[];
    /** Shadow comparisons per shadow version, while or since one ran. */
    shadow?: Record<string, ShadowSummary>;
    /** Requests per second, error rate and latency quantiles over about the last minute (docs/slo.md). */
    traffic?: TrafficFigures;
    /** Attainment, error budget and burn rates of the deployment's objectives (options.slo). */
    slo?: SloStatus;
    /** Allocated and busy resource-hours, cost per 1,000 requests and idle share, over the last hour and since the head began. */
    cost?: DeploymentCost;
  }> }>;
  /** `load`: a STARTING replica's model load progress, as its code last reported it (reportLoadProgress). */
  replicas: Array<{ replicaId: string; app: string; deployment: string; version: string; state: ReplicaState; workerId: string; devices?: number[]; error?: string; load?: { bytes: number; total: number } }>;
  workers: Array<{ workerId: string; name: string; state: string; pid?: number; dataAddress: string; resources: WorkerResources; used: { cpus: number; gpus: number; memory: number }; replicas: number }>;
}

/** A rollout as `shoal status` shows it. */
export interface DeploymentRolloutStatus {
  from: string;
  to: string;
  phase: RolloutPhase;
  /** The new version's share of live traffic (canary, experiment), or of mirrored traffic (shadow), in percent. */
  percent: number;
  step?: number;
  failures: number;
  note: string;
  experiment?: string;
  /** This step's window: the canary's and the stable version's answers. */
  canary?: VersionWindow;
  stable?: VersionWindow;
}

/**
 * Version of a deployment's code and options: a change replaces replicas; userConfig (batching included),
 * numReplicas, autoscaling, rollout and slo don't. `codeHash`: the module file's content hash, so editing the code
 * and deploying again is a new version too.
 */
/** A short hash of a deployment's userConfig, for the response cache's keys (RouteCache.config). */
function configHash(userConfig: unknown): string {
  return createHash('sha256').update(JSON.stringify(userConfig) ?? '').digest('hex').slice(0, 12);
}

export function deploymentVersion(app: AppSpec, d: DeploymentSpec): string {
  // The response cache is the routers' (a cached entry is keyed on this version): changing it restarts nothing.
  // Nor does `consume`: the consumers are the workers', which restart theirs when the applications pushed change.
  const { userConfig: _u, numReplicas: _n, autoscaling: _a, rollout: _r, slo: _s, cache: _c, consume: _b, ...rest } = d.options;
  // Without a code hash the list is the one versions had before there was one, so their ids stay the same.
  const parts: unknown[] = [app.modulePath, app.exportName, d.kind, d.dependencies, d.methods, rest];
  if (app.codeHash !== undefined) parts.push(app.codeHash);
  return createHash('sha256').update(JSON.stringify(parts)).digest('hex').slice(0, 12);
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
  private readonly opts: Required<Omit<ControllerOptions, 'prices'>> & Pick<ControllerOptions, 'prices'>;
  private readonly loads = new Map<string, WorkerLoad>();
  /** Each replica's outcome counts, cumulative, from its worker's latest heartbeat. */
  private readonly outcomes = new Map<string, OutcomeCounts>();
  /** Each worker router's shadow comparisons, cumulative, from its latest heartbeat. */
  private readonly shadowByWorker = new Map<string, Record<string, ShadowCounts>>();
  /** Shadow summaries of rollouts that ended, per deployment key and version (status keeps showing them). */
  private readonly shadowResults = new Map<string, Record<string, ShadowSummary>>();
  /** Every deployment's traffic series from heartbeats: status's traffic, SLO and cost figures. */
  private readonly traffic: SloTracker;

  constructor(opts: ControllerOptions) {
    this.opts = {
      workerTimeoutMs: 3000, maxBackoffMs: 30_000, placement: {}, onSettled: () => undefined, onAutoscale: () => undefined, localWaiting: () => ({}), startTimeoutMs: 300_000,
      onRollout: () => undefined, onExperimentStart: () => undefined, localShadow: () => ({}), ...opts,
    };
    this.traffic = new SloTracker(this.opts.prices);
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
      if (existing === undefined) this.traffic.markAdopted(x.replicaId);
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
  heartbeat(workerId: string, load?: { replicas: ReadonlyArray<{ replicaId: string; ongoing: number; queued: number; o?: { n: number; e: number; h: number[] }; b?: number; models?: ModelSet; p?: [number, number] }>; waiting?: Record<string, number>; shadow?: Record<string, ShadowCounts> }): boolean {
    const w = this.workers.get(workerId);
    if (w === undefined || w.state !== 'ALIVE') return false;
    w.lastHeartbeat = this.opts.clock.monoNow();
    if (load === undefined) return false;
    for (const r of load.replicas) {
      if (r.o !== undefined && this.replicas.get(r.replicaId)?.workerId === workerId) this.outcomes.set(r.replicaId, { requests: r.o.n, errors: r.o.e, counts: denseCounts(r.o.h) });
    }
    this.observeTraffic(workerId, load.replicas);
    if (load.shadow !== undefined) this.shadowByWorker.set(workerId, load.shadow);
    const models = new Map<string, ModelSet>();
    for (const r of load.replicas) if (r.models !== undefined) models.set(r.replicaId, r.models);
    const before = this.loads.get(workerId)?.models;
    const progress = new Map<string, [number, number]>();
    for (const r of load.replicas) if (r.p !== undefined) progress.set(r.replicaId, r.p);
    this.loads.set(workerId, { replicas: new Map(load.replicas.map((r) => [r.replicaId, r.ongoing + r.queued])), waiting: load.waiting ?? {}, models, ...(progress.size > 0 ? { progress } : {}) });
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
    this.shadowByWorker.delete(workerId);
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

  /**
   * Records the desired state of an application; replicas follow in reconcile(). A deployment whose version
   * changed while its old version serves begins a rollout (see Rollout); spec.codeHash (the module file's content
   * hash) makes a code edit a new version. `atMs`: wall time of the deploy, for the version history. `rollout`
   * false: a changed version rolls out as a plain rolling update (no shadow, canary or experiment).
   */
  deploy(spec: AppSpec, opts: { atMs?: number; rollout?: boolean } = {}): void {
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
    const deployments = new Map<string, DeploymentRecord>();
    const atMs = opts.atMs ?? this.opts.clock.wallNow();
    for (const d of spec.deployments) {
      const version = deploymentVersion(spec, d);
      const prev = previous?.deployments.get(d.name);
      const info: VersionInfo = { id: version, spec: d, app: spec, createdAtMs: atMs };
      const history = (prev?.history ?? []).filter((v) => v.id !== version);
      // The same version keeps its entry (and its time): a scale or userConfig change is not a new version.
      const same = prev?.history.find((v) => v.id === version);
      history.push(same === undefined ? info : { ...same, spec: d, app: spec });
      const rec: DeploymentRecord = {
        spec: d, version, app: spec, status: { status: 'UPDATING', message: '', failures: 0, retryAt: 0 },
        history: history.slice(-HISTORY_LIMIT), decisions: prev?.decisions ?? [],
      };
      if (prev !== undefined) this.carryRollout(spec.name, d.name, prev, rec, opts.rollout !== false);
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
    for (const key of [...this.shadowResults.keys()]) if (key.startsWith(`${name}/`)) this.shadowResults.delete(key);
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
      const want = this.target(d);
      const runningOf = (v: string): number => this.replicasOf(name, depName).filter((r) => r.state === 'RUNNING' && r.version === v).length;
      const ro = d.rollout;
      // A shadow, canary or experiment is deployed once both versions run: the stable at its count, the new at its share.
      if (ro !== undefined && ro.phase !== 'rolling') {
        if (runningOf(ro.from.id) < want || (want > 0 && runningOf(d.version) < 1)) return false;
        continue;
      }
      if (runningOf(d.version) < want) return false;
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
    for (const id of this.outcomes.keys()) if (!this.replicas.has(id)) this.outcomes.delete(id);
    this.traffic.retain((key) => { const [a, d] = splitKey(key); return this.apps.get(a)?.deployments.has(d) === true; }, (id) => this.replicas.has(id));
    this.publishRoutes();
    return work;
  }

  private reconcileDeployment(now: number, appName: string, app: AppRecord, depName: string, d: DeploymentRecord, work: Array<Promise<void>>): void {
    const key = `${appName}/${depName}`;
    const live = (r: ReplicaRecord): boolean => r.state === 'RUNNING' || r.state === 'STARTING';
    const mine = this.replicasOf(appName, depName).filter(live);
    const ro = d.rollout;
    const want = this.target(d);
    const current = mine.filter((r) => r.version === d.version);
    const cur: VersionInfo = { id: d.version, spec: d.spec, app: d.app, createdAtMs: 0 };
    if (ro !== undefined && ro.phase !== 'rolling') {
      // Two versions serve side by side: the stable one at the full count, the new one at its share.
      const stable = mine.filter((r) => r.version === ro.from.id);
      for (const r of mine) if (r.version !== d.version && r.version !== ro.from.id) work.push(this.stop(r));
      const percent = ro.phase === 'shadow' ? d.spec.options.rollout.shadow!.percent : ro.weight;
      this.scaleTo(now, appName, depName, d, ro.from, stable, want, work);
      this.scaleTo(now, appName, depName, d, cur, current, want === 0 ? 0 : sideReplicas(want, percent), work);
      this.judge(now, key, appName, depName, d, ro);
      return;
    }
    // A rolling update (or none): new replicas start within maxSurge above the count; old ones stop as long as
    // maxUnavailable allows, counting only RUNNING replicas (those that passed their readiness check) as available.
    const outdated = mine.filter((r) => r.version !== d.version);
    if (outdated.length === 0) {
      this.scaleTo(now, appName, depName, d, cur, current, want, work);
      if (ro !== undefined && current.filter((r) => r.state === 'RUNNING').length >= want) {
        d.rollout = undefined;
        this.decide(key, d, { from: ro.from.id, to: d.version, action: 'done', reason: `${d.version} serves at the full count (${want})` });
      }
      return;
    }
    const cfg = d.spec.options.rollout;
    const surge = resolveCount(cfg.maxSurge, want, 'up');
    const unavailable = resolveCount(cfg.maxUnavailable, want, 'down');
    const room = Math.max(0, Math.min(want, want + surge - outdated.length));
    const { placedNow, blocked } = this.scaleTo(now, appName, depName, d, cur, current, current.length > want ? want : Math.max(current.length, room), work);
    const runningNew = current.filter((r) => r.state === 'RUNNING').length;
    let available = runningNew + outdated.filter((r) => r.state === 'RUNNING').length;
    const minAvailable = want - unavailable;
    const busy = (r: ReplicaRecord): number => this.loads.get(r.workerId)?.replicas.get(r.replicaId) ?? 0;
    // Not serving first (STARTING), then the least busy.
    const victims = [...outdated].sort((a, b) => (a.state !== b.state ? (a.state === 'STARTING' ? -1 : 1) : busy(a) - busy(b)));
    let stopped = 0;
    // Old replicas go only once the new version runs enough of them: never more than the count plus the surge
    // of the new version's replicas, nor fewer available than the count minus maxUnavailable.
    for (const v of victims) {
      const serving = v.state === 'RUNNING';
      if (serving && available - 1 < minAvailable) continue;
      work.push(this.stop(v));
      stopped++;
      if (serving) available--;
    }
    // No room for the new version beside the old one: retire one old replica at a time, and only while nothing
    // new is starting, to make room (this takes one replica below the count; status says so).
    if (stopped === 0 && blocked && placedNow === 0 && current.every((r) => r.state === 'RUNNING')) {
      const v = victims.find((r) => r.state === 'RUNNING') ?? victims[0]!;
      d.status.message = `no room for ${d.version} beside the old version: retiring ${v.replicaId} first (${d.status.message})`;
      work.push(this.stop(v));
      this.again = true;
    }
  }

  /**
   * Starts or stops replicas of one version toward `want` (a version other than the current one is started from
   * its own spec). Scale down: STARTING before RUNNING, then the least busy, then the newest.
   */
  private scaleTo(now: number, appName: string, depName: string, d: DeploymentRecord, v: VersionInfo, have: ReplicaRecord[], want: number, work: Array<Promise<void>>): { placedNow: number; blocked: boolean } {
    if (have.length > want) {
      const busy = (r: ReplicaRecord): number => this.loads.get(r.workerId)?.replicas.get(r.replicaId) ?? 0;
      const victims = [...have].sort((a, b) => (a.state !== b.state ? (a.state === 'STARTING' ? -1 : 1) : busy(a) !== busy(b) ? busy(a) - busy(b) : b.startedAt - a.startedAt)).slice(0, have.length - want);
      for (const r of victims) work.push(this.stop(r));
      return { placedNow: 0, blocked: false };
    }
    let placedNow = 0;
    let blocked = false;
    if (have.length >= want || now < d.status.retryAt) return { placedNow, blocked };
    const res = v.spec.options.resources;
    if (usesDevicePlacement(res)) {
      // Placed whole or not at all: refuse, with the numbers, rather than start replicas that cannot all fit.
      // Replicas of versions about to go count as free.
      const keep = new Set([d.version, d.rollout?.from.id]);
      const retiring = (r: ReplicaRecord): boolean => r.app === appName && r.deployment === depName && !keep.has(r.version);
      const refusal = this.devicesRefuse(depName, want - have.length, res, undefined, retiring);
      if (refusal !== undefined) {
        d.status.message = `cannot place ${want - have.length} replica(s) by device memory: ${refusal.message}`;
        return { placedNow, blocked: true };
      }
    }
    for (let i = have.length; i < want; i++) {
      const placed = this.place(appName, v.app, depName, v.id, v.spec);
      if (placed === undefined) { blocked = true; break; }
      placedNow++;
      work.push(this.start(placed, v.app, d.status));
    }
    return { placedNow, blocked };
  }

  /** Moves a shadow or canary phase on, or rolls it back, on this pass's numbers. */
  private judge(now: number, key: string, appName: string, depName: string, d: DeploymentRecord, ro: Rollout): void {
    const cfg = d.spec.options.rollout;
    const newRunning = this.replicasOf(appName, depName).some((r) => r.version === d.version && r.state === 'RUNNING');
    if (!newRunning) {
      // Its window starts when it takes traffic.
      ro.phaseStartedAt = now;
      ro.baseline = this.snapshot(appName, depName);
      ro.shadowBaseline = this.shadowTotal(key, d.version);
      ro.note = `waiting for a replica of ${d.version} to run`;
      return;
    }
    if (ro.phase === 'experiment') {
      ro.note = `experiment "${ro.experiment}" splits traffic ${100 - ro.weight}/${ro.weight} by header ${cfg.experiment!.header}; promote or roll back when its report says`;
      return;
    }
    if (ro.phase === 'shadow') {
      const c = shadowSince(this.shadowTotal(key, d.version), ro.shadowBaseline);
      const v = judgeShadow(cfg.shadow!, c, now - ro.phaseStartedAt);
      ro.note = v.reason;
      const summary = summarizeShadow(c);
      this.shadowResultsFor(key)[d.version] = summary;
      const numbers = { compared: summary.compared, agreement: summary.agreement, meanAbsDiff: summary.meanAbsDiff, maxAbsDiff: summary.maxAbsDiff, shadowErrors: summary.shadowErrors, dropped: summary.dropped };
      if (v.verdict === 'fail') { this.failRollout(appName, depName, d, 'rollback', `shadow: ${v.reason}`, numbers); return; }
      if (v.verdict === 'pass') {
        const next: RolloutPhase = cfg.canary !== undefined ? 'canary' : 'rolling';
        this.decide(key, d, { from: ro.from.id, to: d.version, action: 'shadow passed', reason: `${v.reason}; next: ${next}`, numbers });
        this.enterPhase(now, appName, depName, d, ro, next);
      }
      return;
    }
    const canaryCfg = cfg.canary!;
    const canary = windowOf(this.windowFor(appName, depName, d.version, ro.baseline));
    const stable = windowOf(this.windowFor(appName, depName, ro.from.id, ro.baseline));
    const v = judgeCanary(canaryCfg, canary, stable, now - ro.phaseStartedAt);
    ro.note = `step ${ro.step + 1}/${canaryCfg.steps.length} at ${ro.weight}%: ${v.reason}`;
    const numbers = { step: ro.step + 1, percent: ro.weight, canaryRequests: canary.requests, canaryErrors: canary.errors, canaryP99Ms: canary.p99Ms, stableRequests: stable.requests, stableErrors: stable.errors, stableP99Ms: stable.p99Ms };
    if (v.verdict === 'fail') { this.failRollout(appName, depName, d, 'rollback', `canary at ${ro.weight}%: ${v.reason}`, numbers); return; }
    if (v.verdict !== 'pass') return;
    if (ro.step + 1 >= canaryCfg.steps.length || canaryCfg.steps[ro.step + 1]! >= 100) {
      this.decide(key, d, { from: ro.from.id, to: d.version, action: 'promote', reason: `canary passed its last step (${ro.weight}%): ${v.reason}`, numbers });
      this.enterPhase(now, appName, depName, d, ro, 'rolling');
      return;
    }
    ro.step++;
    ro.weight = canaryCfg.steps[ro.step]!;
    ro.phaseStartedAt = now;
    ro.baseline = this.snapshot(appName, depName);
    this.decide(key, d, { from: ro.from.id, to: d.version, action: 'step', reason: `canary passed step ${ro.step} (${v.reason}); now ${ro.weight}%`, numbers });
  }

  private enterPhase(now: number, appName: string, depName: string, d: DeploymentRecord, ro: Rollout, phase: RolloutPhase): void {
    const cfg = d.spec.options.rollout;
    const key = `${appName}/${depName}`;
    ro.phase = phase;
    ro.phaseStartedAt = now;
    ro.step = 0;
    ro.baseline = this.snapshot(appName, depName);
    ro.shadowBaseline = this.shadowTotal(key, d.version);
    ro.weight = phase === 'canary' ? cfg.canary!.steps[0]! : phase === 'experiment' ? cfg.experiment!.percent : phase === 'rolling' ? 100 : 0;
    ro.note = '';
    if (phase === 'experiment') {
      const e = cfg.experiment!;
      ro.experiment = e.name ?? `${appName}.${depName}`;
      this.opts.onExperimentStart(ro.experiment, e, [{ name: 'A', version: ro.from.id, percent: 100 - e.percent }, { name: 'B', version: d.version, percent: e.percent }]);
    }
    this.again = true;
  }

  /**
   * Ends a rollout in favour of the stable version: traffic leaves the new version at once (the next route
   * table), its replicas drain, and the deployment's spec is the stable one again.
   */
  private failRollout(appName: string, depName: string, d: DeploymentRecord, action: 'rollback' | 'failed' | 'abort', reason: string, numbers?: Record<string, number>): void {
    const ro = d.rollout;
    if (ro === undefined) return;
    const key = `${appName}/${depName}`;
    const to = d.version;
    d.rollout = undefined;
    this.revertTo(appName, depName, d, ro.from);
    // The new version's replicas leave the route table in the same publication that ends the split: listed
    // without it, they would take an even share of live traffic while they drain.
    for (const r of this.replicasOf(appName, depName)) if (r.version === to && (r.state === 'RUNNING' || r.state === 'STARTING')) void this.stop(r);
    d.status.failures = 0;
    d.status.retryAt = 0;
    d.status.lastError = undefined;
    d.status.message = `rolled back from ${to} to ${ro.from.id}: ${reason}`;
    this.decide(key, d, { from: to, to: ro.from.id, action, reason, ...(numbers !== undefined ? { numbers } : {}) });
    this.publishRoutes();
    this.again = true;
  }

  /** Makes `v` the deployment's current version again (its spec replaces the deployment's in the app spec). */
  private revertTo(appName: string, depName: string, d: DeploymentRecord, v: VersionInfo): void {
    d.spec = v.spec;
    d.version = v.id;
    d.app = v.app;
    d.history = [...d.history.filter((h) => h.id !== v.id), v];
    const app = this.apps.get(appName);
    if (app === undefined) return;
    const deployments = app.spec.deployments.map((x) => (x.name === depName ? v.spec : x));
    // The module the version came from, when it is the app's only deployment (a module change would otherwise make
    // the others new versions too; they keep the current module).
    const code = deployments.length === 1 ? { modulePath: v.app.modulePath, exportName: v.app.exportName, codeHash: v.app.codeHash } : {};
    app.spec = { ...app.spec, ...code, deployments };
    if (app.spec.codeHash === undefined) delete app.spec.codeHash;
  }

  private decide(key: string, d: DeploymentRecord, x: Omit<RolloutDecision, 'atMs' | 'deployment'>): void {
    const decision: RolloutDecision = { atMs: this.opts.clock.wallNow(), deployment: key, ...x };
    d.decisions = [...d.decisions, decision].slice(-DECISIONS_LIMIT);
    this.opts.logger.info(`rollout ${decision.action}`, { deployment: key, from: decision.from, to: decision.to, reason: decision.reason, ...(decision.numbers ?? {}) });
    this.opts.onRollout(decision);
  }

  /** Feeds each reported replica's counters (answers, latency, busy ms) and its declared resources to the traffic series. */
  private observeTraffic(workerId: string, reported: ReadonlyArray<{ replicaId: string; o?: { n: number; e: number }; b?: number }>): void {
    const now = this.opts.clock.monoNow();
    for (const x of reported) {
      const r = this.replicas.get(x.replicaId);
      const d = r === undefined || r.workerId !== workerId ? undefined : this.apps.get(r.app)?.deployments.get(r.deployment);
      if (d === undefined) continue;
      const res = (d.history.find((v) => v.id === r!.version)?.spec ?? d.spec).options.resources;
      const c = x.o === undefined ? undefined : this.outcomes.get(x.replicaId);
      this.traffic.observe(now, `${r!.app}/${r!.deployment}`, d.spec.options.slo, x.replicaId,
        { requests: c?.requests ?? 0, errors: c?.errors ?? 0, counts: c?.counts ?? NO_COUNTS, ...(x.b !== undefined ? { busyMs: x.b } : {}) },
        { cpus: res.cpus, devices: workerNeed(res).gpus }, r!.startedAt);
    }
  }

  /** Every replica's outcome counts now (a window's baseline). */
  private snapshot(appName: string, depName: string): Map<string, OutcomeCounts> {
    const out = new Map<string, OutcomeCounts>();
    for (const r of this.replicasOf(appName, depName)) { const c = this.outcomes.get(r.replicaId); if (c !== undefined) out.set(r.replicaId, c); }
    return out;
  }

  /** A version's answers since `baseline`, summed over its replicas. */
  private windowFor(appName: string, depName: string, version: string, baseline: Map<string, OutcomeCounts>): OutcomeCounts {
    const sum = emptyCounts();
    for (const r of this.replicasOf(appName, depName)) {
      if (r.version !== version) continue;
      const c = this.outcomes.get(r.replicaId);
      if (c !== undefined) addCounts(sum, subtractCounts(c, baseline.get(r.replicaId)));
    }
    return sum;
  }

  /** Shadow comparisons of a version, summed over every router that reported. */
  private shadowTotal(key: string, version: string): ShadowCounts {
    const sum = emptyShadowCounts();
    const k = `${key}@${version}`;
    for (const counts of this.shadowByWorker.values()) { const c = counts[k]; if (c !== undefined) addShadow(sum, c); }
    const local = this.opts.localShadow()[k];
    if (local !== undefined) addShadow(sum, local);
    return sum;
  }

  private shadowResultsFor(key: string): Record<string, ShadowSummary> {
    let r = this.shadowResults.get(key);
    if (r === undefined) { r = {}; this.shadowResults.set(key, r); }
    return r;
  }

  /**
   * A redeploy of a deployment: the same version keeps its rollout (an in-place change); a new version while
   * another serves begins one, from the version serving (a rollout still in progress keeps its stable version;
   * deploying that stable version again ends the rollout). `phases` false: a plain rolling update.
   */
  private carryRollout(appName: string, depName: string, prev: DeploymentRecord, rec: DeploymentRecord, phases: boolean): void {
    const key = `${appName}/${depName}`;
    if (prev.version === rec.version) { if (prev.rollout !== undefined) rec.rollout = prev.rollout; return; }
    const stable = prev.rollout?.from ?? prev.history.find((v) => v.id === prev.version);
    if (stable === undefined) return;
    if (stable.id === rec.version) {
      if (prev.rollout !== undefined) this.decide(key, rec, { from: prev.version, to: rec.version, action: 'abort', reason: 'the stable version was deployed again' });
      return;
    }
    // Nothing serves to protect (a first start that never ran, or scaled to zero): a plain start.
    if (!this.replicasOf(appName, depName).some((r) => r.version === stable.id && r.state === 'RUNNING')) return;
    const cfg = rec.spec.options.rollout;
    const phase: RolloutPhase = !phases ? 'rolling' : cfg.shadow !== undefined ? 'shadow' : cfg.canary !== undefined ? 'canary' : cfg.experiment !== undefined ? 'experiment' : 'rolling';
    const now = this.opts.clock.monoNow();
    const ro = rollingFrom(stable, now);
    rec.rollout = ro;
    this.decide(key, rec, { from: stable.id, to: rec.version, action: 'start', reason: `${phase === 'rolling' ? 'rolling update' : phase} from ${stable.id} to ${rec.version}` });
    if (phase !== 'rolling') this.enterPhase(now, appName, depName, rec, ro, phase);
  }

  /**
   * Returns a deployment to its previous version: a rollout in progress is abandoned (its stable version never
   * stopped serving), else the version before the current one in the history rolls out, as a plain rolling
   * update. Returns the application spec now desired (for the store).
   */
  rollback(appName: string, depName: string): { from: string; to: string; spec: AppSpec } {
    const app = this.apps.get(appName);
    const d = app?.deployments.get(depName);
    if (app === undefined || d === undefined) throw new NotFoundError(`no deployment "${depName}" in application "${appName}"`);
    const from = d.version;
    if (d.rollout !== undefined) {
      const to = d.rollout.from.id;
      this.failRollout(appName, depName, d, 'abort', 'rolled back by the operator');
      return { from, to, spec: app.spec };
    }
    const previous = [...d.history].reverse().find((v) => v.id !== d.version);
    if (previous === undefined) throw new NotFoundError(`deployment "${appName}/${depName}" has no earlier version to roll back to (versions: ${d.history.map((v) => v.id).join(', ')})`);
    const now = this.opts.clock.monoNow();
    const current: VersionInfo = d.history.find((v) => v.id === d.version) ?? { id: d.version, spec: d.spec, app: d.app, createdAtMs: this.opts.clock.wallNow() };
    this.revertTo(appName, depName, d, previous);
    if (this.replicasOf(appName, depName).some((r) => r.version === current.id && r.state === 'RUNNING')) {
      d.rollout = rollingFrom(current, now);
    }
    d.status = { status: 'UPDATING', message: '', failures: 0, retryAt: 0 };
    this.decide(`${appName}/${depName}`, d, { from, to: previous.id, action: 'rollback', reason: 'rolled back by the operator to the previous version' });
    this.again = true;
    return { from, to: previous.id, spec: app.spec };
  }

  /** Skips what is left of a shadow, canary or experiment phase: the new version rolls out to the full count. */
  promote(appName: string, depName: string): { version: string } {
    const d = this.apps.get(appName)?.deployments.get(depName);
    if (d === undefined) throw new NotFoundError(`no deployment "${depName}" in application "${appName}"`);
    const ro = d.rollout;
    if (ro === undefined || ro.phase === 'rolling') throw new DeployError(`deployment "${appName}/${depName}" has no shadow, canary or experiment to promote (${ro === undefined ? 'no rollout in progress' : 'already rolling out'})`, 409);
    this.decide(`${appName}/${depName}`, d, { from: ro.from.id, to: d.version, action: 'promote', reason: `promoted by the operator during its ${ro.phase} phase` });
    this.enterPhase(this.opts.clock.monoNow(), appName, depName, d, ro, 'rolling');
    return { version: d.version };
  }

  /** Called when a start or health check of the new version fails during a rollout: enough of them end it. */
  private rolloutFailure(r: ReplicaRecord, why: string): void {
    const d = this.apps.get(r.app)?.deployments.get(r.deployment);
    const ro = d?.rollout;
    if (d === undefined || ro === undefined || r.version !== d.version) return;
    ro.failures++;
    const max = d.spec.options.rollout.maxFailures;
    if (ro.failures >= max) this.failRollout(r.app, r.deployment, d, 'failed', `${ro.failures} failures of the new version (maxFailures ${max}); the last: ${why}`);
  }

  /** Rollouts in progress in an application, as the store keeps them (see AppMeta.rollouts). */
  rolloutsOf(appName: string): Record<string, { from: string; phase: RolloutPhase; step: number }> {
    const out: Record<string, { from: string; phase: RolloutPhase; step: number }> = {};
    for (const [dep, d] of this.apps.get(appName)?.deployments ?? []) if (d.rollout !== undefined) out[dep] = { from: d.rollout.from.id, phase: d.rollout.phase, step: d.rollout.step };
    return out;
  }

  /**
   * After a restart: the version history a deployment had (oldest first, the current one among them), and the
   * rollout it was in, resumed at the phase and step it had reached with fresh windows (its numbers are not stored).
   */
  restoreHistory(appName: string, depName: string, versions: VersionInfo[], rollout?: { from: string; phase: RolloutPhase; step: number }): void {
    const d = this.apps.get(appName)?.deployments.get(depName);
    if (d === undefined) return;
    const byId = new Map<string, VersionInfo>();
    for (const v of versions) { byId.delete(v.id); byId.set(v.id, v); }
    const current = d.history.find((v) => v.id === d.version);
    if (current !== undefined && !byId.has(current.id)) byId.set(current.id, current);
    d.history = [...byId.values()].slice(-HISTORY_LIMIT);
    if (rollout === undefined) return;
    const from = byId.get(rollout.from);
    if (from === undefined || from.id === d.version) {
      this.opts.logger.warn('a stored rollout names a version not in the history; going on as a rolling update', { deployment: `${appName}/${depName}`, from: rollout.from });
      return;
    }
    const now = this.opts.clock.monoNow();
    const cfg = d.spec.options.rollout;
    const ro = rollingFrom(from, now);
    d.rollout = ro;
    const phaseOk = rollout.phase === 'rolling' || (rollout.phase === 'shadow' && cfg.shadow !== undefined) || (rollout.phase === 'canary' && cfg.canary !== undefined) || (rollout.phase === 'experiment' && cfg.experiment !== undefined);
    if (phaseOk && rollout.phase !== 'rolling') {
      this.enterPhase(now, appName, depName, d, ro, rollout.phase);
      if (rollout.phase === 'canary') { ro.step = Math.min(rollout.step, cfg.canary!.steps.length - 1); ro.weight = cfg.canary!.steps[ro.step]!; }
    }
    this.opts.logger.info('rollout resumed after a restart', { deployment: `${appName}/${depName}`, from: from.id, to: d.version, phase: ro.phase, step: ro.step });
  }

  /** The application spec now desired (a rollback changes it). */
  appSpec(name: string): AppSpec | undefined {
    return this.apps.get(name)?.spec;
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
    // While a shadow, canary or experiment runs, the count is the stable version's (the new one runs a share of it).
    const serving = d.rollout !== undefined && d.rollout.phase !== 'rolling' ? d.rollout.from.id : d.version;
    const running = this.replicasOf(appName, depName).filter((r) => r.state === 'RUNNING' && r.version === serving).length;
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
      const started = await this.opts.ops.startReplica(r.workerId, r.replicaId, spec, r.deployment, r.devices, r.version);
      if (this.replicas.get(r.replicaId) !== r || r.state !== 'STARTING') return; // lost or stopped meanwhile
      const streams = typeof started === 'object' && started !== null ? started.streams : undefined;
      if (Array.isArray(streams) && streams.length > 0) r.streams = streams.filter((x): x is string => typeof x === 'string');
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
        // A start that timed out, or a replica that failed its readiness check, may still run on the worker:
        // stop it there, so it does not linger unseen.
        void this.opts.ops.stopReplica(r.workerId, r.replicaId, 5000).catch(() => undefined);
        this.rolloutFailure(r, message);
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
        this.rolloutFailure(r, `health check: ${message}`);
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
    if (d.rollout !== undefined) {
      d.status.status = 'UPDATING';
      if (d.rollout.note !== '' && d.status.failures === 0) d.status.message = `${d.rollout.phase} ${d.rollout.from.id} -> ${d.version}: ${d.rollout.note}`;
      return;
    }
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
          ...(this.trafficOf(d) !== undefined ? { traffic: this.trafficOf(d)! } : {}),
          ...(d.spec.options.cache !== undefined ? { cache: { ...d.spec.options.cache, version: d.version, config: configHash(d.spec.options.userConfig) } } : {}),
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
      entry.replicas.push({ replicaId: r.replicaId, workerId: r.workerId, dataAddress: w.dataAddress, ...(entry.traffic !== undefined || entry.cache !== undefined ? { version: r.version } : {}), ...(models !== undefined ? { models } : {}) });
      if (r.streams !== undefined) entry.streams = entry.streams === undefined ? [...r.streams] : [...new Set([...entry.streams, ...r.streams])];
    }
    for (const e of Object.values(table)) e.replicas.sort((a, b) => a.replicaId.localeCompare(b.replicaId));
    return table;
  }

  /** How routers split a deployment's requests while a shadow, canary or experiment phase runs. */
  private trafficOf(d: DeploymentRecord): RouteTraffic | undefined {
    const ro = d.rollout;
    if (ro === undefined || ro.phase === 'rolling') return undefined;
    const cfg = d.spec.options.rollout;
    if (ro.phase === 'shadow') return { weights: [{ version: ro.from.id, percent: 100 }], shadow: { version: d.version, percent: cfg.shadow!.percent } };
    const t: RouteTraffic = { weights: [{ version: ro.from.id, percent: 100 - ro.weight }, { version: d.version, percent: ro.weight }] };
    if (ro.phase === 'experiment') t.sticky = { header: cfg.experiment!.header, experiment: ro.experiment! };
    return t;
  }

  private rolloutStatus(appName: string, depName: string, d: DeploymentRecord, ro: Rollout): DeploymentRolloutStatus {
    const out: DeploymentRolloutStatus = {
      from: ro.from.id, to: d.version, phase: ro.phase, percent: ro.phase === 'shadow' ? d.spec.options.rollout.shadow!.percent : ro.weight,
      failures: ro.failures, note: ro.note, ...(ro.experiment !== undefined ? { experiment: ro.experiment } : {}),
    };
    if (ro.phase === 'canary') {
      out.step = ro.step + 1;
      out.canary = windowOf(this.windowFor(appName, depName, d.version, ro.baseline));
      out.stable = windowOf(this.windowFor(appName, depName, ro.from.id, ro.baseline));
    }
    return out;
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

  /** A STARTING replica's last reported load progress, as status shows it. */
  private loadOf(r: ReplicaRecord): { load?: { bytes: number; total: number } } {
    const p = r.state === 'STARTING' ? this.loads.get(r.workerId)?.progress?.get(r.replicaId) : undefined;
    return p === undefined ? {} : { load: { bytes: p[0], total: p[1] } };
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
          version: d.version,
          versions: d.history.map((v) => ({ id: v.id, createdAtMs: v.createdAtMs, current: v.id === d.version, running: this.replicasOf(a.spec.name, name).filter((r) => r.state === 'RUNNING' && r.version === v.id).length })),
          ...(d.rollout !== undefined ? { rollout: this.rolloutStatus(a.spec.name, name, d, d.rollout) } : {}),
          decisions: d.decisions,
          ...(this.shadowResults.has(`${a.spec.name}/${name}`) ? { shadow: { ...this.shadowResults.get(`${a.spec.name}/${name}`)! } } : {}),
          ...this.traffic.figures(this.opts.clock.monoNow(), `${a.spec.name}/${name}`, d.spec.options.slo),
        })),
      })),
      replicas: [...this.replicas.values()].map((r) => ({
        replicaId: r.replicaId, app: r.app, deployment: r.deployment, version: r.version, state: r.state, workerId: r.workerId,
        ...(r.devices !== undefined ? { devices: r.devices } : {}), ...(r.error ? { error: r.error } : {}),
        ...this.loadOf(r),
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

/** A rollout from `from` in its rolling phase; enterPhase() moves it to another. */
function rollingFrom(from: VersionInfo, now: number): Rollout {
  return { from, phase: 'rolling', phaseStartedAt: now, step: 0, weight: 100, baseline: new Map(), shadowBaseline: emptyShadowCounts(), failures: 0, note: '' };
}

function splitKey(key: string): [string, string] {
  const i = key.indexOf('/');
  return i < 0 ? [key, ''] : [key.slice(0, i), key.slice(i + 1)];
}
