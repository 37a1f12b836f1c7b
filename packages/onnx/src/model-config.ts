/**
 * A model repository entry's optional config.json (<repo>/<model>/config.json): deployment settings (replicas,
 * resources, batching), ORT thread settings and the version policy. Compiled once; every error names the file
 * and the full key path.
 */
import { InvalidOptionError, checkInt, checkNumber, type CompiledResources, type ResourceOptions } from '@shoal/core';
import { compileOrtPoolOptions, type WarmupOptions } from './options.ts';
import type { ExecutionProviderName } from './thread-protocol.ts';

/** Which versions of a model are served (Triton's version_policy). */
export type VersionPolicy =
  /** The N highest-numbered versions. */
  | { latest: number }
  /** Every version found. */
  | { all: true }
  /** Exactly these versions; each must exist. */
  | { specific: number[] };

export interface BatchingConfig {
  /** Most requests stacked into one run. @default 8 */
  maxBatchSize?: number;
  /** How long a partial batch waits for more requests, in ms. @default 5 */
  maxWaitMs?: number;
  /** Batch sizes the model runs best at; each in [1, maxBatchSize]. @default [] */
  preferredBatchSizes?: number[];
}

export interface ThreadsConfig {
  /** ORT worker threads (one InferenceSession each) per replica. @default 1 */
  sessions?: number;
  /** onnxruntime intra-op threads per session. @default max(1, floor(cores / sessions)) */
  intraOp?: number;
  /** onnxruntime inter-op threads per session. @default 1 */
  interOp?: number;
  /** Let ORT's pool threads spin-wait between parallel sections (see OrtPoolOptions.spinning). @default false */
  spinning?: boolean;
  /** How much lower than the event loop inference threads run (nice increment 0-19; see OrtPoolOptions.nice). @default 0 */
  nice?: number;
}

export interface ModelConfig {
  /** Replicas of the model's deployment. @default 1 */
  numReplicas?: number;
  /** Resources one replica reserves. @default { cpus: 1, gpus: 0, memory: 0 } */
  resources?: ResourceOptions;
  /** Dynamic batching along dim 0; `true` takes the defaults, `false` or absent turns it off. @default off */
  batching?: boolean | BatchingConfig;
  /** Threads of one replica. */
  threads?: ThreadsConfig;
  /** Execution providers in order of preference; CUDA falls back to CPU with a warning. @default ["cpu"] */
  executionProviders?: ExecutionProviderName[];
  /** Warm-up before a replica reports ready (see OrtPoolOptions.warmup); feeds cannot be given in JSON. @default true */
  warmup?: boolean | Omit<WarmupOptions, 'feeds'>;
  /** Versions to serve. @default { latest: 1 } */
  versionPolicy?: VersionPolicy;
  /** The model file inside each version directory. @default "model.onnx" */
  modelFile?: string;
}

export interface CompiledBatching { maxBatchSize: number; maxWaitMs: number; preferredBatchSizes: number[] }

export interface CompiledModelConfig {
  numReplicas: number;
  resources: CompiledResources;
  batching: CompiledBatching | undefined;
  threads: { sessions: number; intraOp: number | undefined; interOp: number; spinning: boolean; nice: number };
  executionProviders: ExecutionProviderName[];
  warmup: boolean | Omit<WarmupOptions, 'feeds'>;
  versionPolicy: VersionPolicy;
  modelFile: string;
}

const KEYS = ['numReplicas', 'resources', 'batching', 'threads', 'executionProviders', 'warmup', 'versionPolicy', 'modelFile'];

function obj(path: string, v: unknown, keys: readonly string[]): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new InvalidOptionError(path, 'must be an object', v);
  for (const k of Object.keys(v)) if (!keys.includes(k)) throw new InvalidOptionError(`${path}.${k}`, `is not a known key (known: ${keys.join(', ')})`);
  return v as Record<string, unknown>;
}

function intList(path: string, v: unknown, min: number, max: number): number[] {
  if (!Array.isArray(v)) throw new InvalidOptionError(path, 'must be an array of integers', v);
  const seen = new Set<number>();
  return v.map((x, i) => {
    const n = checkInt(`${path}[${i}]`, x, min, min, max);
    if (seen.has(n)) throw new InvalidOptionError(`${path}[${i}]`, 'is a duplicate', n);
    seen.add(n);
    return n;
  });
}

function bool(path: string, v: unknown, fallback: boolean): boolean {
  if (v === undefined) return fallback;
  if (typeof v !== 'boolean') throw new InvalidOptionError(path, 'must be a boolean', v);
  return v;
}

function batching(p: string, v: unknown): CompiledBatching | undefined {
  if (v === undefined || v === false) return undefined;
  const b = v === true ? {} : obj(p, v, ['maxBatchSize', 'maxWaitMs', 'preferredBatchSizes']);
  const maxBatchSize = checkInt(`${p}.maxBatchSize`, b.maxBatchSize, 1, 8);
  const preferred = b.preferredBatchSizes === undefined ? [] : intList(`${p}.preferredBatchSizes`, b.preferredBatchSizes, 1, maxBatchSize);
  return { maxBatchSize, maxWaitMs: checkNumber(`${p}.maxWaitMs`, b.maxWaitMs, 0, 5), preferredBatchSizes: preferred.sort((a, c) => a - c) };
}

function versionPolicy(p: string, v: unknown): VersionPolicy {
  if (v === undefined) return { latest: 1 };
  const o = obj(p, v, ['latest', 'all', 'specific']);
  const given = Object.keys(o);
  if (given.length !== 1) throw new InvalidOptionError(p, 'must have exactly one of latest, all, specific', `${given.length} keys`);
  if (o.latest !== undefined) return { latest: checkInt(`${p}.latest`, o.latest, 1, 1) };
  if (o.all !== undefined) {
    if (o.all !== true) throw new InvalidOptionError(`${p}.all`, 'must be true', o.all);
    return { all: true };
  }
  const specific = intList(`${p}.specific`, o.specific, 1, Number.MAX_SAFE_INTEGER);
  if (specific.length === 0) throw new InvalidOptionError(`${p}.specific`, 'must list at least one version');
  return { specific: specific.sort((a, c) => a - c) };
}

/**
 * Validates a parsed config.json and fills defaults. `where` prefixes every option path, e.g. "models/mlp/config.json:".
 */
export function compileModelConfig(raw: unknown, where = 'config.json:'): CompiledModelConfig {
  const p = (k: string): string => `${where} ${k}`;
  const c = raw === undefined ? {} : obj(`${where} (top level)`, raw, KEYS);
  const res = c.resources === undefined ? {} : obj(p('resources'), c.resources, ['cpus', 'gpus', 'memory']);
  const threads = c.threads === undefined ? {} : obj(p('threads'), c.threads, ['sessions', 'intraOp', 'interOp', 'spinning', 'nice']);
  const providers = c.executionProviders ?? ['cpu'];
  if (!Array.isArray(providers) || providers.length === 0) throw new InvalidOptionError(p('executionProviders'), 'must be a non-empty array', providers);
  providers.forEach((x, i) => {
    if (x !== 'cpu' && x !== 'cuda') throw new InvalidOptionError(p(`executionProviders[${i}]`), 'must be "cpu" or "cuda"', x);
  });
  let warmup: CompiledModelConfig['warmup'] = true;
  if (typeof c.warmup === 'boolean') warmup = c.warmup;
  else if (c.warmup !== undefined) {
    warmup = obj(p('warmup'), c.warmup, ['dims', 'fill', 'runs']) as Omit<WarmupOptions, 'feeds'>;
    try {
      compileOrtPoolOptions({ model: 'model.onnx', warmup });
    } catch (err) {
      // Same checks as OrtPool's, reported against this file.
      if (err instanceof InvalidOptionError) throw new InvalidOptionError(p(String(err.details?.path)), err.message.replace(/^invalid option [^:]+: /, ''));
      throw err;
    }
  }
  const modelFile = c.modelFile ?? 'model.onnx';
  if (typeof modelFile !== 'string' || modelFile === '' || /[\\/]/.test(modelFile)) throw new InvalidOptionError(p('modelFile'), 'must be a file name without directories', modelFile);
  return {
    numReplicas: checkInt(p('numReplicas'), c.numReplicas, 0, 1, 10_000),
    resources: {
      cpus: checkNumber(p('resources.cpus'), res.cpus, 0, 1),
      gpus: checkNumber(p('resources.gpus'), res.gpus, 0, 0),
      memory: checkInt(p('resources.memory'), res.memory, 0, 0),
    },
    batching: batching(p('batching'), c.batching),
    threads: {
      sessions: checkInt(p('threads.sessions'), threads.sessions, 1, 1, 1024),
      intraOp: threads.intraOp === undefined ? undefined : checkInt(p('threads.intraOp'), threads.intraOp, 1, 1, 1024),
      interOp: checkInt(p('threads.interOp'), threads.interOp, 1, 1, 1024),
      spinning: bool(p('threads.spinning'), threads.spinning, false),
      nice: checkInt(p('threads.nice'), threads.nice, 0, 0, 19),
    },
    executionProviders: [...providers] as ExecutionProviderName[],
    warmup,
    versionPolicy: versionPolicy(p('versionPolicy'), c.versionPolicy),
    modelFile,
  };
}
