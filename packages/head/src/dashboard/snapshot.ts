/**
 * What the dashboard page receives once a second: the cluster status and the workers' stats, trimmed to what the
 * page draws, with rates computed from the difference of cumulative counters between this snapshot and the one
 * before (ingress requests per worker, batches and items per batched method). Pure: the feed keeps the counters
 * of the last snapshot and hands them back in; a first snapshot has no rates (null), not zeros.
 */
import type { ReplicaState, WorkerStats } from '@shoal/protocol';
import type { ClusterStatus } from '../controller.ts';

export const DASHBOARD_SNAPSHOT_VERSION = 1;

type StatusDeployment = ClusterStatus['applications'][number]['deployments'][number];

/** The status the head serves at /api/status, with its addresses. */
export type DashboardStatusInput = ClusterStatus & { cluster: string; http: string };
/** The stats the head gathers for /api/stats. */
export interface DashboardStatsInput {
  router: Record<string, { inflight: number; waiting: number; replicas: number }>;
  workers: readonly WorkerStats[];
}

export interface DashboardWorker {
  workerId: string;
  name: string;
  state: string;
  pid: number | null;
  cpus: number;
  memoryBytes: number;
  used: { cpus: number; gpus: number; memory: number };
  devices: Array<{ index: number; name: string; kind: string; totalBytes: number; freeBytes: number }>;
  replicas: number;
  /** HTTP requests per second its ingress answered; null: no earlier snapshot, or it did not answer stats. */
  ingressRps: number | null;
  /** Data-plane requests per second it took from other processes (calls and HTTP). */
  dataRps: number | null;
}

export interface DashboardBatch {
  method: string;
  queued: number;
  running: number;
  /** The limits in force (the adaptive controller's, when it runs). */
  maxBatchSize: number;
  maxWaitMs: number;
  adaptive: boolean;
  batchesPerSec: number | null;
  itemsPerSec: number | null;
  /** Mean size of the batches dispatched since the last snapshot; null when none was. */
  meanBatchSize: number | null;
  /** Batches dispatched since the last snapshot, per size (the page sums these over its own window). */
  sizes: Record<number, number>;
}

export interface DashboardDeployment {
  name: string;
  key: string;
  status: string;
  message: string;
  numReplicas: number;
  running: number;
  autoscaling: { target: number; min: number; max: number } | null;
  version: string;
  rollout: { phase: string; percent: number; to: string } | null;
  /** Replicas per lifecycle state. */
  states: Record<ReplicaState, number>;
  /** Requests running in user code and waiting in replicas, over its replicas that answered stats. */
  ongoing: number;
  queued: number;
  /** Requests routers hold for want of a replica slot (the head's and every worker's). */
  routerWaiting: number;
  /** Requests per second, error rate and latency quantiles the head measures (status's traffic); null without. */
  traffic: NonNullable<StatusDeployment['traffic']> | null;
  /** Attainment, budget and burn of its objectives; null when it declares none. */
  slo: NonNullable<StatusDeployment['slo']> | null;
  /** Cost over the status's cost window (the since-start totals left out); null without. */
  cost: { windowMs: number; cost: number | null; costPer1kRequests: number | null; busyCostPer1kRequests: number | null; idleShare: number | null } | null;
  batch: DashboardBatch[];
}

export interface DashboardReplica {
  replicaId: string;
  app: string;
  deployment: string;
  version: string;
  state: ReplicaState;
  workerId: string;
  devices: number[];
  /** From its worker's stats; null when that worker did not answer. */
  ongoing: number | null;
  queued: number | null;
  error: string | null;
  load: { bytes: number; total: number } | null;
}

export interface DashboardSnapshot {
  v: number;
  /** Wall time of the snapshot, epoch ms. */
  at: number;
  /** Since the snapshot the rates are measured against; null for the first one. */
  intervalMs: number | null;
  cluster: { address: string; http: string };
  totals: {
    workers: number;
    workersAlive: number;
    replicas: Record<ReplicaState, number>;
    /** HTTP requests per second every worker's ingress answered; null before rates exist. */
    ingressRps: number | null;
  };
  workers: DashboardWorker[];
  applications: Array<{ name: string; routePrefix: string | null; ingress: string; deployments: DashboardDeployment[] }>;
  replicas: DashboardReplica[];
}

/** Cumulative counters of one snapshot, to difference against the next. */
export interface SnapshotCounters {
  /** Monotonic ms. */
  monoMs: number;
  ingress: Map<string, number>;
  dataIn: Map<string, number>;
  /** Per `${replicaId} ${method}`: dispatched batches per size. */
  batches: Map<string, Readonly<Record<number, number>>>;
}

/** Every lifecycle state at 0 (the Record type makes the compiler list them all), in lifecycle order for the page. */
function zeroStates(): Record<ReplicaState, number> {
  return { STARTING: 0, RUNNING: 0, DRAINING: 0, STOPPED: 0, FAILED: 0 };
}

function perSecond(now: number, before: number | undefined, dtMs: number | null): number | null {
  if (before === undefined || dtMs === null || dtMs <= 0) return null;
  // A counter that went down belongs to a restarted process: what it counted since is the rate's numerator.
  return (now >= before ? now - before : now) * 1000 / dtMs;
}


export function buildSnapshot(
  status: DashboardStatusInput,
  stats: DashboardStatsInput,
  prev: SnapshotCounters | undefined,
  now: { wallMs: number; monoMs: number },
): { snapshot: DashboardSnapshot; counters: SnapshotCounters } {
  const dtMs = prev === undefined ? null : now.monoMs - prev.monoMs;
  const counters: SnapshotCounters = { monoMs: now.monoMs, ingress: new Map(), dataIn: new Map(), batches: new Map() };

  const statsOf = new Map(stats.workers.map((w) => [w.workerId, w]));
  const replicaStats = new Map<string, WorkerStats['replicas'][number]>();
  for (const w of stats.workers) for (const r of w.replicas) replicaStats.set(r.replicaId, r);

  let ingressTotal: number | null = prev === undefined ? null : 0;
  const workers: DashboardWorker[] = status.workers.map((w) => {
    const s = statsOf.get(w.workerId);
    let ingressRps: number | null = null;
    let dataRps: number | null = null;
    if (s?.traffic !== undefined) {
      const data = s.traffic.dataIn.call + s.traffic.dataIn.http;
      counters.ingress.set(w.workerId, s.traffic.ingressRequests);
      counters.dataIn.set(w.workerId, data);
      ingressRps = perSecond(s.traffic.ingressRequests, prev?.ingress.get(w.workerId), dtMs);
      dataRps = perSecond(data, prev?.dataIn.get(w.workerId), dtMs);
    }
    if (ingressTotal !== null && ingressRps !== null) ingressTotal += ingressRps;
    return {
      workerId: w.workerId, name: w.name, state: w.state, pid: w.pid ?? null,
      cpus: w.resources.cpus, memoryBytes: w.resources.memory, used: w.used,
      devices: w.resources.devices.map((d) => ({ index: d.index, name: d.name, kind: d.kind, totalBytes: d.totalBytes, freeBytes: d.freeBytes })),
      replicas: w.replicas, ingressRps, dataRps,
    };
  });

  const totalsStates = zeroStates();
  const byDeployment = new Map<string, { states: Record<ReplicaState, number>; ongoing: number; queued: number; batch: Map<string, DashboardBatch & { items: number; batches: number }> }>();
  const agg = (key: string): NonNullable<ReturnType<typeof byDeployment.get>> => {
    let a = byDeployment.get(key);
    if (a === undefined) { a = { states: zeroStates(), ongoing: 0, queued: 0, batch: new Map() }; byDeployment.set(key, a); }
    return a;
  };
  const replicas: DashboardReplica[] = status.replicas.map((r) => {
    const key = `${r.app}/${r.deployment}`;
    const a = agg(key);
    a.states[r.state]++;
    totalsStates[r.state]++;
    const s = replicaStats.get(r.replicaId);
    if (s !== undefined) {
      a.ongoing += s.ongoing;
      a.queued += s.queued;
      for (const [method, q] of Object.entries(s.batch)) {
        let b = a.batch.get(method);
        if (b === undefined) {
          b = { method, queued: 0, running: 0, maxBatchSize: q.effective.maxBatchSize, maxWaitMs: q.effective.maxWaitMs, adaptive: q.adaptive !== undefined, batchesPerSec: null, itemsPerSec: null, meanBatchSize: null, sizes: {}, items: 0, batches: 0 };
          a.batch.set(method, b);
        }
        b.queued += q.queued;
        b.running += q.running;
        b.maxBatchSize = Math.max(b.maxBatchSize, q.effective.maxBatchSize);
        const counterKey = `${r.replicaId} ${method}`;
        counters.batches.set(counterKey, q.batchSizeCounts);
        // No earlier counters for this replica (first snapshot, a new replica, or its worker missed the last stats
        // call): what it holds is cumulative over an unknown span, so it is only the baseline, as for ingress rates.
        const before = prev?.batches.get(counterKey);
        if (before === undefined) continue;
        for (const [sizeText, count] of Object.entries(q.batchSizeCounts)) {
          const size = Number(sizeText);
          const was = before[size] ?? 0;
          const d = count >= was ? count - was : count;
          if (d === 0) continue;
          b.sizes[size] = (b.sizes[size] ?? 0) + d;
          b.batches += d;
          b.items += d * size;
        }
      }
    }
    return {
      replicaId: r.replicaId, app: r.app, deployment: r.deployment, version: r.version, state: r.state, workerId: r.workerId,
      devices: r.devices ?? [], ongoing: s?.ongoing ?? null, queued: s?.queued ?? null, error: r.error ?? null,
      load: r.load ?? null,
    };
  });

  const waiting = new Map<string, number>();
  const addWaiting = (router: Record<string, { waiting: number }>): void => {
    for (const [key, v] of Object.entries(router)) if (v.waiting > 0) waiting.set(key, (waiting.get(key) ?? 0) + v.waiting);
  };
  addWaiting(stats.router);
  for (const w of stats.workers) addWaiting(w.router);

  const applications = status.applications.map((app) => ({
    name: app.name, routePrefix: app.routePrefix, ingress: app.ingress,
    deployments: app.deployments.map((d): DashboardDeployment => {
      const key = `${app.name}/${d.name}`;
      const a = byDeployment.get(key);
      const batch = [...(a?.batch.values() ?? [])].map(({ items, batches, ...b }) => ({
        ...b,
        batchesPerSec: dtMs !== null && dtMs > 0 ? batches * 1000 / dtMs : null,
        itemsPerSec: dtMs !== null && dtMs > 0 ? items * 1000 / dtMs : null,
        meanBatchSize: batches > 0 ? items / batches : null,
      })).sort((x, y) => x.method.localeCompare(y.method));
      return {
        name: d.name, key, status: d.status, message: d.message, numReplicas: d.numReplicas, running: d.running,
        autoscaling: d.autoscaling ?? null, version: d.version,
        rollout: d.rollout !== undefined ? { phase: d.rollout.phase, percent: d.rollout.percent, to: d.rollout.to } : null,
        states: a?.states ?? zeroStates(), ongoing: a?.ongoing ?? 0, queued: a?.queued ?? 0, routerWaiting: waiting.get(key) ?? 0,
        traffic: d.traffic ?? null, slo: d.slo ?? null,
        cost: d.cost !== undefined ? { windowMs: d.cost.windowMs, cost: d.cost.cost, costPer1kRequests: d.cost.costPer1kRequests, busyCostPer1kRequests: d.cost.busyCostPer1kRequests, idleShare: d.cost.idleShare } : null,
        batch,
      };
    }),
  }));

  return {
    snapshot: {
      v: DASHBOARD_SNAPSHOT_VERSION, at: now.wallMs, intervalMs: dtMs,
      cluster: { address: status.cluster, http: status.http },
      totals: { workers: status.workers.length, workersAlive: status.workers.filter((w) => w.state === 'ALIVE').length, replicas: totalsStates, ingressRps: ingressTotal },
      workers, applications, replicas,
    },
    counters,
  };
}
