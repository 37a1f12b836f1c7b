/**
 * The batched methods of one replica's user instance (fields declared with `batch(...)` or `continuousBatch(...)`):
 * their run-time options from the `batch` key of userConfig, their stats, and closing them when the replica stops.
 *
 * userConfig `{ batch: { predict: { maxBatchSize: 32 } } }` overrides the options the code declared for the field
 * `predict`; a later userConfig without that key goes back to the declared options. Every change is checked before
 * any is applied, so an invalid userConfig changes nothing. A continuous method takes continuous batching options
 * there (`{ batch: { generate: { maxBatchSize: 32 } } }`), and its stats have a batch queue's shape, so the worker's
 * batch metrics cover its steps too.
 */
import {
  InvalidOptionError, batchedMethodsOf, continuousMethodsOf, mergeBatchOptions, mergeContinuousOptions, type BatchObserver,
  type BatchOptions, type BatchQueueStats, type ContinuousOptions,
} from '@shoal/core';

/** One batched or continuous field, behind the few operations this file needs of either. */
interface Batched {
  /** Checks an override against the declared options; returns the compiled options to apply. Throws InvalidOptionError. */
  readonly plan: (change: object, path: string) => object;
  readonly reconfigure: (compiled: object) => void;
  readonly stats: () => BatchQueueStats;
  readonly close: (reason: Error) => Promise<void>;
  /** The override in force, as JSON, so an unchanged one does not restart the adaptive controller's window. */
  applied: string;
}

export class ReplicaBatching {
  private readonly methods = new Map<string, Batched>();

  /**
   * Finds the batched fields of `instance`, names their queues `deployment.field` in error messages, and gives
   * each queue the observer `observerFor` makes for its field.
   */
  constructor(instance: object, private readonly deployment: string, observerFor?: (method: string) => BatchObserver) {
    for (const [name, method] of batchedMethodsOf(instance)) {
      method.queue.rename(`${deployment}.${name}`);
      if (observerFor !== undefined) method.queue.setObserver(observerFor(name));
      const declared = method.queue.config;
      this.methods.set(name, {
        plan: (change, path) => mergeBatchOptions(declared, change as BatchOptions, path),
        reconfigure: (compiled) => method.reconfigure(compiled as BatchOptions),
        stats: () => method.stats(),
        close: (reason) => method.close(reason),
        applied: '{}',
      });
    }
    for (const [name, method] of continuousMethodsOf(instance)) {
      method.batcher.rename(`${deployment}.${name}`);
      if (observerFor !== undefined) method.batcher.setObserver(observerFor(name));
      const declared = method.batcher.config;
      this.methods.set(name, {
        plan: (change, path) => mergeContinuousOptions(declared, change as ContinuousOptions, path),
        reconfigure: (compiled) => method.reconfigure(compiled as ContinuousOptions),
        stats: () => method.stats(),
        close: (reason) => method.close(reason),
        applied: '{}',
      });
    }
  }

  get size(): number {
    return this.methods.size;
  }

  /** Whether `method` is one of the batched fields. */
  has(method: string): boolean {
    return this.methods.has(method);
  }

  /** Applies userConfig.batch (see the file comment); throws InvalidOptionError naming `userConfig.batch...`. */
  apply(userConfig: unknown): void {
    const overrides = batchSection(userConfig);
    if (overrides === undefined && this.methods.size === 0) return;
    const planned: Array<[Batched, object, string]> = [];
    for (const name of Object.keys(overrides ?? {})) {
      if (!this.methods.has(name)) {
        const known = [...this.methods.keys()];
        throw new InvalidOptionError(`userConfig.batch.${name}`, `is not a batched method of deployment "${this.deployment}" (batched: ${known.join(', ') || 'none'})`);
      }
    }
    for (const [name, b] of this.methods) {
      const change = overrides?.[name] ?? {};
      const json = JSON.stringify(change);
      if (json === b.applied) continue;
      planned.push([b, b.plan(change as object, `userConfig.batch.${name}`), json]);
    }
    for (const [b, next, json] of planned) {
      b.reconfigure(next);
      b.applied = json;
    }
  }

  stats(): Record<string, BatchQueueStats> {
    const out: Record<string, BatchQueueStats> = {};
    for (const [name, b] of this.methods) out[name] = b.stats();
    return out;
  }

  /**
   * Rejects what is still queued and waits up to timeoutMs for running batches to deliver. A batch function that
   * never returns cannot hold the replica's stop forever.
   */
  async close(timeoutMs: number, reason: Error): Promise<void> {
    if (this.methods.size === 0) return;
    const closing = Promise.all([...this.methods.values()].map((b) => b.close(reason)));
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([closing, new Promise<void>((resolve) => { timer = setTimeout(resolve, Math.max(0, timeoutMs)); })]);
    clearTimeout(timer);
  }
}

function batchSection(userConfig: unknown): Record<string, unknown> | undefined {
  if (typeof userConfig !== 'object' || userConfig === null || !('batch' in userConfig)) return undefined;
  const section = (userConfig as { batch: unknown }).batch;
  if (section === undefined) return undefined;
  if (typeof section !== 'object' || section === null || Array.isArray(section)) {
    throw new InvalidOptionError('userConfig.batch', 'must be an object of batched method name -> batch options', section);
  }
  for (const [name, change] of Object.entries(section)) {
    if (typeof change !== 'object' || change === null || Array.isArray(change)) {
      throw new InvalidOptionError(`userConfig.batch.${name}`, 'must be an object of batch options', change);
    }
  }
  return section as Record<string, unknown>;
}
