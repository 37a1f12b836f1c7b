/**
 * onnxModel(): a deployment class that serves one ONNX model from an OrtPool. The class is what
 * `deployment(cls, opts)` from @shoal/core takes: the constructor starts loading the pool, init() waits for it
 * (the replica reports ready only after load and warm-up), infer() runs one request, and inferBatch() runs many
 * as few stacked runs as their shapes allow. With `batching`, infer() is a batched method (@shoal/core's
 * batch()): the replica's batcher gathers concurrent requests whose non-batch dims agree and hands them to
 * inferBatch() as one stacked run.
 *
 * @example
 * import { deployment } from '@shoal/core';
 * const Mlp = onnxModel({ model: 'models/mlp/1/model.onnx', threads: 2, batching: { maxBatchSize: 32, maxWaitMs: 2 } });
 * export default deployment(Mlp, { numReplicas: 2 }).bind();
 */
import { basename, dirname } from 'node:path';
import {
  IllegalStateError, InvalidOptionError, OIP_MODEL, ReplicaUnavailableError, batch, compileBatchOptions, itemError,
  type OipModelInfo,
  type BatchOptions, type BatchQueueStats, type BatchedMethod,
} from '@shoal/core';
import { batchKey, splitFeeds, stackFeeds } from './batch-tensors.ts';
import { EventLoopDelayGauge, type EventLoopDelayStats } from '@shoal/core';
import { compileOrtPoolOptions, type OrtPoolOptions } from './options.ts';
import { OrtPool } from './ort-pool.ts';
import { reportModelRead } from './model-read-progress.ts';
import { isFromOrtThread } from './ort-thread-client.ts';
import { countTensorCopy, tensorCopies, validateFeeds, type Feeds, type ModelMetadata, type NumericArray, type TensorCopyStats } from '@shoal/oip';

/** The batcher's options, less the shape key: requests share a batch exactly when their non-batch dims agree. */
export type OnnxBatchingOptions = Omit<BatchOptions<Feeds>, 'shapeOf' | 'pad'>;

export interface OnnxModelOptions extends OrtPoolOptions {
  /**
   * Dynamic batching of infer() along dim 0. `true` takes @shoal/core's batch defaults; an object sets them.
   * maxConcurrentBatches defaults to `threads` (one batch per ORT session): while every session runs, requests
   * gather into the next batch instead of being dispatched in small ones behind it.
   * @default false (each infer() is its own run)
   */
  batching?: boolean | OnnxBatchingOptions;
  /** Sampling period of the event-loop delay gauge reported by stats(). @default 10 */
  eventLoopResolutionMs?: number;
  /** The model's version over the Open Inference Protocol (/v2/models/NAME/versions/VERSION). @default '1' */
  version?: string;
}

/** What stats() reports: counters for metrics and benchmarks. */
export interface OnnxModelStats {
  /** Session runs handed to ORT threads so far (a stacked batch is one run). */
  runs: number;
  /** Runs queued or running per ORT thread (-1 for a dead thread). */
  pendingPerThread: number[];
  /** Event-loop delay of the process hosting this replica, since start or the last `stats(true)`. */
  eventLoopDelay: EventLoopDelayStats;
  /** The dynamic batcher's gauges and counters; undefined without batching. */
  batching: BatchQueueStats | undefined;
  /**
   * Copies of tensor bytes made so far in the process hosting this replica (and its ORT threads), per path and
   * site: @shoal/oip's tensorCopies(), shared by every model in the process.
   */
  tensorCopies: TensorCopyStats;
}

/** The instance side of an onnxModel() class. */
export interface OnnxModelInstance {
  /** Resolves once the pool has loaded and warmed up; the replica host calls it before reporting ready. */
  init(): Promise<void>;
  /**
   * Runs one request (batched with others when the class was made with `batching`). Bad feeds reject with
   * BadRequestError or ShapeMismatchError naming the input.
   */
  readonly infer: (inputs: Feeds) => Promise<Feeds>;
  /**
   * Runs many requests. Requests whose inputs agree on everything but dim 0 are stacked along dim 0 into one run
   * and its outputs split back; others run on their own. The result has one entry per request, in order: its
   * outputs, or the Error that request alone failed with (a bad request never fails the rest of the batch).
   */
  inferBatch(items: Feeds[]): Promise<Array<Feeds | Error>>;
  /** Names, element types and shapes of the model's inputs and outputs (dynamic dims are strings). */
  metadata(): Promise<ModelMetadata>;
  /** Counters for metrics; `reset` starts a new event-loop delay window. */
  stats(reset?: boolean): OnnxModelStats;
  /** Throws when no ORT thread is alive, so the controller replaces the replica. */
  checkHealth(): void;
  /** Releases the sessions and stops the threads. */
  shutdown(): Promise<void>;
}

export type OnnxModelClass = new () => OnnxModelInstance;

/** A deployment name for a model path: the model directory for <repo>/<name>/<version>/model.onnx, else the file stem. */
export function defaultModelName(model: string | Uint8Array): string {
  if (typeof model !== 'string') return 'OnnxModel';
  const file = basename(model).replace(/\.onnx$/i, '');
  const versionDir = dirname(model);
  const stem = file === 'model' && /^\d+$/.test(basename(versionDir)) ? basename(dirname(versionDir)) : file;
  const clean = stem.replace(/[^A-Za-z0-9_.-]/g, '_');
  return /^[A-Za-z_]/.test(clean) ? clean : `m_${clean}`;
}

/** True when every input's dim 0 is dynamic, so requests can be stacked along it. */
export function canStack(metadata: ModelMetadata): boolean {
  return metadata.inputs.length > 0 && metadata.inputs.every((i) => i.shape.length > 0 && typeof i.shape[0] === 'string');
}

/**
 * Counts as a copy every output whose bytes are not in a buffer an ORT thread posted: the outputs should leave
 * here as the thread's transferred buffers or views into them (a stacked batch's rows), so anything else was
 * copied on this thread on the way. Returns the outputs.
 */
function auditOutputs(outputs: Feeds): Feeds {
  for (const t of Object.values(outputs)) {
    if (!Array.isArray(t.data) && !isFromOrtThread(t.data as NumericArray)) countTensorCopy('output', 'onnx.main-thread', t.data.byteLength);
  }
  return outputs;
}

// A function, not a method: every method on the class is reachable through deployment handles.
function loaded(pool: OrtPool | undefined, name: string): OrtPool {
  if (pool === undefined) throw new IllegalStateError(`model "${name}" is not loaded yet: init() has not finished`);
  return pool;
}

/** Compiles `batching` once, at declaration; errors name `batching.<key>`. */
function compileBatching(b: OnnxModelOptions['batching'], threads: number): BatchOptions<Feeds> | undefined {
  if (b === undefined || b === false) return undefined;
  if (b !== true && (typeof b !== 'object' || b === null || Array.isArray(b))) throw new InvalidOptionError('batching', 'must be a boolean or an object', b);
  const given = b === true ? {} : b;
  for (const k of ['shapeOf', 'pad']) {
    if (k in given) throw new InvalidOptionError(`batching.${k}`, 'is set by onnxModel (requests batch when their non-batch dims agree)');
  }
  // One batch per session. Two (one queued in the ORT thread behind the running one) keeps a session from idling
  // while its next batch is dispatched, but under saturation the queued batch leaves with whatever few requests
  // had arrived, and small batches beget small batches: bench/models (MLP, 256 connections, 2 cores) formed
  // batches of 25 on average with two, 33-42 with one, and bursts of 128 answered faster with one.
  const options: BatchOptions<Feeds> = { maxConcurrentBatches: threads, ...given, shapeOf: batchKey };
  compileBatchOptions<Feeds>(options, 'batching');
  return options;
}

/**
 * Returns a class serving the model described by `options`. Options are checked here, when the class is made,
 * so a typo fails at declaration rather than in a replica.
 */
export function onnxModel(options: OnnxModelOptions): OnnxModelClass {
  const { batching, eventLoopResolutionMs, version, ...poolOptions } = options;
  if (version !== undefined && (typeof version !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(version))) throw new InvalidOptionError('version', 'must be 1-64 characters of letters, digits, _ . -', version);
  const name = poolOptions.name ?? defaultModelName(poolOptions.model);
  const compiled = compileOrtPoolOptions({ ...poolOptions, name });
  const batchOptions = compileBatching(batching, compiled.threads);
  if (eventLoopResolutionMs !== undefined && (!Number.isInteger(eventLoopResolutionMs) || eventLoopResolutionMs < 1)) {
    throw new InvalidOptionError('eventLoopResolutionMs', 'must be an integer >= 1', eventLoopResolutionMs);
  }

  class OnnxModel implements OnnxModelInstance {
    private readonly loading: Promise<OrtPool>;
    private pool: OrtPool | undefined;
    private readonly delay = new EventLoopDelayGauge(eventLoopResolutionMs ?? 10);
    // A #private field: the batched method is listed once, as `infer`, by anything that scans the instance.
    readonly #batcher: BatchedMethod<Feeds, Feeds> | undefined;
    readonly infer: (inputs: Feeds) => Promise<Feeds>;

    constructor() {
      this.loading = OrtPool.load({ ...poolOptions, name });
      // init() surfaces a load failure; this keeps it from also being reported as unhandled.
      this.loading.catch(() => undefined);
      // Bytes of the model file read, for `shoal deploy` (the sessions' own read is native and silent).
      if (typeof poolOptions.model === 'string') {
        const read = reportModelRead(poolOptions.model);
        this.loading.finally(() => read.stop()).catch(() => undefined);
      }
      this.#batcher = batchOptions === undefined
        ? undefined
        : batch<Feeds, Feeds>(async (items) => (await this.inferBatch(items)).map((r) => (r instanceof Error ? itemError(r) : r)), batchOptions, `${name}.infer`);
      this.infer = this.#batcher ?? (async (inputs: Feeds) => auditOutputs(await loaded(this.pool, name).run(inputs)));
    }

    async init(): Promise<void> { this.pool = await this.loading; }

    async inferBatch(items: Feeds[]): Promise<Array<Feeds | Error>> {
      const pool = loaded(this.pool, name);
      const results: Array<Feeds | Error> = new Array<Feeds | Error>(items.length);
      const stack = canStack(pool.metadata);
      const groups = new Map<string, number[]>();
      items.forEach((feeds, i) => {
        try {
          validateFeeds(name, pool.metadata, feeds);
          const key = stack ? batchKey(feeds) : `#${i}`;
          const g = groups.get(key);
          if (g === undefined) groups.set(key, [i]); else g.push(i);
        } catch (err) {
          results[i] = err as Error;
        }
      });
      await Promise.all([...groups.values()].map(async (idx) => {
        try {
          if (idx.length === 1) {
            results[idx[0]!] = auditOutputs(await pool.run(items[idx[0]!]!));
            return;
          }
          const { feeds, sizes } = stackFeeds(idx.map((i) => items[i]!));
          const parts = splitFeeds(await pool.run(feeds), sizes);
          idx.forEach((i, k) => { results[i] = auditOutputs(parts[k]!); });
        } catch (err) {
          for (const i of idx) results[i] = err as Error;
        }
      }));
      return results;
    }

    async metadata(): Promise<ModelMetadata> { return (await this.loading).metadata; }

    stats(reset = false): OnnxModelStats {
      const pool = loaded(this.pool, name);
      return { runs: pool.runs, pendingPerThread: pool.pendingPerThread(), eventLoopDelay: this.delay.snapshot(reset), batching: this.#batcher?.stats(), tensorCopies: tensorCopies() };
    }

    checkHealth(): void {
      const pool = loaded(this.pool, name);
      if (pool.liveThreads === 0) throw new ReplicaUnavailableError(`model "${name}" has no live ort thread`);
    }

    async shutdown(): Promise<void> {
      // The replica drains its requests before calling shutdown(); close() lets any batch still running finish.
      await this.#batcher?.close();
      this.delay.close();
      const pool = await this.loading.catch(() => undefined);
      await pool?.close();
    }
  }
  Object.defineProperty(OnnxModel, 'name', { value: name });
  // Every ingress serves this deployment over the Open Inference Protocol as /v2/models/<name>.
  const oip: OipModelInfo = { model: name, version: version ?? '1', platform: 'onnxruntime_onnx' };
  Object.defineProperty(OnnxModel, OIP_MODEL, { value: oip });
  return OnnxModel;
}
