/**
 * An in-process KServeRegistry over a model repository: each served version of each model is an OrtPool in this
 * process. It backs `createKServeHandler` for a single-process server and for tests; a cluster registry that
 * forwards to deployments implements the same interface.
 */
import { DeployError } from '@shoal/core';
import type { Feeds, KServeModel, ModelMetadata, ModelState } from '@shoal/oip';
import { scanModelRepository, type RepositoryModel } from './model-repository.ts';
import { OrtPool } from './ort-pool.ts';
import { poolOptionsFor, type PoolDefaults } from './repository-options.ts';
import { RepositoryTable } from './repository-table.ts';

export interface RepositoryRegistryOptions {
  /** The repository directory. */
  root: string;
  /** Load every model when the registry opens (Triton's default mode); otherwise only on POST .../load. @default true */
  loadAll?: boolean;
  /** Pool settings for every model (logger, loadTimeoutMs, maxPending). @default {} */
  pool?: PoolDefaults;
}

class VersionEntry implements KServeModel {
  state: ModelState = 'LOADING';
  reason: string | undefined;
  pool: OrtPool | undefined;
  readonly platform = 'onnxruntime_onnx';

  constructor(readonly name: string, readonly version: string, private readonly siblings: () => readonly string[]) {}

  get versions(): readonly string[] { return this.siblings(); }
  get metadata(): ModelMetadata | undefined { return this.pool?.metadata; }
  get ready(): boolean { return this.state === 'READY' && this.pool !== undefined && this.pool.liveThreads > 0; }

  infer(feeds: Feeds, opts: { outputs?: string[] }): Promise<Feeds> {
    if (this.pool === undefined) return Promise.reject(new DeployError(`model "${this.name}" version ${this.version} is not loaded`, 503));
    return this.pool.run(feeds, opts);
  }
}

export class RepositoryRegistry extends RepositoryTable<VersionEntry> {
  private constructor(private readonly opts: Required<RepositoryRegistryOptions>) {
    super(opts.root);
  }

  /** Scans the repository and, unless loadAll is false, loads every model. Models that fail stay UNAVAILABLE with the reason. */
  static async open(options: RepositoryRegistryOptions): Promise<RepositoryRegistry> {
    const reg = new RepositoryRegistry({ loadAll: true, pool: {}, ...options });
    const scan = await scanModelRepository(options.root);
    for (const f of scan.failed) reg.models.set(f.name, { versions: [], reason: f.error.message });
    if (reg.opts.loadAll) {
      await Promise.all(scan.models.map((m) => reg.serialised(m.name, () => reg.loadScanned(m)).catch(() => undefined)));
    }
    return reg;
  }

  /** Loads the versions a scanned model's policy selects; replaces the versions served before only once all loaded. */
  protected async loadScanned(m: RepositoryModel): Promise<void> {
    const fresh: VersionEntry[] = [];
    const names = (): string[] => fresh.map((v) => v.version);
    for (const v of m.versions) fresh.push(new VersionEntry(m.name, String(v.version), names));
    const old = this.models.get(m.name);
    const serving = old !== undefined && old.versions.some((v) => v.state === 'READY');
    // A reload keeps the old versions serving until the new ones are up; a first load shows them LOADING.
    if (!serving) this.models.set(m.name, { versions: fresh, reason: undefined });
    const results = await Promise.allSettled(m.versions.map((v, i) => OrtPool.load(poolOptionsFor(m, v, this.opts.pool)).then((pool) => {
      fresh[i]!.pool = pool;
      fresh[i]!.state = 'READY';
    })));
    const failures: string[] = [];
    results.forEach((r, i) => {
      if (r.status === 'rejected') {
        const msg = r.reason instanceof Error ? r.reason.message : String(r.reason);
        fresh[i]!.state = 'UNAVAILABLE';
        fresh[i]!.reason = msg;
        failures.push(`version ${fresh[i]!.version}: ${msg}`);
      }
    });
    if (failures.length > 0 && serving) {
      await closeAll(fresh);
      throw new DeployError(`failed to reload model "${m.name}", the versions loaded before keep serving: ${failures.join('; ')}`);
    }
    this.models.set(m.name, { versions: fresh, reason: undefined });
    if (old !== undefined) await closeAll(old.versions);
    if (failures.length > 0) throw new DeployError(`failed to load model "${m.name}": ${failures.join('; ')}`);
  }

  /** Stops serving every version of the model; runs already sent to it finish first. Unloading twice is not an error. */
  unload(name: string): Promise<void> {
    return this.serialised(name, async () => {
      const m = this.models.get(name);
      if (m === undefined) throw this.unknownModel(name);
      for (const v of m.versions) v.state = 'UNLOADING';
      await closeAll(m.versions);
      this.models.set(name, { versions: [], reason: 'unloaded' });
    });
  }

  /** Closes every pool. */
  async close(): Promise<void> {
    await Promise.allSettled([...this.busy.values()]);
    await Promise.all([...this.models.values()].map((m) => closeAll(m.versions)));
    this.models.clear();
  }
}

async function closeAll(versions: readonly VersionEntry[]): Promise<void> {
  await Promise.all(versions.map(async (v) => {
    const pool = v.pool;
    v.pool = undefined;
    v.state = 'UNAVAILABLE';
    v.reason ??= 'unloaded';
    await pool?.close();
  }));
}
