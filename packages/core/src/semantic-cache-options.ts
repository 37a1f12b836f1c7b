/**
 * The `semanticCache` deployment option (docs/semantic-cache.md): answer a call from the answer to an earlier,
 * similar input, found by the cosine similarity of their embeddings, which a method of the class computes.
 */
import { InvalidOptionError } from './errors.ts';

export interface SemanticCacheOptions {
  /**
   * Name of a method on the class that maps a call's arguments to its embedding: number[], Float32Array or
   * Float64Array, of one length for every input. It gets the same arguments as the cached method (a ShoalRequest
   * for `fetch`); it may be async, and may itself be a batched method (`batch()`). It is never cached itself.
   */
  embed: string;
  /**
   * Cosine similarity, in (0, 1], the nearest cached input's embedding must reach for its answer to be served.
   * Higher serves fewer, safer hits. @default 0.9
   */
  threshold?: number;
  /** Entries each worker holds per deployment version; past it the least recently used is evicted. @default 100000 */
  maxEntries?: number;
  /** Age in ms past which an entry is not served. 0: no expiry. @default 0 */
  ttlMs?: number;
  /** Methods whose answers are cached. @default every method of the class but `embed` */
  methods?: string[];
}

/** Every field filled in but `methods`, which stays absent for "every method but embed"; a valid input form too. */
export interface CompiledSemanticCache {
  embed: string;
  threshold: number;
  maxEntries: number;
  ttlMs: number;
  methods?: string[];
}

const KEYS: ReadonlyArray<keyof SemanticCacheOptions> = ['embed', 'threshold', 'maxEntries', 'ttlMs', 'methods'];
/** A bound on maxEntries: 10 million 384-dim f32 vectors are already 15 GiB of index per worker. */
const MAX_ENTRIES = 10_000_000;
const METHOD_RE = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

export function compileSemanticCache(input: unknown, path: string): CompiledSemanticCache {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) throw new InvalidOptionError(path, 'must be an object { embed, threshold?, maxEntries?, ttlMs?, methods? }', input);
  for (const key of Object.keys(input)) {
    if (!(KEYS as readonly string[]).includes(key)) throw new InvalidOptionError(`${path}.${key}`, `is not a semanticCache option (${KEYS.join(', ')})`);
  }
  const o = input as Record<string, unknown>;
  if (o.embed === undefined) throw new InvalidOptionError(`${path}.embed`, 'is required: the name of the method that computes an input\'s embedding');
  const embed = methodName(`${path}.embed`, o.embed);
  let threshold = 0.9;
  if (o.threshold !== undefined) {
    if (typeof o.threshold !== 'number' || !Number.isFinite(o.threshold)) throw new InvalidOptionError(`${path}.threshold`, 'must be a number in (0, 1]', o.threshold);
    if (o.threshold <= 0 || o.threshold > 1) throw new InvalidOptionError(`${path}.threshold`, 'must be in (0, 1] (a cosine similarity; 1 serves only identical embeddings)', o.threshold);
    threshold = o.threshold;
  }
  const maxEntries = int(`${path}.maxEntries`, o.maxEntries, 1, MAX_ENTRIES, 100_000);
  const ttlMs = int(`${path}.ttlMs`, o.ttlMs, 0, Number.MAX_SAFE_INTEGER, 0);
  const compiled: CompiledSemanticCache = { embed, threshold, maxEntries, ttlMs };
  if (o.methods !== undefined) {
    if (!Array.isArray(o.methods) || o.methods.length === 0) throw new InvalidOptionError(`${path}.methods`, 'must be a non-empty array of method names (leave it out for every method but embed)', o.methods);
    const methods = o.methods.map((m: unknown, i) => methodName(`${path}.methods[${i}]`, m));
    const self = methods.indexOf(embed);
    if (self >= 0) throw new InvalidOptionError(`${path}.methods[${self}]`, `is the embed method "${embed}", which is never cached`, embed);
    compiled.methods = [...new Set(methods)];
  }
  return compiled;
}

function methodName(path: string, v: unknown): string {
  if (typeof v !== 'string' || !METHOD_RE.test(v)) throw new InvalidOptionError(path, 'must be a method name (letters, digits, _ or $, not starting with a digit)', v);
  if (v.startsWith('_')) throw new InvalidOptionError(path, 'must not start with _ (such methods are private to the replica)', v);
  return v;
}

function int(path: string, v: unknown, min: number, max: number, fallback: number): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new InvalidOptionError(path, 'must be an integer', v);
  if (v < min || v > max) throw new InvalidOptionError(path, `must be between ${min} and ${max}`, v);
  return v;
}
