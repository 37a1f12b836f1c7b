/**
 * A worker's semantic caches: for each deployment version (and userConfig), a SemanticCacheSet shared by that
 * worker's replicas of that version, never across versions (a new version's code may answer differently). A set
 * lives while a replica of its version holds it, and is dropped, entries and indexes, when the last one releases it.
 */
import type { CompiledSemanticCache } from '@shoal/core';
import { SemanticCache, type SemanticCacheConfig } from './semantic-cache.ts';

/** A deployment version's identity on a worker. */
export interface SemanticCacheKey { app: string; deployment: string; version: string }

/** Entries per deployment (summed over its versions, methods and models on this worker), for the entries gauge. */
export interface SemanticCacheSize { app: string; deployment: string; entries: number }

/** Model caches a set keeps (per version, all methods together); past it the least recently used model's goes. */
export const MAX_MODEL_CACHES = 256;

/**
 * The semantic caches of one deployment version: one per cached method, and per model id for requests that name
 * one (a multiplexed deployment), each with its own index and the version's bounds (maxEntries, ttlMs), made on
 * first use. Two methods, or two models, never answer from each other's entries, even for the same input.
 */
export class SemanticCacheSet {
  private readonly caches = new Map<string, SemanticCache>();
  /** The caches of requests that named a model, least recently used first (they are evicted past maxModelCaches). */
  private readonly models = new Map<string, SemanticCache>();

  constructor(private readonly config: SemanticCacheConfig, private readonly maxModelCaches = MAX_MODEL_CACHES) {}

  /** The cache of `method`, or of `method` for model `modelId`; made on first use. */
  cacheFor(method: string, modelId?: string): SemanticCache {
    if (modelId === undefined) {
      let c = this.caches.get(method);
      if (c === undefined) { c = new SemanticCache(this.config); this.caches.set(method, c); }
      return c;
    }
    const id = `${method}\u0000${modelId}`;
    let c = this.models.get(id);
    if (c !== undefined) {
      this.models.delete(id);
      this.models.set(id, c);
      return c;
    }
    if (this.models.size >= this.maxModelCaches) {
      const [oldest, cache] = this.models.entries().next().value as [string, SemanticCache];
      cache.clear();
      this.models.delete(oldest);
    }
    c = new SemanticCache(this.config);
    this.models.set(id, c);
    return c;
  }

  /** Caches made so far (methods, and method-model pairs). */
  get count(): number { return this.caches.size + this.models.size; }

  /** Entries held, over every cache of the set. */
  get size(): number {
    let n = 0;
    for (const c of this.caches.values()) n += c.size;
    for (const c of this.models.values()) n += c.size;
    return n;
  }

  /** Drops every entry and cache. */
  clear(): void {
    for (const c of this.caches.values()) c.clear();
    for (const c of this.models.values()) c.clear();
    this.caches.clear();
    this.models.clear();
  }
}

interface Held { set: SemanticCacheSet; refs: number; key: SemanticCacheKey }

export class SemanticCacheRegistry {
  private readonly held = new Map<string, Held>();

  /** `extra`: a clock or index choice (tests). */
  constructor(private readonly extra: Omit<SemanticCacheConfig, 'threshold' | 'maxEntries' | 'ttlMs'> = {}) {}

  /**
   * The caches of this version, made on first use with `opts`; every acquire needs a release. Replicas of one
   * version have the same options (options are part of the version).
   */
  acquire(key: SemanticCacheKey, opts: CompiledSemanticCache): SemanticCacheSet {
    const id = idOf(key);
    let h = this.held.get(id);
    if (h === undefined) {
      h = { set: new SemanticCacheSet({ ...this.extra, threshold: opts.threshold, maxEntries: opts.maxEntries, ttlMs: opts.ttlMs }), refs: 0, key: { ...key } };
      this.held.set(id, h);
    }
    h.refs++;
    return h.set;
  }

  release(key: SemanticCacheKey): void {
    const id = idOf(key);
    const h = this.held.get(id);
    if (h === undefined) return;
    if (--h.refs > 0) return;
    h.set.clear();
    this.held.delete(id);
  }

  /** Versions held now. */
  get versions(): number { return this.held.size; }

  sizes(): SemanticCacheSize[] {
    const by = new Map<string, SemanticCacheSize>();
    for (const h of this.held.values()) {
      const id = `${h.key.app}\u0000${h.key.deployment}`;
      const s = by.get(id);
      if (s === undefined) by.set(id, { app: h.key.app, deployment: h.key.deployment, entries: h.set.size });
      else s.entries += h.set.size;
    }
    return [...by.values()];
  }
}

function idOf(k: SemanticCacheKey): string {
  return `${k.app}\u0000${k.deployment}\u0000${k.version}`;
}
