/**
 * The controller: desired state (applications and their deployments) reconciled into replicas on workers.
 * It talks to workers only through ClusterOps, and to time only through a Clock, so it runs against fakes in
 * unit tests. Every change that alters which replicas are RUNNING publishes a new route table.
 */
import { createHash } from 'node:crypto';
import {
  DeployError, InsufficientResourcesError, NotFoundError, toWireError, type AppSpec, type Clock,
  type CompiledDeploymentResources, type DeploymentSpec, type Logger,
} from '@shoal/core';
import type { ReplicaState, RouteTable, WorkerResources } from '@shoal/protocol';
import { deviceStates, gpuNeedOf, usesDevicePlacement, type DeviceCharge } from './device-accounting.ts';
import { placeGpuReplicas, type GpuDeviceState, type GpuPlacementOptions } from './gpu-placement.ts';
import { chooseWorker, explainNoFit, fits, type WorkerCapacity } from './scheduler.ts';

/** What the controller asks of the cluster. Implemented over worker connections by the head; faked in tests. */
export interface ClusterOps {
  startReplica(workerId: string, replicaId: string, app: AppSpec, deployment: string, devices?: number[]): Promise<void>;
  stopReplica(workerId: string, replicaId: string, timeoutMs: number): Promise<void>;
  reconfigure(workerId: string, replicaId: string, userConfig: unknown): Promise<void>;
  checkHealth(workerId: string, replicaId: string, timeoutMs: number): Promise<void>;
  publishRoutes(table: RouteTable, version: number): void;
}

export interface WorkerRecord {
  workerId: string;
  name: string;
  resources: WorkerResources;
  dataAddress: string;
  pid: number | undefined;
  /** Monotonic ms (clock.monoNow()). */
  lastHeartbeat: number;
  state: 'ALIVE' | 'DEAD';
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
}

interface AppRecord {
  spec: AppSpec;
  deployments: Map<string, { spec: DeploymentSpec; version: string; status: DeploymentStatus }>;
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
}

export interface ClusterStatus {
  applications: Array<{ name: string; routePrefix: string | null; ingress: string; deployments: Array<{ name: string; status: string; message: string; numReplicas: number; running: number }> }>;
  replicas: Array<{ replicaId: string; app: string; deployment: string; state: ReplicaState; workerId: string; devices?: number[]; error?: string }>;
  workers: Array<{ workerId: string; name: string; state: string; pid?: number; dataAddress: string; resources: WorkerResources; used: { cpus: number; gpus: number; memory: number }; replicas: number }>;
}

/** Version of a deployment's code and options: a change replaces replicas; userConfig and numReplicas don't. */
function deploymentVersion(app: AppSpec, d: DeploymentSpec): string {
  const { userConfig: _u, numReplicas: _n, ...rest } = d.options;
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
  private readonly opts: Required<ControllerOptions>;

  constructor(opts: ControllerOptions) {
    this.opts = { workerTimeoutMs: 3000, maxBackoffMs: 30_000, placement: {}, ...opts };
  }

  // ---- workers ----

  addWorker(w: Omit<WorkerRecord, 'workerId' | 'lastHeartbeat' | 'state'>): WorkerRecord {
    const rec: WorkerRecord = { ...w, workerId: `w${this.nextWorker++}`, lastHeartbeat: this.opts.clock.monoNow(), state: 'ALIVE' };
    this.workers.set(rec.workerId, rec);
    this.opts.logger.info('worker joined', { workerId: rec.workerId, name: rec.name, cpus: rec.resources.cpus, gpus: rec.resources.gpus });
    return rec;
  }

  heartbeat(workerId: string): void {
    const w = this.workers.get(workerId);
    if (w !== undefined && w.state === 'ALIVE') w.lastHeartbeat = this.opts.clock.monoNow();
  }

  /** Declares a worker dead: its replicas are lost and will be started elsewhere. */
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

  /** Declares dead every worker silent for longer than workerTimeoutMs. Called periodically. */
  checkWorkers(): string[] {
    const now = this.opts.clock.monoNow();
    const dead: string[] = [];
    for (const w of this.workers.values()) {
      if (w.state === 'ALIVE' && now - w.lastHeartbeat > this.opts.workerTimeoutMs) dead.push(w.workerId);
    }
    for (const id of dead) this.workerDead(id, `no heartbeat for over ${this.opts.workerTimeoutMs} ms`);
    return dead;
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
      deployments.set(d.name, { spec: d, version, status: { status: 'UPDATING', message: '', failures: 0, retryAt: 0 } });
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

  appSpecs(): AppSpec[] {
    return [...this.apps.values()].map((a) => a.spec);
  }

  /** True when every deployment of the app has its replicas RUNNING at the current version. */
  isReady(name: string): boolean {
    const app = this.apps.get(name);
    if (app === undefined) return false;
    for (const [depName, d] of app.deployments) {
      const running = this.replicasOf(name, depName).filter((r) => r.state === 'RUNNING' && r.version === d.version).length;
      if (running < d.spec.options.numReplicas) return false;
    }
    return true;
  }

  deploymentStatus(app: string, deployment: string): DeploymentStatus | undefined {
    return this.apps.get(app)?.deployments.get(deployment)?.status;
  }

  // ---- reconciliation ----

  /** Brings replicas toward the desired state. Safe to call often; overlapping calls are merged. */
  async reconcile(): Promise<void> {
    if (this.reconciling) { this.again = true; return; }
    this.reconciling = true;
    try {
      do {
        this.again = false;
        await this.reconcileOnce();
      } while (this.again);
    } finally {
      this.reconciling = false;
    }
  }

  private async reconcileOnce(): Promise<void> {
    const now = this.opts.clock.monoNow();
    const work: Array<Promise<void>> = [];
    // Replicas of deleted apps or deployments, or beyond the desired count.
    for (const r of this.replicas.values()) {
      const d = this.apps.get(r.app)?.deployments.get(r.deployment);
      if (d === undefined && (r.state === 'RUNNING' || r.state === 'STARTING')) work.push(this.stop(r));
    }
    for (const [appName, app] of this.apps) {
      for (const [depName, d] of app.deployments) {
        const mine = this.replicasOf(appName, depName);
        const current = mine.filter((r) => r.version === d.version && (r.state === 'RUNNING' || r.state === 'STARTING'));
        const outdated = mine.filter((r) => r.version !== d.version && (r.state === 'RUNNING' || r.state === 'STARTING'));
        const want = d.spec.options.numReplicas;
        // Scale down: newest first, STARTING before RUNNING.
        if (current.length > want) {
          const victims = [...current].sort((a, b) => (a.state === b.state ? b.startedAt - a.startedAt : a.state === 'STARTING' ? -1 : 1)).slice(0, current.length - want);
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
        this.updateStatus(appName, depName);
      }
    }
    this.healthChecks(now, work);
    this.publishRoutes();
    await Promise.all(work);
  }

  private place(appName: string, spec: AppSpec, depName: string, version: string, d: DeploymentSpec): ReplicaRecord | undefined {
    const res = d.options.resources;
    const caps = this.aliveWorkers().map((w) => this.capacity(w, appName, depName, false));
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
      replicaId: `${spec.name}.${depName}.${(this.nextReplica++).toString(36)}`,
      app: appName, deployment: depName, version, workerId, state: 'STARTING',
      startedAt: this.opts.clock.monoNow(), nextHealthAt: this.opts.clock.monoNow() + d.options.healthCheckPeriodMs,
      ...(devices !== undefined ? { devices } : {}),
    };
    this.replicas.set(rec.replicaId, rec);
    return rec;
  }

  private async start(r: ReplicaRecord, spec: AppSpec, status: DeploymentStatus): Promise<void> {
    try {
      await this.opts.ops.startReplica(r.workerId, r.replicaId, spec, r.deployment, r.devices);
      if (this.replicas.get(r.replicaId) !== r || r.state !== 'STARTING') return; // lost or stopped meanwhile
      r.state = 'RUNNING';
      status.failures = 0;
      status.message = '';
    } catch (err) {
      const message = toWireError(err).message;
      // A replica lost with its worker or stopped meanwhile is not a failure of the deployment: no backoff.
      if (this.replicas.get(r.replicaId) === r && r.state === 'STARTING') {
        this.replicas.delete(r.replicaId);
        status.failures++;
        const backoff = Math.min(this.opts.maxBackoffMs, 250 * 2 ** Math.min(status.failures, 10));
        status.retryAt = this.opts.clock.monoNow() + backoff;
        status.message = `replica failed to start (${status.failures} in a row, retry in ${backoff} ms): ${message}`;
        this.opts.logger.warn('replica failed to start', { replica: r.replicaId, error: message, retryInMs: backoff });
      }
    }
    this.updateStatus(r.app, r.deployment);
    this.publishRoutes();
    this.again = true;
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
    this.replicas.delete(r.replicaId);
  }

  private healthChecks(now: number, work: Array<Promise<void>>): void {
    for (const r of this.replicas.values()) {
      if (r.state !== 'RUNNING' || now < r.nextHealthAt) continue;
      const d = this.apps.get(r.app)?.deployments.get(r.deployment);
      if (d === undefined) continue;
      r.nextHealthAt = now + d.spec.options.healthCheckPeriodMs;
      work.push(this.opts.ops.checkHealth(r.workerId, r.replicaId, d.spec.options.healthCheckTimeoutMs).catch(async (err: unknown) => {
        const message = toWireError(err).message;
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
    if (running >= d.spec.options.numReplicas && this.replicasOf(app, deployment).every((r) => r.version === d.version)) {
      d.status.status = 'HEALTHY';
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
        };
      }
    }
    for (const r of this.replicas.values()) {
      if (r.state !== 'RUNNING') continue;
      const entry = table[`${r.app}/${r.deployment}`];
      const w = this.workers.get(r.workerId);
      if (entry === undefined || w === undefined || w.state !== 'ALIVE') continue;
      entry.replicas.push({ replicaId: r.replicaId, workerId: r.workerId, dataAddress: w.dataAddress });
    }
    for (const e of Object.values(table)) e.replicas.sort((a, b) => a.replicaId.localeCompare(b.replicaId));
    return table;
  }

  /** Publishes the route table when it changed since the last publication. */
  publishRoutes(): void {
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
          name, status: d.status.status, message: d.status.message, numReplicas: d.spec.options.numReplicas,
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
