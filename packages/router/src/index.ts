export { Router, variantName, type RouterOptions, type RouteOptions, type RouterStreamObserver, type Transport, type Dispatch } from './router.ts';
export { HandleStream } from './stream-handle.ts';
export { compareAnswers, emptyShadowCounts, type AnswerDiff } from './compare-answers.ts';
export { ReplicaSet, type ReplicaRef } from './replica-set.ts';
export { createHandle, type HandleTarget } from './handle.ts';
export { CacheHooks, CACHE_HEADER, type CacheObserver, type CacheStats, type CacheHooksOptions } from './cache-hook.ts';
