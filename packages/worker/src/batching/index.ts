/**
 * Dynamic batching for one replica.
 *
 * @example
 * ```ts
 * import { BatchQueue, failItem } from './batching/index.ts';
 *
 * const queue = new BatchQueue<number[], number>(
 *   { maxBatchSize: 16, maxWaitMs: 2, preferredBatchSizes: [8, 16] },
 *   async (rows, ctx) => rows.map((row, i) => (ctx.signals[i]?.aborted ? failItem(new Error('gone')) : row.length)),
 * );
 * const n = await queue.submit([1, 2, 3], { shapeKey: '3', deadlineMs: Date.now() + 100 });
 * await queue.close();
 * ```
 */
export { BatchQueue } from './batch-queue.ts';
export type { BatchContext, BatchFunction, BatchQueueState, BatchQueueStats, SubmitOptions } from './batch-queue.ts';
export { ItemError, failItem } from './item-error.ts';
export { BATCH_DEFAULTS, compileBatchOptions } from './options.ts';
export type { BatchOptions, CompiledBatchOptions, LatencyObjective, PadOptions, TimeoutAction } from './options.ts';
export { AdaptiveBatchController } from './adaptive.ts';
export type { AdaptiveSnapshot, BatchObservation, BatchingPays, EffectiveBatchLimits } from './adaptive.ts';
export { FakeClock, flushMicrotasks, systemClock } from './clock.ts';
export type { Clock, TimerHandle } from './clock.ts';
