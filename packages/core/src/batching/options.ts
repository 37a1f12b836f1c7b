/**
 * Options of one replica's dynamic batcher, and the function that compiles them once into a normalised,
 * validated form. Every error names the full option path and the bad value; nothing is clamped silently.
 */
import { InvalidOptionError } from '../errors.ts';

/** What a queued item does when it has waited {@link BatchOptions.queueTimeoutMs}. */
export type TimeoutAction = 'REJECT' | 'DELAY';

/**
 * Padding: items whose shapes differ but pad to the same bucket may share a batch. Without it, only items
 * with exactly equal shape keys are batched together.
 */
export interface PadOptions<I = unknown> {
  /**
   * Maps an item's shape key (dims after the batch dim, e.g. "3x48x320") to the key of the bucket it is
   * padded into (e.g. "3x48x512"). Items batch together only when their bucket keys are equal. Must be
   * deterministic; a throw or a non-string rejects that submit with ShapeMismatchError.
   */
  bucket: (shapeKey: string) => string;
  /**
   * Pads one batch's items to the bucket's shape before the batch function sees them. Must return exactly
   * as many items as it got, in order.
   * @default identity (the batch function pads, reading `ctx.shapeKeys`)
   */
  apply?: (items: readonly I[], bucketKey: string, shapeKeys: readonly string[]) => I[];
}

/** Turns on adaptive batching: the batcher learns the model's latency curve and sizes batches to meet it. */
export interface LatencyObjective {
  /**
   * Which percentile of per-item latency (queue wait plus service) the objective bounds, in (0, 100].
   * @default 99
   */
  percentile?: number;
  /** The bound on that percentile, in milliseconds (e.g. `{ percentile: 99, ms: 50 }` is p99 <= 50 ms). */
  ms: number;
  /**
   * Factor the effective max batch size is multiplied by when the objective is violated, in (0, 1).
   * @default 0.75
   */
  decreaseFactor?: number;
  /**
   * Batches per control decision; the percentile of one decision is taken over the items of these batches.
   * @default 8
   */
  windowBatches?: number;
}

/** Options of a dynamic batcher. Durations are milliseconds on the batcher's clock. */
export interface BatchOptions<I = unknown> {
  /**
   * Largest number of items in one batch.
   * @default 8
   */
  maxBatchSize?: number;
  /**
   * How long a partial batch waits for more items, counted from the arrival of its oldest item. Only a queue under
   * load waits: items that arrive at an idle queue (nothing queued, no batch running) go at once with whatever came
   * in the same tick, so light load pays no wait. 0 dispatches whatever is queued at the end of the current tick.
   * @default 5
   */
  maxWaitMs?: number;
  /**
   * Batch sizes the model runs best at (as Triton's preferred_batch_size). When the largest preferred size
   * that fits the queued items is reachable, that many are dispatched at once; otherwise the batcher waits up
   * to maxWaitMs. Each must be an integer in [1, maxBatchSize]; no duplicates. Stored sorted ascending.
   * @default []
   */
  preferredBatchSizes?: number[];
  /**
   * Batches running at once; further batches wait in the queue until one finishes.
   * @default 1
   */
  maxConcurrentBatches?: number;
  /**
   * Number of priority levels; a submit's priority is an integer in [0, priorityLevels - 1]. A higher priority
   * is dequeued first; within one level, first in first out.
   * @default 1
   */
  priorityLevels?: number;
  /**
   * Priority of a submit that names none; an integer in [0, priorityLevels - 1].
   * @default 0 (the lowest)
   */
  defaultPriority?: number;
  /**
   * How long an item may wait in the queue before {@link timeoutAction} applies. A submit may override it.
   * @default undefined (no queue timeout)
   */
  queueTimeoutMs?: number;
  /**
   * REJECT: the item fails with DeadlineExceededError. DELAY: it stays queued but goes behind every item of its
   * priority level that has not timed out (as Triton's DELAY; it still goes before lower priority levels).
   * A new action applies to items that time out after the change.
   * @default 'REJECT'
   */
  timeoutAction?: TimeoutAction;
  /**
   * Bound on queued items (running ones not counted). A submit past it is rejected with QueueFullError.
   * @default 1024
   */
  maxQueueSize?: number;
  /**
   * Enables adaptive batching: maxBatchSize and maxWaitMs become upper bounds and the effective values are
   * learned online to meet this objective.
   * @default undefined (static batching)
   */
  latencyObjective?: LatencyObjective;
  /**
   * Computes an item's shape key when its submit gives none, e.g. `(t) => shapeKeyOf(t.dims)` for the dims after
   * the batch dim. Only items with equal keys share a batch (or equal buckets, with {@link pad}). A throw rejects
   * that submit with ShapeMismatchError.
   * @default undefined (every item has shape key '')
   */
  shapeOf?: (item: I) => string;
  /**
   * Lets items whose shapes differ share a batch, padded to a common bucket the deployment declares.
   * @default undefined (items batch only with equal shape keys)
   */
  pad?: PadOptions<I>;
}

/** The normalised form: every default filled, every value checked. */
export interface CompiledBatchOptions<I = unknown> {
  readonly maxBatchSize: number;
  readonly maxWaitMs: number;
  readonly preferredBatchSizes: readonly number[];
  readonly maxConcurrentBatches: number;
  readonly priorityLevels: number;
  readonly defaultPriority: number;
  readonly queueTimeoutMs: number | undefined;
  readonly timeoutAction: TimeoutAction;
  readonly maxQueueSize: number;
  readonly latencyObjective: Readonly<Required<LatencyObjective>> | undefined;
  readonly shapeOf: ((item: I) => string) | undefined;
  readonly pad: Readonly<PadOptions<I>> | undefined;
}

export const BATCH_DEFAULTS = {
  maxBatchSize: 8,
  maxWaitMs: 5,
  maxConcurrentBatches: 1,
  priorityLevels: 1,
  defaultPriority: 0,
  timeoutAction: 'REJECT',
  maxQueueSize: 1024,
  percentile: 99,
  decreaseFactor: 0.75,
  windowBatches: 8,
} as const;

const OPTION_KEYS: ReadonlySet<string> = new Set([
  'maxBatchSize', 'maxWaitMs', 'preferredBatchSizes', 'maxConcurrentBatches', 'priorityLevels', 'defaultPriority',
  'queueTimeoutMs', 'timeoutAction', 'maxQueueSize', 'latencyObjective', 'shapeOf', 'pad',
]);
const OBJECTIVE_KEYS: ReadonlySet<string> = new Set(['percentile', 'ms', 'decreaseFactor', 'windowBatches']);
const PAD_KEYS: ReadonlySet<string> = new Set(['bucket', 'apply']);

/**
 * Validates batch options and fills defaults. Throws InvalidOptionError naming the full path (`batch.maxBatchSize`)
 * and the value. Accepts its own output, so compiling twice is harmless.
 */
export function compileBatchOptions<I = unknown>(input: BatchOptions<I> | CompiledBatchOptions<I> | undefined, path = 'batch'): CompiledBatchOptions<I> {
  if (input === undefined) input = {};
  if (typeof input !== 'object' || input === null || Array.isArray(input)) throw new InvalidOptionError(path, 'must be an object', input);
  rejectUnknownKeys(input, OPTION_KEYS, path);
  const raw = input as BatchOptions<I>;

  const maxBatchSize = int(raw.maxBatchSize, `${path}.maxBatchSize`, BATCH_DEFAULTS.maxBatchSize, 1);
  const maxWaitMs = num(raw.maxWaitMs, `${path}.maxWaitMs`, BATCH_DEFAULTS.maxWaitMs, 0);
  const maxConcurrentBatches = int(raw.maxConcurrentBatches, `${path}.maxConcurrentBatches`, BATCH_DEFAULTS.maxConcurrentBatches, 1);
  const priorityLevels = int(raw.priorityLevels, `${path}.priorityLevels`, BATCH_DEFAULTS.priorityLevels, 1);
  const defaultPriority = int(raw.defaultPriority, `${path}.defaultPriority`, BATCH_DEFAULTS.defaultPriority, 0);
  if (defaultPriority > priorityLevels - 1) {
    throw new InvalidOptionError(`${path}.defaultPriority`, `must be below ${path}.priorityLevels=${priorityLevels}`, defaultPriority);
  }
  const maxQueueSize = int(raw.maxQueueSize, `${path}.maxQueueSize`, BATCH_DEFAULTS.maxQueueSize, 1);

  const preferredBatchSizes = preferred(raw.preferredBatchSizes, `${path}.preferredBatchSizes`, maxBatchSize, `${path}.maxBatchSize`);

  const queueTimeoutMs = raw.queueTimeoutMs === undefined ? undefined : num(raw.queueTimeoutMs, `${path}.queueTimeoutMs`, 0, 0);
  if (queueTimeoutMs === 0) throw new InvalidOptionError(`${path}.queueTimeoutMs`, 'must be > 0 (leave it out for no queue timeout)', 0);
  const timeoutAction = raw.timeoutAction ?? BATCH_DEFAULTS.timeoutAction;
  if (timeoutAction !== 'REJECT' && timeoutAction !== 'DELAY') {
    throw new InvalidOptionError(`${path}.timeoutAction`, "must be 'REJECT' or 'DELAY'", timeoutAction);
  }

  return {
    maxBatchSize, maxWaitMs, preferredBatchSizes, maxConcurrentBatches, priorityLevels, defaultPriority,
    queueTimeoutMs, timeoutAction, maxQueueSize,
    latencyObjective: objective(raw.latencyObjective, `${path}.latencyObjective`),
    shapeOf: shapeOf(raw.shapeOf, `${path}.shapeOf`),
    pad: padOptions(raw.pad, `${path}.pad`),
  };
}

/**
 * Applies a partial change to compiled options and compiles the result (what `BatchQueue.reconfigure` does).
 * A key present with the value `undefined` goes back to its default (`{ queueTimeoutMs: undefined }` removes
 * the queue timeout; `{ latencyObjective: undefined }` turns adaptive batching off).
 */
export function mergeBatchOptions<I>(current: CompiledBatchOptions<I>, change: BatchOptions<I>, path = 'batch'): CompiledBatchOptions<I> {
  if (typeof change !== 'object' || change === null || Array.isArray(change)) throw new InvalidOptionError(path, 'must be an object', change);
  return compileBatchOptions<I>({ ...(current as BatchOptions<I>), ...change }, path);
}

function shapeOf<I>(value: unknown, path: string): ((item: I) => string) | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'function') throw new InvalidOptionError(path, 'must be a function (item) => string', value);
  return value as (item: I) => string;
}

function objective(value: LatencyObjective | undefined, path: string): Required<LatencyObjective> | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new InvalidOptionError(path, 'must be an object like { percentile: 99, ms: 50 }', value);
  rejectUnknownKeys(value, OBJECTIVE_KEYS, path);
  const percentile = num(value.percentile, `${path}.percentile`, BATCH_DEFAULTS.percentile, 0);
  if (percentile <= 0 || percentile > 100) throw new InvalidOptionError(`${path}.percentile`, 'must be in (0, 100]', percentile);
  if (value.ms === undefined) throw new InvalidOptionError(`${path}.ms`, 'is required (the latency bound in milliseconds)');
  const ms = num(value.ms, `${path}.ms`, 0, 0);
  if (ms === 0) throw new InvalidOptionError(`${path}.ms`, 'must be > 0', 0);
  const decreaseFactor = num(value.decreaseFactor, `${path}.decreaseFactor`, BATCH_DEFAULTS.decreaseFactor, 0);
  if (decreaseFactor <= 0 || decreaseFactor >= 1) throw new InvalidOptionError(`${path}.decreaseFactor`, 'must be in (0, 1)', decreaseFactor);
  const windowBatches = int(value.windowBatches, `${path}.windowBatches`, BATCH_DEFAULTS.windowBatches, 1);
  return { percentile, ms, decreaseFactor, windowBatches };
}

function padOptions<I>(value: PadOptions<I> | undefined, path: string): PadOptions<I> | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new InvalidOptionError(path, 'must be an object like { bucket(shapeKey) { ... } }', value);
  rejectUnknownKeys(value, PAD_KEYS, path);
  if (typeof value.bucket !== 'function') throw new InvalidOptionError(`${path}.bucket`, 'must be a function (shapeKey: string) => string', value.bucket);
  if (value.apply !== undefined && typeof value.apply !== 'function') {
    throw new InvalidOptionError(`${path}.apply`, 'must be a function (items, bucketKey, shapeKeys) => items', value.apply);
  }
  return value.apply === undefined ? { bucket: value.bucket } : { bucket: value.bucket, apply: value.apply };
}

function preferred(value: number[] | readonly number[] | undefined, path: string, maxBatchSize: number, maxPath: string): readonly number[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw new InvalidOptionError(path, 'must be an array of batch sizes', value);
  const seen = new Set<number>();
  value.forEach((size: unknown, i: number) => {
    const at = `${path}[${i}]`;
    if (typeof size !== 'number' || !Number.isInteger(size)) throw new InvalidOptionError(at, 'must be an integer', size);
    if (size < 1) throw new InvalidOptionError(at, 'must be >= 1', size);
    if (size > maxBatchSize) throw new InvalidOptionError(at, `must be <= ${maxPath}=${maxBatchSize}`, size);
    if (seen.has(size)) throw new InvalidOptionError(at, 'duplicates an earlier preferred size', size);
    seen.add(size);
  });
  return [...seen].sort((a, b) => a - b);
}

function rejectUnknownKeys(value: object, known: ReadonlySet<string>, path: string): void {
  for (const key of Object.keys(value)) {
    if (!known.has(key)) throw new InvalidOptionError(`${path}.${key}`, `unknown option (known: ${[...known].join(', ')})`);
  }
}

function num(value: unknown, path: string, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || Number.isNaN(value)) throw new InvalidOptionError(path, 'must be a number', value);
  if (!Number.isFinite(value)) throw new InvalidOptionError(path, 'must be finite', value);
  if (value < min) throw new InvalidOptionError(path, `must be >= ${min}`, value);
  return value;
}

function int(value: unknown, path: string, fallback: number, min: number): number {
  const n = num(value, path, fallback, min);
  if (!Number.isInteger(n)) throw new InvalidOptionError(path, 'must be an integer', n);
  return n;
}
