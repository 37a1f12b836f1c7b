/**
 * Model multiplexing: one deployment serves many models by id. Each replica keeps up to
 * `multiplex.maxModelsPerReplica` of them loaded and evicts the least recently used; routers prefer replicas that
 * hold a request's model and spread a hot one to more replicas.
 *
 *   class Models {
 *     async loadModel(modelId: string): Promise<Weights> { return await Weights.load(`/models/${modelId}`); }
 *     async unloadModel(modelId: string, model: Weights): Promise<void> { await model.free(); }
 *     async predict(x: number[]): Promise<number[]> { return (await getModel<Weights>()).run(x); }
 *   }
 *   export default deployment(Models, { numReplicas: 2, multiplex: { maxModelsPerReplica: 3 } }).bind();
 *   // callers: handle.withOptions({ modelId: 'm1' }).predict(x), or HTTP with the header `x-shoal-model-id: m1`
 *
 * A request's model id is inherited by the handle calls it makes (as its deadline and priority are), unless the
 * handle sets its own.
 */
import { BadRequestError, IllegalStateError, InvalidOptionError } from './errors.ts';
import { requestContext } from './context.ts';

/** The HTTP header that names a request's model; the ingress reads it. */
export const MODEL_ID_HEADER = 'x-shoal-model-id';
/** The longest model id, in UTF-16 code units. */
export const MAX_MODEL_ID_CHARS = 256;

// Control characters would corrupt logs and metric labels; none has a use in a model's name.
const CONTROL = /[\u0000-\u001f\u007f]/;

/** A valid model id, or InvalidOptionError (400) naming `path` (the header, or the handle option). */
export function checkModelId(path: string, value: unknown): string {
  if (typeof value !== 'string') throw new InvalidOptionError(path, 'must be a string (the model id)', value);
  if (value.length === 0 || value.length > MAX_MODEL_ID_CHARS) {
    throw new InvalidOptionError(path, `must be 1-${MAX_MODEL_ID_CHARS} characters long, got ${value.length}`, value.length === 0 ? undefined : value);
  }
  if (CONTROL.test(value)) throw new InvalidOptionError(path, 'must not contain control characters', value);
  return value;
}

/** What a request's context carries of its replica's model cache (multiplexed deployments only). */
export interface ModelSource {
  /** The model of this id: held, being loaded (that load is shared), or loaded now by the deployment's loadModel. */
  get(modelId: string): Promise<unknown>;
}

/** One replica's model cache, for stats and metrics. Counters are totals since the replica started. */
export interface ModelCacheStats {
  /** Models held now (loaded, or being loaded), least recently used first. */
  readonly models: readonly string[];
  readonly maxModels: number;
  /** getModel() calls that found their model held or being loaded. */
  readonly hits: number;
  /** getModel() calls that had to load their model. */
  readonly misses: number;
  /** loadModel() calls that returned a model (an out-of-memory retry counts once). */
  readonly loads: number;
  readonly loadFailures: number;
  readonly evictions: number;
  /** Evicted models whose unloadModel waits for their requests in flight, or runs now. */
  readonly unloading: number;
}

/** The model id of the request running now, or undefined (none given, or outside a request). */
export function currentModelId(): string | undefined {
  return requestContext()?.modelId;
}

/**
 * The model of the request running now, from the replica's cache: loaded by the deployment's `loadModel(modelId)`
 * if it is not held. Inside a batched method's batch function it is the batch's model (a batch holds one model's
 * requests). Rejects with BadRequestError (400) when the request names no model, IllegalStateError when the
 * deployment is not multiplexed or this runs outside a request.
 */
export function getModel<M = unknown>(): Promise<M> {
  const ctx = requestContext();
  if (ctx === undefined) return Promise.reject(new IllegalStateError('getModel() was called outside a request: call it while a request of a multiplexed deployment runs'));
  if (ctx.models === undefined) {
    return Promise.reject(new IllegalStateError(`deployment "${ctx.deployment}" is not multiplexed: give it the multiplex option and a loadModel(modelId) method`));
  }
  if (ctx.modelId === undefined) {
    return Promise.reject(new BadRequestError(`the request to multiplexed deployment "${ctx.deployment}" names no model: send the ${MODEL_ID_HEADER} header, or call through handle.withOptions({ modelId })`, { deployment: ctx.deployment }));
  }
  return ctx.models.get(ctx.modelId) as Promise<M>;
}
