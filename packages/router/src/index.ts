export { Router, variantName, type RouterOptions, type RouteOptions, type Transport, type Dispatch } from './router.ts';
export { compareAnswers, emptyShadowCounts, type AnswerDiff } from './compare-answers.ts';
export { ReplicaSet, type ReplicaRef } from './replica-set.ts';
export { createHandle, type HandleTarget } from './handle.ts';
