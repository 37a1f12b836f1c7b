/**
 * A KServeRegistry over a fixed set of models, each given by two functions: metadata() and infer(feeds). It lets a
 * worker ingress (or any server) put the Open Inference Protocol in front of any deployment, whatever runs it.
 *
 * @example
 * const registry = fixedModelRegistry([{
 *   name: 'echo',
 *   metadata: () => ({ inputs: [{ name: 'x', type: 'float32', shape: ['batch', 4] }], outputs: [{ name: 'y', type: 'float32', shape: ['batch', 4] }] }),
 *   infer: async (feeds) => ({ y: feeds.x! }),
 * }]);
 * const handle = createKServeHandler(registry);
 */
import { InvalidOptionError } from '@shoal/core';
import type { KServeModel, KServeRegistry, RepositoryIndexEntry } from './registry.ts';
import type { Feeds, ModelMetadata } from './tensor.ts';

export interface OipModel {
  /** Name in /v2/models/{name}. */
  name: string;
  /** The one version served. @default "1" */
  version?: string;
  /** Platform in the model metadata. @default "shoal" */
  platform?: string;
  /**
   * The model's inputs and outputs. Called on first use and again after a failure (the deployment may still be
   * starting), cached once it succeeds; while it fails the model is UNAVAILABLE with the error as the reason.
   */
  metadata(): ModelMetadata | Promise<ModelMetadata>;
  /** Runs one request; feeds have been checked against metadata() by the handler. */
  infer(feeds: Feeds, opts: { outputs?: string[] }): Promise<Feeds>;
}

class FixedModel implements KServeModel {
  readonly name: string;
  readonly version: string;
  readonly versions: readonly string[];
  readonly platform: string;
  metadata: ModelMetadata | undefined;
  reason: string | undefined;
  #pending: Promise<void> | undefined;

  constructor(private readonly spec: OipModel) {
    this.name = spec.name;
    this.version = spec.version ?? '1';
    this.versions = [this.version];
    this.platform = spec.platform ?? 'shoal';
  }

  get ready(): boolean { return this.metadata !== undefined; }

  infer(feeds: Feeds, opts: { outputs?: string[] }): Promise<Feeds> { return this.spec.infer(feeds, opts); }

  /** Asks for the metadata unless it is known; concurrent callers share one call. */
  resolve(): Promise<void> {
    if (this.metadata !== undefined) return Promise.resolve();
    this.#pending ??= (async () => {
      try {
        this.metadata = await this.spec.metadata();
        this.reason = undefined;
      } catch (err) {
        this.reason = err instanceof Error ? err.message : String(err);
      } finally {
        this.#pending = undefined;
      }
    })();
    return this.#pending;
  }

  entry(): RepositoryIndexEntry {
    if (this.metadata !== undefined) return { name: this.name, version: this.version, state: 'READY' };
    return { name: this.name, version: this.version, state: 'UNAVAILABLE', ...(this.reason === undefined ? {} : { reason: this.reason }) };
  }
}

/** A registry serving exactly `models`, with no load or unload; names must be unique. */
export function fixedModelRegistry(models: readonly OipModel[]): KServeRegistry {
  const byName = new Map<string, FixedModel>();
  models.forEach((m, i) => {
    if (typeof m.name !== 'string' || m.name === '') throw new InvalidOptionError(`models[${i}].name`, 'must be a non-empty string', m.name);
    if (byName.has(m.name)) throw new InvalidOptionError(`models[${i}].name`, 'is the name of an earlier model', m.name);
    byName.set(m.name, new FixedModel(m));
  });
  return {
    async list() {
      const all = [...byName.values()];
      await Promise.all(all.map((m) => m.resolve()));
      return all.map((m) => m.entry());
    },
    async get(name, version) {
      const m = byName.get(name);
      if (m === undefined || (version !== undefined && version !== m.version)) return undefined;
      await m.resolve();
      return m;
    },
  };
}
