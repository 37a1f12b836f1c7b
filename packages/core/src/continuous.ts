/**
 * Continuous batching: a step-wise model (token generation, an RNN, a diffusion sampler) runs one step at a time
 * over every sequence in flight, and sequences join and leave the running batch at step boundaries, as vLLM does
 * for tokens. Declare one as a class field; each call returns an async iterable of the chunks its sequence emits:
 *
 *   class Lm {
 *     generate = continuousBatch({
 *       start: (req: { prompt: string; maxTokens: number }) => ({ ...req, out: 0 }),
 *       step: async (states) => states.map((s) => ({ emit: 'x', done: ++s.out >= s.maxTokens })),
 *     }, { maxBatchSize: 16 });
 *   }
 *   for await (const chunk of lm.generate({ prompt: 'hi', maxTokens: 8 })) process.stdout.write(chunk);
 *
 * The loop: while any sequence is active or waiting, admit waiting ones (up to maxBatchSize) at the step boundary,
 * run one step over the active states, hand each sequence its chunk, and drop the finished ones. A consumer that
 * stops iterating, or whose request signal aborts or deadline passes, leaves at the next boundary. A step that
 * throws fails the sequences of that step; the loop goes on for the others. A sequence whose consumer is slow has
 * a bounded buffer (maxBufferedChunks): when it is full the sequence is parked out of the batch (it keeps its
 * state, gives up its slot) and rejoins, ahead of new arrivals, once its consumer has read half of it.
 */
import { contextStorage, requestContext } from './context.ts';
import { realClock, type Clock, type TimerHandle } from './clock.ts';
import {
  BatchSizeMismatchError, CancelledError, DeadlineExceededError, IllegalStateError, InvalidOptionError, QueueFullError, describe,
} from './errors.ts';
import { ItemError } from './batching/item-error.ts';
import type { BatchObserver, BatchQueueState, BatchQueueStats } from './batching/batch-queue.ts';

const CONTINUOUS = Symbol.for('shoal.continuous');

/** What one step produced for one sequence. */
export interface StepOutput<C> {
  /** The chunk this step emits for the sequence; undefined emits nothing (e.g. while reading the prompt). */
  emit?: C;
  /** The sequence is finished; it leaves the batch at this step's boundary (after its chunk, if any). */
  done: boolean;
}

/** What the step function learns about the step besides the states. */
export interface StepContext {
  /** 1 for the batcher's first step, then counting up. */
  readonly stepId: number;
  readonly batchSize: number;
}

/**
 * A step-wise model. `step` updates the states it is given in place and returns one output per state, in order;
 * an {@link ItemError} at an index fails only that sequence. A throw or rejection fails every sequence of the step.
 */
export interface Stepper<I, S, C> {
  /** Makes a sequence's state from the call's input; called at the call. A throw fails only that call. */
  start(input: I): S | Promise<S>;
  step(states: S[], ctx: StepContext): Promise<Array<StepOutput<C> | ItemError>> | Array<StepOutput<C> | ItemError>;
}

/** Options of a continuous batcher. */
export interface ContinuousOptions {
  /**
   * Largest number of sequences in one step. Lowering it at run time lets running sequences finish; new ones wait.
   * @default 16
   */
  maxBatchSize?: number;
  /**
   * Bound on sequences waiting to join (started, not yet in a step). A call past it fails with QueueFullError.
   * @default 1024
   */
  maxQueued?: number;
  /**
   * Chunks one sequence may hold that its consumer has not read yet. At the bound the sequence is parked out of the
   * batch until its consumer has read half of them, so a slow consumer never holds up the others.
   * @default 64
   */
  maxBufferedChunks?: number;
}

export interface CompiledContinuousOptions {
  readonly maxBatchSize: number;
  readonly maxQueued: number;
  readonly maxBufferedChunks: number;
}

export const CONTINUOUS_DEFAULTS = { maxBatchSize: 16, maxQueued: 1024, maxBufferedChunks: 64 } as const;
const OPTION_KEYS: ReadonlySet<string> = new Set(Object.keys(CONTINUOUS_DEFAULTS));

/** Validates continuous batching options and fills defaults; errors name the option path (`continuous.maxBatchSize`). */
export function compileContinuousOptions(input: ContinuousOptions | CompiledContinuousOptions | undefined, path = 'continuous'): CompiledContinuousOptions {
  if (input === undefined) input = {};
  if (typeof input !== 'object' || input === null || Array.isArray(input)) throw new InvalidOptionError(path, 'must be an object', input);
  for (const key of Object.keys(input)) {
    if (!OPTION_KEYS.has(key)) throw new InvalidOptionError(`${path}.${key}`, `unknown option (known: ${[...OPTION_KEYS].join(', ')})`);
  }
  return {
    maxBatchSize: positiveInt(input.maxBatchSize, `${path}.maxBatchSize`, CONTINUOUS_DEFAULTS.maxBatchSize),
    maxQueued: positiveInt(input.maxQueued, `${path}.maxQueued`, CONTINUOUS_DEFAULTS.maxQueued),
    maxBufferedChunks: positiveInt(input.maxBufferedChunks, `${path}.maxBufferedChunks`, CONTINUOUS_DEFAULTS.maxBufferedChunks),
  };
}

/** Applies a partial change over compiled options; a key present as `undefined` goes back to its default. */
export function mergeContinuousOptions(current: CompiledContinuousOptions, change: ContinuousOptions, path = 'continuous'): CompiledContinuousOptions {
  if (typeof change !== 'object' || change === null || Array.isArray(change)) throw new InvalidOptionError(path, 'must be an object', change);
  return compileContinuousOptions({ ...current, ...change }, path);
}

function positiveInt(value: unknown, path: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value)) throw new InvalidOptionError(path, 'must be an integer', value);
  if (value < 1) throw new InvalidOptionError(path, 'must be >= 1', value);
  return value;
}

/** Per call: what the request context gives when the call comes through a replica. */
export interface ContinuousCallOptions {
  /** Aborting it makes the sequence leave (CancelledError). @default the request's signal */
  signal?: AbortSignal;
  /** Absolute wall time (clock.wallNow()) at which the sequence leaves with DeadlineExceededError. @default the request's deadline */
  deadlineMs?: number;
}

/**
 * Gauges and counters of one continuous batcher, in the shape of a batch queue's so the worker's batch metrics
 * cover it: `queued` are waiting sequences, `running` the sequences of the running batch, `batchSizeCounts` the
 * steps by size, `totals.submitted` the calls.
 */
export interface ContinuousStats extends BatchQueueStats {
  /** Sequences out of the batch because their consumer has not read their buffer. */
  readonly parked: number;
  readonly steps: number;
}

type Phase = 'starting' | 'waiting' | 'active' | 'parked' | 'ended';
type Outcome = 'succeeded' | 'failed' | 'cancelled' | 'deadlineExceeded';

interface Pull<C> { resolve: (r: IteratorResult<C>) => void; reject: (err: unknown) => void }

class Sequence<S, C> {
  phase: Phase = 'starting';
  state!: S;
  readonly buffer: C[] = [];
  readonly pulls: Array<Pull<C>> = [];
  /** Set when the sequence must leave at the next boundary: the error its consumer gets (null: none, it stopped). */
  leaving: Error | null | undefined;
  /** Its terminal error, delivered after the buffered chunks; undefined: it ended cleanly (or has not ended). */
  error: unknown;
  enqueuedAt = 0;
  timer: TimerHandle | undefined;
  onAbort: (() => void) | undefined;
  constructor(readonly signal: AbortSignal | undefined) {}
}

/** One replica's continuous batcher for one method; {@link continuousBatch} wraps it as a callable field. */
export class ContinuousBatcher<I, S, C> {
  private options: CompiledContinuousOptions;
  private lifecycle: BatchQueueState = 'open';
  private active: Array<Sequence<S, C>> = [];
  /** Insertion-ordered, so the first value is the oldest. */
  private readonly waiting = new Set<Sequence<S, C>>();
  /** Parked sequences whose buffer drained: they rejoin before any waiting one. */
  private readonly resuming = new Set<Sequence<S, C>>();
  /** Sequences with a chunk of the last step for a reader that is waiting. */
  private readonly woken = new Set<Sequence<S, C>>();
  private readonly parked = new Set<Sequence<S, C>>();
  private starting = 0;
  private looping = false;
  private stepping = false;
  private stepId = 0;
  private readonly sizeCounts = new Map<number, number>();
  private readonly totals = { submitted: 0, succeeded: 0, failed: 0, cancelled: 0, deadlineExceeded: 0, queueTimedOut: 0, delayed: 0, rejectedQueueFull: 0 };
  private readonly idleWaiters: Array<() => void> = [];
  /** What sequences that were still starting when the batcher closed fail with. */
  private closeError: Error | undefined;
  private label: string;
  private readonly clock: Clock;
  private observer: BatchObserver | undefined;

  constructor(private readonly stepper: Stepper<I, S, C>, options: ContinuousOptions | CompiledContinuousOptions = {}, env: { clock?: Clock; name?: string } = {}) {
    if (typeof stepper !== 'object' || stepper === null) throw new InvalidOptionError('continuousBatch', 'needs { start(input), step(states) }', stepper);
    if (typeof stepper.start !== 'function') throw new InvalidOptionError('continuousBatch.start', 'must be a function (input) => state', stepper.start);
    if (typeof stepper.step !== 'function') throw new InvalidOptionError('continuousBatch.step', 'must be a function (states, ctx) => outputs', stepper.step);
    this.options = compileContinuousOptions(options);
    this.clock = env.clock ?? realClock;
    this.label = env.name === undefined ? '' : ` for ${JSON.stringify(env.name)}`;
  }

  /** Names the batcher in error messages (the replica host names it `deployment.method`). */
  rename(name: string): void {
    this.label = ` for ${JSON.stringify(name)}`;
  }

  /** Sends step sizes and run times (`released(size, 'step')`, `ran`) and join waits (`waited`) to `observer`. */
  setObserver(observer: BatchObserver | undefined): void {
    this.observer = observer;
  }

  get config(): CompiledContinuousOptions {
    return this.options;
  }

  get state(): BatchQueueState {
    return this.lifecycle;
  }

  /** Changes options at run time; they apply from the next step boundary. */
  reconfigure(change: ContinuousOptions): void {
    this.options = mergeContinuousOptions(this.options, change);
  }

  /**
   * Starts one sequence and returns the chunks it emits. Never throws: a closed batcher, a full queue, a failing
   * start, an aborted signal or a passed deadline all reject the iterator's first read.
   */
  generate(input: I, opts: ContinuousCallOptions = {}): AsyncIterableIterator<C> {
    const seq = new Sequence<S, C>(opts.signal);
    const iterator = this.iteratorOf(seq);
    if (this.lifecycle !== 'open') {
      this.end(seq, new IllegalStateError(`continuous batcher${this.label} is ${this.lifecycle}; it takes no new sequences`), undefined);
      return iterator;
    }
    const queued = this.waiting.size + this.starting;
    if (queued >= this.options.maxQueued) {
      this.totals.rejectedQueueFull++;
      this.end(seq, new QueueFullError(`queue full: queued=${queued}, maxQueued=${this.options.maxQueued}${this.label}`, { queued, maxQueued: this.options.maxQueued }), undefined);
      return iterator;
    }
    this.totals.submitted++;
    if (opts.signal?.aborted === true) {
      this.end(seq, new CancelledError(`sequence${this.label} cancelled before it started`), 'cancelled');
      return iterator;
    }
    if (opts.deadlineMs !== undefined) {
      const left = opts.deadlineMs - this.clock.wallNow();
      if (left <= 0) {
        this.end(seq, new DeadlineExceededError(`deadline passed before the sequence started${this.label}`), 'deadlineExceeded');
        return iterator;
      }
      seq.timer = this.clock.setTimeout(() => {
        seq.timer = undefined;
        this.leave(seq, new DeadlineExceededError(`deadline of the sequence passed after ${Math.round(left)} ms${this.label}`));
      }, left);
    }
    if (opts.signal !== undefined) {
      seq.onAbort = () => this.leave(seq, new CancelledError(`sequence${this.label} cancelled`));
      opts.signal.addEventListener('abort', seq.onAbort, { once: true });
    }
    let started: S | Promise<S>;
    try {
      started = this.stepper.start(input);
    } catch (err) {
      this.end(seq, err, 'failed');
      return iterator;
    }
    if (typeof (started as { then?: unknown } | null)?.then === 'function') {
      this.starting++;
      Promise.resolve(started).then(
        (state) => { this.starting--; if (seq.phase === 'starting') this.enqueue(seq, state); },
        (err: unknown) => { this.starting--; if (seq.phase === 'starting') this.end(seq, err, 'failed'); },
      );
    } else {
      this.enqueue(seq, started as S);
    }
    return iterator;
  }

  stats(): ContinuousStats {
    return {
      state: this.lifecycle,
      queued: this.waiting.size + this.starting,
      queuedByPriority: [this.waiting.size + this.starting],
      running: this.active.length,
      runningBatches: this.stepping ? 1 : 0,
      inFlight: this.waiting.size + this.starting + this.active.length + this.parked.size,
      batchSizeCounts: Object.fromEntries([...this.sizeCounts].sort(([a], [b]) => a - b)),
      totals: { ...this.totals },
      effective: { maxBatchSize: this.options.maxBatchSize, maxWaitMs: 0 },
      adaptive: undefined,
      parked: this.parked.size,
      steps: this.stepId,
    };
  }

  /**
   * Takes no new sequences and fails the waiting and parked ones with `reason` (else CancelledError) at once; the
   * running ones fail at the next step boundary. Resolves when no step runs.
   */
  close(reason?: unknown): Promise<void> {
    if (this.lifecycle === 'open') {
      this.lifecycle = 'closing';
      const n = this.waiting.size + this.active.length + this.parked.size + this.starting;
      const err = reason === undefined ? new CancelledError(`continuous batcher${this.label} closed with ${n} sequences in flight`)
        : reason instanceof Error ? reason : new CancelledError(describe(reason));
      this.closeError = err;
      for (const seq of [...this.waiting, ...this.parked]) this.end(seq, err, 'cancelled');
      for (const seq of this.active) seq.leaving ??= err;
      this.settleIfIdle();
    }
    if (this.lifecycle === 'closed') return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private enqueue(seq: Sequence<S, C>, state: S): void {
    if (this.lifecycle !== 'open') {
      this.end(seq, this.closeError, 'cancelled');
      return;
    }
    seq.state = state;
    seq.phase = 'waiting';
    seq.enqueuedAt = this.clock.monoNow();
    this.waiting.add(seq);
    this.kick();
  }

  private kick(): void {
    if (this.looping) return;
    this.looping = true;
    // The loop serves every caller, so it runs in none's request context.
    contextStorage.exit(() => void this.loop());
  }

  private async loop(): Promise<void> {
    try {
      for (;;) {
        // A step boundary is a turn of the event loop: callers arriving meanwhile join, consumers' I/O runs.
        await new Promise<void>((resolve) => setImmediate(resolve));
        this.boundary();
        if (this.active.length === 0) break;
        const step = this.runStep(this.active);
        // The previous step's chunks go to waiting readers only now that this step's model call is made, so what
        // the readers do with them (a stream's encode and send) overlaps the step instead of delaying it.
        this.wakeReaders();
        await step;
      }
      this.wakeReaders();
    } finally {
      this.looping = false;
      this.settleIfIdle();
    }
  }

  /** Drops the leaving and the parked, then fills the batch: resumed parked sequences first, then waiting ones. */
  private boundary(): void {
    const max = this.options.maxBatchSize;
    const next: Array<Sequence<S, C>> = [];
    for (const seq of this.active) {
      if (seq.leaving !== undefined) this.end(seq, seq.leaving, seq.leaving === null ? 'cancelled' : outcomeOf(seq.leaving));
      // Chunks a waiting reader is about to take do not count.
      else if (seq.buffer.length - seq.pulls.length >= this.options.maxBufferedChunks) this.park(seq);
      else next.push(seq);
    }
    for (const seq of this.resuming) {
      if (next.length >= max) break;
      this.resuming.delete(seq);
      this.parked.delete(seq);
      seq.phase = 'active';
      next.push(seq);
    }
    const now = this.clock.monoNow();
    for (const seq of this.waiting) {
      if (next.length >= max) break;
      this.waiting.delete(seq);
      seq.phase = 'active';
      this.observer?.waited(now - seq.enqueuedAt);
      next.push(seq);
    }
    this.active = next;
  }

  private async runStep(batch: Array<Sequence<S, C>>): Promise<void> {
    const size = batch.length;
    const ctx: StepContext = { stepId: ++this.stepId, batchSize: size };
    this.sizeCounts.set(size, (this.sizeCounts.get(size) ?? 0) + 1);
    this.observer?.released(size, 'step');
    const t0 = this.clock.monoNow();
    this.stepping = true;
    let outputs: Array<StepOutput<C> | ItemError> | undefined;
    let failure: unknown;
    try {
      outputs = await this.stepper.step(batch.map((s) => s.state), ctx);
      if (!Array.isArray(outputs) || outputs.length !== size) {
        failure = new BatchSizeMismatchError(`step function${this.label} returned ${Array.isArray(outputs) ? `${outputs.length} outputs` : describe(outputs)} for ${size} sequences`);
      }
    } catch (err) {
      failure = err;
    } finally {
      this.stepping = false;
      this.observer?.ran(this.clock.monoNow() - t0, size);
    }
    if (failure !== undefined || outputs === undefined) {
      for (const seq of batch) this.end(seq, failure, 'failed');
      this.active = [];
      return;
    }
    const kept: Array<Sequence<S, C>> = [];
    for (let i = 0; i < size; i++) {
      const seq = batch[i]!;
      const out = outputs[i];
      if (out instanceof ItemError) { this.end(seq, out.error, 'failed'); continue; }
      if (typeof out !== 'object' || out === null || typeof out.done !== 'boolean') {
        this.end(seq, new BatchSizeMismatchError(`step function${this.label} returned ${describe(out)} at index ${i}; expected { emit?, done: boolean }`), 'failed');
        continue;
      }
      // One that left while the step ran still gets nothing more; its leave is settled at the boundary.
      if (out.emit !== undefined && seq.leaving === undefined) this.deliver(seq, out.emit);
      if (out.done && seq.leaving === undefined) this.end(seq, undefined, 'succeeded');
      else kept.push(seq);
    }
    this.active = kept;
  }

  /** Buffers a step's chunk; a reader already waiting for it is woken by {@link wakeReaders}. */
  private deliver(seq: Sequence<S, C>, chunk: C): void {
    seq.buffer.push(chunk);
    if (seq.pulls.length > 0) this.woken.add(seq);
  }

  private wakeReaders(): void {
    if (this.woken.size === 0) return;
    const woken = [...this.woken];
    this.woken.clear();
    for (const seq of woken) this.settleReads(seq);
  }

  /** Answers waiting reads from the buffer, then, once an ended sequence's buffer is empty, with its end. */
  private settleReads(seq: Sequence<S, C>): void {
    while (seq.pulls.length > 0 && seq.buffer.length > 0) seq.pulls.shift()!.resolve({ value: seq.buffer.shift()!, done: false });
    this.resumeIfDrained(seq);
    if (seq.phase !== 'ended' || seq.pulls.length === 0) return;
    const pulls = seq.pulls.splice(0);
    const err = seq.error;
    seq.error = undefined;
    if (err !== undefined) pulls.shift()!.reject(err);
    for (const p of pulls) p.resolve({ value: undefined, done: true });
  }

  /** A parked sequence whose reader has taken half its buffer rejoins at the next boundary. */
  private resumeIfDrained(seq: Sequence<S, C>): void {
    if (seq.phase !== 'parked' || this.resuming.has(seq) || seq.buffer.length > this.options.maxBufferedChunks >> 1) return;
    this.resuming.add(seq);
    this.kick();
  }

  private park(seq: Sequence<S, C>): void {
    seq.phase = 'parked';
    this.parked.add(seq);
  }

  /** The sequence must go: now if it is not in a running batch, else at the next boundary. */
  private leave(seq: Sequence<S, C>, err: Error | null): void {
    switch (seq.phase) {
      case 'active': seq.leaving ??= err; return;
      case 'ended': return;
      default: this.end(seq, err, err === null ? 'cancelled' : outcomeOf(err));
    }
  }

  /** Ends a sequence once: settles its consumer (after its buffered chunks) and releases its timer and listener. */
  private end(seq: Sequence<S, C>, err: unknown, outcome: Outcome | undefined): void {
    if (seq.phase === 'ended') return;
    if (seq.phase === 'waiting') this.waiting.delete(seq);
    if (seq.phase === 'parked') {
      this.parked.delete(seq);
      this.resuming.delete(seq);
    }
    seq.phase = 'ended';
    if (outcome !== undefined) this.totals[outcome]++;
    if (seq.timer !== undefined) { this.clock.clearTimeout(seq.timer); seq.timer = undefined; }
    if (seq.onAbort !== undefined) { seq.signal?.removeEventListener('abort', seq.onAbort); seq.onAbort = undefined; }
    seq.error = err ?? undefined;
    if (err === null) seq.buffer.length = 0;
    // One with a chunk for a waiting reader from this step is settled with it, after the next step starts.
    if (!this.woken.has(seq)) this.settleReads(seq);
  }

  private iteratorOf(seq: Sequence<S, C>): AsyncIterableIterator<C> {
    const iterator: AsyncIterableIterator<C> = {
      next: (): Promise<IteratorResult<C>> => {
        // Reads already waiting go first; this one queues behind them.
        if (seq.pulls.length === 0 && seq.buffer.length > 0) {
          const value = seq.buffer.shift()!;
          this.resumeIfDrained(seq);
          return Promise.resolve({ value, done: false });
        }
        if (seq.phase === 'ended' && seq.pulls.length === 0) {
          const err = seq.error;
          seq.error = undefined;
          return err === undefined ? Promise.resolve({ value: undefined, done: true }) : Promise.reject(err);
        }
        const read = new Promise<IteratorResult<C>>((resolve, reject) => seq.pulls.push({ resolve, reject }));
        this.resumeIfDrained(seq);
        return read;
      },
      return: (): Promise<IteratorResult<C>> => {
        this.leave(seq, null);
        seq.buffer.length = 0;
        seq.error = undefined;
        // Reads still waiting end now: the consumer is done, even while the step it is in runs on.
        for (const p of seq.pulls.splice(0)) p.resolve({ value: undefined, done: true });
        this.woken.delete(seq);
        return Promise.resolve({ value: undefined, done: true });
      },
      [Symbol.asyncIterator]: () => iterator,
    };
    return iterator;
  }

  private settleIfIdle(): void {
    if (this.lifecycle !== 'closing' || this.looping) return;
    this.lifecycle = 'closed';
    for (const w of this.idleWaiters.splice(0)) w();
  }
}

function outcomeOf(err: Error): Outcome {
  return err instanceof DeadlineExceededError ? 'deadlineExceeded' : err instanceof CancelledError ? 'cancelled' : 'failed';
}

/** A continuous method: call it with one input, iterate what it emits. */
export interface ContinuousMethod<I, C> {
  (input: I, opts?: ContinuousCallOptions): AsyncIterableIterator<C>;
  readonly [CONTINUOUS]: true;
  readonly batcher: ContinuousBatcher<I, unknown, C>;
  /** Changes options at run time; sequences in flight are kept. */
  reconfigure(change: ContinuousOptions): void;
  stats(): ContinuousStats;
  close(reason?: unknown): Promise<void>;
}

/**
 * Declares a continuously batched method (see the file comment). The request's AbortSignal and deadline travel
 * with the call; `opts` overrides them for in-process callers.
 */
export function continuousBatch<I, S, C>(stepper: Stepper<I, S, C>, options: ContinuousOptions = {}, name?: string): ContinuousMethod<I, C> {
  const batcher = new ContinuousBatcher<I, S, C>(stepper, options, name === undefined ? {} : { name });
  const method = ((input: I, opts: ContinuousCallOptions = {}): AsyncIterableIterator<C> => {
    const ctx = requestContext();
    const signal = opts.signal ?? ctx?.signal;
    const deadlineMs = opts.deadlineMs ?? ctx?.deadline;
    return batcher.generate(input, {
      ...(signal !== undefined ? { signal } : {}),
      ...(deadlineMs !== undefined ? { deadlineMs } : {}),
    });
  }) as ContinuousMethod<I, C>;
  Object.defineProperties(method, {
    [CONTINUOUS]: { value: true },
    batcher: { value: batcher },
    reconfigure: { value: (change: ContinuousOptions) => batcher.reconfigure(change) },
    stats: { value: () => batcher.stats() },
    close: { value: (reason?: unknown) => batcher.close(reason) },
  });
  return method;
}

export function isContinuous(value: unknown): value is ContinuousMethod<unknown, unknown> {
  return typeof value === 'function' && (value as { [CONTINUOUS]?: boolean })[CONTINUOUS] === true;
}

/** Continuous methods of an instance, by field name. */
export function continuousMethodsOf(instance: object): Map<string, ContinuousMethod<unknown, unknown>> {
  const out = new Map<string, ContinuousMethod<unknown, unknown>>();
  for (const k of Object.getOwnPropertyNames(instance)) {
    const v = (instance as Record<string, unknown>)[k];
    if (isContinuous(v)) out.set(k, v);
  }
  return out;
}

/**
 * The instance's own fields that stream: continuous methods and async generator functions. streamMethodNames sees
 * only the prototype's `async *` methods; a replica reports these once its instance exists (its start reply), the
 * head carries them on the route entry, and handles stream calls to them as they do to prototype generators.
 */
export function streamFieldNames(instance: object): string[] {
  const out: string[] = [];
  for (const k of Object.getOwnPropertyNames(instance)) {
    const v = (instance as Record<string, unknown>)[k];
    if (isContinuous(v) || (typeof v === 'function' && Object.prototype.toString.call(v) === '[object AsyncGeneratorFunction]')) out.push(k);
  }
  return out.sort();
}
