/**
 * shoal: serve many ML models as replicated actors.
 *
 *   import { deployment, type Handle, type ShoalRequest } from '@shoal/core';
 *   class Doubler { double(x: number) { return 2 * x; } }
 *   class Api {
 *     constructor(private doubler: Handle<Doubler>) {}
 *     async fetch(req: ShoalRequest) { return { y: await this.doubler.double(Number(req.query.get('x'))) }; }
 *   }
 *   export default deployment(Api).bind(deployment(Doubler, { numReplicas: 2 }).bind());
 *   // shoal run app.ts  ->  curl 'localhost:8000/?x=21'  ->  {"y":42}
 */
export * from './errors.ts';
export { deployment, Deployment, Application, type Handle, type HandleStream, type CallOptions, streamMethodNames, type BindArgs, type FunctionInstance, type AppSpec, type DeploymentSpec, type DeploymentKind, type LifecycleHook, type OipModelInfo, OIP_MODEL, LIFECYCLE_HOOKS, buildAppSpec, collectGraph, forEachApplication, checkAppName } from './deployment.ts';
export { type DeploymentOptions, type AutoscalingOptions, type CompiledAutoscaling, type MultiplexOptions, type CompiledMultiplex, type ResourceOptions, type CompiledDeploymentOptions, type CompiledResources, type CompiledDeploymentResources, type SharedBlobNeed, type DeviceKind, compileDeploymentOptions, checkInt, checkNumber, checkName } from './options.ts';
export { validateAppSpec, assertModuleFile, moduleCodeHash } from './app-spec.ts';
export { ShoalRequest, HttpResponse, HttpError, response, toWireResponse, type WireHttpRequest, type WireHttpResponse } from './http.ts';
export { requestContext, contextStorage, type RequestContext, type TraceContext } from './context.ts';
export { reportLoadProgress, loadProgressOf, clearLoadProgress } from './load-progress.ts';
export { getModel, currentModelId, checkModelId, MODEL_ID_HEADER, MAX_MODEL_ID_CHARS, type ModelSource, type ModelCacheStats } from './multiplex.ts';
export { env } from './constants.ts';
export { createLogger, silentLogger, logger, processLogRing, processLogSink, setProcessLogWorker, type Logger, type LogLevel, type LogSink } from './log.ts';
export { LogRing, compileLogFilter, LOG_LEVELS, LOG_LEVEL_VALUES, MAX_LOG_QUERY_LIMIT, DEFAULT_LOG_QUERY_LIMIT, type LogFilter, type LogMeta, type TimedLine, type LogQueryAnswer, type LogFollower, type LogFollowOptions, type LogRingOptions } from './log-ring.ts';
export { formatLogRecord, formatLogLine, logLine } from './log-format.ts';
export { realClock, FakeClock, Deadline, flushMicrotasks, FAKE_WALL_EPOCH_MS, type Clock, type TimerHandle } from './clock.ts';
export { batch, isBatched, batchedMethodsOf, type BatchedMethod, type BatchCallOptions } from './batch.ts';
export * from './batching/index.ts';
export { continuousBatch, isContinuous, continuousMethodsOf, streamFieldNames, compileContinuousOptions, mergeContinuousOptions, ContinuousBatcher, CONTINUOUS_DEFAULTS, type ContinuousMethod, type ContinuousOptions, type CompiledContinuousOptions, type ContinuousCallOptions, type ContinuousStats, type Stepper, type StepOutput, type StepContext } from './continuous.ts';
export { startEventLoopDelayMonitor, measureEventLoopDelay, EventLoopDelayGauge, type EventLoopDelayStats, type EventLoopDelayMonitor } from './event-loop-delay.ts';
export { seededRandom } from './random.ts';
export { readRequestBody } from './read-body.ts';
export { registerProcessMetrics, type MetricsJson } from './process-metrics.ts';
export { LazyAbortController, abortableOf, type Abortable } from './lazy-abort.ts';
export { ChunkStream, StreamPump, STREAM_OWNER, isStreamOwner, type StreamOwner, type OpenedStream, DEFAULT_STREAM_WINDOW, DEFAULT_WIRE_STREAM_WINDOW, MAX_STREAM_WINDOW, isStreamResult, chunkBytes, windowToWire, windowFromWire, windowOfWire, type StreamWindow, type WireStreamWindow, type StreamEndReason, type ChunkSource, type StreamEndListener, type PumpSource, type StreamPumpHooks } from './stream.ts';
export { markNotRun, isNotRun } from './not-run.ts';
export { RetryBudget, type RetryBudgetOptions } from './retry-budget.ts';
export { compileRollout, resolveCount, type RolloutOptions, type CompiledRollout, type ShadowOptions, type CanaryOptions, type ExperimentRolloutOptions, type CompiledShadow, type CompiledCanary, type CompiledExperimentRollout } from './rollout-options.ts';
export { compileConsume, type ConsumeOptions, type ConsumeSourceOptions, type ConsumeCommonOptions, type ConsumeEncoding, type RedisConsumeOptions, type NatsConsumeOptions, type CompiledConsumeSource, type CompiledRedisConsume, type CompiledNatsConsume } from './consume-options.ts';
export { compileCache, type CacheOptions, type CompiledCacheOptions, type CacheStoreKind, type CacheHttpMethod } from './cache-options.ts';
export { compileSlo, LATENCY_OBJECTIVES, DEFAULT_SLO_WINDOW_MS, type SloOptions, type SloLatencyOptions, type CompiledSlo, type LatencyObjectiveName, type SloObjectiveName } from './slo-options.ts';
export { compileSemanticCache, type SemanticCacheOptions, type CompiledSemanticCache } from './semantic-cache-options.ts';
export { LatencyHistogram, LATENCY_BUCKETS, latencyBucket, bucketUpperMs, denseCounts, subtractCounts, addCounts, emptyCounts, quantileMs, type OutcomeCounts } from './latency-histogram.ts';
export { stickyBucket, pickWeighted } from './sticky-hash.ts';
export * from './cascade/index.ts';
export {
  REQUEST_ID_HEADER, TRACEPARENT_HEADER, MAX_REQUEST_ID_LENGTH, SpanKinds, applyTracingFlags, checkTracingOptions, flushTracing, formatTraceparent, newSpanId, newTraceContext, newTraceId,
  parseTraceparent, requestIdOf, startSpan, startTracing, stopTracing, traceContextOf, tracingActive, tracingCounts, tracingFromEnv,
  type ShoalSpan, type ShoalSpanKind, type TracingOptions,
} from './tracing.ts';
export { FastCounter, FastHistogram, CounterChild, HistogramChild, type FastMetricOptions } from './fast-metrics.ts';
