/**
 * The context of the request a replica is running: its AbortSignal (aborted when the caller disconnects, the
 * deadline passes, or the call is cancelled) and its deadline. Read it with `requestContext()` from user code.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { Deadline } from './clock.ts';
import type { ModelSource } from './multiplex.ts';

export interface RequestContext {
  /** Aborted when the request is cancelled or its deadline passes. */
  readonly signal: AbortSignal;
  /** Absolute deadline, wall time (Date.now() ms; see Deadline), or undefined for none. */
  readonly deadline: Deadline | undefined;
  readonly app: string;
  readonly deployment: string;
  readonly replicaId: string;
  /** Priority the caller gave (handle option), used by batched methods. */
  readonly priority?: number | undefined;
  /**
   * Device indices the head placed this replica on, when it placed by device (gpus, gpuMemory, sharedBlobs).
   * Also set while the replica is constructed and its init() runs (then the signal never aborts).
   */
  readonly devices?: readonly number[] | undefined;
  /** The model the request names (header x-shoal-model-id or handle modelId); read it with currentModelId(). */
  readonly modelId?: string | undefined;
  /** The replica's model cache, in a multiplexed deployment; getModel() reads the request's model from it. */
  readonly models?: ModelSource | undefined;
  /** The request's id: its X-Request-ID header, or one the ingress generated (echoed in the answer). */
  readonly requestId?: string | undefined;
  /** The W3C trace context of this call's span (see tracing.ts); present on every request, sampled or not. */
  readonly trace?: TraceContext | undefined;
  /** The caller asked not to use caches (a handle's `cache: 'bypass'`): the semantic cache neither answers nor stores it. */
  readonly cacheBypass?: true | undefined;
}

/** A W3C trace context (traceparent): 32 hex digits of trace id, 16 of span id, and the sampled flag. */
export interface TraceContext {
  readonly traceId: string;
  readonly spanId: string;
  readonly sampled: boolean;
}

const KEY = Symbol.for('shoal.requestContext');
const g = globalThis as unknown as Record<symbol, AsyncLocalStorage<RequestContext> | undefined>;
/** One storage per process even if two copies of this package are loaded. */
export const contextStorage: AsyncLocalStorage<RequestContext> = g[KEY] ??= new AsyncLocalStorage<RequestContext>();

/** The context of the request running now, or undefined outside a request. */
export function requestContext(): RequestContext | undefined {
  return contextStorage.getStore();
}
