/**
 * A KServeRegistry whose models are shoal deployments: each served version of each repository model is its own
 * application (one onnxModel() deployment, see repository-app.ts) with its own replicas and batching, and
 * infer() goes through the cluster's router to one of them. The cluster is reached through the small
 * ModelCluster interface, so the head implements it (see `shoal serve`) and tests can fake it.
 */
import { DeployError, buildAppSpec, type AppSpec } from '@shoal/core';
import type { Feeds, KServeModel, ModelMetadata, ModelState } from '@shoal/oip';
import { scanModelRepository, type RepositoryModel } from './model-repository.ts';
import { RepositoryTable } from './repository-table.ts';
import { modelVersionApp, modelVersionModule, modelVersionSpec, type ModelVersionSpec } from './repository-app.ts';

/** What the registry needs from a cluster. */
export interface ModelCluster {
  /** Deploys or updates an application; resolves once the cluster has taken it (not once it is ready). */
  deploy(spec: AppSpec): Promise<void>;
  /** Removes an application and stops its replicas. */
  remove(app: string): Promise<void>;
  /** True when every replica of the application runs; false while starting or for an unknown application. */
  appReady(app: string): boolean;
  /** Why the application's replicas fail to start, or undefined while nothing has failed. */
  appFailure(app: string): string | undefined;
  /** Calls a method on one replica of a deployment. */
  call(app: string, deployment: string, method: string, args: unknown[]): Promise<unknown>;
}

export interface DeploymentRegistryOptions {
  /** The repository directory. */
  root: string;
  cluster: ModelCluster;
  /** How long a load waits for a version's replicas to run before it fails. @default 120000 */
  loadTimeoutMs?: number;
  /** How often a load polls the cluster for readiness. @default 50 */
  pollMs?: number;
}

class VersionEntry implements KServeModel {
  state: ModelState = 'LOADING';
  reason: string | undefined;
  metadata: ModelMetadata | undefined;
  readonly platform = 'onnxruntime_onnx';

  constructor(readonly spec: ModelVersionSpec, private readonly cluster: ModelCluster, private readonly siblings: () => readonly string[]) {}

  get name(): string { return this.spec.model; }
  get version(): string { return this.spec.version; }
  get versions(): readonly string[] { return this.siblings(); }
  get ready(): boolean { return this.state === 'READY' && this.cluster.appReady(this.spec.app); }

  /** The state the index reports: a READY version whose replicas are being replaced shows LOADING. */
  get liveState(): ModelState { return this.state === 'READY' && !this.cluster.appReady(this.spec.app) ? 'LOADING' : this.state; }

  async infer(feeds: Feeds, opts: { outputs?: string[] }): Promise<Feeds> {
    if (this.state !== 'READY') throw new DeployError(`model "${this.name}" version ${this.version} is not loaded (${this.state})`, 503);
    const out = await this.cluster.call(this.spec.app, this.spec.deployment, 'infer', [feeds]) as Feeds;
    if (opts.outputs === undefined) return out;
    // The session computes every output anyway; the protocol returns only those asked for.
    return Object.fromEntries(opts.outputs.filter((o) => out[o] !== undefined).map((o) => [o, out[o]!]));
  }
}

export class DeploymentRegistry extends RepositoryTable<VersionEntry> {
  private readonly opts: Required<DeploymentRegistryOptions>;

  constructor(options: DeploymentRegistryOptions) {
    super(options.root);
    this.opts = { loadTimeoutMs: 120_000, pollMs: 50, ...options };
  }

  /** Scans the repository and loads every model (Triton's default mode). Models that fail stay UNAVAILABLE with the reason. */
  async loadAll(): Promise<{ loaded: string[]; failed: Array<{ name: string; error: string }> }> {
    const scan = await scanModelRepository(this.opts.root);
    const failed = scan.failed.map((f) => ({ name: f.name, error: f.error.message }));
    for (const f of scan.failed) this.models.set(f.name, { versions: [], reason: f.error.message });
    const loaded: string[] = [];
    await Promise.all(scan.models.map((m) => this.serialised(m.name, () => this.loadScanned(m)).then(
      () => { loaded.push(m.name); },
      (err: unknown) => { failed.push({ name: m.name, error: (err as Error).message }); },
    )));
    return { loaded: loaded.sort(), failed };
  }

  /** Deploys the versions the model's policy selects and waits for them; drops versions no longer selected. */
  protected async loadScanned(m: RepositoryModel): Promise<void> {
    const specs = m.versions.map((v) => modelVersionSpec(m, v));
    const fresh: VersionEntry[] = [];
    const names = (): string[] => fresh.map((v) => v.version);
    for (const s of specs) fresh.push(new VersionEntry(s, this.opts.cluster, names));
    const old = this.models.get(m.name);
    // A reload keeps the old entries (and their metadata) visible until the new ones are up.
    if (old === undefined || !old.versions.some((v) => v.state === 'READY')) this.models.set(m.name, { versions: fresh, reason: undefined });
    const results = await Promise.allSettled(fresh.map((v) => this.deployVersion(v)));
    const failures: string[] = [];
    await Promise.all(results.map(async (r, i) => {
      if (r.status === 'fulfilled') return;
      const v = fresh[i]!;
      v.state = 'UNAVAILABLE';
      v.reason = r.reason instanceof Error ? r.reason.message : String(r.reason);
      failures.push(`version ${v.version}: ${v.reason}`);
      // A failed version would otherwise be retried by the controller forever, holding its resources.
      await this.opts.cluster.remove(v.spec.app).catch(() => undefined);
    }));
    const kept = new Set(fresh.map((v) => v.spec.app));
    for (const v of old?.versions ?? []) {
      if (!kept.has(v.spec.app) && v.state !== 'UNAVAILABLE') await this.opts.cluster.remove(v.spec.app).catch(() => undefined);
    }
    this.models.set(m.name, { versions: fresh, reason: undefined });
    if (failures.length > 0) throw new DeployError(`failed to load model "${m.name}": ${failures.join('; ')}`);
  }

  private async deployVersion(v: VersionEntry): Promise<void> {
    const { app, deployment } = v.spec;
    const spec = buildAppSpec(modelVersionApp(v.spec), { name: app, routePrefix: null, modulePath: modelVersionModule(v.spec), exportName: 'default' });
    await this.opts.cluster.deploy(spec);
    const end = Date.now() + this.opts.loadTimeoutMs;
    while (!this.opts.cluster.appReady(app)) {
      const failure = this.opts.cluster.appFailure(app);
      if (failure !== undefined) throw new DeployError(failure);
      if (Date.now() > end) throw new DeployError(`replicas of "${deployment}" not running within loadTimeoutMs=${this.opts.loadTimeoutMs}`, 503);
      await new Promise((r) => setTimeout(r, this.opts.pollMs));
    }
    v.metadata = await this.opts.cluster.call(app, deployment, 'metadata', []) as ModelMetadata;
    v.state = 'READY';
  }

  protected override indexState(v: VersionEntry): ModelState {
    return v.liveState;
  }

  /** Server readiness: every version of every loaded model is up (models that failed to load do not count). */
  ready(): boolean {
    for (const m of this.models.values()) {
      for (const v of m.versions) if (v.state !== 'UNAVAILABLE' && !v.ready) return false;
    }
    return true;
  }

  /** Removes every version's application; requests already sent finish first (replicas drain). Unloading twice is not an error. */
  unload(name: string): Promise<void> {
    return this.serialised(name, async () => {
      const m = this.models.get(name);
      if (m === undefined) throw this.unknownModel(name);
      for (const v of m.versions) v.state = 'UNLOADING';
      await Promise.all(m.versions.map((v) => this.opts.cluster.remove(v.spec.app).catch(() => undefined)));
      this.models.set(name, { versions: [], reason: 'unloaded' });
    });
  }

  /** Waits for loads and unloads in progress. The applications stay deployed; stopping the head removes them. */
  async close(): Promise<void> {
    await Promise.allSettled([...this.busy.values()]);
  }
}
