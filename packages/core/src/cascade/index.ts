/**
 * Cascade routing: a small model first, the large one when the small one is not confident enough.
 *
 * @example
 * ```ts
 * import { cascade, deployment } from '@shoal/core';
 * class Small { predict(x: number) { return { label: x > 0 ? 'pos' : 'neg', score: Math.min(1, Math.abs(x)) }; } }
 * class Large { predict(x: number) { return { label: x >= 0 ? 'pos' : 'neg', score: 1 }; } }
 * export default cascade({
 *   name: 'classify', small: deployment(Small).bind(), large: deployment(Large).bind(), method: 'predict',
 *   confidence: (out) => out.score, threshold: 0.8, auditSampleRate: 0.05, agree: (a, b) => a.label === b.label,
 * });
 * ```
 */
export { cascade, type CascadeInstance, type CascadeArgs, type CascadeResult } from './cascade.ts';
export { compileCascadeOptions, CASCADE_OWN_METHODS, type CascadeOptions, type CompiledCascadeOptions, type EscalationReason, type SmallErrorPolicy } from './options.ts';
export { CascadeRunner, AUDIT_PRIORITY, type CascadeAnswer, type CascadeModelHandle } from './runner.ts';
export { CascadeStats, fanOut, type CascadeStatsJson, type CascadeObserver, type CascadeModel, type CascadeCallPurpose, type AuditResult, type LatencyJson } from './stats.ts';
export { registerCascadeMetrics, prometheusObserver, type CascadeMetricsOptions } from './metrics.ts';
export { serveCascadeHttp, CASCADE_MODEL_HEADER, CASCADE_CONFIDENCE_HEADER, CASCADE_ESCALATION_HEADER } from './http.ts';
