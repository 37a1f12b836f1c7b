/**
 * A deployment backend for model families: N fine-tuned variants served from one copy of the base.
 *
 *   const opts = { manifest: '/models/tower/tower.family.json', memoryBudgetBytes: 64 << 20 };
 *   const Tower = deployment(familyDeployment(opts), { numReplicas: 2, resources: { ...familyResources(opts), device: 'host' } });
 *   // in another replica: await tower.predict({ variant: 'v2', input: new Float32Array(32) })
 *
 * Every replica in a worker process uses the process's one native runtime, so the base (and each variant's
 * adapter) is loaded once per device and replicas hold references. `predict` is a batched method: a batch that
 * mixes variants runs each base layer once and groups adapter and head work by variant.
 */
import { statSync } from 'node:fs';
import {
  BadRequestError, IllegalStateError, InvalidOptionError, batch, checkInt, compileBatchOptions, itemError, requestContext,
  type BatchOptions, type BatchedMethod, type ItemError, type SharedBlobNeed,
} from '@shoal/core';
import type { BackendName, NativeBlobInfo, NativeBlobStats, NativeFamilyStats, NativePoolStats } from './addon-types.ts';
import type { FamilyItem, ModelFamily } from './family.ts';
import { readFamilyManifest, readFamilyManifestSync, selectVariants } from './manifest.ts';
import type { NativeOptions } from './options.ts';
import type { MemoryPool } from './pool.ts';
import { processRuntime } from './process-runtime.ts';
import type { NativeRuntime } from './runtime.ts';

export interface FamilyDeploymentOptions {
  /** Path of the family manifest JSON; weight files resolve relative to it. Read when a replica starts. */
  manifest: string;
  /** Variant ids this deployment serves. @default every variant of the manifest */
  variants?: string[];
  /** Dynamic batching of `predict`, per replica. @default { maxBatchSize: 32, maxWaitMs: 2 } */
  batching?: BatchOptions<FamilyRequest>;
  /** Budget of the replica's memory pool (activations and workspace of a batch), in bytes. @default 64 MiB */
  memoryBudgetBytes?: number;
  /** Device index on the worker. @default the device the head placed the replica on (requestContext().devices[0]), else 0 */
  device?: number;
  /** Options for the process's native runtime, used only if this replica is the first in its process to open it. @default {} */
  runtime?: NativeOptions;
}

/** One prediction: which variant, and one row of inputDim numbers. */
export interface FamilyRequest {
  variant: string;
  input: Float32Array | readonly number[];
}

/** What `stats()` returns: the replica's share and the device-wide view of shared weights. */
export interface FamilyReplicaStats {
  /** The replica answering (when called through shoal), and its worker process. */
  replicaId: string | undefined;
  pid: number;
  backend: BackendName;
  device: number;
  family: string;
  variants: string[];
  inputDim: number;
  outputDim: number;
  /** The base blob: refs counts every replica in this process that holds it. */
  base: NativeBlobInfo;
  /** Every blob on the device; residentBytes counts each blob once however many replicas reference it. */
  blobs: NativeBlobStats;
  /** This replica's pool. */
  pool: NativePoolStats;
  /** This replica's batches: base GEMMs run once per batch, adapter and head GEMMs once per variant group. */
  compute: NativeFamilyStats;
}

/** The replica class familyDeployment() returns. */
export interface FamilyReplica {
  predict: BatchedMethod<FamilyRequest, Float32Array>;
  init(): Promise<void>;
  /** The family's shape, for callers that build inputs. */
  info(): { family: string; variants: string[]; inputDim: number; outputDim: number };
  stats(): FamilyReplicaStats;
  shutdown(): Promise<void>;
}

interface CompiledFamilyDeploymentOptions {
  manifest: string;
  variants: string[] | undefined;
  batching: BatchOptions<FamilyRequest>;
  memoryBudgetBytes: number;
  /** undefined: the placed device. */
  device: number | undefined;
  runtime: NativeOptions;
}

export const FAMILY_DEPLOYMENT_DEFAULTS = {
  batching: { maxBatchSize: 32, maxWaitMs: 2 },
  memoryBudgetBytes: 64 * 1024 * 1024,
  device: 0,
} as const;

const KNOWN = new Set(['manifest', 'variants', 'batching', 'memoryBudgetBytes', 'device', 'runtime']);

function compile(input: FamilyDeploymentOptions, path = 'familyDeployment'): CompiledFamilyDeploymentOptions {
  if (typeof input !== 'object' || input === null) throw new InvalidOptionError(path, 'must be an object', input);
  for (const key of Object.keys(input)) if (!KNOWN.has(key)) throw new InvalidOptionError(`${path}.${key}`, `is not an option (${[...KNOWN].join(', ')})`);
  if (typeof input.manifest !== 'string' || input.manifest === '') throw new InvalidOptionError(`${path}.manifest`, 'must be the path of a family manifest', input.manifest);
  const variants = input.variants;
  if (variants !== undefined && (!Array.isArray(variants) || variants.length === 0 || variants.some((v) => typeof v !== 'string' || v === ''))) {
    throw new InvalidOptionError(`${path}.variants`, 'must be a non-empty array of variant ids', variants);
  }
  const batching = input.batching ?? FAMILY_DEPLOYMENT_DEFAULTS.batching;
  compileBatchOptions(batching, `${path}.batching`);
  return {
    manifest: input.manifest,
    variants: variants === undefined ? undefined : [...variants],
    batching,
    memoryBudgetBytes: checkInt(`${path}.memoryBudgetBytes`, input.memoryBudgetBytes, 1, FAMILY_DEPLOYMENT_DEFAULTS.memoryBudgetBytes),
    device: input.device === undefined ? undefined : checkInt(`${path}.device`, input.device, 0, FAMILY_DEPLOYMENT_DEFAULTS.device),
    runtime: input.runtime ?? {},
  };
}

/**
 * A class for `deployment()` that serves a model family. Options are checked here, at declaration; the manifest
 * is read when a replica starts (it may be written at startup).
 */
export function familyDeployment(options: FamilyDeploymentOptions): new () => FamilyReplica {
  const opts = compile(options);
  return class FamilyModel implements FamilyReplica {
    private rt: NativeRuntime | undefined;
    private pool: MemoryPool | undefined;
    private family: ModelFamily | undefined;
    private served = new Set<string>();
    private baseBlob = '';
    /** The device this replica runs on: the option, or where the head placed it. */
    private device = 0;

    predict = batch<FamilyRequest, Float32Array>((items) => this.run(items), opts.batching, 'predict');

    async init(): Promise<void> {
      const rt = processRuntime(opts.runtime);
      const spec = await readFamilyManifest(opts.manifest);
      const selected = opts.variants === undefined ? spec : selectVariants(spec, opts.variants, 'familyDeployment.variants');
      this.device = opts.device ?? requestContext()?.devices?.[0] ?? FAMILY_DEPLOYMENT_DEFAULTS.device;
      const pool = rt.createPool({ budgetBytes: opts.memoryBudgetBytes, device: this.device });
      try {
        this.family = await rt.loadFamilyFile(opts.manifest, pool, { variants: selected.variants.map((v) => v.id) });
      } catch (err) {
        pool.destroy();
        throw err;
      }
      this.rt = rt;
      this.pool = pool;
      this.baseBlob = selected.baseBlob;
      this.served = new Set(this.family.variants);
    }

    info(): { family: string; variants: string[]; inputDim: number; outputDim: number } {
      const f = this.loaded();
      return { family: f.name, variants: [...f.variants], inputDim: f.inputDim, outputDim: f.outputDim };
    }

    stats(): FamilyReplicaStats {
      const f = this.loaded();
      const rt = this.rt!;
      return {
        replicaId: requestContext()?.replicaId,
        pid: process.pid,
        backend: rt.backend,
        device: this.device,
        family: f.name,
        variants: [...f.variants],
        inputDim: f.inputDim,
        outputDim: f.outputDim,
        base: rt.blobInfo(this.baseBlob, this.device),
        blobs: rt.blobStats(this.device),
        pool: this.pool!.stats(),
        compute: f.stats(),
      };
    }

    async shutdown(): Promise<void> {
      await this.predict.close();
      // The native side keeps the weights until a batch still in flight finishes.
      this.family?.release();
      this.pool?.destroy();
      this.family = undefined;
      this.pool = undefined;
    }

    private loaded(): ModelFamily {
      if (this.family === undefined) throw new IllegalStateError(`family deployment of ${opts.manifest} is not loaded (init has not finished, or it shut down)`);
      return this.family;
    }

    /** Bad items fail alone with BadRequestError; the rest run as one mixed-variant batch. */
    private async run(items: FamilyRequest[]): Promise<Array<Float32Array | ItemError>> {
      const f = this.loaded();
      const out: Array<Float32Array | ItemError> = new Array(items.length);
      const good: FamilyItem[] = [];
      const at: number[] = [];
      items.forEach((item, i) => {
        const checked = checkItem(item, f, this.served);
        if (checked instanceof BadRequestError) out[i] = itemError(checked);
        else { good.push(checked); at.push(i); }
      });
      if (good.length > 0) {
        const ys = await f.runItems(good);
        ys.forEach((y, j) => { out[at[j]!] = y; });
      }
      return out;
    }
  };
}

function checkItem(item: unknown, f: ModelFamily, served: ReadonlySet<string>): FamilyItem | BadRequestError {
  if (typeof item !== 'object' || item === null) return new BadRequestError(`a prediction must be { variant, input }, got ${item === null ? 'null' : typeof item}`);
  const { variant, input } = item as Record<string, unknown>;
  if (typeof variant !== 'string' || !served.has(variant)) {
    const known = [...served];
    return new BadRequestError(`unknown variant ${JSON.stringify(variant)} of family "${f.name}" (known: ${known.join(', ')})`, { variant, known });
  }
  let row: Float32Array;
  if (input instanceof Float32Array) row = input;
  else if (Array.isArray(input) && input.every((x) => typeof x === 'number')) row = Float32Array.from(input as number[]);
  else return new BadRequestError(`input must be a Float32Array or an array of numbers, got ${input === null ? 'null' : typeof input}`);
  if (row.length !== f.inputDim) return new BadRequestError(`input has ${row.length} numbers, family "${f.name}" takes inputDim=${f.inputDim}`, { length: row.length, inputDim: f.inputDim });
  return { variant, input: row };
}

/**
 * The resources to declare for a family deployment, from its manifest and weight files (read now, so they must
 * exist when the application is declared): the pool budget as the replica's own device memory, and the base and
 * each served variant as blobs shared with every replica on the device.
 */
export function familyResources(options: FamilyDeploymentOptions): { gpuMemory: number; sharedBlobs: SharedBlobNeed[] } {
  const opts = compile(options);
  const spec = readFamilyManifestSync(opts.manifest);
  const selected = opts.variants === undefined ? spec : selectVariants(spec, opts.variants, 'familyResources.variants');
  const sizeOf = (path: string): number => (path === '' ? 0 : statSync(path).size);
  const sharedBlobs: SharedBlobNeed[] = [{ name: selected.baseBlob, bytes: sizeOf(selected.basePath) }];
  const seen = new Set([selected.baseBlob]);
  for (const v of selected.variants) {
    if (seen.has(v.blob)) continue;
    seen.add(v.blob);
    sharedBlobs.push({ name: v.blob, bytes: sizeOf(v.path) });
  }
  return { gpuMemory: opts.memoryBudgetBytes, sharedBlobs };
}
