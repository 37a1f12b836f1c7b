/**
 * What both KServe registries over a model repository share: the table of models and their served versions,
 * per-model serialisation of load and unload, the repository index, version lookup, and load's re-scan. The
 * in-process RepositoryRegistry (OrtPools) and the cluster's DeploymentRegistry (deployments) differ only in how
 * a scanned model's versions come up and go away.
 */
import { readdir } from 'node:fs/promises';
import { DeployError, NotFoundError, ShoalError } from '@shoal/core';
import type { KServeModel, KServeRegistry, ModelState, RepositoryIndexEntry } from '@shoal/oip';
import { scanModel, type RepositoryModel } from './model-repository.ts';

export interface TableVersion extends KServeModel {
  state: ModelState;
  reason: string | undefined;
}

export interface ModelEntry<V> {
  /** Versions served, highest first. */
  versions: V[];
  /** Why the whole model is unavailable (bad layout or config, unloaded). */
  reason: string | undefined;
}

export abstract class RepositoryTable<V extends TableVersion> implements KServeRegistry {
  protected readonly models = new Map<string, ModelEntry<V>>();
  /** Serialises load/unload per model so two loads never race on one entry. */
  protected readonly busy = new Map<string, Promise<void>>();

  protected constructor(protected readonly root: string) {}

  /** Brings up the versions a scanned model's policy selects, replacing those served before. */
  protected abstract loadScanned(m: RepositoryModel): Promise<void>;
  /** Stops serving every version of the model. */
  abstract unload(name: string): Promise<void>;

  /** The state the index reports for a version. */
  protected indexState(v: V): ModelState {
    return v.state;
  }

  protected serialised(name: string, fn: () => Promise<void>): Promise<void> {
    const prev = this.busy.get(name) ?? Promise.resolve();
    const next = prev.catch(() => undefined).then(fn);
    this.busy.set(name, next);
    return next.finally(() => { if (this.busy.get(name) === next) this.busy.delete(name); });
  }

  protected unknownModel(name: string): NotFoundError {
    return new NotFoundError(`unknown model "${name}"; models: ${[...this.models.keys()].sort().join(', ') || 'none'}`);
  }

  async list(): Promise<RepositoryIndexEntry[]> {
    const out: RepositoryIndexEntry[] = [];
    const onDisk = await readdir(this.root, { withFileTypes: true }).then(
      (es) => es.filter((e) => e.isDirectory() && !e.name.startsWith('.')).map((e) => e.name),
      () => [] as string[],
    );
    for (const name of [...new Set([...this.models.keys(), ...onDisk])].sort()) {
      const m = this.models.get(name);
      if (m === undefined || m.versions.length === 0) {
        out.push({ name, state: 'UNAVAILABLE', reason: m?.reason ?? 'not loaded' });
        continue;
      }
      for (const v of m.versions) out.push({ name, version: v.version, state: this.indexState(v), ...(v.reason === undefined ? {} : { reason: v.reason }) });
    }
    return out;
  }

  get(name: string, version?: string): KServeModel | undefined {
    const m = this.models.get(name);
    if (m === undefined || m.versions.length === 0) return undefined;
    if (version !== undefined) return m.versions.find((v) => v.version === version);
    return m.versions.find((v) => v.state === 'READY') ?? m.versions[0];
  }

  /** Re-scans the model's directory and brings up the versions its policy selects; resolves once they serve. */
  load(name: string): Promise<void> {
    return this.serialised(name, async () => {
      let scanned: RepositoryModel;
      try {
        scanned = await scanModel(this.root, name);
      } catch (err) {
        if (!(err instanceof NotFoundError)) {
          this.models.set(name, { versions: this.models.get(name)?.versions ?? [], reason: (err as Error).message });
        }
        throw err instanceof ShoalError ? err : new DeployError(`failed to load model "${name}": ${(err as Error).message}`);
      }
      await this.loadScanned(scanned);
    });
  }
}
