/**
 * The replicas of one deployment as one router sees them, and the choice among them: power of two choices on
 * queue length. The length of a replica is this router's own in-flight count plus what other callers had there
 * at the last reply (piggybacked on responses as `q`), so no replica is probed per request. A request naming a model
 * of a multiplexed deployment prefers replicas that hold it (see chooseForModel).
 */
import type { ModelSet, RouteEntry } from '@shoal/protocol';

export interface ReplicaRef {
  readonly replicaId: string;
  readonly workerId: string;
  readonly dataAddress: string;
  /** The deployment version it runs (listed while two versions serve; a kept ref takes each table's). */
  version?: string | undefined;
  /** Requests this router has in flight to the replica. */
  inflight: number;
  /** Requests from other callers at the replica when it last answered us. */
  others: number;
  /** The models it holds (multiplexed deployments): the newest set the route table or a reply reported. */
  models?: ModelSet;
}

/** Replicas to choose among, and those of them in this process's own worker. */
interface Group { list: ReplicaRef[]; locals: ReplicaRef[] }

export class ReplicaSet {
  private list: ReplicaRef[] = [];
  /** The replicas in this process's own worker (none in the head). */
  private locals: ReplicaRef[] = [];
  /** While two versions serve: the replicas of versions that take live traffic (not a shadow), and each version's. */
  private live: Group | undefined;
  private readonly byVersion = new Map<string, Group>();
  /** Versions that take live traffic, as the route entry's traffic weights say; undefined: every replica does. */
  private liveVersions: ReadonlySet<string> | undefined;
  maxOngoingRequests = 1;
  maxQueuedRequests = 0;
  requestTimeoutMs = 0;
  /** Methods retried once after a worker died mid-call ('*': all). */
  idempotentMethods: ReadonlySet<string> | undefined;
  /** The deployment's last start error while it has no running replica (RouteEntry.unavailable). */
  unavailable: string | undefined;
  /** Set for a multiplexed deployment (RouteEntry.hotOngoingRequests): where a hot model starts to spread. */
  hotOngoingRequests: number | undefined;

  /**
   * @param localWorkerId the worker this router lives in: its replicas are preferred when their queue is no longer
   * than the best remote choice, so a request served where it arrived makes no hop at all.
   */
  constructor(readonly key: string, private readonly random: () => number = Math.random, private readonly localWorkerId: () => string | undefined = () => undefined) {}

  get replicas(): ReplicaRef[] { return this.list; }
  set replicas(rs: ReplicaRef[]) {
    this.list = rs;
    const local = this.localWorkerId();
    const localsOf = (list: ReplicaRef[]): ReplicaRef[] => (local === undefined ? [] : list.filter((r) => r.workerId === local));
    this.locals = localsOf(rs);
    this.byVersion.clear();
    this.live = undefined;
    if (this.liveVersions === undefined) return;
    for (const r of rs) {
      const v = r.version ?? '';
      let g = this.byVersion.get(v);
      if (g === undefined) { g = { list: [], locals: [] }; this.byVersion.set(v, g); }
      g.list.push(r);
    }
    for (const g of this.byVersion.values()) g.locals = localsOf(g.list);
    const liveList = rs.filter((r) => this.liveVersions!.has(r.version ?? ''));
    this.live = { list: liveList, locals: localsOf(liveList) };
  }

  /** Replicas of one version this router knows of (0 when the version has none, or versions are not split). */
  versionCount(version: string): number {
    return this.byVersion.get(version)?.list.length ?? 0;
  }

  /** Applies a new route entry, keeping the counters of replicas that stay. */
  update(entry: RouteEntry): void {
    this.maxOngoingRequests = entry.maxOngoingRequests;
    this.maxQueuedRequests = entry.maxQueuedRequests;
    this.requestTimeoutMs = entry.requestTimeoutMs;
    this.idempotentMethods = entry.idempotentMethods === undefined || entry.idempotentMethods.length === 0 ? undefined : new Set(entry.idempotentMethods);
    this.unavailable = entry.unavailable;
    this.hotOngoingRequests = entry.hotOngoingRequests;
    this.liveVersions = entry.traffic === undefined ? undefined : new Set(entry.traffic.weights.filter((w) => w.percent > 0).map((w) => w.version));
    const old = new Map(this.replicas.map((r) => [r.replicaId, r]));
    this.replicas = entry.replicas.map((r) => {
      const kept = old.get(r.replicaId);
      if (kept === undefined) return { ...r, inflight: 0, others: 0 };
      kept.version = r.version;
      learnModels(kept, r.models);
      return kept;
    });
  }

  remove(replicaId: string): void {
    this.replicas = this.replicas.filter((r) => r.replicaId !== replicaId);
  }

  /**
   * Power of two choices among replicas below maxOngoingRequests, then the least loaded local replica instead
   * when its queue is not longer than that choice's; undefined when all are full (or none). With `modelId` (a
   * multiplexed deployment), a replica holding that model first (see chooseForModel).
   */
  choose(exclude?: ReadonlySet<string>, version?: string, modelId?: string): ReplicaRef | undefined {
    // While versions are split: `version`'s replicas, or (none given) those of every version taking live traffic.
    const g = this.live === undefined ? undefined : version === undefined ? this.live : this.byVersion.get(version);
    const list = g === undefined ? (this.live === undefined ? this.list : []) : g.list;
    const locals = g === undefined ? (this.live === undefined ? this.locals : []) : g.locals;
    if (exclude !== undefined && exclude.size > 0) return this.chooseExcluding(list, exclude);
    if (modelId !== undefined && this.hotOngoingRequests !== undefined) {
      const holder = this.chooseForModel(list, modelId, this.hotOngoingRequests);
      if (holder !== undefined) return holder;
    }
    const pick = this.chooseAny(list);
    if (locals.length === 0) return pick;
    const max = this.maxOngoingRequests;
    let best: ReplicaRef | undefined;
    for (const r of locals) if (r.inflight < max && (best === undefined || load(r) < load(best))) best = r;
    if (best !== undefined && (pick === undefined || load(best) <= load(pick))) return best;
    return pick;
  }

  /** Replicas that `choose(undefined, version)` picks among. */
  candidates(version?: string): ReplicaRef[] {
    if (this.live === undefined) return this.list;
    return (version === undefined ? this.live : this.byVersion.get(version))?.list ?? [];
  }

  /** A retry's choice: the least loaded replica with room that it has not been refused by (rare; a scan is fine). */
  private chooseExcluding(list: ReplicaRef[], exclude: ReadonlySet<string>): ReplicaRef | undefined {
    const max = this.maxOngoingRequests;
    let best: ReplicaRef | undefined;
    for (const r of list) if (!exclude.has(r.replicaId) && r.inflight < max && (best === undefined || load(r) < load(best))) best = r;
    return best;
  }

  private chooseAny(rs: ReplicaRef[]): ReplicaRef | undefined {
    const n = rs.length;
    if (n === 0) return undefined;
    const max = this.maxOngoingRequests;
    if (n === 1) { const only = rs[0]!; return only.inflight < max ? only : undefined; }
    const i = Math.floor(this.random() * n);
    let j = Math.floor(this.random() * (n - 1));
    if (j >= i) j++;
    const a = rs[i]!;
    const b = rs[j]!;
    const aOk = a.inflight < max;
    const bOk = b.inflight < max;
    if (aOk && bOk) return load(a) <= load(b) ? a : b;
    if (aOk) return a;
    if (bOk) return b;
    // Both sampled replicas are full: scan for any with room before declaring the set full.
    let best: ReplicaRef | undefined;
    for (const r of rs) if (r.inflight < max && (best === undefined || load(r) < load(best))) best = r;
    return best;
  }

  /**
   * A request for `modelId`: the least loaded replica with room that holds it (a local one on a tie), unless that
   * one has `hot` requests or more: then a replica without the model when that one is less loaded, so a hot model
   * spreads (the replica chosen loads it, and says so in its reply). With no holder that has room, a replica that
   * will load it (see chooseLoader); undefined when no replica has room.
   */
  private chooseForModel(list: ReplicaRef[], modelId: string, hot: number): ReplicaRef | undefined {
    const max = this.maxOngoingRequests;
    const local = this.localWorkerId();
    let best: ReplicaRef | undefined;
    let others = 0;
    for (const r of list) {
      if (r.models?.ids.includes(modelId) !== true) { others++; continue; }
      if (r.inflight >= max) continue;
      if (best === undefined || load(r) < load(best) || (load(r) === load(best) && r.workerId === local && best.workerId !== local)) best = r;
    }
    if (best !== undefined && (load(best) < hot || others === 0)) return best;
    const loader = this.chooseLoader(list, modelId);
    if (best === undefined) return loader;
    return loader !== undefined && load(loader) < load(best) ? loader : best;
  }

  /**
   * Power of two choices among the replicas with room that do not hold `modelId`: the less loaded, and of two as
   * loaded the one holding fewer models, so a model goes where loading it evicts nothing when the loads allow.
   */
  private chooseLoader(list: ReplicaRef[], modelId: string): ReplicaRef | undefined {
    const max = this.maxOngoingRequests;
    const rs = list.filter((r) => r.inflight < max && r.models?.ids.includes(modelId) !== true);
    const n = rs.length;
    if (n <= 1) return rs[0];
    const i = Math.floor(this.random() * n);
    let j = Math.floor(this.random() * (n - 1));
    if (j >= i) j++;
    const a = rs[i]!;
    const b = rs[j]!;
    if (load(a) !== load(b)) return load(a) < load(b) ? a : b;
    return (a.models?.ids.length ?? 0) <= (b.models?.ids.length ?? 0) ? a : b;
  }

  /**
   * Records what a replica reported in a reply: its queue length (`ref.inflight` must no longer count the answered
   * request) and, answering a request that named a model, the models it holds.
   */
  report(ref: ReplicaRef, q: number | undefined, models?: ModelSet): void {
    if (q !== undefined) ref.others = Math.max(0, q - ref.inflight);
    learnModels(ref, models);
  }
}

/** Keeps the newer of two reports of a replica's models (route table and replies arrive in any order). */
function learnModels(ref: ReplicaRef, models: ModelSet | undefined): void {
  if (models !== undefined && (ref.models === undefined || models.v > ref.models.v)) ref.models = models;
}

function load(r: ReplicaRef): number {
  return r.inflight + r.others;
}
