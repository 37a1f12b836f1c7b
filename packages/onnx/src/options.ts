/** OrtPool's options: the documented interface and the one function that validates it and fills defaults. */
import { availableParallelism } from 'node:os';
import { InvalidOptionError } from '@shoal/core';
import type { Feeds } from '@shoal/oip';
import type { ExecutionProviderName } from './thread-protocol.ts';

/** The slice of a logger OrtPool uses; @shoal/core's Logger fits. */
export interface OnnxLogger {
  warn(msg: string, fields?: Record<string, unknown>): void;
}

export const consoleLogger: OnnxLogger = {
  warn: (msg, fields) => console.warn(fields === undefined ? msg : `${msg} ${JSON.stringify(fields)}`),
};

export interface WarmupOptions {
  /** Explicit warm-up inputs; each is run once on every thread. When unset, inputs are generated from metadata. */
  feeds?: Feeds[];
  /** Sizes of symbolic (dynamic) dims by name, e.g. `{ batch: 8, width: 320 }`. Unnamed dynamic dims get 1. @default {} */
  dims?: Record<string, number>;
  /** Value of generated inputs. @default 'zeros' */
  fill?: 'zeros' | 'ones';
  /** Generated warm-up runs per thread. @default 1 */
  runs?: number;
}

export interface OrtPoolOptions {
  /** Path to an .onnx file, or the model's bytes (copied once per thread). */
  model: string | Uint8Array;
  /** Name used in logs and error messages. @default the file name, or "model" for bytes */
  name?: string;
  /** Worker threads, each holding its own InferenceSession. @default 1 */
  threads?: number;
  /** onnxruntime intra-op threads per worker thread. @default max(1, floor(os.availableParallelism() / threads)) */
  intraOpThreads?: number;
  /** onnxruntime inter-op threads per worker thread. @default 1 */
  interOpThreads?: number;
  /**
   * Let onnxruntime's intra-op and inter-op pool threads spin-wait for work between parallel sections (its own
   * default). Spinning trades CPU for a little latency; on cores shared with event loops (the worker's, the head's)
   * that CPU is taken from them, so shoal turns it off unless asked: false sets the session config entries
   * `session.intra_op.allow_spinning` and `session.inter_op.allow_spinning` to '0', true to '1'.
   * @default false
   */
  spinning?: boolean;
  /**
   * How much lower than the worker's event loop inference threads run (a nice increment, 0-19; Linux). Inference
   * takes every core it is given; at equal priority the event loop that feeds it (and answers health checks) waits
   * for the scheduler behind it. Lowered, the event loop runs as soon as it has work and inference takes the rest.
   * 0 leaves the priority alone. Where the priority cannot be changed, the pool logs why once and runs anyway.
   * A trade-off, measured by bench/models on 2 shared cores (MLP at saturation): nice 5 took the worker's
   * event-loop delay p99 from 15.8 to 10.8 ms and throughput from 4401 to 3802 items/s. Off by default.
   * @default 0
   */
  nice?: number;
  /** Execution providers in order of preference. @default ['cpu'] */
  executionProviders?: ExecutionProviderName[];
  /** When a non-CPU provider fails to load, fall back to CPU with a logged warning instead of failing. @default true */
  cpuFallback?: boolean;
  /** Warm-up runs on every thread before load() resolves; `false` skips them. @default true */
  warmup?: boolean | WarmupOptions;
  /** Most runs queued or running across all threads; past it run() rejects with QueueFullError. @default 1024 */
  maxPending?: number;
  /** Time allowed for every thread to load the model and finish warm-up. @default 120000 */
  loadTimeoutMs?: number;
  /** Where the CPU-fallback warning goes. @default console.warn */
  logger?: OnnxLogger;
}

export interface CompiledWarmup { feeds: Feeds[] | undefined; dims: Record<string, number>; fill: 0 | 1; runs: number }

export interface CompiledOrtPoolOptions {
  model: string | Uint8Array;
  name: string;
  threads: number;
  intraOpThreads: number;
  interOpThreads: number;
  spinning: boolean;
  nice: number;
  executionProviders: ExecutionProviderName[];
  cpuFallback: boolean;
  warmup: CompiledWarmup | undefined;
  maxPending: number;
  loadTimeoutMs: number;
  logger: OnnxLogger;
}

function int(path: string, v: unknown, fallback: number, min: number): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new InvalidOptionError(path, 'must be an integer', v);
  if (v < min) throw new InvalidOptionError(path, `must be >= ${min}`, v);
  return v;
}

function warmupOptions(w: OrtPoolOptions['warmup']): CompiledWarmup | undefined {
  if (w === false) return undefined;
  if (w === undefined || w === true) return { feeds: undefined, dims: {}, fill: 0, runs: 1 };
  if (typeof w !== 'object' || w === null) throw new InvalidOptionError('warmup', 'must be a boolean or an object', w);
  if (w.feeds !== undefined && !Array.isArray(w.feeds)) throw new InvalidOptionError('warmup.feeds', 'must be an array of feeds', w.feeds);
  const dims: Record<string, number> = {};
  for (const [k, v] of Object.entries(w.dims ?? {})) dims[k] = int(`warmup.dims.${k}`, v, 1, 0);
  if (w.fill !== undefined && w.fill !== 'zeros' && w.fill !== 'ones') throw new InvalidOptionError('warmup.fill', 'must be "zeros" or "ones"', w.fill);
  return { feeds: w.feeds, dims, fill: w.fill === 'ones' ? 1 : 0, runs: int('warmup.runs', w.runs, 1, 1) };
}

export function compileOrtPoolOptions(o: OrtPoolOptions): CompiledOrtPoolOptions {
  if (typeof o !== 'object' || o === null) throw new InvalidOptionError('options', 'must be an object', o);
  if (typeof o.model !== 'string' && !(o.model instanceof Uint8Array)) throw new InvalidOptionError('model', 'must be a file path or a Uint8Array of model bytes', o.model);
  if (typeof o.model === 'string' && o.model === '') throw new InvalidOptionError('model', 'must not be empty', o.model);
  const threads = int('threads', o.threads, 1, 1);
  const providers = o.executionProviders ?? ['cpu'];
  if (!Array.isArray(providers) || providers.length === 0) throw new InvalidOptionError('executionProviders', 'must be a non-empty array', providers);
  providers.forEach((p, i) => {
    if (p !== 'cpu' && p !== 'cuda') throw new InvalidOptionError(`executionProviders[${i}]`, 'must be "cpu" or "cuda"', p);
  });
  if (o.spinning !== undefined && typeof o.spinning !== 'boolean') throw new InvalidOptionError('spinning', 'must be a boolean', o.spinning);
  if (o.nice !== undefined && typeof o.nice === 'number' && o.nice > 19) throw new InvalidOptionError('nice', 'must be <= 19', o.nice);
  if (o.cpuFallback !== undefined && typeof o.cpuFallback !== 'boolean') throw new InvalidOptionError('cpuFallback', 'must be a boolean', o.cpuFallback);
  const name = o.name ?? (typeof o.model === 'string' ? o.model.split(/[\\/]/).pop() ?? o.model : 'model');
  return {
    model: o.model,
    name,
    threads,
    intraOpThreads: int('intraOpThreads', o.intraOpThreads, Math.max(1, Math.floor(availableParallelism() / threads)), 1),
    interOpThreads: int('interOpThreads', o.interOpThreads, 1, 1),
    spinning: o.spinning ?? false,
    nice: int('nice', o.nice, 0, 0),
    executionProviders: [...providers],
    cpuFallback: o.cpuFallback ?? true,
    warmup: warmupOptions(o.warmup),
    maxPending: int('maxPending', o.maxPending, 1024, 1),
    loadTimeoutMs: int('loadTimeoutMs', o.loadTimeoutMs, 120_000, 1),
    logger: o.logger ?? consoleLogger,
  };
}
