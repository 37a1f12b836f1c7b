/**
 * onnxModel(): a deployment class that serves one ONNX model from an OrtPool. The class is what
 * `deployment(cls, opts)` from @shoal/core takes: the constructor starts loading the pool, init() waits for it
 * (the replica reports ready only after load and warm-up), infer() runs one request, and inferBatch() runs many
 * as few stacked runs as their shapes allow, for the replica's dynamic batcher.
 *
 * @example
 * import { deployment } from '@shoal/core';
 * const Mlp = onnxModel({ model: 'models/mlp/1/model.onnx', threads: 2 });
 * export default deployment(Mlp, { numReplicas: 2 }).bind();
 */
import { basename, dirname } from 'node:path';
import { IllegalStateError, ReplicaUnavailableError } from '@shoal/core';
import { batchKey, splitFeeds, stackFeeds } from './batch-tensors.ts';
import { compileOrtPoolOptions, type OrtPoolOptions } from './options.ts';
import { OrtPool, type RunOptions } from './ort-pool.ts';
import type { Feeds } from './tensor.ts';
import type { ModelMetadata } from './thread-protocol.ts';
import { validateFeeds } from './validate-feeds.ts';

/** The instance side of an onnxModel() class. */
export interface OnnxModelInstance {
  /** Resolves once the pool has loaded and warmed up; the replica host calls it before reporting ready. */
  init(): Promise<void>;
  /** Runs one request. Bad feeds reject with BadRequestError or ShapeMismatchError naming the input. */
  infer(inputs: Feeds, opts?: Pick<RunOptions, 'outputs'>): Promise<Feeds>;
  /**
   * Runs many requests. Requests whose inputs agree on everything but dim 0 are stacked along dim 0 into one run
   * and its outputs split back; others run on their own. The result has one entry per request, in order: its
   * outputs, or the Error that request alone failed with (a bad request never fails the rest of the batch).
   */
  inferBatch(items: Feeds[]): Promise<Array<Feeds | Error>>;
  /** Names, element types and shapes of the model's inputs and outputs (dynamic dims are strings). */
  metadata(): Promise<ModelMetadata>;
  /** Counters for metrics: session runs so far, and runs queued or running per thread (-1 for a dead thread). */
  stats(): { runs: number; pendingPerThread: number[] };
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

// A function, not a method: every method on the class is reachable through deployment handles.
function loaded(pool: OrtPool | undefined, name: string): OrtPool {
  if (pool === undefined) throw new IllegalStateError(`model "${name}" is not loaded yet: init() has not finished`);
  return pool;
}

/**
 * Returns a class serving the model described by `options` (an OrtPool's options). Options are checked here,
 * when the class is made, so a typo fails at declaration rather than in a replica.
 */
export function onnxModel(options: OrtPoolOptions): OnnxModelClass {
  const name = options.name ?? defaultModelName(options.model);
  compileOrtPoolOptions({ ...options, name });

  class OnnxModel implements OnnxModelInstance {
    private readonly loading: Promise<OrtPool>;
    private pool: OrtPool | undefined;

    constructor() {
      this.loading = OrtPool.load({ ...options, name });
      // init() surfaces a load failure; this keeps it from also being reported as unhandled.
      this.loading.catch(() => undefined);
    }

    async init(): Promise<void> { this.pool = await this.loading; }

    async infer(inputs: Feeds, opts: Pick<RunOptions, 'outputs'> = {}): Promise<Feeds> {
      return loaded(this.pool, name).run(inputs, opts);
    }

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
            results[idx[0]!] = await pool.run(items[idx[0]!]!);
            return;
          }
          const { feeds, sizes } = stackFeeds(idx.map((i) => items[i]!));
          const parts = splitFeeds(await pool.run(feeds), sizes);
          idx.forEach((i, k) => { results[i] = parts[k]!; });
        } catch (err) {
          for (const i of idx) results[i] = err as Error;
        }
      }));
      return results;
    }

    async metadata(): Promise<ModelMetadata> { return (await this.loading).metadata; }

    stats(): { runs: number; pendingPerThread: number[] } {
      const pool = loaded(this.pool, name);
      return { runs: pool.runs, pendingPerThread: pool.pendingPerThread() };
    }

    checkHealth(): void {
      const pool = loaded(this.pool, name);
      if (pool.liveThreads === 0) throw new ReplicaUnavailableError(`model "${name}" has no live ort thread`);
    }

    async shutdown(): Promise<void> {
      const pool = await this.loading.catch(() => undefined);
      await pool?.close();
    }
  }
  Object.defineProperty(OnnxModel, 'name', { value: name });
  return OnnxModel;
}
