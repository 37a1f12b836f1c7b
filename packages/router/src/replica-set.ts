/**
 * The replicas of one deployment as one router sees them, and the choice among them: power of two choices on
 * queue length. The length of a replica is this router's own in-flight count plus what other callers had there
 * at the last reply (piggybacked on responses as `q`), so no replica is probed per request.
 */
import type { RouteEntry } from '@shoal/protocol';

export interface ReplicaRef {
  readonly replicaId: string;
  readonly workerId: string;
  readonly dataAddress: string;
  /** Requests this router has in flight to the replica. */
  inflight: number;
  /** Requests from other callers at the replica when it last answered us. */
  others: number;
}

export class ReplicaSet {
  private list: ReplicaRef[] = [];
  /** The replicas in this process's own worker (none in the head). */
  private locals: ReplicaRef[] = [];
  maxOngoingRequests = 1;
  maxQueuedRequests = 0;
  requestTimeoutMs = 0;
  /** Methods retried once after a worker died mid-call ('*': all). */
  idempotentMethods: ReadonlySet<string> | undefined;
  /** The deployment's last start error while it has no running replica (RouteEntry.unavailable). */
  unavailable: string | undefined;

  /**
   * @param localWorkerId the worker this router lives in: its replicas are preferred when their queue is no longer
   * than the best remote choice, so a request served where it arrived makes no hop at all.
   */
  constructor(readonly key: string, private readonly random: () => number = Math.random, private readonly localWorkerId: () => string | undefined = () => undefined) {}

  get replicas(): ReplicaRef[] { return this.list; }
  set replicas(rs: ReplicaRef[]) {
    this.list = rs;
    const local = this.localWorkerId();
    this.locals = local === undefined ? [] : rs.filter((r) => r.workerId === local);
  }

  /** Applies a new route entry, keeping the counters of replicas that stay. */
  update(entry: RouteEntry): void {
    this.maxOngoingRequests = entry.maxOngoingRequests;
    this.maxQueuedRequests = entry.maxQueuedRequests;
    this.requestTimeoutMs = entry.requestTimeoutMs;
    this.idempotentMethods = entry.idempotentMethods === undefined || entry.idempotentMethods.length === 0 ? undefined : new Set(entry.idempotentMethods);
    this.unavailable = entry.unavailable;
    const old = new Map(this.replicas.map((r) => [r.replicaId, r]));
    this.replicas = entry.replicas.map((r) => old.get(r.replicaId) ?? { ...r, inflight: 0, others: 0 });
  }

  remove(replicaId: string): void {
    this.replicas = this.replicas.filter((r) => r.replicaId !== replicaId);
  }

  /**
   * Power of two choices among replicas below maxOngoingRequests, then the least loaded local replica instead
   * when its queue is not longer than that choice's; undefined when all are full (or none).
   */
  choose(exclude?: ReadonlySet<string>): ReplicaRef | undefined {
    if (exclude !== undefined && exclude.size > 0) return this.chooseExcluding(exclude);
    const pick = this.chooseAny();
    if (this.locals.length === 0) return pick;
    const max = this.maxOngoingRequests;
    let best: ReplicaRef | undefined;
    for (const r of this.locals) if (r.inflight < max && (best === undefined || load(r) < load(best))) best = r;
    if (best !== undefined && (pick === undefined || load(best) <= load(pick))) return best;
    return pick;
  }

  /** A retry's choice: the least loaded replica with room that it has not been refused by (rare; a scan is fine). */
  private chooseExcluding(exclude: ReadonlySet<string>): ReplicaRef | undefined {
    const max = this.maxOngoingRequests;
    let best: ReplicaRef | undefined;
    for (const r of this.replicas) if (!exclude.has(r.replicaId) && r.inflight < max && (best === undefined || load(r) < load(best))) best = r;
    return best;
  }

  private chooseAny(): ReplicaRef | undefined {
    const rs = this.replicas;
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

  /** Records the queue length a replica reported in a reply; `ref.inflight` must no longer count the answered request. */
  report(ref: ReplicaRef, q: number | undefined): void {
    if (q !== undefined) ref.others = Math.max(0, q - ref.inflight);
  }
}

function load(r: ReplicaRef): number {
  return r.inflight + r.others;
}
