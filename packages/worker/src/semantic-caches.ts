/**
 * This worker's semantic caches (options.semanticCache, docs/semantic-cache.md): one set per deployment version and
 * userConfig (one cache per method, and per model id, inside it), shared by this worker's replicas of it. A replica
 * takes its set when it starts, gives it back when it stops or fails to start, and moves to another when a
 * reconfigure changes its userConfig (which may change its answers without a new version): entries are never
 * served across versions or configs. From the moment a reconfigure starts until it has succeeded the replica
 * stores no answer (it may already answer for the new userConfig); it keeps doing so if the reconfigure fails.
 */
import { createHash } from 'node:crypto';
import { SemanticCacheRegistry, SemanticMethods, type SemanticCacheKey, type SemanticCacheObserver, type SemanticCacheSize } from '@shoal/cache';
import type { CompiledDeploymentOptions } from '@shoal/core';

interface Held { key: SemanticCacheKey; options: CompiledDeploymentOptions; observer: SemanticCacheObserver | undefined; methods: SemanticMethods }

export class WorkerSemanticCaches {
  private readonly registry = new SemanticCacheRegistry();
  private readonly held = new Map<string, Held>();

  /** The cache wrapper a starting replica uses; undefined when its deployment has no semanticCache. */
  acquire(replicaId: string, app: string, deployment: string, version: string, options: CompiledDeploymentOptions, observer: SemanticCacheObserver | undefined): SemanticMethods | undefined {
    if (options.semanticCache === undefined) return undefined;
    this.release(replicaId);
    const key = { app, deployment, version: `${version}/${configHash(options.userConfig)}` };
    const methods = new SemanticMethods(this.registry.acquire(key, options.semanticCache), options.semanticCache, deployment, observer);
    this.held.set(replicaId, { key, options, observer, methods });
    return methods;
  }

  /** A reconfigure of the replica starts: its answers are no longer cached under the userConfig it had. */
  reconfiguring(replicaId: string): void {
    this.held.get(replicaId)?.methods.stopInserting();
  }

  /** After a reconfigure: the wrapper for the new userConfig's cache, or undefined when it keeps the one it had. */
  reconfigured(replicaId: string, userConfig: unknown): SemanticMethods | undefined {
    const h = this.held.get(replicaId);
    if (h === undefined) return undefined;
    const [base] = h.key.version.split('/');
    if (h.key.version === `${base}/${configHash(userConfig)}`) { h.methods.resumeInserting(); return undefined; }
    return this.acquire(replicaId, h.key.app, h.key.deployment, base!, { ...h.options, userConfig }, h.observer);
  }

  release(replicaId: string): void {
    const h = this.held.get(replicaId);
    if (h === undefined) return;
    this.held.delete(replicaId);
    this.registry.release(h.key);
  }

  sizes(): SemanticCacheSize[] { return this.registry.sizes(); }
}

function configHash(userConfig: unknown): string {
  return createHash('sha256').update(JSON.stringify(userConfig) ?? '').digest('hex').slice(0, 12);
}
