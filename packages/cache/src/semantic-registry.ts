/**
 * A worker's semantic caches: one per deployment version, shared by that worker's replicas of that version, never
 * across versions (a new version's code may answer differently). A cache lives while a replica of its version
 * holds it, and is dropped, entries and index, when the last one releases it.
 */
import type { CompiledSemanticCache } from '@shoal/core';
import { SemanticCache, type SemanticCacheConfig } from './semantic-cache.ts';

/** A deployment version's identity on a worker. */
export interface SemanticCacheKey { app: string; deployment: string; version: string }

/** Entries per deployment (summed over its versions on this worker), for the entries gauge. */
export interface SemanticCacheSize { app: string; deployment: string; entries: number }

interface Held { cache: SemanticCache; refs: number; key: SemanticCacheKey }

export class SemanticCacheRegistry {
  private readonly held = new Map<string, Held>();

  /** `extra`: a clock or index choice (tests). */
  constructor(private readonly extra: Omit<SemanticCacheConfig, 'threshold' | 'maxEntries' | 'ttlMs'> = {}) {}

  /**
   * The cache of this version, made on first use with `opts`; every acquire needs a release. Replicas of one
   * version have the same options (options are part of the version).
   */
  acquire(key: SemanticCacheKey, opts: CompiledSemanticCache): SemanticCache {
    const id = idOf(key);
    let h = this.held.get(id);
    if (h === undefined) {
      h = { cache: new SemanticCache({ ...this.extra, threshold: opts.threshold, maxEntries: opts.maxEntries, ttlMs: opts.ttlMs }), refs: 0, key: { ...key } };
      this.held.set(id, h);
    }
    h.refs++;
    return h.cache;
  }

  release(key: SemanticCacheKey): void {
    const id = idOf(key);
    const h = this.held.get(id);
    if (h === undefined) return;
    if (--h.refs > 0) return;
    h.cache.clear();
    this.held.delete(id);
  }

  /** Versions held now. */
  get versions(): number { return this.held.size; }

  sizes(): SemanticCacheSize[] {
    const by = new Map<string, SemanticCacheSize>();
    for (const h of this.held.values()) {
      const id = `${h.key.app}\u0000${h.key.deployment}`;
      const s = by.get(id);
      if (s === undefined) by.set(id, { app: h.key.app, deployment: h.key.deployment, entries: h.cache.size });
      else s.entries += h.cache.size;
    }
    return [...by.values()];
  }
}

function idOf(k: SemanticCacheKey): string {
  return `${k.app}\u0000${k.deployment}\u0000${k.version}`;
}
