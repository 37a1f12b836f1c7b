/**
 * The semantic cache's series (docs/semantic-cache.md): what this worker's replicas report through their
 * SemanticCacheObserver, and the caches' sizes, read at each scrape. Label objects are bound once per deployment.
 */
import type { Registry } from 'prom-client';
import { Gauge } from '@shoal/core/prom';
import { FastCounter, FastHistogram } from '@shoal/core';
import type { SemanticCacheObserver, SemanticCacheSize, SemanticResult } from '@shoal/cache';

/** Index lookups take microseconds to a few ms; the embed method anything from microseconds to a model's run. */
const LOOKUP_BUCKETS = [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1];
const EMBED_BUCKETS = [0.00001, 0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

export class SemanticCacheMetrics {
  private readonly requests: FastCounter<'app' | 'deployment' | 'result'>;
  private readonly lookup: FastHistogram<'app' | 'deployment'>;
  private readonly embed: FastHistogram<'app' | 'deployment'>;
  private readonly entries: Gauge<'app' | 'deployment'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.requests = new FastCounter({ name: 'shoal_semantic_cache_requests_total', help: 'Calls of a semantically cached method, by result: hit (answered from the cache without running the method), miss (computed, and cached unless an error or a stream), bypass (the request asked to skip the cache).', labelNames: ['app', 'deployment', 'result'], registers });
    this.lookup = new FastHistogram({ name: 'shoal_semantic_cache_lookup_seconds', help: 'Time a semantic cache lookup took: normalising the embedding and searching the index (the embed method excluded: shoal_semantic_cache_embed_seconds).', labelNames: ['app', 'deployment'], buckets: LOOKUP_BUCKETS, registers });
    this.embed = new FastHistogram({ name: 'shoal_semantic_cache_embed_seconds', help: 'Time the deployment\'s semanticCache.embed method took per cached call (not on a bypass).', labelNames: ['app', 'deployment'], buckets: EMBED_BUCKETS, registers });
    this.entries = new Gauge({ name: 'shoal_semantic_cache_entries', help: 'Entries a deployment\'s semantic caches hold in this worker (summed over its versions held here).', labelNames: ['app', 'deployment'], registers });
  }

  observer(app: string, deployment: string): SemanticCacheObserver {
    const labels = { app, deployment };
    const by: Record<SemanticResult, ReturnType<FastCounter['child']>> = {
      hit: this.requests.child({ ...labels, result: 'hit' }),
      miss: this.requests.child({ ...labels, result: 'miss' }),
      bypass: this.requests.child({ ...labels, result: 'bypass' }),
    };
    const lookup = this.lookup.child(labels);
    const embed = this.embed.child(labels);
    return {
      looked: (result, embedMs, lookupMs) => {
        by[result].inc();
        if (result === 'bypass') return;
        embed.observe(embedMs / 1e3);
        lookup.observe(lookupMs / 1e3);
      },
    };
  }

  /** Sets the entries gauge from the worker's caches (called at each scrape). */
  refresh(sizes: readonly SemanticCacheSize[]): void {
    this.entries.reset();
    for (const s of sizes) this.entries.set({ app: s.app, deployment: s.deployment }, s.entries);
  }
}
