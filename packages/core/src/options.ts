/**
 * Deployment options: the documented input form, and the compiled form with every default filled in and every
 * unit normalised. Compiled once, when a deployment is declared; errors name the full option path.
 */
import { InvalidOptionError } from './errors.ts';
import { compileRollout, type CompiledRollout, type RolloutOptions } from './rollout-options.ts';
import { compileSlo, type CompiledSlo, type SloOptions } from './slo-options.ts';
import { compileCache, type CacheOptions, type CompiledCacheOptions } from './cache-options.ts';
import { compileSemanticCache, type CompiledSemanticCache, type SemanticCacheOptions } from './semantic-cache-options.ts';
import { compileConsume, type CompiledConsumeSource, type ConsumeOptions } from './consume-options.ts';

export interface ResourceOptions {
  /** CPU cores one replica reserves on its worker. @default 1 */
  cpus?: number;
  /** GPUs one replica reserves; fractions share one GPU logically (0.25 = four replicas per GPU). @default 0 */
  gpus?: number;
  /** Host memory one replica reserves, in bytes. @default 0 */
  memory?: number;
  /**
   * Device memory one replica needs for itself on each of its devices, in bytes (pool budget, private weights).
   * With `gpus` or `sharedBlobs`, the head places replicas on devices by free memory and refuses what cannot fit.
   * @default 0
   */
  gpuMemory?: number;
  /** Weight blobs shared with other replicas on a device (a model family's base): charged once per device. @default [] */
  sharedBlobs?: SharedBlobNeed[];
  /**
   * Kind of device that gpus, gpuMemory and sharedBlobs are placed on. 'host' places on the native host backend's
   * pseudo device, for development and tests on machines without a GPU. @default 'cuda'
   */
  device?: DeviceKind;
}

export type DeviceKind = 'cuda' | 'host';

/** A named weight blob and its size in bytes, as it occupies device memory. */
export interface SharedBlobNeed {
  name: string;
  bytes: number;
}

export interface DeploymentOptions {
  /** Unique name within the application. @default the class or function name */
  name?: string;
  /**
   * Replicas to keep running. Leave it out with `autoscaling`, which sets the count (starting at
   * `autoscaling.initialReplicas`). @default 1
   */
  numReplicas?: number;
  /** Requests one replica runs at once; more wait in the router's queue. @default 100 */
  maxOngoingRequests?: number;
  /** Requests the router queues for this deployment when every replica is full; past it, 503. @default 1000 */
  maxQueuedRequests?: number;
  /** Largest HTTP request body this deployment accepts when it is an ingress; past it, 413. @default 16 MiB */
  maxRequestBytes?: number;
  /**
   * Default deadline of a request (HTTP at the ingress, or a handle call) that brings none of its own (header
   * x-shoal-timeout-ms, handle timeoutMs, or one inherited from the calling request); past it, 504. 0 = none.
   * @default 0
   */
  requestTimeoutMs?: number;
  /**
   * A streamed answer whose consumer grants no credit (takes no chunk) for this long while the generator waits for
   * it is cancelled, with an error naming this option: a stalled client then frees its replica slot before its
   * deadline. 0 = no bound (the stream waits until its deadline or its consumer leaves). @default 0
   */
  streamIdleTimeoutMs?: number;
  /** Resources one replica reserves on its worker. */
  resources?: ResourceOptions;
  /**
   * Passed to the replica's `reconfigure(userConfig)` at start and whenever it changes, without a restart. Its
   * `batch` key is shoal's: `{ batch: { predict: { maxBatchSize: 32 } } }` overrides the options the code gave the
   * batched method `predict` (see `batch()`), applied before the hook runs.
   * @default undefined
   */
  userConfig?: unknown;
  /** How a new version replaces the running one: rolling (maxSurge, maxUnavailable), shadow, canary or experiment. @default a rolling update, maxSurge '25%', maxUnavailable 0 */
  rollout?: RolloutOptions;
  /** How often the controller calls the replica's `checkHealth()`. @default 10000 */
  healthCheckPeriodMs?: number;
  /** A health check slower than this counts as failed. @default 30000 */
  healthCheckTimeoutMs?: number;
  /** How long a draining replica may finish its ongoing requests before it is stopped. @default 20000 */
  gracefulShutdownTimeoutMs?: number;
  /**
   * Methods safe to run twice, which a router retries once on another replica when the worker running one died
   * mid-call: method names, 'fetch' for every HTTP request, or '*' for all. HTTP GET and HEAD are always retried
   * so. (A request that provably never ran is retried whatever its method.) @default []
   */
  idempotentMethods?: string[];
  /**
   * When this deployment is an application's ingress: the only methods its WebSocket clients may call
   * (docs/streaming.md, "Over WebSocket"). Without it they may call any method but fetch, the lifecycle hooks and
   * names starting with `_`, instance fields (continuousBatch(), batch()) included. @default undefined (all those)
   */
  websocketMethods?: string[];
  /** Scale the replica count with load instead of keeping `numReplicas`. @default undefined (a fixed count) */
  autoscaling?: AutoscalingOptions;
  /**
   * Serve many models by id from this deployment: the class defines `loadModel(modelId)` (and optionally
   * `unloadModel(modelId, model)`), user code reads the request's model with `getModel()`. @default undefined (one model)
   */
  multiplex?: MultiplexOptions;
  /**
   * Service level objectives: latency (p50, p95, p99, p999 in ms) and availability, over a compliance period; the
   * head reports attainment, error budget and burn rates (status, metrics). Changing them restarts no replica.
   * @default undefined (none)
   */
  slo?: SloOptions;
  /**
   * Answer repeated requests (same version, method and input) from an exact-match response cache, in each router's
   * memory or in Redis shared by every worker (docs/caching.md). Changing it restarts no replica.
   * @default undefined (no cache)
   */
  cache?: CacheOptions;
  /**
   * Semantic cache: answer a call with the answer to an earlier input whose embedding (computed by the class's
   * `embed` method) is at least `threshold` cosine-similar (docs/semantic-cache.md). @default undefined (none)
   */
  semanticCache?: SemanticCacheOptions;
  /**
   * Broker ingress: consume a Redis stream or a NATS JetStream stream, one call of `method` per message, each
   * answer written once to an output stream (docs/broker.md). One source or a list. @default undefined (none)
   */
  consume?: ConsumeOptions;
}

/**
 * Model multiplexing (see getModel()). Each replica holds at most maxModelsPerReplica models and evicts the least
 * recently used one to load another; routers send a request to a replica holding its model when one has room.
 */
export interface MultiplexOptions {
  /** Models one replica holds at once; loading one more evicts the least recently used. @default 3 */
  maxModelsPerReplica?: number;
  /**
   * Requests (running plus queued, as a router counts them) that every replica holding a model must have before a
   * router sends a request for it to a replica without it too, which then loads it: how a hot model spreads. At
   * most maxOngoingRequests. @default half of maxOngoingRequests, rounded up
   */
  hotOngoingRequests?: number;
}

/** Every multiplex option filled in; a valid input form too. */
export type CompiledMultiplex = Required<MultiplexOptions>;

/**
 * Autoscaling by load. The controller samples the deployment's ongoing requests (running on replicas plus waiting
 * in routers, summed over the deployment) every `metricsIntervalMs`, averages the samples of the last
 * `lookBackPeriodMs`, and wants ceil(average / targetOngoingRequests) replicas within [minReplicas, maxReplicas].
 * A change is made only once it has been wanted for the whole upscale or downscale delay. The delays, and the
 * downscale tolerance, keep a noisy load near a threshold from flapping the count.
 */
export interface AutoscalingOptions {
  /** Fewest replicas. 0 lets an idle deployment scale to zero; its next request then waits for a replica to start. @default 1 */
  minReplicas?: number;
  /** Most replicas. @default 100 */
  maxReplicas?: number;
  /** Replicas to start with, within [minReplicas, maxReplicas]. @default minReplicas */
  initialReplicas?: number;
  /** Ongoing requests (running plus queued) per replica to aim at. Lower scales out sooner. @default 2 */
  targetOngoingRequests?: number;
  /** How long a larger count must be wanted before scaling up. Scaling up from zero replicas never waits. @default 30000 */
  upscaleDelayMs?: number;
  /** How long a smaller count must be wanted before scaling down. @default 600000 */
  downscaleDelayMs?: number;
  /** How long zero replicas must be wanted, at one replica, before the last one stops. @default downscaleDelayMs */
  downscaleToZeroDelayMs?: number;
  /** The window of load samples averaged for each decision; at least metricsIntervalMs. @default 30000 */
  lookBackPeriodMs?: number;
  /**
   * Share of the gap between the current count and the one the load needs that one scaling step closes (a step is
   * at least one replica): below 1 damps the steps. At most 1 unless downscaleSmoothingFactor is given. @default 1
   */
  smoothingFactor?: number;
  /** smoothingFactor for scaling up; above 1 scales up past the need, for a load still rising. @default smoothingFactor */
  upscaleSmoothingFactor?: number;
  /** smoothingFactor for scaling down, at most 1: a scale-down never goes below the need. @default smoothingFactor */
  downscaleSmoothingFactor?: number;
  /**
   * Hysteresis, in [0, 1): a smaller count is wanted only if it would run at most (1 - this) x targetOngoingRequests
   * per replica, so a load just under a threshold does not scale down only to scale up again. @default 0.1
   */
  downscaleTolerance?: number;
  /** How often the controller samples the deployment's ongoing requests. @default 1000 */
  metricsIntervalMs?: number;
}

/** Every autoscaling option filled in; a valid input form too, so it recompiles to itself. */
export type CompiledAutoscaling = Required<AutoscalingOptions>;

/** What the scheduler counts per worker. */
export interface CompiledResources { cpus: number; gpus: number; memory: number }

/** Every resource option with its default filled in. */
export interface CompiledDeploymentResources extends CompiledResources {
  gpuMemory: number;
  sharedBlobs: SharedBlobNeed[];
  device: DeviceKind;
}

export interface CompiledDeploymentOptions {
  name: string;
  numReplicas: number;
  maxOngoingRequests: number;
  maxQueuedRequests: number;
  maxRequestBytes: number;
  requestTimeoutMs: number;
  /** Set when above 0 (see DeploymentOptions.streamIdleTimeoutMs). */
  streamIdleTimeoutMs?: number;
  resources: CompiledDeploymentResources;
  userConfig: unknown;
  healthCheckPeriodMs: number;
  healthCheckTimeoutMs: number;
  gracefulShutdownTimeoutMs: number;
  /** Set when the count autoscales; numReplicas is then the initial count. */
  autoscaling: CompiledAutoscaling | undefined;
  idempotentMethods: string[];
  /** Set when the deployment restricts what its WebSocket clients may call. */
  websocketMethods?: string[];
  rollout: CompiledRollout;
  /** Set when the deployment multiplexes models. */
  multiplex?: CompiledMultiplex;
  /** Set when the deployment declares objectives. */
  slo?: CompiledSlo;
  /** Set when the deployment caches its answers. */
  cache?: CompiledCacheOptions;
  /** Set when the deployment caches answers by embedding similarity. */
  semanticCache?: CompiledSemanticCache;
  /** Set when the deployment consumes broker streams. */
  consume?: CompiledConsumeSource[];
}

const NAME_RE = /^[A-Za-z_][A-Za-z0-9_.-]{0,127}$/;

export function checkInt(path: string, value: unknown, min: number, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value)) throw new InvalidOptionError(path, 'must be an integer', value);
  if (value < min || value > max) throw new InvalidOptionError(path, `must be between ${min} and ${max}`, value);
  return value;
}

export function checkNumber(path: string, value: unknown, min: number, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new InvalidOptionError(path, 'must be a finite number', value);
  if (value < min) throw new InvalidOptionError(path, `must be >= ${min}`, value);
  return value;
}

export function checkName(path: string, value: unknown): string {
  if (typeof value !== 'string' || !NAME_RE.test(value)) {
    throw new InvalidOptionError(path, 'must be 1-128 characters of letters, digits, _ . - starting with a letter or _', value);
  }
  return value;
}

const KNOWN = new Set(['name', 'numReplicas', 'autoscaling', 'maxOngoingRequests', 'maxQueuedRequests', 'maxRequestBytes', 'requestTimeoutMs', 'streamIdleTimeoutMs', 'resources', 'userConfig', 'healthCheckPeriodMs', 'healthCheckTimeoutMs', 'gracefulShutdownTimeoutMs', 'idempotentMethods', 'websocketMethods', 'batch', 'rollout', 'multiplex', 'slo', 'cache', 'semanticCache', 'consume']);

const RESOURCE_KEYS = ['cpus', 'gpus', 'memory', 'gpuMemory', 'sharedBlobs', 'device'];

const AUTOSCALING_KEYS: ReadonlyArray<keyof AutoscalingOptions> = [
  'minReplicas', 'maxReplicas', 'initialReplicas', 'targetOngoingRequests', 'upscaleDelayMs', 'downscaleDelayMs', 'downscaleToZeroDelayMs',
  'lookBackPeriodMs', 'smoothingFactor', 'upscaleSmoothingFactor', 'downscaleSmoothingFactor', 'downscaleTolerance', 'metricsIntervalMs',
];
/** The bound numReplicas has, so an autoscaled count can never reach what a fixed one could not. */
const MAX_REPLICAS = 10_000;

function checkPositive(path: string, value: unknown, fallback: number): number {
  const n = checkNumber(path, value, Number.NEGATIVE_INFINITY, fallback);
  if (n <= 0) throw new InvalidOptionError(path, 'must be > 0', n);
  return n;
}

function compileAutoscaling(input: unknown, path: string): CompiledAutoscaling {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) throw new InvalidOptionError(path, 'must be an object', input);
  for (const key of Object.keys(input)) {
    if (!(AUTOSCALING_KEYS as readonly string[]).includes(key)) throw new InvalidOptionError(`${path}.${key}`, `is not an autoscaling option (${AUTOSCALING_KEYS.join(', ')})`);
  }
  const a = input as AutoscalingOptions;
  const minReplicas = checkInt(`${path}.minReplicas`, a.minReplicas, 0, 1, MAX_REPLICAS);
  const maxReplicas = checkInt(`${path}.maxReplicas`, a.maxReplicas, 1, 100, MAX_REPLICAS);
  if (minReplicas > maxReplicas) throw new InvalidOptionError(`${path}.minReplicas`, `must be at most maxReplicas (${maxReplicas})`, minReplicas);
  const initialReplicas = checkInt(`${path}.initialReplicas`, a.initialReplicas, 0, minReplicas, MAX_REPLICAS);
  if (initialReplicas < minReplicas || initialReplicas > maxReplicas) {
    throw new InvalidOptionError(`${path}.initialReplicas`, `must be between minReplicas (${minReplicas}) and maxReplicas (${maxReplicas})`, initialReplicas);
  }
  const downscaleDelayMs = checkInt(`${path}.downscaleDelayMs`, a.downscaleDelayMs, 0, 600_000);
  const metricsIntervalMs = checkInt(`${path}.metricsIntervalMs`, a.metricsIntervalMs, 1, 1000);
  const lookBackPeriodMs = checkInt(`${path}.lookBackPeriodMs`, a.lookBackPeriodMs, 1, 30_000);
  if (lookBackPeriodMs < metricsIntervalMs) {
    throw new InvalidOptionError(`${path}.lookBackPeriodMs`, `must be at least metricsIntervalMs (${metricsIntervalMs}), or a window can hold no sample`, lookBackPeriodMs);
  }
  const smoothingFactor = checkPositive(`${path}.smoothingFactor`, a.smoothingFactor, 1);
  const downscaleSmoothingFactor = checkPositive(`${path}.downscaleSmoothingFactor`, a.downscaleSmoothingFactor, smoothingFactor);
  if (downscaleSmoothingFactor > 1) {
    const own = a.downscaleSmoothingFactor !== undefined;
    throw new InvalidOptionError(`${path}.${own ? 'downscaleSmoothingFactor' : 'smoothingFactor'}`,
      `must be at most 1${own ? '' : ' while it also sets downscaleSmoothingFactor'}: a scale-down never goes below the count the load needs`, downscaleSmoothingFactor);
  }
  const downscaleTolerance = checkNumber(`${path}.downscaleTolerance`, a.downscaleTolerance, 0, 0.1);
  if (downscaleTolerance >= 1) throw new InvalidOptionError(`${path}.downscaleTolerance`, 'must be below 1', downscaleTolerance);
  return {
    minReplicas,
    maxReplicas,
    initialReplicas,
    targetOngoingRequests: checkPositive(`${path}.targetOngoingRequests`, a.targetOngoingRequests, 2),
    upscaleDelayMs: checkInt(`${path}.upscaleDelayMs`, a.upscaleDelayMs, 0, 30_000),
    downscaleDelayMs,
    downscaleToZeroDelayMs: checkInt(`${path}.downscaleToZeroDelayMs`, a.downscaleToZeroDelayMs, 0, downscaleDelayMs),
    lookBackPeriodMs,
    smoothingFactor,
    upscaleSmoothingFactor: checkPositive(`${path}.upscaleSmoothingFactor`, a.upscaleSmoothingFactor, smoothingFactor),
    downscaleSmoothingFactor,
    downscaleTolerance,
    metricsIntervalMs,
  };
}

const MULTIPLEX_KEYS: ReadonlyArray<keyof MultiplexOptions> = ['maxModelsPerReplica', 'hotOngoingRequests'];
/** A bound for maxModelsPerReplica: each held model is reported to every router of the deployment. */
const MAX_MODELS_PER_REPLICA = 1024;

function compileMultiplex(input: unknown, maxOngoingRequests: number, path: string): CompiledMultiplex {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) throw new InvalidOptionError(path, 'must be an object', input);
  for (const key of Object.keys(input)) {
    if (!(MULTIPLEX_KEYS as readonly string[]).includes(key)) throw new InvalidOptionError(`${path}.${key}`, `is not a multiplex option (${MULTIPLEX_KEYS.join(', ')})`);
  }
  const m = input as MultiplexOptions;
  const hot = checkInt(`${path}.hotOngoingRequests`, m.hotOngoingRequests, 1, Math.ceil(maxOngoingRequests / 2));
  if (hot > maxOngoingRequests) throw new InvalidOptionError(`${path}.hotOngoingRequests`, `must be at most maxOngoingRequests (${maxOngoingRequests})`, hot);
  return { maxModelsPerReplica: checkInt(`${path}.maxModelsPerReplica`, m.maxModelsPerReplica, 1, 3, MAX_MODELS_PER_REPLICA), hotOngoingRequests: hot };
}

function compileSharedBlobs(path: string, value: unknown): SharedBlobNeed[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw new InvalidOptionError(path, 'must be an array of { name, bytes }', value);
  const seen = new Set<string>();
  return value.map((b: unknown, i) => {
    if (typeof b !== 'object' || b === null) throw new InvalidOptionError(`${path}[${i}]`, 'must be { name, bytes }', b);
    const { name, bytes } = b as Record<string, unknown>;
    if (typeof name !== 'string' || name === '') throw new InvalidOptionError(`${path}[${i}].name`, 'must be a non-empty string', name);
    if (seen.has(name)) throw new InvalidOptionError(`${path}[${i}].name`, 'is listed twice', name);
    seen.add(name);
    if (bytes === undefined) throw new InvalidOptionError(`${path}[${i}].bytes`, 'is required', bytes);
    return { name, bytes: checkInt(`${path}[${i}].bytes`, bytes, 0, 0) };
  });
}

function compileMethodNames(path: string, value: unknown): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw new InvalidOptionError(path, "must be an array of method names ('fetch' for HTTP, '*' for all)", value);
  return value.map((m: unknown, i) => (m === '*' ? m : checkName(`${path}[${i}]`, m)));
}

function compileWebSocketMethods(path: string, value: unknown): string[] {
  if (!Array.isArray(value)) throw new InvalidOptionError(path, 'must be an array of method names', value);
  return value.map((m: unknown, i) => {
    const name = checkName(`${path}[${i}]`, m);
    if (name === 'fetch') throw new InvalidOptionError(`${path}[${i}]`, 'names fetch(), which takes HTTP requests, not WebSocket messages', name);
    if (name.startsWith('_')) throw new InvalidOptionError(`${path}[${i}]`, 'starts with "_": such names are never callable', name);
    return name;
  });
}

export function compileDeploymentOptions(input: DeploymentOptions, defaultName: string, path = 'deployment'): CompiledDeploymentOptions {
  if (typeof input !== 'object' || input === null) throw new InvalidOptionError(path, 'must be an object', input);
  for (const key of Object.keys(input)) if (!KNOWN.has(key)) throw new InvalidOptionError(`${path}.${key}`, 'is not a deployment option');
  const name = checkName(`${path}.name`, input.name ?? defaultName);
  const res = input.resources ?? {};
  if (typeof res !== 'object' || res === null) throw new InvalidOptionError(`${path}.resources`, 'must be an object', res);
  for (const key of Object.keys(res)) if (!RESOURCE_KEYS.includes(key)) throw new InvalidOptionError(`${path}.resources.${key}`, `is not a resource (${RESOURCE_KEYS.join(', ')})`);
  const gpus = checkNumber(`${path}.resources.gpus`, res.gpus, 0, 0);
  if (gpus > 1 && !Number.isInteger(gpus)) throw new InvalidOptionError(`${path}.resources.gpus`, 'above 1 must be a whole number', gpus);
  const device = res.device ?? 'cuda';
  if (device !== 'cuda' && device !== 'host') throw new InvalidOptionError(`${path}.resources.device`, "must be 'cuda' or 'host'", device);
  const autoscaling = input.autoscaling === undefined ? undefined : compileAutoscaling(input.autoscaling, `${path}.autoscaling`);
  const numReplicas = checkInt(`${path}.numReplicas`, input.numReplicas, 0, autoscaling?.initialReplicas ?? 1, MAX_REPLICAS);
  // numReplicas equal to the initial count is let through: the compiled form carries it, and must recompile.
  if (autoscaling !== undefined && input.numReplicas !== undefined && numReplicas !== autoscaling.initialReplicas) {
    throw new InvalidOptionError(`${path}.numReplicas`, `must be left out with autoscaling, which sets the count (starting at autoscaling.initialReplicas, ${autoscaling.initialReplicas} here)`, numReplicas);
  }
  const compiled: CompiledDeploymentOptions = {
    name,
    numReplicas,
    maxOngoingRequests: checkInt(`${path}.maxOngoingRequests`, input.maxOngoingRequests, 1, 100),
    maxQueuedRequests: checkInt(`${path}.maxQueuedRequests`, input.maxQueuedRequests, 0, 1000),
    maxRequestBytes: checkInt(`${path}.maxRequestBytes`, input.maxRequestBytes, 1, 16 * 1024 * 1024),
    requestTimeoutMs: checkInt(`${path}.requestTimeoutMs`, input.requestTimeoutMs, 0, 0),
    resources: {
      cpus: checkNumber(`${path}.resources.cpus`, res.cpus, 0, 1),
      gpus,
      memory: checkInt(`${path}.resources.memory`, res.memory, 0, 0),
      gpuMemory: checkInt(`${path}.resources.gpuMemory`, res.gpuMemory, 0, 0),
      sharedBlobs: compileSharedBlobs(`${path}.resources.sharedBlobs`, res.sharedBlobs),
      device,
    },
    userConfig: input.userConfig,
    healthCheckPeriodMs: checkInt(`${path}.healthCheckPeriodMs`, input.healthCheckPeriodMs, 1, 10_000),
    healthCheckTimeoutMs: checkInt(`${path}.healthCheckTimeoutMs`, input.healthCheckTimeoutMs, 1, 30_000),
    gracefulShutdownTimeoutMs: checkInt(`${path}.gracefulShutdownTimeoutMs`, input.gracefulShutdownTimeoutMs, 0, 20_000),
    autoscaling,
    idempotentMethods: compileMethodNames(`${path}.idempotentMethods`, input.idempotentMethods),
    rollout: compileRollout(input.rollout, `${path}.rollout`),
  };
  const streamIdle = checkInt(`${path}.streamIdleTimeoutMs`, input.streamIdleTimeoutMs, 0, 0);
  if (streamIdle > 0) compiled.streamIdleTimeoutMs = streamIdle;
  if (input.websocketMethods !== undefined) compiled.websocketMethods = compileWebSocketMethods(`${path}.websocketMethods`, input.websocketMethods);
  if (input.multiplex !== undefined) compiled.multiplex = compileMultiplex(input.multiplex, compiled.maxOngoingRequests, `${path}.multiplex`);
  if (input.slo !== undefined) compiled.slo = compileSlo(input.slo, `${path}.slo`);
  if (input.cache !== undefined) compiled.cache = compileCache(input.cache, `${path}.cache`);
  if (input.semanticCache !== undefined) compiled.semanticCache = compileSemanticCache(input.semanticCache, `${path}.semanticCache`);
  if (input.consume !== undefined) compiled.consume = compileConsume(input.consume, name, `${path}.consume`);
  return compiled;
}
