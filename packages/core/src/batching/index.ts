/**
 * Dynamic batching for one replica: callers submit one item each, a user function runs once per batch.
 * Transport-free; the replica host wires it to method calls.
 *
 * @example
 * ```ts
 * import { BatchQueue, itemError, shapeKeyOf } from './batching/index.ts';
 *
 * interface Tensor { dims: number[]; data: Float32Array }
 * const queue = new BatchQueue<Tensor, number>(
 *   { maxBatchSize: 16, maxWaitMs: 2, preferredBatchSizes: [8, 16], shapeOf: (t) => shapeKeyOf(t.dims) },
 *   async (tensors, ctx) => tensors.map((t) => (ctx.signal.aborted ? itemError(new Error('gone')) : t.data.length)),
 *   { name: 'rec.predict' },
 * );
 * const n = await queue.submit({ dims: [1, 3], data: new Float32Array(3) }, { deadlineMs: Date.now() + 100 });
 * queue.reconfigure({ maxBatchSize: 32, latencyObjective: { percentile: 99, ms: 50 } });
 * await queue.close();
 * ```
 */
export { BatchQueue } from './batch-queue.ts';
export type { BatchContext, BatchFunction, BatchObserver, BatchQueueState, BatchQueueStats, BatchReleaseReason, SubmitOptions } from './batch-queue.ts';
export { ItemError, itemError } from './item-error.ts';
export { shapeKeyOf } from './shape-key.ts';
export { BATCH_DEFAULTS, compileBatchOptions, mergeBatchOptions } from './options.ts';
export type { BatchOptions, CompiledBatchOptions, LatencyObjective, PadOptions, TimeoutAction } from './options.ts';
export { AdaptiveBatchController } from './adaptive.ts';
export type { AdaptiveSnapshot, BatchObservation, BatchingPays, EffectiveBatchLimits } from './adaptive.ts';
