/**
 * Batched methods. Declare one as a class field; callers (through handles or HTTP) pass one item, the replica's
 * batch queue gathers items and calls your function once with an array:
 *
 *   class Embedder {
 *     embed = batch(async (texts: string[]) => this.model.run(texts), { maxBatchSize: 32, maxWaitMs: 5 });
 *   }
 *   // elsewhere: await embedderHandle.embed('one text')
 *
 * The request's AbortSignal, deadline and priority travel into the queue: a cancelled or expired item leaves the
 * queue at once. In a multiplexed deployment a batch holds the requests of one model only, and getModel() inside
 * the batch function returns that model (`ctx.modelId` names it). Options change at run time with `reconfigure` (or the `batch` key of userConfig, see the replica
 * host), without restarting the replica.
 */
import { BatchQueue, type BatchFunction, type BatchQueueStats } from './batching/batch-queue.ts';
import type { BatchOptions } from './batching/options.ts';
import { contextStorage, requestContext, type RequestContext } from './context.ts';

const BATCHED = Symbol.for('shoal.batched');

export interface BatchCallOptions {
  /** Priority level; higher is served first. @default the request's priority, else options.defaultPriority */
  priority?: number;
  /** Items with different shape keys never share a batch (see shapeKeyOf). */
  shapeKey?: string;
}

/** A batched method: call it with one item. */
export interface BatchedMethod<I, O> {
  (item: I, opts?: BatchCallOptions): Promise<O>;
  readonly [BATCHED]: true;
  readonly queue: BatchQueue<I, O>;
  /** Changes options at run time; queued items are kept. */
  reconfigure(change: BatchOptions<I>): void;
  stats(): BatchQueueStats;
  close(reason?: unknown): Promise<void>;
}

export function batch<I, O>(fn: BatchFunction<I, O>, options: BatchOptions<I> = {}, name?: string): BatchedMethod<I, O> {
  // What a batch of one model runs in: the replica's side of the context of a request that named a model (every
  // request of one replica shares it), with the batch's model id and signal, so getModel() reads the batch's model.
  let replicaScope: Omit<RequestContext, 'signal' | 'deadline' | 'priority' | 'modelId'> | undefined;
  const run: BatchFunction<I, O> = (items, bctx) => {
    const scope = replicaScope;
    if (bctx.modelId === undefined || scope === undefined) return fn(items, bctx);
    return contextStorage.run({ ...scope, signal: bctx.signal, deadline: undefined, modelId: bctx.modelId }, fn, items, bctx);
  };
  const queue = new BatchQueue<I, O>(options, run, name === undefined ? {} : { name });
  const method = ((item: I, opts: BatchCallOptions = {}): Promise<O> => {
    const ctx = requestContext();
    const modelId = ctx?.modelId;
    if (modelId !== undefined && replicaScope === undefined) {
      replicaScope = { app: ctx!.app, deployment: ctx!.deployment, replicaId: ctx!.replicaId, devices: ctx!.devices, models: ctx!.models };
    }
    const priority = opts.priority ?? ctx?.priority;
    return queue.submit(item, {
      ...(ctx !== undefined ? { signal: ctx.signal } : {}),
      ...(ctx?.deadline !== undefined ? { deadlineMs: ctx.deadline } : {}),
      ...(priority !== undefined ? { priority } : {}),
      ...(opts.shapeKey !== undefined ? { shapeKey: opts.shapeKey } : {}),
      ...(modelId !== undefined ? { modelId } : {}),
    });
  }) as BatchedMethod<I, O>;
  Object.defineProperties(method, {
    [BATCHED]: { value: true },
    queue: { value: queue },
    reconfigure: { value: (change: BatchOptions<I>) => queue.reconfigure(change) },
    stats: { value: () => queue.stats() },
    close: { value: (reason?: unknown) => queue.close(reason) },
  });
  return method;
}

export function isBatched(value: unknown): value is BatchedMethod<unknown, unknown> {
  return typeof value === 'function' && (value as { [BATCHED]?: boolean })[BATCHED] === true;
}

/** Batched methods of an instance, by field name. */
export function batchedMethodsOf(instance: object): Map<string, BatchedMethod<unknown, unknown>> {
  const out = new Map<string, BatchedMethod<unknown, unknown>>();
  for (const k of Object.getOwnPropertyNames(instance)) {
    const v = (instance as Record<string, unknown>)[k];
    if (isBatched(v)) out.set(k, v);
  }
  return out;
}
