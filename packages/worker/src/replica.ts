/**
 * One replica actor: a user instance plus its lifecycle and its concurrency limit. At most maxOngoingRequests
 * run at once; more wait here in arrival order (other routers may not see this router's load). User exceptions
 * become typed errors for the caller; they never crash the worker. Batched methods (fields declared with
 * `batch(...)`) take their run-time options from userConfig.batch and are closed when the replica stops.
 */
import {
  CancelledError, DeadlineExceededError, streamFieldNames, STREAM_OWNER, type OpenedStream, IllegalStateError, LIFECYCLE_HOOKS, ReplicaUnavailableError, markNotRun, NotFoundError, QueueFullError, ShoalError, ShoalRequest,
  UserCodeError, LatencyHistogram, contextStorage, isStreamResult, clearLoadProgress, describeThrown, loadProgressOf, realClock, toWireResponse, abortableOf, type Abortable, type BatchObserver, type CompiledDeploymentOptions, type Logger, type WireHttpRequest,
  type WireHttpResponse, SpanKinds, startSpan, tracingActive, type ShoalSpan, type TraceContext,
} from '@shoal/core';
import type { ModelSet, ReplicaState, ReplicaStats } from '@shoal/protocol';
import { ModelCache } from './model-cache.ts';
import { ReplicaBatching } from './replica-batching.ts';
import type { SemanticMethods } from '@shoal/cache';
import { ReplicaStream } from './stream-replica.ts';

const TRANSITIONS: Record<ReplicaState, readonly ReplicaState[]> = {
  STARTING: ['RUNNING', 'FAILED', 'STOPPED'],
  RUNNING: ['DRAINING', 'FAILED', 'STOPPED'],
  DRAINING: ['STOPPED', 'FAILED'],
  STOPPED: [],
  FAILED: ['STOPPED'],
};

export interface ReplicaInstance {
  init?(): unknown;
  reconfigure?(userConfig: unknown): unknown;
  checkHealth?(): unknown;
  shutdown?(): unknown;
  [method: string]: unknown;
}

export interface ReplicaInit {
  replicaId: string;
  app: string;
  deployment: string;
  options: CompiledDeploymentOptions;
  logger: Logger;
  /** Device indices the head placed this replica on; user code reads them as requestContext().devices. */
  devices?: readonly number[];
  onState?: (state: ReplicaState, error?: string) => void;
  /** Where its per-request times go (the worker's metrics). @default none */
  observer?: ReplicaObserver;
  /** The semantic cache of this replica's deployment version on this worker (options.semanticCache). @default none */
  semanticCache?: SemanticMethods;
}

/** Receives a replica's per-request times, in monotonic ms, for metrics. Called on the data path: keep it cheap. */
export interface ReplicaObserver {
  /** A request waited `waitMs` here for a slot (0: one was free at once). */
  queueWaited(waitMs: number): void;
  /** User code took `computeMs` for an unbatched request (a batched method's queue reports its batch runs instead). */
  computed(computeMs: number): void;
  /** The observer of a batched method's queue. */
  batch(method: string): BatchObserver;
  /** A multiplexed replica's model load took `loadMs` (`ok`: it loaded). */
  modelLoaded(loadMs: number, ok: boolean): void;
}

interface Waiting {
  run: () => void;
  reject: (err: Error) => void;
  signal: AbortSignal;
  onAbort: () => void;
}

/** A request's context: its signal is the caller's Abortable's, made only if user code asks for it. */
class CallContext {
  constructor(
    private readonly abort: Abortable,
    readonly deadline: number | undefined,
    readonly priority: number | undefined,
    readonly app: string,
    readonly deployment: string,
    readonly replicaId: string,
    readonly devices: readonly number[] | undefined,
    readonly modelId: string | undefined,
    readonly models: ModelCache | undefined,
    readonly requestId: string | undefined,
    /** The caller's context; once the compute span starts (tracing on), that span's. */
    public trace: TraceContext | undefined,
  ) {}

  /** The compute span, while tracing records. */
  span: ShoalSpan | undefined = undefined;
  /** The caller asked to skip caches (handle `cache: 'bypass'`): the semantic cache reads it. */
  cacheBypass: true | undefined = undefined;

  get signal(): AbortSignal { return this.abort.signal; }

  /** Handle streams user code opened under this request and that are still open (made at the first). */
  private opened: Set<OpenedStream> | undefined = undefined;

  [STREAM_OWNER](stream: OpenedStream): () => void {
    (this.opened ??= new Set()).add(stream);
    return () => { this.opened?.delete(stream); };
  }

  /** The request ended (its slot is given back): streams it opened and left open are ended at their replicas. */
  closeOpenedStreams(): void {
    const opened = this.opened;
    if (opened === undefined || opened.size === 0) return;
    this.opened = undefined;
    for (const s of opened) {
      try { void Promise.resolve(s.return()).catch(() => undefined); } catch { /* ending a stream never fails the request */ }
    }
  }
}

/**
 * The replica's spans of one request: `queue` from its arrival to its slot (zero long when one was free), then
 * `compute` (user code) as the caller's child; user code's handle calls become children of `compute`.
 */
function startReplicaSpans(ctx: CallContext, method: string, arrived: number, started: number): void {
  if (ctx.trace?.sampled !== true) return; // nothing is recorded under an unsampled parent: keep passing it on
  // The span's name says deployment and method; the resource says which worker; the replica and request are here.
  startSpan(`queue ${ctx.deployment}`, ctx.trace, SpanKinds.INTERNAL, undefined, arrived).end(undefined, started);
  const compute = startSpan(`compute ${ctx.deployment}.${method}`, ctx.trace, SpanKinds.SERVER, ctx.requestId === undefined ? { 'shoal.app': ctx.app, 'shoal.replica': ctx.replicaId } : { 'shoal.app': ctx.app, 'shoal.replica': ctx.replicaId, 'shoal.request_id': ctx.requestId }, started);
  ctx.span = compute;
  ctx.trace = compute.context;
}

const NEVER_ABORTED = new AbortController().signal;
/** Lifecycle hooks (loadModel and unloadModel among them): the replica host calls them; callers cannot. */
const HOOKS: ReadonlySet<string> = new Set(LIFECYCLE_HOOKS);

/** How many requests may wait inside one replica beyond maxOngoingRequests before it refuses. */
const LOCAL_QUEUE_FACTOR = 4;

export class Replica {
  readonly replicaId: string;
  readonly app: string;
  readonly deployment: string;
  private stateValue: ReplicaState = 'STARTING';
  private instance: ReplicaInstance | undefined;
  private ongoing = 0;
  /** Busy time: ms with at least one request holding a slot, closed periods plus when the open one began. */
  private busyClosedMs = 0;
  private busySince = 0;
  /** Answers since start: requests, errors and latency, for the head to judge a version by (heartbeat `o`). */
  readonly outcomes = new LatencyHistogram();
  private readonly waiting: Waiting[] = [];
  /** Streamed answers still running (each holds its slot); a drain that times out stops them. */
  private readonly openStreams = new Set<ReplicaStream>();
  private idleWaiters: Array<() => void> = [];
  private options: CompiledDeploymentOptions;
  private readonly logger: Logger;
  private readonly onState: ((state: ReplicaState, error?: string) => void) | undefined;
  private readonly observer: ReplicaObserver | undefined;
  private readonly semanticCache: SemanticMethods | undefined;
  /** The methods the semantic cache wraps, by name; undefined without one (then calls pay one optional chain). */
  private cachedMethods: Map<string, (...args: unknown[]) => unknown> | undefined;
  private httpMethod: string | undefined;
  private batching: ReplicaBatching | undefined;
  /** The models a multiplexed deployment holds (options.multiplex). */
  private models: ModelCache | undefined;
  /** The build in progress (start()), and whether drain() asked for the replica to stop meanwhile. */
  private starting: Promise<void> | undefined;
  private stopRequested = false;
  readonly devices: readonly number[] | undefined;

  constructor(init: ReplicaInit) {
    this.replicaId = init.replicaId;
    this.app = init.app;
    this.deployment = init.deployment;
    this.options = init.options;
    this.logger = init.logger;
    this.onState = init.onState;
    this.observer = init.observer;
    this.semanticCache = init.semanticCache;
    this.devices = init.devices;
  }

  get state(): ReplicaState { return this.stateValue; }
  /** Running plus waiting requests: the queue length reported to routers. */
  get load(): number { return this.ongoing + this.waiting.length; }
  get ongoingCount(): number { return this.ongoing; }
  /** Cumulative ms during which at least one request was in user code (heartbeat `b`, for cost and idle share). */
  get busyMs(): number { return this.ongoing > 0 ? this.busyClosedMs + performance.now() - this.busySince : this.busyClosedMs; }
  get gracefulShutdownTimeoutMs(): number { return this.options.gracefulShutdownTimeoutMs; }
  get queuedCount(): number { return this.waiting.length; }
  /** The latest model load progress user code reported, [bytesLoaded, bytesTotal], while STARTING. */
  get loadProgress(): readonly [number, number] | undefined { return this.stateValue === 'STARTING' ? loadProgressOf(this.replicaId) : undefined; }
  /** The models held, for routers (heartbeats, and replies to requests naming a model); undefined unless multiplexed. */
  get modelSet(): ModelSet | undefined { return this.models?.modelSet(); }
  /** The deployment's streamIdleTimeoutMs, when set: the worker bounds how long a stream waits for credit. */
  get streamIdleTimeoutMs(): number | undefined { return this.options.streamIdleTimeoutMs; }
  /** The instance's own fields that stream (continuous methods, async generator functions), once it is built. */
  streamFields: readonly string[] = [];

  transition(to: ReplicaState, error?: string): void {
    const from = this.stateValue;
    if (from === to) return;
    if (!TRANSITIONS[from].includes(to)) throw new IllegalStateError(`replica ${this.replicaId} cannot go from ${from} to ${to}`);
    this.stateValue = to;
    // Load progress (reportLoadProgress) is shown while STARTING only.
    if (from === 'STARTING') clearLoadProgress(this.replicaId);
    this.logger.info('replica state', { replica: this.replicaId, from, to, ...(error ? { error } : {}) });
    this.onState?.(to, error);
  }

  /** Builds the user instance (construct, init, reconfigure) and moves to RUNNING, or FAILED with the reason. */
  start(build: () => ReplicaInstance | Promise<ReplicaInstance>): Promise<void> {
    this.starting = this.build(build);
    return this.starting;
  }

  private async build(build: () => ReplicaInstance | Promise<ReplicaInstance>): Promise<void> {
    try {
      // Construction and init() see the replica's identity and devices through requestContext(); nothing aborts it.
      const ctx = { signal: NEVER_ABORTED, deadline: undefined, app: this.app, deployment: this.deployment, replicaId: this.replicaId, devices: this.devices };
      const instance = await contextStorage.run(ctx, build);
      if (typeof instance.init === 'function') await contextStorage.run(ctx, () => instance.init!());
      const batching = new ReplicaBatching(instance, this.deployment, this.observer === undefined ? undefined : (method) => this.observer!.batch(method));
      batching.apply(this.options.userConfig);
      // The embed method may be a field the constructor set (a batched one), so it is looked for on the instance.
      const cachedMethods = this.semanticCache?.wrap(instance, callableNames(instance));
      if (typeof instance.reconfigure === 'function' && this.options.userConfig !== undefined) await instance.reconfigure(this.options.userConfig);
      // Readiness: a replica reports RUNNING (and takes traffic) only once its health check has passed once.
      try {
        await this.runHealthCheck(instance, this.options.healthCheckTimeoutMs);
      } catch (err) {
        throw new Error(`its readiness check (checkHealth) failed: ${describeThrown(err)}`);
      }
      this.instance = instance;
      this.streamFields = streamFieldNames(instance);
      this.batching = batching;
      this.cachedMethods = cachedMethods;
      if (this.options.multiplex !== undefined) this.models = this.modelCacheFor(instance, this.options.multiplex.maxModelsPerReplica);
      this.httpMethod = typeof instance.fetch === 'function' ? 'fetch' : typeof instance.call === 'function' ? 'call' : undefined;
      if (this.stopRequested || this.stateValue !== 'STARTING') {
        // drain() came while it was being built: shut the finished instance down instead of running it.
        await this.batching.close(0, markNotRun(new ReplicaUnavailableError(`replica ${this.replicaId} of "${this.deployment}" stopped while starting`)));
        try { if (typeof instance.shutdown === 'function') await instance.shutdown(); } catch (err) { this.logger.warn('shutdown hook threw', { replica: this.replicaId, error: describeThrown(err) }); }
        if (this.stateValue === 'STARTING') this.transition('STOPPED');
        throw new CancelledError(`replica ${this.replicaId} of "${this.deployment}" was stopped while starting`);
      }
      this.transition('RUNNING');
    } catch (err) {
      // Stopped meanwhile (drain() gave up waiting, or the stop path above): it is STOPPED, not a failed start.
      if (this.stateValue !== 'STARTING') throw err instanceof CancelledError ? err : new CancelledError(`replica ${this.replicaId} of "${this.deployment}" was stopped while starting`);
      this.transition('FAILED', describeThrown(err));
      throw UserCodeError.from(err, { deployment: this.deployment, prefix: `replica ${this.replicaId} of "${this.deployment}" failed to start: ` });
    }
  }

  /**
   * Applies a new userConfig without a restart: first its `batch` key to the batched methods (an invalid one
   * throws InvalidOptionError and changes nothing), then the user's reconfigure hook with the whole userConfig.
   */
  async reconfigure(userConfig: unknown): Promise<void> {
    this.batching?.apply(userConfig);
    this.options = { ...this.options, userConfig };
    if (this.instance !== undefined && typeof this.instance.reconfigure === 'function') await this.instance.reconfigure(userConfig);
  }

  /** Moves to another semantic cache (a reconfigure changed the userConfig its answers depend on). */
  useSemanticCache(cache: SemanticMethods): void {
    if (this.instance !== undefined) this.cachedMethods = cache.wrap(this.instance, callableNames(this.instance));
  }

  /** The model cache over the instance's loadModel and unloadModel; they run in the replica's context, not a request's. */
  private modelCacheFor(instance: ReplicaInstance, maxModels: number): ModelCache {
    const loadModel = instance.loadModel;
    const unloadModel = instance.unloadModel;
    if (typeof loadModel !== 'function') throw new IllegalStateError(`deployment "${this.deployment}" is multiplexed, but its instance has no loadModel(modelId) method`);
    return new ModelCache({
      load: (modelId) => (loadModel as (id: string) => unknown).call(instance, modelId),
      ...(typeof unloadModel === 'function' ? { unload: (modelId: string, model: unknown) => (unloadModel as (id: string, m: unknown) => unknown).call(instance, modelId, model) } : {}),
    }, {
      maxModels, deployment: this.deployment, logger: this.logger,
      ...(this.observer === undefined ? {} : { onLoad: (loadMs: number, ok: boolean) => this.observer!.modelLoaded(loadMs, ok) }),
      run: (modelId, fn) => contextStorage.run({ signal: NEVER_ABORTED, deadline: undefined, app: this.app, deployment: this.deployment, replicaId: this.replicaId, devices: this.devices, modelId }, fn),
    });
  }

  /** Gauges for metrics and tests: running and waiting requests, and each batched method's queue. */
  stats(): ReplicaStats {
    return {
      replicaId: this.replicaId, app: this.app, deployment: this.deployment, state: this.stateValue,
      ongoing: this.ongoing, queued: this.waiting.length, batch: this.batching?.stats() ?? {},
      ...(this.models !== undefined ? { models: this.models.stats() } : {}),
    };
  }

  /** Runs the user's health check with a timeout; throws if it fails or is slow. */
  async checkHealth(timeoutMs: number): Promise<void> {
    if (this.stateValue !== 'RUNNING') throw new IllegalStateError(`replica ${this.replicaId} is ${this.stateValue}, not RUNNING`);
    await this.runHealthCheck(this.instance, timeoutMs);
  }

  private async runHealthCheck(instance: ReplicaInstance | undefined, timeoutMs: number): Promise<void> {
    const fn = instance?.checkHealth;
    if (typeof fn !== 'function') return;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        Promise.resolve(fn.call(instance)),
        new Promise((_, reject) => { timer = setTimeout(() => reject(new DeadlineExceededError(`health check of ${this.replicaId} took over ${timeoutMs} ms`)), timeoutMs); }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Calls a method; `signal` aborts it (dropped if waiting, signalled to user code if running). `priority` (the
   * handle's) reaches requestContext().priority, which batched methods queue by. Written without async/await: a
   * request that finds a free slot runs at once, and a synchronous method answers with one settled promise, so the
   * in-process path costs few promises (each one also pays the context-propagation hook).
   */
  call(method: string, args: unknown[], given: Abortable | AbortSignal, deadline: number | undefined, priority?: number, modelId?: string, requestId?: string, trace?: TraceContext, cacheBypass?: boolean): Promise<unknown> {
    const signal = abortableOf(given);
    const instance = this.instance;
    const fn = this.cachedMethods?.get(method) ?? instance?.[method];
    if (typeof fn !== 'function' || method.startsWith('_') || HOOKS.has(method)) {
      return Promise.reject(new NotFoundError(`deployment "${this.deployment}" has no method "${method}" (it has: ${callableNames(instance).join(', ') || 'none'})`));
    }
    const ctx = new CallContext(signal, deadline, priority, this.app, this.deployment, this.replicaId, this.devices, modelId, this.models, requestId, trace);
    if (cacheBypass === true) ctx.cacheBypass = true;
    const t0 = performance.now();
    const traced = trace !== undefined && tracingActive();
    const observer = this.observer;
    // A batched method's time in user code is its batch's run, which its queue reports.
    const compute = observer !== undefined && this.batching?.has(method) !== true ? observer : undefined;
    if (this.stateValue === 'RUNNING' && !signal.aborted && this.ongoing < this.options.maxOngoingRequests) {
      this.take();
      observer?.queueWaited(0);
      if (traced) startReplicaSpans(ctx, method, t0, t0);
      return this.invoke(ctx, fn as (...a: unknown[]) => unknown, instance!, args, t0, t0, compute);
    }
    return this.acquire(signal).then(() => {
      const started = performance.now();
      observer?.queueWaited(started - t0);
      if (traced) startReplicaSpans(ctx, method, t0, started);
      return this.invoke(ctx, fn as (...a: unknown[]) => unknown, instance!, args, t0, started, compute);
    });
  }

  /**
   * Runs user code in its request context with a slot already taken; the slot is given back when it settles, and
   * the answer is counted in `outcomes` (from `t0`, its arrival here), which is what a canary is judged on, and its
   * time in user code (from `started`, when it got its slot) goes to `compute`.
   */
  private invoke(ctx: CallContext, fn: (...a: unknown[]) => unknown, instance: object, args: unknown[], t0: number, started: number, compute: ReplicaObserver | undefined): Promise<unknown> {
    let result: unknown;
    // Its model stays loaded while it runs: an eviction unloads it once the requests on it are done.
    if (ctx.modelId !== undefined) this.models?.pin(ctx.modelId);
    try {
      result = contextStorage.run(ctx, invoke, fn, instance, args);
    } catch (err) {
      this.release(ctx);
      const t1 = performance.now();
      this.outcomes.record(t1 - t0, true);
      compute?.computed(t1 - started);
      ctx.span?.end(err, t1);
      return Promise.reject(asCallerError(err, this.deployment));
    }
    if (!isThenable(result)) {
      if (isStreamResult(result)) return this.streamAnswer(ctx, result, t0, started, compute);
      this.release(ctx);
      const t1 = performance.now();
      this.outcomes.record(t1 - t0);
      compute?.computed(t1 - started);
      ctx.span?.end(undefined, t1);
      return Promise.resolve(result);
    }
    return Promise.resolve(result).then(
      (value) => { if (isStreamResult(value)) return this.streamAnswer(ctx, value, t0, started, compute); this.release(ctx); const t1 = performance.now(); this.outcomes.record(t1 - t0); compute?.computed(t1 - started); ctx.span?.end(undefined, t1); return value; },
      (err: unknown) => { this.release(ctx); const t1 = performance.now(); this.outcomes.record(t1 - t0, !isCallerFault(err)); compute?.computed(t1 - started); ctx.span?.end(err, t1); throw asCallerError(err, this.deployment); },
    );
  }

  /**
   * A streamed answer (an async iterable): the request keeps its slot until the stream ends, and its outcome and
   * compute time are recorded then. Resolves with the ReplicaStream the worker pumps.
   */
  private streamAnswer(ctx: CallContext, iterable: AsyncIterable<unknown>, t0: number, started: number, compute: ReplicaObserver | undefined): Promise<ReplicaStream> {
    const end = (err: unknown, _cancelled: boolean): void => {
      this.openStreams.delete(stream);
      this.release(ctx);
      const t1 = performance.now();
      this.outcomes.record(t1 - t0, err !== undefined && !isCallerFault(err));
      compute?.computed(t1 - started);
      ctx.span?.end(err, t1);
    };
    let stream: ReplicaStream;
    try {
      stream = ReplicaStream.of(iterable, ctx, end, (err) => asCallerError(err, this.deployment));
    } catch (err) {
      this.release(ctx);
      const t1 = performance.now();
      this.outcomes.record(t1 - t0, true);
      ctx.span?.end(err, t1);
      return Promise.reject(asCallerError(err, this.deployment));
    }
    this.openStreams.add(stream);
    return Promise.resolve(stream);
  }

  /** An HTTP request to fetch() (or call()); a fetch() that streams resolves with its ReplicaStream. */
  http(req: WireHttpRequest, signal: Abortable | AbortSignal, deadline: number | undefined, priority?: number, modelId?: string, requestId?: string, trace?: TraceContext): Promise<WireHttpResponse | ReplicaStream> {
    if (this.httpMethod === undefined) return Promise.reject(new NotFoundError(`deployment "${this.deployment}" takes no HTTP requests: define fetch(request)`));
    return this.call(this.httpMethod, [new ShoalRequest(req)], signal, deadline, priority, modelId, requestId, trace).then((value) => {
      if (ReplicaStream.is(value)) return value;
      const res = toWireResponse(value);
      if (res.status >= 500) this.outcomes.markError();
      return res;
    });
  }

  /**
   * Stops taking requests, waits up to timeoutMs for ongoing ones (batched calls included), rejects what still
   * waits, closes the batch queues, then calls shutdown() and stops.
   */
  async drain(timeoutMs: number): Promise<void> {
    if (this.stateValue === 'STOPPED') return;
    if (this.stateValue === 'STARTING') {
      // Stopped while still being built: let the build finish (up to the timeout), so its shutdown() frees what
      // it holds (weights, device memory), instead of leaving a half-made instance nobody will ever stop.
      this.stopRequested = true;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.starting?.catch(() => undefined), new Promise<void>((resolve) => { timer = setTimeout(resolve, timeoutMs); })]);
      clearTimeout(timer);
      if (this.stateValue === 'STARTING') { this.transition('STOPPED'); return; }
      if (this.stateValue === 'STOPPED' || this.stateValue === 'FAILED') { if (this.stateValue === 'FAILED') this.transition('STOPPED'); return; }
    }
    if (this.stateValue === 'RUNNING') this.transition('DRAINING');
    // A duration, so monotonic time: a wall-clock step must not cut the drain short or stretch it.
    const end = realClock.monoNow() + timeoutMs;
    if (this.load > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((resolve) => this.idleWaiters.push(resolve)),
        new Promise<void>((resolve) => { timer = setTimeout(resolve, timeoutMs); }),
      ]);
      clearTimeout(timer);
    }
    // Streams still running past the timeout are stopped like cancelled ones (their generators' finally blocks run).
    for (const st of [...this.openStreams]) st.stop(new ReplicaUnavailableError(`replica ${this.replicaId} of "${this.deployment}" stopped while the stream ran`));
    // What still waits never ran: hand it back to its router (a not-run refusal it retries elsewhere), not a 499.
    for (const w of this.waiting.splice(0)) { w.signal.removeEventListener('abort', w.onAbort); w.reject(markNotRun(new ReplicaUnavailableError(`replica ${this.replicaId} of "${this.deployment}" stopped before the request ran`))); }
    await this.batching?.close(end - realClock.monoNow(), markNotRun(new ReplicaUnavailableError(`replica ${this.replicaId} of "${this.deployment}" stopped before the request was batched`)));
    // Models go before shutdown(), which may free what loadModel relied on (a memory pool, a runtime).
    await this.models?.close();
    try {
      if (typeof this.instance?.shutdown === 'function') await this.instance.shutdown();
    } catch (err) {
      this.logger.warn('shutdown hook threw', { replica: this.replicaId, error: describeThrown(err) });
    }
    this.transition('STOPPED');
  }

  private acquire(abort: Abortable): Promise<void> {
    if (this.stateValue !== 'RUNNING') {
      return Promise.reject(markNotRun(new ReplicaUnavailableError(`replica ${this.replicaId} of "${this.deployment}" is ${this.stateValue}`)));
    }
    if (abort.aborted) return Promise.reject(abortReason(abort, this.deployment));
    if (this.ongoing < this.options.maxOngoingRequests) { this.take(); return Promise.resolve(); }
    // Only a request that has to wait listens for its abort (and so makes its signal).
    const signal = abort.signal;
    const limit = this.options.maxOngoingRequests * LOCAL_QUEUE_FACTOR;
    if (this.waiting.length >= limit) {
      return Promise.reject(markNotRun(new QueueFullError(`replica queue full: queued=${this.waiting.length}, limit=${limit} for deployment "${this.deployment}"`, { queued: this.waiting.length, limit, deployment: this.deployment, retryAfterMs: 1000 })));
    }
    return new Promise<void>((resolve, reject) => {
      const entry: Waiting = {
        run: () => { signal.removeEventListener('abort', entry.onAbort); this.take(); resolve(); },
        reject,
        signal,
        onAbort: () => {
          const i = this.waiting.indexOf(entry);
          if (i >= 0) this.waiting.splice(i, 1);
          reject(abortReason(signal, this.deployment));
          this.maybeIdle();
        },
      };
      signal.addEventListener('abort', entry.onAbort, { once: true });
      this.waiting.push(entry);
    });
  }

  private release(ctx?: CallContext): void {
    if (ctx !== undefined) {
      ctx.closeOpenedStreams();
      if (ctx.modelId !== undefined) this.models?.unpin(ctx.modelId);
    }
    // The clock is read only where the replica turns busy or idle, not per request.
    if (--this.ongoing === 0) this.busyClosedMs += performance.now() - this.busySince;
    const next = this.waiting.shift();
    if (next !== undefined) next.run();
    else this.maybeIdle();
  }

  /** Takes a slot; the first one taken opens a busy period. */
  private take(): void {
    if (this.ongoing++ === 0) this.busySince = performance.now();
  }

  private maybeIdle(): void {
    if (this.load === 0 && this.idleWaiters.length > 0) {
      const ws = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of ws) w();
    }
  }
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return (typeof v === 'object' || typeof v === 'function') && v !== null && typeof (v as { then?: unknown }).then === 'function';
}

/** A free function, so that contextStorage.run(ctx, invoke, ...) makes no closure per call. */
function invoke(fn: (...a: unknown[]) => unknown, instance: unknown, args: unknown[]): unknown {
  return fn.apply(instance, args);
}

function abortReason(signal: { readonly reason: unknown }, deployment: string): Error {
  const r: unknown = signal.reason;
  if (r instanceof ShoalError) return r;
  return new CancelledError(`request to "${deployment}" was cancelled`);
}

/** Errors from user code keep the user's message; shoal's own errors pass through unchanged. */
/** An error that is the caller's doing, not the version's (a 4xx, a cancellation): not counted as an error. */
function isCallerFault(err: unknown): boolean {
  return err instanceof ShoalError && err.httpStatus < 500;
}

function asCallerError(err: unknown, deployment: string): Error {
  if (err instanceof ShoalError) return err;
  return UserCodeError.from(err, { deployment });
}

/** Methods a caller may reach: prototype methods and function-valued own fields (batched methods), minus hooks. */
export function callableNames(instance: object | undefined): string[] {
  const names = new Set<string>();
  let o: object | null = instance ?? null;
  while (o !== null && o !== Object.prototype) {
    for (const k of Object.getOwnPropertyNames(o)) {
      if (k.startsWith('_') || HOOKS.has(k)) continue;
      if (typeof Object.getOwnPropertyDescriptor(o, k)?.value === 'function') names.add(k);
    }
    o = Object.getPrototypeOf(o) as object | null;
  }
  return [...names].sort();
}
