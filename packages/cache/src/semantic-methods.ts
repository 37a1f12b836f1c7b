/**
 * The semantic cache in a replica's call path: the cached methods of one user instance, wrapped. A wrapped call
 * embeds its arguments with the instance's `embed` method, normalises the vector, and looks up the nearest cached
 * input in the SemanticCache of that method (and of the request's model id, when it names one) that every replica
 * of this deployment version on this worker shares; at or above the threshold (and not expired) it answers with
 * that input's answer without running the method; otherwise it runs the method and caches what it answered. Thrown
 * errors, rejected promises, async iterables (streams), iterators and HTTP error responses (status >= 400) are
 * never cached. A request that asks to skip caches (an HTTP bypass header, or a handle's `cache: 'bypass'`, which
 * reaches the replica as requestContext().cacheBypass) runs the method and is not cached.
 *
 * Two near-identical misses that run at once both compute (there is no key to coalesce them on, as the exact cache
 * does: similarity is not an equivalence); the second to finish finds the first's entry on insert and adds none.
 * A cached answer is returned by reference to every caller it serves: in-process callers must not mutate it.
 */
import { HttpResponse, ShoalRequest, requestContext } from '@shoal/core';
import type { CompiledSemanticCache } from '@shoal/core';
import type { SemanticCache } from './semantic-cache.ts';
import type { SemanticCacheSet } from './semantic-registry.ts';
import { normalize } from './semantic-index.ts';
import { wantsBypass } from './response-cache.ts';

export type SemanticResult = 'hit' | 'miss' | 'bypass';

/** Receives each cached call's outcome, for metrics. Called on the data path: keep it cheap. */
export interface SemanticCacheObserver {
  /**
   * A cached method was called: `result`, the time the embed method took (`embedMs`, 0 for a bypass) and the time
   * the normalisation and index search took (`lookupMs`, 0 for a bypass), in ms.
   */
  looked(result: SemanticResult, embedMs: number, lookupMs: number): void;
}

type Method = (...args: unknown[]) => unknown;

export class SemanticMethods {
  private readonly what: string;
  /** False once stopInserting() was called: lookups go on, answers are no longer cached. */
  private inserting = true;

  constructor(
    private readonly caches: SemanticCacheSet,
    private readonly opts: CompiledSemanticCache,
    private readonly deployment: string,
    private readonly observer?: SemanticCacheObserver,
  ) {
    this.what = `semanticCache.embed method "${opts.embed}" of deployment "${deployment}"`;
  }

  /**
   * Stops caching answers (lookups go on): a reconfigure has started, so what the instance answers from now on may
   * belong to the new userConfig, not to this cache's. Calls in flight do not store their answers either.
   */
  stopInserting(): void { this.inserting = false; }

  /** Caches answers again (a reconfigure kept the userConfig this cache is for). */
  resumeInserting(): void { this.inserting = true; }

  /**
   * Wrappers of the instance's cached methods, by name: the ones `methods` lists, or every name in `callable` but
   * the embed method. Throws when the embed method, or a listed method, is not a function on the instance.
   */
  wrap(instance: object, callable: readonly string[]): Map<string, Method> {
    const embed = (instance as Record<string, unknown>)[this.opts.embed];
    if (typeof embed !== 'function') {
      throw new TypeError(`deployment.semanticCache.embed names "${this.opts.embed}", but the instance of "${this.deployment}" has no such method (it has: ${callable.join(', ') || 'none'})`);
    }
    const names = this.opts.methods ?? callable.filter((m) => m !== this.opts.embed);
    const out = new Map<string, Method>();
    for (const [i, name] of names.entries()) {
      const fn = (instance as Record<string, unknown>)[name];
      if (typeof fn !== 'function') throw new TypeError(`deployment.semanticCache.methods[${i}] names "${name}", but the instance of "${this.deployment}" has no such method (it has: ${callable.join(', ') || 'none'})`);
      out.set(name, (...args: unknown[]) => this.call(instance, name, fn as Method, embed as Method, args));
    }
    return out;
  }

  /** One cached call. Synchronous embed and method answer synchronously, as the unwrapped method would. */
  private call(instance: object, name: string, fn: Method, embed: Method, args: unknown[]): unknown {
    const ctx = requestContext();
    if (ctx?.cacheBypass === true || bypassed(args)) {
      this.observer?.looked('bypass', 0, 0);
      return fn.apply(instance, args);
    }
    // Each method, and each model a request names, has its own entries: their answers to one input differ.
    const cache = this.caches.cacheFor(name, ctx?.modelId);
    const t0 = performance.now();
    const raw = embed.apply(instance, args);
    if (isThenable(raw)) return Promise.resolve(raw).then((v) => this.afterEmbed(cache, instance, fn, args, v, t0));
    return this.afterEmbed(cache, instance, fn, args, raw, t0);
  }

  private afterEmbed(cache: SemanticCache, instance: object, fn: Method, args: unknown[], raw: unknown, t0: number): unknown {
    const t1 = performance.now();
    const vector = normalize(raw, cache.dimensions, this.what);
    const hit = vector === undefined ? undefined : cache.lookup(vector);
    this.observer?.looked(hit === undefined ? 'miss' : 'hit', t1 - t0, performance.now() - t1);
    if (hit !== undefined) return hit.value;
    const result = fn.apply(instance, args);
    // The zero vector (an empty input, say) has no direction: nothing similar to it can be found, so it is not kept.
    if (vector === undefined) return result;
    if (!isThenable(result)) {
      if (this.inserting && cacheable(result)) cache.insert(vector, result);
      return result;
    }
    return Promise.resolve(result).then((value) => {
      if (this.inserting && cacheable(value)) cache.insert(vector, value);
      return value;
    });
  }
}

/**
 * A request asks to skip the cache: an HTTP request (fetch's ShoalRequest) with `x-shoal-cache: bypass` or
 * `cache-control: no-cache` / `no-store`, as the exact response cache reads them.
 */
function bypassed(args: unknown[]): boolean {
  const first = args[0];
  return first instanceof ShoalRequest && wantsBypass(first.headers);
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return (typeof v === 'object' || typeof v === 'function') && v !== null && typeof (v as { then?: unknown }).then === 'function';
}

/** Answers that can be served twice: not a stream, an iterator or an HTTP error. */
function cacheable(v: unknown): boolean {
  if (typeof v !== 'object' || v === null) return true;
  if (typeof (v as { [Symbol.asyncIterator]?: unknown })[Symbol.asyncIterator] === 'function') return false;
  if (typeof (v as { next?: unknown }).next === 'function' && typeof (v as { [Symbol.iterator]?: unknown })[Symbol.iterator] === 'function') return false;
  if (HttpResponse.isResponse(v) && v.status >= 400) return false;
  return true;
}
