/**
 * One replica's dynamic batcher: callers submit single items and get single results; the queue forms batches
 * (by size, preferred size or wait), runs at most maxConcurrentBatches of them at once through the batch
 * function, and fans the results back out. Items only share a batch with items of the same shape key (or padded
 * bucket). Cancellation, deadlines and queue timeouts remove items from the queue at once, and every gauge is
 * kept in try/finally so none of them can drift.
 */
import {
  BatchSizeMismatchError, CancelledError, DeadlineExceededError, IllegalStateError, InvalidOptionError, QueueFullError,
  ShapeMismatchError, describe,
} from '../errors.ts';
import { AdaptiveBatchController, type AdaptiveSnapshot, type EffectiveBatchLimits } from './adaptive.ts';
import { Deadline, realClock, type Clock, type TimerHandle } from '../clock.ts';
import { ItemError } from './item-error.ts';
import { contextStorage, type TraceContext } from '../context.ts';
import { SpanKinds, startSpan, tracingActive } from '../tracing.ts';
import { compileBatchOptions, mergeBatchOptions, type BatchOptions, type CompiledBatchOptions } from './options.ts';
import { PendingQueue, type GroupView, type QueueNode } from './pending-queue.ts';

export interface SubmitOptions {
  /** Priority level in [0, priorityLevels - 1]; higher is dequeued first. @default options.defaultPriority */
  priority?: number;
  /**
   * Absolute wall time (the queue clock's wallNow(): Date.now() ms with realClock) after which the caller gets
   * DeadlineExceededError, whether queued or running; a running item's signal is aborted.
   * @default undefined (none)
   */
  deadlineMs?: number;
  /** This request's queue timeout, overriding options.queueTimeoutMs; options.timeoutAction applies. @default options.queueTimeoutMs */
  queueTimeoutMs?: number;
  /** Aborting it cancels the item: removed at once if queued, its batch signal aborted if running. */
  signal?: AbortSignal;
  /**
   * Dims after the batch dim, e.g. "3x48x320" (see shapeKeyOf). Only items with equal keys (or padded buckets)
   * share a batch. @default options.shapeOf(item), else ''
   */
  shapeKey?: string;
  /** The model this item is for (a multiplexed deployment): items of different models never share a batch. @default none */
  modelId?: string;
}

/** What the batch function learns about the batch besides the items. */
export interface BatchContext {
  readonly batchId: number;
  readonly batchSize: number;
  /** Per item: aborted when that caller cancels or its deadline passes while the batch runs. */
  readonly signals: readonly AbortSignal[];
  /** Aborted when every item of the batch has been abandoned, so the work may stop early. */
  readonly signal: AbortSignal;
  /** The batch's shape key: the bucket key when padding, else the items' common shape key. */
  readonly shapeKey: string;
  /** Each item's own shape key (they differ only when padding). */
  readonly shapeKeys: readonly string[];
  /** The one model every item of the batch is for (SubmitOptions.modelId), or undefined when they name none. */
  readonly modelId: string | undefined;
}

/**
 * Runs one batch. Must return one result per item, in order; an {@link ItemError} at an index fails only that
 * item. A throw or rejection fails every item of the batch with that error.
 */
export type BatchFunction<I, O> = (items: I[], ctx: BatchContext) => Promise<Array<O | ItemError>> | Array<O | ItemError>;

export type BatchQueueState = 'open' | 'closing' | 'closed';

/**
 * Why a batch left the queue: `full` (it reached maxBatchSize), `preferred` (it reached one of
 * preferredBatchSizes), `timeout` (its oldest item waited maxWaitMs), `adaptive` (the adaptive controller's
 * smaller size or shorter wait released it before the options' own would have), `idle` (it came to an idle
 * queue, so it went at once), `step` (one step of a continuous batcher, see continuous.ts). A queue that closes
 * releases no batch: it rejects what is queued.
 */
export type BatchReleaseReason = 'full' | 'preferred' | 'timeout' | 'adaptive' | 'idle' | 'step';

/**
 * Receives a queue's measurements, for metrics. Called on the data path: every method must be cheap and must not
 * throw. Times are monotonic milliseconds.
 */
export interface BatchObserver {
  /** A batch of `size` items was dispatched, for `reason`. */
  released(size: number, reason: BatchReleaseReason): void;
  /** One item of a dispatched batch waited `waitMs` in the queue, from its submit to its batch's dispatch. */
  waited(waitMs: number): void;
  /** The batch function ran `runMs` for a batch of `size` items (answered or threw). */
  ran(runMs: number, size: number): void;
}

/** Gauges and counters of one queue. Every gauge returns to 0 when the queue is idle, whatever was cancelled. */
export interface BatchQueueStats {
  readonly state: BatchQueueState;
  /** Items waiting in the queue. */
  readonly queued: number;
  /** Queued items per priority level (index = priority). */
  readonly queuedByPriority: readonly number[];
  /** Items in running batches (one whose caller cancelled stays counted until its batch returns). */
  readonly running: number;
  readonly runningBatches: number;
  /** Callers still waiting for an answer, queued or running: what a maxOngoingRequests bound counts. */
  readonly inFlight: number;
  /** Dispatched batches per batch size. */
  readonly batchSizeCounts: Readonly<Record<number, number>>;
  readonly totals: {
    readonly submitted: number;
    readonly succeeded: number;
    readonly failed: number;
    readonly cancelled: number;
    readonly deadlineExceeded: number;
    readonly queueTimedOut: number;
    readonly delayed: number;
    readonly rejectedQueueFull: number;
  };
  /** Limits in force: the options' own, or the adaptive controller's. */
  readonly effective: EffectiveBatchLimits;
  readonly adaptive: AdaptiveSnapshot | undefined;
}

type EntryState = 'queued' | 'running' | 'settled';
type Outcome = 'succeeded' | 'failed' | 'cancelled' | 'deadlineExceeded' | 'queueTimedOut';

interface Entry<I, O> {
  readonly item: I;
  readonly shapeKey: string;
  readonly modelId: string | undefined;
  /** The priority asked for; the level used is capped by the current priorityLevels. */
  readonly priority: number;
  /** Monotonic arrival time (clock.monoNow()): every wait and latency is measured from it. */
  readonly enqueuedAt: number;
  /** Absolute wall-time deadline (clock.wallNow()). */
  readonly deadlineMs: Deadline | undefined;
  /** How far the deadline was from the arrival, for error messages. */
  readonly deadlineBudgetMs: number;
  /** The submit's own queue timeout; undefined follows the options. */
  readonly queueTimeoutMs: number | undefined;
  readonly signal: AbortSignal | undefined;
  readonly resolve: (value: O) => void;
  readonly reject: (err: unknown) => void;
  state: EntryState;
  node: QueueNode<Entry<I, O>> | undefined;
  timeoutTimer: TimerHandle | undefined;
  deadlineTimer: TimerHandle | undefined;
  onAbort: (() => void) | undefined;
  /** Set while running: the signal the batch function sees for this item. */
  run: AbortController | undefined;
  /** While tracing records: the submitting request's span context, and when it was queued (performance.now()). */
  trace: TraceContext | undefined;
  tracedAt: number;
}

export class BatchQueue<I, O> {
  private options: CompiledBatchOptions<I>;
  private adaptive: AdaptiveBatchController | undefined;
  private pending: PendingQueue<Entry<I, O>>;
  private lifecycle: BatchQueueState = 'open';
  private runningBatches = 0;
  private runningItems = 0;
  private unsettled = 0;
  /** Mean service time of recent batches, for the Retry-After estimate of a full queue. */
  private serviceEwmaMs: number | undefined;
  private nextBatchId = 1;
  private pumpScheduled = false;
  /**
   * Set when an item arrives at an idle queue (nothing queued, no batch running): the next pump dispatches what is
   * queued at once instead of waiting maxWaitMs for companions that are not coming.
   */
  private idleArrival = false;
  private waitTimer: TimerHandle | undefined;
  private waitTimerAt = Infinity;
  private readonly sizeCounts = new Map<number, number>();
  private readonly totals = {
    submitted: 0, succeeded: 0, failed: 0, cancelled: 0, deadlineExceeded: 0, queueTimedOut: 0, delayed: 0, rejectedQueueFull: 0,
  };
  private readonly idleWaiters: Array<() => void> = [];
  private label: string;
  private readonly clock: Clock;
  private observer: BatchObserver | undefined;

  /**
   * @param options raw or compiled batch options (compiled here; throws InvalidOptionError naming `batch.<field>`)
   * @param runBatch the batch function
   * @param env.clock time source: wall time for deadlines, monotonic time for waits and service times; tests pass a
   *   FakeClock. @default realClock
   * @param env.name used in error messages, e.g. the deployment and method name
   */
  constructor(
    options: BatchOptions<I> | CompiledBatchOptions<I> | undefined,
    private readonly runBatch: BatchFunction<I, O>,
    env: { clock?: Clock; name?: string } = {},
  ) {
    this.options = compileBatchOptions(options);
    this.clock = env.clock ?? realClock;
    this.adaptive = this.makeController(undefined);
    this.pending = new PendingQueue(this.options.priorityLevels);
    this.label = env.name === undefined ? '' : ` for ${JSON.stringify(env.name)}`;
  }

  /** Names the queue in error messages (the replica host names it `deployment.method`). */
  rename(name: string): void {
    this.label = ` for ${JSON.stringify(name)}`;
  }

  /** Sends this queue's batch measurements to `observer` (undefined: to nobody). */
  setObserver(observer: BatchObserver | undefined): void {
    this.observer = observer;
  }

  /** The options in force, compiled. */
  get config(): CompiledBatchOptions<I> {
    return this.options;
  }

  get state(): BatchQueueState {
    return this.lifecycle;
  }

  /** The max batch size and wait in force now. */
  get effective(): EffectiveBatchLimits {
    return this.adaptive?.effective() ?? { maxBatchSize: this.options.maxBatchSize, maxWaitMs: this.options.maxWaitMs };
  }

  /**
   * Queues one item and resolves with its result. Never throws: bad arguments, a full queue, a closed queue, a
   * passed deadline or an aborted signal all come back as a rejected promise.
   */
  submit(item: I, opts: SubmitOptions = {}): Promise<O> {
    try {
      return this.enqueue(item, opts);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Changes options at run time: `change` is merged over the options in force (a key set to `undefined` goes back
   * to its default). Queued items are kept, regrouped and reprioritised under the new options, and their queue
   * timeouts re-armed from their arrival; running batches are untouched. A smaller maxQueueSize keeps the items
   * already queued and refuses new ones until below it. The adaptive controller keeps its learned curve.
   * Throws InvalidOptionError, changing nothing, if the result is invalid.
   */
  reconfigure(change: BatchOptions<I>): void {
    const next = mergeBatchOptions(this.options, change);
    const nodes = this.pending.drain();
    this.options = next;
    this.adaptive = this.makeController(this.adaptive);
    this.pending = new PendingQueue(next.priorityLevels);
    for (const node of nodes) {
      const entry = node.value;
      entry.node = undefined;
      let groupKey: string;
      try {
        groupKey = this.groupKeyOf(entry.shapeKey, entry.modelId);
      } catch (err) {
        // The new pad.bucket refuses a shape the old options accepted: only that caller fails.
        this.finish(entry, 'failed', err);
        continue;
      }
      entry.node = this.pending.add(entry, groupKey, this.levelOf(entry.priority), entry.enqueuedAt, node.delayed);
      if (!node.delayed) this.armQueueTimeout(entry);
    }
    this.schedulePump();
  }

  /**
   * Stops accepting items and rejects every queued one (with `reason`, else CancelledError). Running batches
   * finish and deliver their results; the promise resolves when none is left.
   */
  close(reason?: unknown): Promise<void> {
    if (this.lifecycle === 'open') {
      this.lifecycle = 'closing';
      this.clearWaitTimer();
      const nodes = this.pending.drain();
      const err = reason ?? new CancelledError(`batch queue${this.label} closed with ${nodes.length} requests queued`);
      for (const node of nodes) {
        node.value.node = undefined;
        this.finish(node.value, 'cancelled', err);
      }
      this.settleIfIdle();
    }
    if (this.lifecycle === 'closed') return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  stats(): BatchQueueStats {
    return {
      state: this.lifecycle,
      queued: this.pending.size,
      queuedByPriority: this.pending.sizeByLevel().reverse(),
      running: this.runningItems,
      runningBatches: this.runningBatches,
      inFlight: this.unsettled,
      batchSizeCounts: Object.fromEntries([...this.sizeCounts].sort(([a], [b]) => a - b)),
      totals: { ...this.totals },
      effective: this.effective,
      adaptive: this.adaptive?.snapshot(),
    };
  }

  private enqueue(item: I, opts: SubmitOptions): Promise<O> {
    if (this.lifecycle !== 'open') throw new IllegalStateError(`batch queue${this.label} is ${this.lifecycle}; submit refused`);
    const { priority = this.options.defaultPriority, deadlineMs, queueTimeoutMs, signal, modelId } = opts;
    if (!Number.isInteger(priority) || priority < 0 || priority >= this.options.priorityLevels) {
      throw new InvalidOptionError('submit.priority', `must be an integer in [0, ${this.options.priorityLevels - 1}] (higher is served first)`, priority);
    }
    if (deadlineMs !== undefined && (typeof deadlineMs !== 'number' || Number.isNaN(deadlineMs))) throw new InvalidOptionError('submit.deadlineMs', 'must be a number', deadlineMs);
    if (queueTimeoutMs !== undefined && (typeof queueTimeoutMs !== 'number' || !(queueTimeoutMs > 0))) {
      throw new InvalidOptionError('submit.queueTimeoutMs', 'must be a number > 0', queueTimeoutMs);
    }
    if (modelId !== undefined && typeof modelId !== 'string') throw new InvalidOptionError('submit.modelId', 'must be a string', modelId);
    const shapeKey = this.shapeKeyOf(item, opts.shapeKey);
    this.totals.submitted++;
    const now = this.clock.monoNow();
    if (signal?.aborted === true) {
      if (signal.reason instanceof DeadlineExceededError) {
        this.totals.deadlineExceeded++;
        throw signal.reason;
      }
      this.totals.cancelled++;
      throw new CancelledError('request cancelled before it was queued');
    }
    const deadlineBudgetMs = deadlineMs === undefined ? Infinity : deadlineMs - this.clock.wallNow();
    if (deadlineBudgetMs <= 0) {
      this.totals.deadlineExceeded++;
      throw new DeadlineExceededError(`deadline passed before the request was queued (deadline was ${-deadlineBudgetMs}ms ago)`);
    }
    const queued = this.pending.size;
    if (queued >= this.options.maxQueueSize) {
      this.totals.rejectedQueueFull++;
      const retryAfterMs = this.retryAfterEstimateMs();
      throw new QueueFullError(
        `batch queue full${this.label}: queued=${queued}, maxQueueSize=${this.options.maxQueueSize}`,
        retryAfterMs === undefined ? { queued, maxQueueSize: this.options.maxQueueSize } : { queued, maxQueueSize: this.options.maxQueueSize, retryAfterMs },
      );
    }
    const groupKey = this.groupKeyOf(shapeKey, modelId);

    let resolve!: (value: O) => void;
    let reject!: (err: unknown) => void;
    const promise = new Promise<O>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const entry: Entry<I, O> = {
      item, shapeKey, modelId, priority, enqueuedAt: now, deadlineMs: Number.isFinite(deadlineMs) ? deadlineMs : undefined, deadlineBudgetMs, queueTimeoutMs, signal, resolve, reject,
      state: 'queued', node: undefined, timeoutTimer: undefined, deadlineTimer: undefined, onAbort: undefined, run: undefined,
      trace: undefined, tracedAt: 0,
    };
    if (tracingActive()) {
      entry.trace = contextStorage.getStore()?.trace;
      entry.tracedAt = performance.now();
    }
    if (this.pending.size === 0 && this.runningBatches === 0) this.idleArrival = true;
    entry.node = this.pending.add(entry, groupKey, this.levelOf(priority), now);
    this.unsettled++;
    this.armQueueTimeout(entry);
    if (entry.deadlineMs !== undefined) entry.deadlineTimer = this.clock.setTimeout(() => this.onDeadline(entry), Deadline.remainingMs(entry.deadlineMs, this.clock));
    if (signal !== undefined) {
      entry.onAbort = () => this.onAbort(entry);
      signal.addEventListener('abort', entry.onAbort, { once: true });
    }
    this.schedulePump();
    return promise;
  }

  private shapeKeyOf(item: I, given: unknown): string {
    if (given !== undefined) {
      if (typeof given !== 'string') throw new InvalidOptionError('submit.shapeKey', 'must be a string', given);
      return given;
    }
    const shapeOf = this.options.shapeOf;
    if (shapeOf === undefined) return '';
    let key: unknown;
    try {
      key = shapeOf(item);
    } catch (err) {
      throw Object.assign(new ShapeMismatchError(`shapeOf failed${this.label}: ${err instanceof Error ? err.message : String(err)}`), { cause: err });
    }
    if (typeof key !== 'string') throw new ShapeMismatchError(`shapeOf returned ${describe(key)}${this.label}; expected a string shape key`);
    return key;
  }

  /** The key items batch by: the shape (or its padded bucket), within one model. */
  private groupKeyOf(shapeKey: string, modelId: string | undefined): string {
    const bucket = this.bucketOf(shapeKey);
    // NUL cannot occur in a model id (checkModelId refuses control characters), so the two parts never blur.
    return modelId === undefined ? bucket : `${modelId}\u0000${bucket}`;
  }

  private bucketOf(shapeKey: string): string {
    const pad = this.options.pad;
    if (pad === undefined) return shapeKey;
    let bucket: unknown;
    try {
      bucket = pad.bucket(shapeKey);
    } catch (err) {
      throw Object.assign(new ShapeMismatchError(`pad.bucket failed for shape ${JSON.stringify(shapeKey)}: ${err instanceof Error ? err.message : String(err)}`), { cause: err });
    }
    if (typeof bucket !== 'string') throw new ShapeMismatchError(`pad.bucket returned ${describe(bucket)} for shape ${JSON.stringify(shapeKey)}; expected a string bucket key`);
    return bucket;
  }

  /** The PendingQueue level (0 served first) of a priority (higher served first). */
  private levelOf(priority: number): number {
    // After priorityLevels shrinks, an item asked for a level that no longer exists goes to the highest one left.
    const levels = this.options.priorityLevels;
    return levels - 1 - Math.min(priority, levels - 1);
  }

  /** How long until the queue has likely room again: the batches ahead of a new item times their service time. */
  private retryAfterEstimateMs(): number | undefined {
    if (this.serviceEwmaMs === undefined) return undefined;
    const { maxBatchSize } = this.effective;
    const rounds = Math.ceil(Math.max(1, this.pending.size - this.options.maxQueueSize + 1) / maxBatchSize / this.options.maxConcurrentBatches);
    return Math.max(1, Math.ceil(rounds * this.serviceEwmaMs));
  }

  private makeController(previous: AdaptiveBatchController | undefined): AdaptiveBatchController | undefined {
    const objective = this.options.latencyObjective;
    if (objective === undefined) return undefined;
    const limits = { maxBatchSize: this.options.maxBatchSize, maxWaitMs: this.options.maxWaitMs };
    if (previous === undefined) return new AdaptiveBatchController(limits, objective);
    previous.reconfigure(limits, objective);
    return previous;
  }

  private armQueueTimeout(entry: Entry<I, O>): void {
    if (entry.timeoutTimer !== undefined) this.clock.clearTimeout(entry.timeoutTimer);
    entry.timeoutTimer = undefined;
    const timeoutMs = entry.queueTimeoutMs ?? this.options.queueTimeoutMs;
    if (timeoutMs === undefined) return;
    entry.timeoutTimer = this.clock.setTimeout(() => this.onQueueTimeout(entry), entry.enqueuedAt + timeoutMs - this.clock.monoNow());
  }

  private onQueueTimeout(entry: Entry<I, O>): void {
    entry.timeoutTimer = undefined;
    if (entry.state !== 'queued' || entry.node === undefined) return;
    const timeoutMs = entry.queueTimeoutMs ?? this.options.queueTimeoutMs ?? 0;
    if (this.options.timeoutAction === 'DELAY') {
      this.pending.delay(entry.node);
      this.totals.delayed++;
      return;
    }
    this.unqueue(entry);
    const waited = this.clock.monoNow() - entry.enqueuedAt;
    this.finish(entry, 'queueTimedOut', new DeadlineExceededError(`queue timeout${this.label}: waited ${waited}ms in queue, queueTimeoutMs=${timeoutMs}`));
    this.schedulePump();
  }

  /** `given`: the error the caller's signal carried, when the deadline came through it rather than deadlineMs. */
  private onDeadline(entry: Entry<I, O>, given?: DeadlineExceededError): void {
    entry.deadlineTimer = undefined;
    const waited = this.clock.monoNow() - entry.enqueuedAt;
    const budget = entry.deadlineBudgetMs;
    if (entry.state === 'queued') {
      this.unqueue(entry);
      this.finish(entry, 'deadlineExceeded', given ?? new DeadlineExceededError(`deadline exceeded while queued${this.label}: waited ${waited}ms, deadline was ${budget}ms after submit`));
      this.schedulePump();
    } else if (entry.state === 'running') {
      const err = given ?? new DeadlineExceededError(`deadline exceeded while running${this.label}: ${waited}ms since submit, deadline was ${budget}ms after submit`);
      entry.run?.abort(err);
      this.finish(entry, 'deadlineExceeded', err);
    }
  }

  private onAbort(entry: Entry<I, O>): void {
    // The replica host aborts a request's signal when its deadline passes: that is a deadline, not a cancellation.
    if (entry.signal?.reason instanceof DeadlineExceededError) {
      this.onDeadline(entry, entry.signal.reason);
      return;
    }
    const waited = this.clock.monoNow() - entry.enqueuedAt;
    if (entry.state === 'queued') {
      this.unqueue(entry);
      this.finish(entry, 'cancelled', new CancelledError(`request cancelled while queued${this.label} (waited ${waited}ms)`), entry.signal?.reason);
      this.schedulePump();
    } else if (entry.state === 'running') {
      entry.run?.abort(entry.signal?.reason);
      this.finish(entry, 'cancelled', new CancelledError(`request cancelled while its batch was running${this.label} (${waited}ms since submit)`), entry.signal?.reason);
    }
  }

  private unqueue(entry: Entry<I, O>): void {
    if (entry.node !== undefined) this.pending.remove(entry.node);
    entry.node = undefined;
  }

  /** Settles a caller once and releases everything it holds; later calls for the same entry do nothing. */
  private finish(entry: Entry<I, O>, outcome: Outcome, result: unknown, cause?: unknown): void {
    if (entry.state === 'settled') return;
    entry.state = 'settled';
    if (entry.timeoutTimer !== undefined) this.clock.clearTimeout(entry.timeoutTimer);
    if (entry.deadlineTimer !== undefined) this.clock.clearTimeout(entry.deadlineTimer);
    entry.timeoutTimer = undefined;
    entry.deadlineTimer = undefined;
    if (entry.onAbort !== undefined) entry.signal?.removeEventListener('abort', entry.onAbort);
    entry.onAbort = undefined;
    this.totals[outcome]++;
    this.unsettled--;
    if (outcome === 'succeeded') {
      entry.resolve(result as O);
      return;
    }
    if (cause !== undefined && result instanceof Error && result.cause === undefined) Object.assign(result, { cause });
    entry.reject(result);
  }

  private schedulePump(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    // Dispatch at the end of the tick, so items submitted together batch together even with no wait, and the
    // batch function never runs inside a caller's submit().
    queueMicrotask(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  private pump(): void {
    // Only the first batch of the first pump after an idle arrival goes eagerly: what is queued then came in that
    // one tick, to a queue with nothing running. Once a batch runs, the queue is under load and gathers as usual.
    const idle = this.idleArrival;
    this.idleArrival = false;
    if (this.lifecycle !== 'open') return;
    const now = this.clock.monoNow();
    let nextReadyAt = Infinity;
    while (this.runningBatches < this.options.maxConcurrentBatches && this.pending.size > 0) {
      let best: { view: GroupView; size: number; reason: BatchReleaseReason } | undefined;
      nextReadyAt = Infinity;
      for (const view of this.pending.groupViews()) {
        const decision = this.readiness(view, now, idle && this.runningBatches === 0);
        if (decision.size === 0) {
          nextReadyAt = Math.min(nextReadyAt, decision.readyAt);
        } else if (best === undefined || view.headLane < best.view.headLane || (view.headLane === best.view.headLane && view.headSeq < best.view.headSeq)) {
          best = { view, size: decision.size, reason: decision.reason };
        }
      }
      if (best === undefined) break;
      this.dispatch(best.view.key, best.size, now, best.reason);
    }
    if (this.runningBatches >= this.options.maxConcurrentBatches || this.pending.size === 0) nextReadyAt = Infinity;
    this.armWaitTimer(nextReadyAt, now);
  }

  /**
   * How many items of a group to dispatch now (0: not yet, until readyAt). `idle`: the items came to an idle queue,
   * so a partial batch goes at once, as if its wait were over: light load pays no maxWaitMs.
   */
  private readiness(view: GroupView, now: number, idle: boolean): { size: number; readyAt: number; reason: BatchReleaseReason } {
    const { maxBatchSize, maxWaitMs } = this.effective;
    const fits = Math.min(view.size, maxBatchSize);
    // The controller's limits are never above the options' own: below them, it is what released the batch.
    const adaptiveSize = this.adaptive !== undefined && maxBatchSize < this.options.maxBatchSize;
    const preferred = this.options.preferredBatchSizes;
    for (let i = preferred.length - 1; i >= 0; i--) {
      const size = preferred[i] as number;
      if (size <= fits) return { size, readyAt: now, reason: size < maxBatchSize ? 'preferred' : adaptiveSize ? 'adaptive' : 'full' };
    }
    if (view.size >= maxBatchSize) return { size: maxBatchSize, readyAt: now, reason: adaptiveSize ? 'adaptive' : 'full' };
    const readyAt = view.oldestEnqueuedAt + maxWaitMs;
    if (now >= readyAt) return { size: view.size, readyAt, reason: this.adaptive !== undefined && maxWaitMs < this.options.maxWaitMs ? 'adaptive' : 'timeout' };
    return { size: idle ? view.size : 0, readyAt, reason: 'idle' };
  }

  private armWaitTimer(at: number, now: number): void {
    if (at === this.waitTimerAt) return;
    this.clearWaitTimer();
    if (at === Infinity) return;
    this.waitTimerAt = at;
    this.waitTimer = this.clock.setTimeout(() => {
      this.waitTimer = undefined;
      this.waitTimerAt = Infinity;
      this.pump();
    }, at - now);
  }

  private clearWaitTimer(): void {
    if (this.waitTimer !== undefined) this.clock.clearTimeout(this.waitTimer);
    this.waitTimer = undefined;
    this.waitTimerAt = Infinity;
  }

  private dispatch(groupKey: string, size: number, now: number, reason: BatchReleaseReason): void {
    const entries = this.pending.take(groupKey, size).map((node) => node.value);
    const observer = this.observer;
    observer?.released(entries.length, reason);
    for (const entry of entries) {
      observer?.waited(now - entry.enqueuedAt);
      entry.node = undefined;
      entry.state = 'running';
      entry.run = new AbortController();
      if (entry.timeoutTimer !== undefined) this.clock.clearTimeout(entry.timeoutTimer);
      entry.timeoutTimer = undefined;
    }
    void this.execute(entries, groupKey, now, reason);
  }

  /**
   * With tracing on: one `batch wait` span per traced request (queued to released) in its own trace, and one
   * `batch` span for the run, under the first traced request and linked to every request of the batch.
   */
  private traceBatch(entries: readonly Entry<I, O>[], reason: BatchReleaseReason): ReturnType<typeof startSpan> | undefined {
    let first: TraceContext | undefined;
    const links: TraceContext[] = [];
    const now = performance.now();
    // label is ` for "deployment.method"` (or empty).
    const name = this.label === '' ? 'batch' : `batch ${this.label.slice(' for '.length).replace(/"/g, '')}`;
    for (const entry of entries) {
      if (entry.trace?.sampled !== true) continue;
      first ??= entry.trace;
      links.push(entry.trace);
      startSpan(`${name} wait`, entry.trace, SpanKinds.INTERNAL, { 'shoal.batch.size': entries.length, 'shoal.batch.release_reason': reason }, entry.tracedAt).end(undefined, now);
    }
    if (first === undefined) return undefined;
    return startSpan(name, first, SpanKinds.INTERNAL, { 'shoal.batch.size': entries.length, 'shoal.batch.release_reason': reason }, now, links);
  }

  private async execute(entries: Entry<I, O>[], groupKey: string, dispatchedAt: number, reason: BatchReleaseReason): Promise<void> {
    const size = entries.length;
    const span = tracingActive() ? this.traceBatch(entries, reason) : undefined;
    let failure: unknown;
    const epoch = this.adaptive?.epoch ?? 0;
    const backlog = this.pending.size;
    this.sizeCounts.set(size, (this.sizeCounts.get(size) ?? 0) + 1);
    const batchAbort = new AbortController();
    const signals = entries.map((entry) => (entry.run as AbortController).signal);
    let abandoned = 0;
    const onItemAbort = (): void => {
      if (++abandoned === size) batchAbort.abort(new CancelledError(`every item of batch of ${size} was abandoned`));
    };
    for (const signal of signals) {
      if (signal.aborted) onItemAbort();
      else signal.addEventListener('abort', onItemAbort, { once: true });
    }
    let answered = false;
    this.runningBatches++;
    this.runningItems += size;
    try {
      const shapeKeys = entries.map((entry) => entry.shapeKey);
      const modelId = entries[0]?.modelId;
      const bucketKey = modelId === undefined ? groupKey : groupKey.slice(modelId.length + 1);
      let items = entries.map((entry) => entry.item);
      const apply = this.options.pad?.apply;
      if (apply !== undefined) {
        items = apply(items, bucketKey, shapeKeys);
        if (!Array.isArray(items) || items.length !== size) {
          throw new BatchSizeMismatchError(`pad.apply returned ${Array.isArray(items) ? `${items.length} items` : describe(items)} for ${size} inputs`);
        }
      }
      const ctx: BatchContext = { batchId: this.nextBatchId++, batchSize: size, signals, signal: batchAbort.signal, shapeKey: bucketKey, shapeKeys, modelId };
      const results: unknown = await this.runBatch(items, ctx);
      answered = true;
      if (!Array.isArray(results)) throw new BatchSizeMismatchError(`batch method returned ${describe(results)} instead of an array for ${size} inputs`);
      if (results.length !== size) throw new BatchSizeMismatchError(`batch method returned ${results.length} results for ${size} inputs`);
      entries.forEach((entry, i) => {
        const result: unknown = results[i];
        if (result instanceof ItemError) this.finish(entry, 'failed', result.error);
        else this.finish(entry, 'succeeded', result);
      });
    } catch (err) {
      failure = err;
      for (const entry of entries) this.finish(entry, 'failed', err);
    } finally {
      span?.end(failure);
      this.runningBatches--;
      this.runningItems -= size;
      for (const signal of signals) signal.removeEventListener('abort', onItemAbort);
      for (const entry of entries) entry.run = undefined;
      const observer = this.observer;
      if (answered || observer !== undefined) {
        const end = this.clock.monoNow();
        const serviceMs = end - dispatchedAt;
        observer?.ran(serviceMs, size);
        if (answered) {
          this.serviceEwmaMs = this.serviceEwmaMs === undefined ? serviceMs : this.serviceEwmaMs + 0.2 * (serviceMs - this.serviceEwmaMs);
          this.adaptive?.observe({ size, serviceMs, latenciesMs: entries.map((entry) => end - entry.enqueuedAt), backlog, epoch });
        }
      }
      if (this.lifecycle === 'open') this.schedulePump();
      else this.settleIfIdle();
    }
  }

  private settleIfIdle(): void {
    if (this.lifecycle !== 'closing' || this.runningBatches > 0) return;
    this.lifecycle = 'closed';
    for (const resolve of this.idleWaiters.splice(0)) resolve();
  }
}
