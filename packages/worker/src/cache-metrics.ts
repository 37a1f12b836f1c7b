/**
 * The exact-match response cache's series (docs/caching.md): what this worker's router reports through its
 * CacheObserver, and the memory stores' sizes, read at each scrape. Label objects are bound once per deployment.
 */
import type { Registry } from 'prom-client';
import { Gauge } from '@shoal/core/prom';
import { FastCounter, type CounterChild } from '@shoal/core';
import type { CacheResult, DeploymentCacheObserver } from '@shoal/cache';
import type { CacheObserver, CacheStats } from '@shoal/router';

const RESULTS: readonly CacheResult[] = ['hit', 'miss', 'bypass', 'coalesced'];

/** `app/deployment` as the two labels every per-deployment series has. */
function labelsOf(key: string): { app: string; deployment: string } {
  const i = key.indexOf('/');
  return i < 0 ? { app: '', deployment: key } : { app: key.slice(0, i), deployment: key.slice(i + 1) };
}

export class CacheMetrics implements CacheObserver {
  private readonly requests: FastCounter<'app' | 'deployment' | 'result'>;
  private readonly errors: FastCounter<'app' | 'deployment'>;
  private readonly entries: Gauge<'app' | 'deployment' | 'store'>;
  private readonly bytes: Gauge<'app' | 'deployment' | 'store'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.requests = new FastCounter({ name: 'shoal_cache_requests_total', help: 'Requests to a deployment with a response cache, by result: hit (answered from the cache), miss (computed and offered to it), coalesced (waited for the same request in flight), bypass (the cache was not used: asked by the caller, or the request is not cacheable).', labelNames: ['app', 'deployment', 'result'], registers });
    this.errors = new FastCounter({ name: 'shoal_cache_store_errors_total', help: 'Response cache store commands that failed (Redis down, slow or refusing); each request went on without the cache.', labelNames: ['app', 'deployment'], registers });
    this.entries = new Gauge({ name: 'shoal_cache_entries', help: 'Entries a deployment\'s response cache holds in this worker\'s memory (0 for a Redis store, which holds them in Redis).', labelNames: ['app', 'deployment', 'store'], registers });
    this.bytes = new Gauge({ name: 'shoal_cache_bytes', help: 'Bytes (encoded answers, keys and overhead) a deployment\'s response cache holds in this worker\'s memory.', labelNames: ['app', 'deployment', 'store'], registers });
  }

  deployment(key: string): DeploymentCacheObserver {
    const labels = labelsOf(key);
    const byResult = new Map<CacheResult, CounterChild>(RESULTS.map((r) => [r, this.requests.child({ ...labels, result: r })]));
    const errors = this.errors.child(labels);
    return { requested: (r) => byResult.get(r)!.inc(), storeFailed: () => errors.inc() };
  }

  /** Sets the size gauges from the router's caches (called at each scrape). */
  refresh(stats: readonly CacheStats[]): void {
    this.entries.reset();
    this.bytes.reset();
    for (const s of stats) {
      const labels = { ...labelsOf(s.key), store: s.store };
      this.entries.set(labels, s.entries);
      this.bytes.set(labels, s.bytes);
    }
  }
}
