/**
 * Sends calls and HTTP requests to replicas. One Router lives in every worker (for its HTTP ingress and the handle
 * calls its replicas make), so requests go worker to worker, never through the head; the head has one for the calls
 * it makes itself (and its own ingress when it has no local workers).
 * When every replica is full, requests wait in a bounded per-deployment queue; past it, QueueFullError (503).
 */
import {
  CancelledError, Deadline, DeadlineExceededError, LazyAbortController, NoReplicaError, QueueFullError, ReplicaUnavailableError, RetryBudget,
  SpanKinds, isNotRun, windowToWire, type ChunkStream, type StreamEndReason, type StreamWindow, type WireStreamWindow, pickWeighted, rebuildError, requestIdOf, startSpan, stickyBucket, toWireError, tracingActive, type Clock, type ShoalSpan, type TraceContext, type Logger, type RetryBudgetOptions, type TimerHandle, type WireHttpRequest, type WireHttpResponse,
} from '@shoal/core';
import type { CallMessage, HttpMessage, NewRequest, ReplyMessage, RouteTable, RouteTraffic, ShadowCounts } from '@shoal/protocol';
import { ReplicaSet, type ReplicaRef } from './replica-set.ts';
import { compareAnswers, emptyShadowCounts } from './compare-answers.ts';
import { CacheHooks, type CacheObserver, type CachePin, type CacheRouter, type CacheStats } from './cache-hook.ts';

/** One request in flight, with a way to cancel it at the replica. */
export interface Dispatch {
  reply: Promise<ReplyMessage>;
  /** Cancels the request at the replica; `reason` is what its signal aborts with (a local replica sees it). */
  cancel(reason: Error): void;
}

/** How a router reaches a replica: over a connection to its worker, or in process when it is local. */
export interface Transport {
  dispatch(replica: ReplicaRef, message: NewRequest): Dispatch;
}

export interface RouteOptions {
  /** Absolute deadline, wall time (Clock.wallNow(), Date.now() ms). */
  deadline?: Deadline;
  /** Aborting it cancels the call; a LazyAbortController (what the ingress makes per request) never has to make its signal. */
  signal?: AbortSignal | LazyAbortController;
  priority?: number;
  /** The model the request names (a multiplexed deployment): replicas holding it are preferred. @default none */
  modelId?: string;
  /** The key a sticky split (an experiment) hashes to pick a version; HTTP requests take it from the experiment's header. @default none */
  stickyKey?: string;
  /** The request's id (X-Request-ID), passed to the replica's requestContext(). @default none */
  requestId?: string;
  /** The caller's trace context: the call's span is its child (when tracing records), and the replica's is that span's. @default none */
  trace?: TraceContext;
  /**
   * The caller takes a streamed answer with this window (docs/streaming.md): a method that streams then resolves
   * the call with a ChunkStream once its first chunk arrives, and the deadline and signal bound the whole stream.
   * Without it, a streamed answer arrives gathered into one array (an HTTP body). @default none
   */
  stream?: StreamWindow;
  /** 'bypass': a deployment's response cache neither answers nor stores this request. @default the cache is used */
  cache?: 'bypass';
  /** Set by the response cache on the request it sends on a miss (cache-hook.ts); not for callers. */
  cachePin?: CachePin;
}

/** What a router tells about the streamed answers it routed (per deployment key), for metrics. Keep it cheap. */
export interface RouterStreamObserver {
  /** A stream's first chunk arrived `firstChunkMs` after this router took the request (retries and waits included). */
  started(key: string, firstChunkMs: number): void;
  /** A stream ended: `chunks` it delivered, and how. */
  ended(key: string, reason: StreamEndReason, chunks: number): void;
}

export interface RouterOptions {
  transport: Transport;
  /** Timers, and wall time for deadlines (clock.wallNow()). */
  clock: Clock;
  logger: Logger;
  /** How long a request waits for a deployment that has no running replica before NoReplicaError. @default 30000 */
  noReplicaTimeoutMs?: number;
  random?: () => number;
  /** The worker this router lives in, once known: its replicas are preferred (see ReplicaSet.choose). @default none (the head) */
  localWorkerId?: () => string | undefined;
  /** How much retrying may add to the load (see RetryBudget). @default 20% of recent requests, plus 10 per 10 s */
  retryBudget?: RetryBudgetOptions;
  /** Retries of a request that provably never ran (refused by a draining replica, a full replica queue). @default 3 */
  maxNotRunRetries?: number;
  /**
   * Called when a request starts waiting for a deployment that has no running replica (scaled to zero, say), so
   * the owner can tell the head at once rather than at its next heartbeat. @default none
   */
  onNoReplica?: (key: string) => void;
  /**
   * Told once per routed request, when its answer settles, how long it took from this router taking it to the
   * answer (retries and waits for a slot included), in monotonic ms; `ok`: a replica answered without an error
   * (an HTTP answer of any status is one). For metrics: keep it cheap. @default none
   */
  onAnswered?: (key: string, elapsedMs: number, ok: boolean) => void;
  /** Told how long a request waited in this router for a replica slot (every replica was full), once it got one, in ms. @default none */
  onQueued?: (key: string, waitedMs: number) => void;
  /** Told when streamed answers start and end. @default none */
  onStream?: RouterStreamObserver;
  /** What the response caches of deployments that have one report to (docs/caching.md). @default none */
  cacheObserver?: CacheObserver;
}

/** Ends a call's span when its answer settles: ERROR with the error. */
function endWith<T>(span: ShoalSpan, answer: Promise<T>): Promise<T> {
  return answer.then(
    (value) => { span.end(); return value; },
    (err: unknown) => { span.end(err); throw err; },
  );
}

/** How long a worker this router lost its connection to stays out of its choices, unless a route table comes. */
const QUARANTINE_MS = 1000;

/** One request's retry bookkeeping: what it tried, and which retries it has used. */
interface Attempt {
  /** Replicas this request was refused by (never ran there), avoided by its retries. */
  exclude: Set<string> | undefined;
  /** The replica the latest attempt went to. */
  tried: ReplicaRef | undefined;
  notRunRetries: number;
  /** The one retry an idempotent request gets after its worker died mid-call. */
  diedRetried: boolean;
  /** While versions are split: the version this request goes to (undefined: any live one). */
  version: string | undefined;
  /** The one retry on the stable version an idempotent request gets when a canary failed it. */
  canaryRetried: boolean;
  /** The split in force when the latest attempt was sent (a rollback may end it while the canary still answers). */
  split: RouteTraffic | undefined;
}

/** Experiment assignments kept between two heartbeats; past it they are dropped (and counted). */
const MAX_PENDING_ASSIGNMENTS = 50_000;
/** Numbers compared per answer pair at most, so a huge tensor cannot stall the router's event loop. */
const MAX_COMPARED_NUMBERS = 1_000_000;

interface Waiter {
  /** Replicas this waiter (a retry) must not be sent to; cleared when they are all that is left. */
  exclude: Set<string> | undefined;
  /** The version it waits for while versions are split (undefined: any live one). */
  version: string | undefined;
  wake: () => void;
  fail: (err: Error) => void;
  /** Starts the no-replica timeout of a waiter that queued while replicas existed and that now are all gone. */
  armNoReplicaTimer: () => void;
}

export class Router implements CacheRouter {
  private readonly sets = new Map<string, ReplicaSet>();
  private readonly waiters = new Map<string, Waiter[]>();
  private readonly opts: Required<Omit<RouterOptions, 'random' | 'localWorkerId' | 'retryBudget' | 'onNoReplica' | 'onAnswered' | 'onQueued' | 'onStream' | 'cacheObserver'>> & { random: () => number; localWorkerId: () => string | undefined; onNoReplica: (key: string) => void };
  private routesVersion = -1;
  /** The latest route table, for replicas to come back from a quarantine (dropWorker). */
  private lastTable: RouteTable | undefined;
  /** Workers dropped for good (until the next table), and those in quarantine with the timer that ends it. */
  private readonly gone = new Set<string>();
  private readonly quarantine = new Map<string, TimerHandle>();
  private closed = false;
  private readonly budget: RetryBudget;
  private retryCount = 0;
  private budgetWarnedAt = Number.NEGATIVE_INFINITY;
  private shadowWarnedAt = Number.NEGATIVE_INFINITY;
  /** How each deployment's requests are split between versions, while they are (RouteEntry.traffic). */
  private readonly traffic = new Map<string, RouteTraffic>();
  /** Instance fields that stream, per deployment key (RouteEntry.streams). */
  private readonly streamFields = new Map<string, Set<string>>();
  /** Shadow comparisons, cumulative, keyed `${key}@${version}` (reported in the worker's heartbeat). */
  private readonly shadow = new Map<string, ShadowCounts>();
  private assignments: Array<[string, string, number]> = [];
  private droppedAssignments = 0;
  private readonly onAnswered: RouterOptions['onAnswered'];
  private readonly onQueued: RouterOptions['onQueued'];
  private readonly onStream: RouterStreamObserver | undefined;
  /** Response caches of the deployments whose route entries carry `cache`. */
  private readonly caches: CacheHooks;

  constructor(opts: RouterOptions) {
    this.opts = { noReplicaTimeoutMs: 30_000, random: Math.random, localWorkerId: () => undefined, maxNotRunRetries: 3, onNoReplica: () => undefined, ...opts };
    this.budget = new RetryBudget(opts.clock, opts.retryBudget);
    this.onAnswered = opts.onAnswered;
    this.onQueued = opts.onQueued;
    this.onStream = opts.onStream;
    this.caches = new CacheHooks({ clock: opts.clock, logger: opts.logger, ...(opts.cacheObserver === undefined ? {} : { observer: opts.cacheObserver }) });
  }

  /** Retries made, and retries refused because the budget was spent, since the start. */
  get retries(): { made: number; refused: number } {
    return { made: this.retryCount, refused: this.budget.refused };
  }

  /** Shadow comparisons made by this router since it started, cumulative, keyed `${deployment key}@${shadow version}`. */
  shadowCounts(): Record<string, ShadowCounts> {
    return Object.fromEntries([...this.shadow].map(([k, c]) => [k, { ...c }]));
  }

  /** Experiment assignments ([experiment, requestId, variant index]) made since the last call; the caller sends them on. */
  takeAssignments(): Array<[string, string, number]> {
    const out = this.assignments;
    this.assignments = [];
    if (this.droppedAssignments > 0) {
      this.opts.logger.warn('experiment assignments dropped: more than the bound between two reports', { dropped: this.droppedAssignments, bound: MAX_PENDING_ASSIGNMENTS });
      this.droppedAssignments = 0;
    }
    return out;
  }

  /** The clock deadlines are read on: a handle makes its deadline from it. */
  get clock(): Clock {
    return this.opts.clock;
  }

  updateRoutes(table: RouteTable, version: number): void {
    if (version <= this.routesVersion) return;
    this.routesVersion = version;
    this.lastTable = table;
    this.gone.clear();
    for (const [key, entry] of Object.entries(table)) {
      let set = this.sets.get(key);
      if (set === undefined) { set = new ReplicaSet(key, this.opts.random, this.opts.localWorkerId); this.sets.set(key, set); }
      set.update(entry);
      if (entry.traffic === undefined) this.traffic.delete(key); else this.traffic.set(key, entry.traffic);
      if (entry.streams === undefined || entry.streams.length === 0) this.streamFields.delete(key); else this.streamFields.set(key, new Set(entry.streams));
      if (set.replicas.length === 0 && set.unavailable !== undefined) {
        // Its starts keep failing: what waits for a replica would wait for nothing.
        for (const w of [...this.waiters.get(key) ?? []]) w.fail(this.unavailableError(key, set.unavailable));
      }
      this.wake(key);
    }
    this.caches.update(table);
    for (const key of [...this.sets.keys()]) {
      if (!(key in table)) {
        this.sets.delete(key);
        this.traffic.delete(key);
        this.streamFields.delete(key);
        const queue = this.waiters.get(key) ?? [];
        for (const w of [...queue]) w.fail(new NoReplicaError(`deployment "${key}" was removed while a request waited for it`));
      }
    }
  }

  /**
   * Takes the next route table whatever its version: a new head (after a restart) numbers its tables afresh. The
   * current table stays in use until then.
   */
  resetRoutesVersion(): void {
    this.routesVersion = -1;
  }

  /**
   * Drops replicas of a worker known to be gone, before the head's next route table arrives. When `restoreAfterMs`
   * is given (this router lost its own connection to the worker, which the head may still see alive) they come
   * back after it from the last table, unless a newer table has said otherwise by then: a short quarantine, not
   * for good.
   */
  dropWorker(workerId: string, restoreAfterMs?: number): void {
    for (const [key, set] of this.sets) {
      set.replicas = set.replicas.filter((r) => r.workerId !== workerId);
      this.wake(key);
    }
    if (restoreAfterMs === undefined) {
      // The owner knows it is gone (the head declared it dead): no quarantine brings it back, only a new table.
      this.gone.add(workerId);
      const t = this.quarantine.get(workerId);
      if (t !== undefined) { this.opts.clock.clearTimeout(t); this.quarantine.delete(workerId); }
      return;
    }
    if (this.closed || this.gone.has(workerId) || this.quarantine.has(workerId)) return;
    const table = this.lastTable;
    const timer = this.opts.clock.setTimeout(() => {
      this.quarantine.delete(workerId);
      if (this.closed || this.gone.has(workerId) || this.lastTable !== table || table === undefined) return;
      for (const [key, entry] of Object.entries(table)) {
        const set = this.sets.get(key);
        if (set === undefined || !entry.replicas.some((r) => r.workerId === workerId)) continue;
        set.update(entry);
        this.wake(key);
      }
    }, restoreAfterMs);
    (timer as { unref?: () => void }).unref?.();
    this.quarantine.set(workerId, timer);
  }

  /** Counts, for metrics and tests: requests in flight and waiting, per deployment. */
  stats(): Record<string, { inflight: number; waiting: number; replicas: number }> {
    const out: Record<string, { inflight: number; waiting: number; replicas: number }> = {};
    for (const [key, set] of this.sets) {
      out[key] = { inflight: set.replicas.reduce((s, r) => s + r.inflight, 0), waiting: this.waiters.get(key)?.length ?? 0, replicas: set.replicas.length };
    }
    for (const [key, ws] of this.waiters) if (!(key in out) && ws.length > 0) out[key] = { inflight: 0, waiting: ws.length, replicas: 0 };
    return out;
  }

  /** Running replicas this router knows of for a deployment. */
  replicaCount(key: string): number {
    return this.sets.get(key)?.replicas.length ?? 0;
  }

  requestTimeoutMs(key: string): number {
    return this.sets.get(key)?.requestTimeoutMs ?? 0;
  }

  /**
   * The deployment's instance fields that stream (continuous methods), as its replicas reported them (the route
   * entry's `streams`): handles call these as streams. Undefined when it has none, or before a replica started.
   */
  streamFieldsOf(key: string): ReadonlySet<string> | undefined {
    return this.streamFields.get(key);
  }

  call(key: string, method: string, args: unknown[], opts: RouteOptions = {}): Promise<unknown> {
    if (this.caches.size !== 0 && opts.cachePin === undefined) { const c = this.caches.get(key); if (c !== undefined) return c.call(this, method, args, opts); }
    const span = tracingActive() && opts.trace?.sampled === true ? startSpan(`call ${key}.${method}`, opts.trace, SpanKinds.CLIENT) : undefined;
    const tc = span?.context ?? opts.trace;
    const rid = opts.requestId;
    const s = opts.stream === undefined ? undefined : windowToWire(opts.stream);
    const nc = opts.cache === 'bypass';
    const reply = this.route(key, opts, (replicaId) => noCache(withWindow({ t: 'call', replicaId, method, args, deadline: opts.deadline, priority: opts.priority, modelId: opts.modelId, rid, tc }, s), nc), method, this.pickVersion(key, opts.stickyKey)).then(unwrap);
    return span === undefined ? reply : endWith(span, reply);
  }

  /**
   * GET and HEAD are idempotent; other HTTP methods when the deployment declares `fetch` (or '*') idempotent.
   * While an experiment splits the deployment, the experiment's header is the sticky key: the answer carries
   * x-request-id (the caller's own, or a new one) and x-shoal-variant, which outcomes are reported against.
   */
  http(key: string, req: WireHttpRequest, opts: RouteOptions & { stream: StreamWindow }): Promise<WireHttpResponse | ChunkStream>;
  http(key: string, req: WireHttpRequest, opts?: RouteOptions): Promise<WireHttpResponse>;
  http(key: string, req: WireHttpRequest, opts: RouteOptions = {}): Promise<WireHttpResponse | ChunkStream> {
    if (this.caches.size !== 0 && opts.cachePin === undefined) { const c = this.caches.get(key); if (c !== undefined) return c.http(this, req, opts); }
    const method = req.method === 'GET' || req.method === 'HEAD' ? '*' : 'fetch';
    const sticky = this.traffic.get(key)?.sticky;
    // No call span: the ingress that routes an HTTP request has its own span for it, and the replica's spans are
    // that span's children; a call span would only repeat it.
    const tc = opts.trace;
    const rid = opts.requestId;
    const s = opts.stream === undefined ? undefined : windowToWire(opts.stream);
    const build = (replicaId: string): NewRequest => withWindow({ t: 'http', replicaId, req, deadline: opts.deadline, priority: opts.priority, modelId: opts.modelId, rid, tc }, s);
    return sticky === undefined ? this.route(key, opts, build, method, this.pickVersion(key, opts.stickyKey)).then(unwrap) as Promise<WireHttpResponse> : this.experimentHttp(key, req, opts, build, method, sticky);
  }

  /** An HTTP request to a deployment an experiment splits: pinned by its sticky key, answered with its variant. */
  private experimentHttp(key: string, req: WireHttpRequest, opts: RouteOptions, build: (replicaId: string) => NewRequest, method: string, sticky: NonNullable<RouteTraffic['sticky']>): Promise<WireHttpResponse | ChunkStream> {
    const raw = req.headers[sticky.header];
    const stickyKey = (Array.isArray(raw) ? raw[0] : raw) ?? opts.stickyKey;
    const version = this.pickVersion(key, stickyKey === '' ? undefined : stickyKey);
    const variant = version === undefined ? -1 : this.traffic.get(key)!.weights.findIndex((w) => w.version === version);
    const requestId = opts.requestId ?? requestIdOf(req.headers['x-request-id']);
    return this.route(key, opts, build, method, version).then((reply) => {
      // A streamed answer has no headers to carry the variant: its assignment is still recorded.
      const streamed = reply.ok ? reply.stream : undefined;
      const res = streamed === undefined ? unwrap(reply) as WireHttpResponse : undefined;
      const headers: Record<string, string> = { ...res?.headers, 'x-request-id': requestId };
      // Only a request with a key is in the experiment: one without goes to the control and is not counted.
      if (stickyKey !== undefined && stickyKey !== '' && variant >= 0) {
        headers['x-shoal-variant'] = variantName(variant);
        if (this.assignments.length < MAX_PENDING_ASSIGNMENTS) this.assignments.push([sticky.experiment, requestId, variant]);
        else this.droppedAssignments++;
      }
      return streamed ?? { ...res!, headers };
    });
  }

  close(): void {
    this.closed = true;
    this.caches.close();
    for (const [key, ws] of this.waiters) {
      this.waiters.delete(key);
      for (const w of ws) w.fail(new NoReplicaError(`router closed while a request for "${key}" waited`));
    }
  }

  /**
   * Sends the request, retrying it on another replica when it provably never ran (up to maxNotRunRetries), and
   * once when its worker died mid-call if `method` is idempotent ('*': always idempotent, as GET and HEAD are), as
   * far as the retry budget and the deadline allow.
   */
  private route(key: string, opts: RouteOptions, build: (replicaId: string) => NewRequest, method: string, version: string | undefined): Promise<ReplyMessage> {
    if (opts.signal?.aborted) return Promise.reject(new CancelledError(`call to "${key}" cancelled before it was sent`));
    if (opts.deadline !== undefined && Deadline.expired(opts.deadline, this.opts.clock)) return Promise.reject(new DeadlineExceededError(`deadline passed before the call to "${key}" was sent`));
    this.budget.request();
    const a: Attempt = { exclude: undefined, tried: undefined, notRunRetries: 0, diedRetried: false, version, canaryRetried: false, split: undefined };
    // A response cache's miss: pinned to the version its key names, and told which replica answered.
    if (opts.cachePin !== undefined) { a.version = opts.cachePin.version ?? version; opts.cachePin.attempt = a; }
    const shadow = this.traffic.get(key)?.shadow;
    // The copy is made before the live request goes: a local replica may take its buffers (a transfer to an
    // inference thread detaches them).
    const copy = shadow !== undefined && this.opts.random() * 100 < shadow.percent ? this.mirrorCopy(key, shadow.version, build) : undefined;
    const onAnswered = this.onAnswered;
    const onStream = this.onStream;
    const t0 = onAnswered === undefined && onStream === undefined ? 0 : this.opts.clock.monoNow();
    const reply = this.attempt(key, opts, build, method, a);
    if (copy !== undefined) this.mirror(key, shadow!.version, copy, reply);
    if (onAnswered === undefined && onStream === undefined) return reply;
    return reply.then(
      (r) => {
        // For a stream, this is its start: its first chunk.
        const ms = this.opts.clock.monoNow() - t0;
        onAnswered?.(key, ms, r.ok);
        if (r.ok && r.stream !== undefined && onStream !== undefined) observeStream(onStream, key, ms, r.stream);
        return r;
      },
      (err: unknown) => { onAnswered?.(key, this.opts.clock.monoNow() - t0, false); throw err; },
    );
  }

  private shadowCountsFor(key: string, version: string): ShadowCounts {
    const countKey = `${key}@${version}`;
    let c = this.shadow.get(countKey);
    if (c === undefined) { c = emptyShadowCounts(); this.shadow.set(countKey, c); }
    return c;
  }

  /** A copy of the request for the shadow, or undefined (counted as dropped) when no shadow replica has room now. */
  private mirrorCopy(key: string, version: string, build: (replicaId: string) => NewRequest): NewRequest | undefined {
    if (this.closed || this.sets.get(key)?.choose(undefined, version) === undefined) { this.shadowCountsFor(key, version).dropped++; return undefined; }
    try {
      // The shadow's answer is only compared, never read as a stream: it takes none (a stream arrives gathered).
      const copy = structuredClone(build('')) as NewRequest & { s?: WireStreamWindow };
      delete copy.s;
      return copy;
    } catch {
      this.shadowCountsFor(key, version).shadowErrors++;
      return undefined;
    }
  }

  /**
   * The version a request goes to while the deployment's versions are split: by its sticky key's hash when the
   * split is sticky and it has one (without one, the control: the first version), else at random by weight.
   */
  /** Entries and bytes of each deployment's response cache in this router (memory stores). */
  cacheStats(): CacheStats[] {
    return this.caches.stats();
  }

  /**
   * The version the response cache keys a request on: the one it will be pinned to (undefined while versions are
   * not split), or null for an HTTP request while an experiment runs (its answers are counted per request id).
   */
  cacheVersion(key: string, stickyKey: string | undefined, req: WireHttpRequest | undefined): string | undefined | null {
    if (req !== undefined && this.traffic.get(key)?.sticky !== undefined) return null;
    return this.pickVersion(key, stickyKey);
  }

  private pickVersion(key: string, stickyKey: string | undefined): string | undefined {
    const t = this.traffic.get(key);
    if (t === undefined || t.weights.length === 0) return undefined;
    if (t.sticky !== undefined && stickyKey === undefined) return t.weights[0]!.version;
    const u = t.sticky !== undefined ? stickyBucket(t.sticky.experiment, stickyKey!) : this.opts.random();
    return t.weights[pickWeighted(t.weights.map((w) => w.percent), u)]!.version;
  }

  /**
   * Sends a copy of a request to the shadow version, after the live one has gone out, and compares the two
   * answers. The copy never waits: without a shadow replica that has room it is dropped (and counted), so the
   * shadow adds no queueing to the callers; it takes no retry and no share of the retry budget.
   */
  private mirror(key: string, version: string, copy: NewRequest, live: Promise<ReplyMessage>): void {
    const counts = this.shadowCountsFor(key, version);
    // A snapshot of the live answer as it arrives, before its caller can pass its buffers on (and detach them).
    // A streamed live answer is not compared (its chunks go to its caller): nothing to snapshot.
    const liveSnapshot = live.then((l) => (l.ok ? (l.stream !== undefined ? undefined : { ...l, value: cloneAnswer(l.value) }) : l), () => undefined);
    setImmediate(() => {
      const set = this.sets.get(key);
      const ref = this.closed ? undefined : set?.choose(undefined, version);
      if (set === undefined || ref === undefined) { counts.dropped++; return; }
      counts.mirrored++;
      ref.inflight++;
      let shadowReply: Promise<ReplyMessage>;
      try {
        shadowReply = this.opts.transport.dispatch(ref, { ...copy, replicaId: ref.replicaId } as NewRequest).reply;
      } catch {
        ref.inflight--;
        counts.shadowErrors++;
        return;
      }
      const settled = shadowReply.then(
        (r) => { ref.inflight--; this.wake(key); set.report(ref, r.q, r.models); return r; },
        (err: unknown) => { ref.inflight--; this.wake(key); return { t: 'reply', id: 0, ok: false, error: toWireError(err) } satisfies ReplyMessage; },
      );
      Promise.all([liveSnapshot, settled]).then(([l, sh]) => {
        if (l === undefined || !l.ok) return; // nothing live to compare with
        if (sh === undefined || !sh.ok) {
          counts.shadowErrors++;
          // Once a second at most: a shadow that fails everything would otherwise flood the log.
          const now = this.opts.clock.monoNow();
          if (now - this.shadowWarnedAt >= 1000) {
            this.shadowWarnedAt = now;
            this.opts.logger.warn('the shadow version failed a request the live version answered', { deployment: key, version, error: sh === undefined ? 'no answer' : sh.error.message, failedSoFar: counts.shadowErrors });
          }
          return;
        }
        const d = compareAnswers(l.value, sh.value, MAX_COMPARED_NUMBERS);
        counts.compared++;
        if (d.agree) counts.agreed++;
        counts.numbers += d.numbers;
        counts.sumAbsDiff += d.sumAbsDiff;
        if (d.maxAbsDiff > counts.maxAbsDiff) counts.maxAbsDiff = d.maxAbsDiff;
      }, () => undefined);
    });
  }

  private attempt(key: string, opts: RouteOptions, build: (replicaId: string) => NewRequest, method: string, a: Attempt): Promise<ReplyMessage> {
    a.tried = undefined;
    return this.pick(key, opts, build, a).then(
      (r) => {
        // Not charged to the retry budget: these retries are bounded by the canary's share of traffic, and last only
        // until the canary is judged; a budget sized for overload would let a bad canary's errors through.
        if (this.canaryFailed(key, a, r, method) && !this.closed && opts.signal?.aborted !== true && (opts.deadline === undefined || !Deadline.expired(opts.deadline, this.opts.clock))) {
          // The stable version answers instead: a bad canary is judged on its errors, callers never see them.
          this.retryCount++;
          a.canaryRetried = true;
          const stable = a.split!.weights[0]!.version;
          a.version = (this.sets.get(key)?.versionCount(stable) ?? 0) > 0 ? stable : undefined;
          a.exclude = new Set([a.tried!.replicaId]);
          return this.attempt(key, opts, build, method, a);
        }
        if (r.ok) return r;
        if (r.nr === true) return this.mayRetryNotRun(key, opts, a, r.error.message) ? this.attempt(key, opts, build, method, a) : r;
        // The replica ran it, but a call it made died with its worker (its handle's ERR_PEER_GONE came back): an
        // idempotent request gets its one retry for that too.
        if (r.error.code === 'ERR_PEER_GONE' && !a.diedRetried && this.idempotent(key, method) && this.mayRetry(key, opts, 'a call it made lost its worker', r.error.message)) {
          a.diedRetried = true;
          return this.attempt(key, opts, build, method, a);
        }
        return r;
      },
      (err: unknown) => {
        if (a.tried === undefined) throw err; // refused before it was sent (queue full, deadline, cancelled)
        if (isNotRun(err)) {
          // Given up: the caller gets the error without the mark, so code that lets it through (a deployment
          // calling another) is not itself taken for never having run.
          if (!this.mayRetryNotRun(key, opts, a, (err as Error).message)) throw rebuildError(toWireError(err));
        } else if (toWireError(err).code === 'ERR_PEER_GONE' && !a.diedRetried && this.idempotent(key, method)) {
          if (!this.mayRetry(key, opts, 'its worker went away mid-call', (err as Error).message)) throw err;
          a.diedRetried = true;
          (a.exclude ??= new Set()).add(a.tried.replicaId);
        } else {
          throw err;
        }
        return this.attempt(key, opts, build, method, a);
      },
    );
  }

  /**
   * A canary (a version other than the stable first one, in a split that is not an experiment's) failed an
   * idempotent request: an error that is not the caller's (5xx), or an HTTP answer of 5xx.
   */
  private canaryFailed(key: string, a: Attempt, r: ReplyMessage, method: string): boolean {
    if (a.canaryRetried || a.tried === undefined) return false;
    const t = a.split;
    if (t === undefined || t.sticky !== undefined || t.weights.length < 2 || a.tried.version === t.weights[0]!.version) return false;
    if (r.ok) {
      const v = r.value as Partial<WireHttpResponse> | null;
      if (!(typeof v === 'object' && v !== null && typeof v.status === 'number' && v.status >= 500 && 'body' in v)) return false;
    } else if (r.nr === true || (r.error.httpStatus ?? 500) < 500) {
      return false;
    }
    return this.idempotent(key, method);
  }

  private mayRetryNotRun(key: string, opts: RouteOptions, a: Attempt, why: string): boolean {
    if (a.notRunRetries >= this.opts.maxNotRunRetries || a.tried === undefined) return false;
    const exclude = new Set(a.exclude);
    exclude.add(a.tried.replicaId);
    // Is any other replica left to try? If not, the refusal stands (a full queue on the only replica, say), and
    // no retry is counted or charged to the budget.
    const set = this.sets.get(key);
    if (set !== undefined && set.replicas.length > 0 && !set.replicas.some((r) => !exclude.has(r.replicaId))) return false;
    if (!this.mayRetry(key, opts, 'it never ran', why)) return false;
    a.notRunRetries++;
    a.exclude = exclude;
    // A retry may go to any live version: the one it was sent to may be the one going away (a rollback).
    a.version = undefined;
    return true;
  }

  private mayRetry(key: string, opts: RouteOptions, reason: string, error: string): boolean {
    if (this.closed || opts.signal?.aborted) return false;
    if (opts.deadline !== undefined && Deadline.expired(opts.deadline, this.opts.clock)) return false;
    if (!this.budget.tryRetry()) {
      // Once a second at most: a storm is when this happens most.
      const now = this.opts.clock.monoNow();
      if (now - this.budgetWarnedAt >= 1000) {
        this.budgetWarnedAt = now;
        this.opts.logger.warn('retry budget spent; not retrying', { deployment: key, reason, error, refusedSoFar: this.budget.refused });
      }
      return false;
    }
    this.retryCount++;
    this.opts.logger.debug('retrying on another replica', { deployment: key, reason, error });
    return true;
  }

  private idempotent(key: string, method: string): boolean {
    if (method === '*') return true;
    const m = this.sets.get(key)?.idempotentMethods;
    return m !== undefined && (m.has('*') || m.has(method));
  }

  private unavailableError(key: string, why: string): ReplicaUnavailableError {
    return new ReplicaUnavailableError(`deployment "${key}" has no running replica and its replicas fail to start: ${why}`);
  }

  /**
   * Picks a replica (waiting for a slot when every one is full) and sends the request. Without async/await on the
   * common path, where a replica has room: each promise also pays the request-context hook.
   */
  private pick(key: string, opts: RouteOptions, build: (replicaId: string) => NewRequest, a: Attempt): Promise<ReplyMessage> {
    const set = this.sets.get(key);
    if (set !== undefined && set.replicas.length === 0 && set.unavailable !== undefined) return Promise.reject(this.unavailableError(key, set.unavailable));
    if (a.version !== undefined) unpinGone(set, a);
    const ref = set?.choose(a.exclude, a.version, opts.modelId);
    if (set !== undefined && ref !== undefined) return this.send(key, set, ref, opts, build, a);
    return this.routeQueued(key, opts, build, a);
  }

  private async routeQueued(key: string, opts: RouteOptions, build: (replicaId: string) => NewRequest, a: Attempt): Promise<ReplyMessage> {
    let set: ReplicaSet | undefined;
    let ref: ReplicaRef | undefined;
    const queuedAt = this.opts.clock.monoNow();
    while (ref === undefined || set === undefined) {
      await this.waitForSlot(key, opts, a.exclude, a.version);
      set = this.sets.get(key);
      if (a.version !== undefined) unpinGone(set, a);
      ref = set?.choose(a.exclude, a.version, opts.modelId);
    }
    this.onQueued?.(key, this.opts.clock.monoNow() - queuedAt);
    // An abort that lands between a waiter's wake-up and this line removed no listener yet to be added: check it
    // here, or the call would be sent and never cancelled.
    if (opts.signal?.aborted) throw new CancelledError(`call to "${key}" cancelled while queued`);
    return this.send(key, set, ref, opts, build, a);
  }

  private send(key: string, set: ReplicaSet, ref: ReplicaRef, opts: RouteOptions, build: (replicaId: string) => NewRequest, a: Attempt): Promise<ReplyMessage> {
    a.tried = ref;
    a.split = this.traffic.get(key);
    ref.inflight++;
    let reply: Promise<ReplyMessage>;
    try {
      const dispatch = this.opts.transport.dispatch(ref, build(ref.replicaId));
      reply = opts.signal === undefined && opts.deadline === undefined ? dispatch.reply : this.guard(key, dispatch, opts);
    } catch (err) {
      ref.inflight--;
      this.wake(key);
      return Promise.reject(err);
    }
    return reply.then(
      (r) => {
        // A stream holds its replica's slot until it ends: counted in flight here until then.
        if (r.ok && r.stream !== undefined) {
          // Its first reply's load counts the stream, as ref.inflight still does: comparable as they are.
          set.report(ref, r.q, r.models);
          this.holdForStream(key, ref, r.stream);
          return r;
        }
        ref.inflight--;
        this.wake(key);
        // `q` is the replica's load after it answered, which no longer counts this request: compare it with what
        // this router still has there, so after the decrement.
        set.report(ref, r.q, r.models);
        return r;
      },
      (err: unknown) => {
        ref.inflight--;
        this.wake(key);
        // The connection to its worker is gone: none of that worker's replicas is reachable from here until the
        // next route table says otherwise, or for a second (the head may still see it alive: a path of ours broke).
        if (toWireError(err).code === 'ERR_PEER_GONE') this.dropWorker(ref.workerId, QUARANTINE_MS);
        throw err;
      },
    );
  }

  /** Until a stream ends, its replica counts it in flight here; a lost worker ends it with ERR_PEER_GONE. */
  private holdForStream(key: string, ref: ReplicaRef, stream: ChunkStream): void {
    stream.onEnd((_reason, err) => {
      ref.inflight--;
      this.wake(key);
      if (err !== undefined && toWireError(err).code === 'ERR_PEER_GONE') this.dropWorker(ref.workerId, QUARANTINE_MS);
    });
  }

  /**
   * Races a dispatched request against its signal and deadline, cancelling it at the replica on either. A streamed
   * answer stays guarded until it ends: the deadline bounds the whole stream, and an abort cancels it mid-way.
   */
  private guard(key: string, dispatch: Dispatch, opts: RouteOptions): Promise<ReplyMessage> {
    return new Promise<ReplyMessage>((resolve, reject) => {
      let timer: TimerHandle | undefined;
      let active: ChunkStream | undefined;
      const cleanup = (): void => {
        if (timer !== undefined) this.opts.clock.clearTimeout(timer);
        unlisten(opts.signal, onAbort);
      };
      const stop = (err: Error): void => {
        cleanup();
        if (active !== undefined) { active.cancel(err); return; }
        dispatch.cancel(err);
        reject(err);
      };
      const onAbort = (): void => stop(new CancelledError(`call to "${key}" cancelled by the caller`));
      if (opts.deadline !== undefined) {
        timer = this.opts.clock.setTimeout(() => {
          stop(new DeadlineExceededError(active === undefined ? `deadline exceeded waiting for "${key}" to answer` : `deadline exceeded while "${key}" streamed its answer (the deadline bounds the whole stream)`));
        }, Deadline.remainingMs(opts.deadline, this.opts.clock));
      }
      listen(opts.signal, onAbort);
      dispatch.reply.then((r) => {
        if (r.ok && r.stream !== undefined) { active = r.stream; r.stream.onEnd(cleanup); } else cleanup();
        resolve(r);
      }, (e: unknown) => { cleanup(); reject(e); });
    });
  }

  private waitForSlot(key: string, opts: RouteOptions, exclude?: Set<string>, version?: string): Promise<void> {
    if (this.closed) return Promise.reject(new NoReplicaError(`router closed; cannot call "${key}"`));
    const set = this.sets.get(key);
    const queue = this.waiters.get(key) ?? [];
    const hasReplicas = set !== undefined && set.replicas.length > 0;
    if (hasReplicas && queue.length >= set.maxQueuedRequests) {
      throw new QueueFullError(
        `queue full: queued=${queue.length}, maxQueuedRequests=${set.maxQueuedRequests} for deployment "${key}" (${set.replicas.length} replicas, each at maxOngoingRequests=${set.maxOngoingRequests})`,
        { queued: queue.length, limit: set.maxQueuedRequests, deployment: key, retryAfterMs: 1000 },
      );
    }
    this.waiters.set(key, queue);
    return new Promise<void>((resolve, reject) => {
      const timers: TimerHandle[] = [];
      const done = (): void => {
        for (const t of timers) this.opts.clock.clearTimeout(t);
        unlisten(opts.signal, onAbort);
        const q = this.waiters.get(key);
        const i = q?.indexOf(waiter) ?? -1;
        if (i >= 0) q!.splice(i, 1);
      };
      let noReplicaTimer: TimerHandle | undefined;
      const waiter: Waiter = {
        exclude,
        version,
        wake: () => { done(); resolve(); },
        fail: (err) => { done(); reject(err); },
        armNoReplicaTimer: () => {
          if (noReplicaTimer !== undefined) return;
          noReplicaTimer = this.opts.clock.setTimeout(() => waiter.fail(new NoReplicaError(`no running replica of "${key}" within ${this.opts.noReplicaTimeoutMs} ms`)), this.opts.noReplicaTimeoutMs);
          timers.push(noReplicaTimer);
        },
      };
      const onAbort = (): void => waiter.fail(new CancelledError(`call to "${key}" cancelled while queued`));
      listen(opts.signal, onAbort);
      if (opts.deadline !== undefined) {
        timers.push(this.opts.clock.setTimeout(() => waiter.fail(new DeadlineExceededError(`deadline exceeded while queued for "${key}"`)), Deadline.remainingMs(opts.deadline, this.opts.clock)));
      }
      queue.push(waiter);
      if (!hasReplicas) { waiter.armNoReplicaTimer(); this.opts.onNoReplica(key); }
    });
  }

  /** Hands freed slots to waiters in arrival order. */
  private wake(key: string): void {
    const queue = this.waiters.get(key);
    if (queue === undefined || queue.length === 0) return;
    const set = this.sets.get(key);
    if (set === undefined) return;
    // Waiters that queued for room would wait forever once no replica is left: bound their wait like any other.
    if (set.replicas.length === 0) { for (const w of queue) w.armNoReplicaTimer(); return; }
    // Each woken waiter re-runs choose(); wake no more than there is room for, and only waiters that may use it
    // (a retry avoids the replicas that refused it), in arrival order.
    const room = new Map<string, number>();
    for (const r of set.replicas) { const n = set.maxOngoingRequests - r.inflight; if (n > 0) room.set(r.replicaId, n); }
    // While versions are split, a waiter may take only a replica of its version (or of a live one).
    const split = this.traffic.has(key);
    const versionOf = split ? new Map(set.replicas.map((r) => [r.replicaId, r.version ?? ''])) : undefined;
    const live = split ? new Set(set.candidates().map((r) => r.replicaId)) : undefined;
    const fits = (w: Waiter, id: string): boolean => !split || (w.version === undefined ? live!.has(id) : versionOf!.get(id) === w.version);
    // A retry that avoids every replica still listed would wait for nothing: it may try them again.
    // (The set is the request's own, so its next choose() sees it emptied too.)
    for (const w of queue) if (w.exclude !== undefined && w.exclude.size > 0 && set.replicas.every((r) => w.exclude!.has(r.replicaId))) w.exclude.clear();
    let i = 0;
    while (room.size > 0 && i < queue.length) {
      const w = queue[i]!;
      let slot: string | undefined;
      for (const id of room.keys()) if ((w.exclude === undefined || !w.exclude.has(id)) && fits(w, id)) { slot = id; break; }
      if (slot === undefined) { i++; continue; }
      const left = room.get(slot)! - 1;
      if (left === 0) room.delete(slot); else room.set(slot, left);
      w.wake(); // leaves the queue
    }
  }
}

/** A copy of an answer to compare later; one that cannot be cloned (a function, a class instance) is kept as is. */
function cloneAnswer(v: unknown): unknown {
  try { return structuredClone(v); } catch { return v; }
}

/** A request pinned to a version that no longer has a replica here goes to any live one instead. */
function unpinGone(set: ReplicaSet | undefined, a: Attempt): void {
  if (set === undefined || set.versionCount(a.version!) === 0) a.version = undefined;
}

/** Variant 0 is 'A' (the control), 1 'B', and so on. */
export function variantName(index: number): string {
  return index < 26 ? String.fromCharCode(65 + index) : `V${index}`;
}

/** Calls `fn` once when `signal` aborts: through the lazy controller's one listener, or an abort event. */
function listen(signal: AbortSignal | LazyAbortController | undefined, fn: () => void): void {
  if (signal === undefined) return;
  if (signal instanceof LazyAbortController) signal.listen(fn);
  else signal.addEventListener('abort', fn, { once: true });
}

function unlisten(signal: AbortSignal | LazyAbortController | undefined, fn: () => void): void {
  if (signal === undefined) return;
  if (signal instanceof LazyAbortController) signal.listen(undefined);
  else signal.removeEventListener('abort', fn);
}

/** Adds the stream window to a request that takes a streamed answer. */
function withWindow<M extends Omit<CallMessage, 'id'> | Omit<HttpMessage, 'id'>>(m: M, s: WireStreamWindow | undefined): M {
  if (s !== undefined) m.s = s;
  return m;
}

/** A call whose caller skips caches (CallOptions.cache 'bypass') carries `nc`, for the replica's semantic cache. */
function noCache(m: Omit<CallMessage, 'id'>, nc: boolean): Omit<CallMessage, 'id'> {
  if (nc) m.nc = true;
  return m;
}

/** Reports a stream's start (its first chunk, `firstChunkMs` after the router took it) and, later, its end. */
function observeStream(observer: RouterStreamObserver, key: string, firstChunkMs: number, stream: ChunkStream): void {
  observer.started(key, firstChunkMs);
  stream.onEnd((reason, _err, chunks) => observer.ended(key, reason, chunks));
}

/** A reply's value, or its error rebuilt into its class. */
function unwrap(reply: ReplyMessage): unknown {
  if (reply.ok) return reply.value;
  throw rebuildError(reply.error);
}
