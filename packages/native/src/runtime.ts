/**
 * The native runtime as TypeScript sees it: the active backend, devices, memory pools, shared weight blobs
 * and model families. Created by {@link openNativeRuntime}, the one entry point that loads the addon.
 */
import { createLogger } from '@shoal/core';
import type { BackendName, NativeBlobInfo, NativeBlobStats, NativeRuntimeHandle } from './addon-types.ts';
import { BlobRef } from './blob.ts';
import { native, nativeAsync } from './errors.ts';
import { ModelFamily } from './family.ts';
import { DEFAULT_ADDON_DIR, loadAddon, type AddonVariant } from './loader.ts';
import { compileFamilyManifest, readFamilyManifest, selectVariants, type FamilyManifest } from './manifest.ts';
import { compileNativeOptions, type NativeOptions } from './options.ts';
import { MemoryPool } from './pool.ts';
import { checkBytes, checkDevice, checkName } from './validate.ts';

export interface Device {
  index: number;
  name: string;
  backend: BackendName;
  /** "8.0" for an A100; null on the host backend. */
  computeCapability: string | null;
  totalBytes: number;
  freeBytes: number;
}

export interface BackendReport {
  /** The backend doing the work. */
  active: BackendName;
  /** Which addon build is loaded ("cuda" may still run the host backend when no device works). */
  addon: AddonVariant;
  addonPath: string;
  cudaCompiledIn: boolean;
  /** Every fallback taken on the way, in order, with its reason. */
  fallbacks: readonly string[];
  threads: number;
}

export interface PoolOptions {
  /** Bytes the pool may hold from the device (live + cached). */
  budgetBytes: number;
  /** @default 0 */
  device?: number;
}

export interface BlobOptions {
  /** @default 0 */
  device?: number;
  /** Publish for other processes on this machine (host: POSIX shm; CUDA: an IPC handle). @default false */
  shared?: boolean;
}

/** A gauge sample; exported by the worker's metrics endpoint. */
export interface MetricSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export class NativeRuntime {
  private readonly pools = new Map<number, MemoryPool>();
  private readonly deviceCount: number;

  /** @internal */
  constructor(private readonly h: NativeRuntimeHandle, readonly report: BackendReport) {
    this.deviceCount = this.h.devices().length;
  }

  get backend(): BackendName {
    return this.report.active;
  }

  devices(): Device[] {
    return native(() => this.h.devices()).map((d) => ({
      index: d.index,
      name: d.name,
      backend: d.backend,
      computeCapability: d.backend === 'cuda' ? `${d.ccMajor}.${d.ccMinor}` : null,
      totalBytes: d.totalBytes,
      freeBytes: d.freeBytes,
    }));
  }

  /** A pool with a byte budget (one per replica); allocations past it throw MemoryBudgetError. */
  createPool(opts: PoolOptions): MemoryPool {
    checkBytes('budgetBytes', opts.budgetBytes, 1);
    const device = opts.device ?? 0;
    checkDevice(device, this.deviceCount);
    const id = native(() => this.h.createPool(opts.budgetBytes, device));
    const pool = new MemoryPool(this.h, id, device, opts.budgetBytes);
    this.pools.set(id, pool);
    return pool;
  }

  /**
   * Loads a named blob once per device from a buffer or a safetensors file. Loading a name that exists with
   * the same content (an unchanged file, equal bytes) returns the existing blob: no new device memory. When the
   * content changed (a redeployed file under the same name), the new bytes replace it; families loaded before
   * keep the old bytes until they are released.
   */
  async loadBlob(name: string, source: Uint8Array | { path: string }, opts: BlobOptions = {}): Promise<NativeBlobInfo> {
    checkName('name', name);
    const device = opts.device ?? 0;
    checkDevice(device, this.deviceCount);
    const shared = opts.shared ?? false;
    if (source instanceof Uint8Array) return nativeAsync(() => this.h.loadBlobBuffer(name, device, source, shared));
    if (typeof source !== 'object' || source === null || typeof source.path !== 'string') throw new TypeError('source must be a Uint8Array or { path: string }');
    return nativeAsync(() => this.h.loadBlobFile(name, device, source.path, shared));
  }

  /** Maps a blob another process on this machine published with `shared: true`. */
  async attachBlob(name: string, opts: { device?: number } = {}): Promise<NativeBlobInfo> {
    checkName('name', name);
    const device = opts.device ?? 0;
    checkDevice(device, this.deviceCount);
    return nativeAsync(() => this.h.attachBlob(name, device));
  }

  /** Takes a reference (restoring the blob from host memory if it was evicted). */
  async acquireBlob(name: string, opts: { device?: number } = {}): Promise<BlobRef> {
    checkName('name', name);
    const device = opts.device ?? 0;
    checkDevice(device, this.deviceCount);
    const ref = await nativeAsync(() => this.h.acquireBlob(name, device));
    return new BlobRef(this.h, name, device, ref);
  }

  blobInfo(name: string, device = 0): NativeBlobInfo {
    checkName('name', name);
    checkDevice(device, this.deviceCount);
    return native(() => this.h.blobInfo(name, device));
  }

  blobs(device = 0): NativeBlobInfo[] {
    checkDevice(device, this.deviceCount);
    return native(() => this.h.listBlobs(device));
  }

  blobStats(device = 0): NativeBlobStats {
    checkDevice(device, this.deviceCount);
    return native(() => this.h.blobStats(device));
  }

  /** Evicts an idle blob to host memory now; false when it is referenced, shared or already evicted. */
  evictBlob(name: string, device = 0): boolean {
    checkName('name', name);
    checkDevice(device, this.deviceCount);
    return native(() => this.h.evictBlob(name, device));
  }

  /** Frees an unreferenced blob entirely. */
  dropBlob(name: string, device = 0): void {
    checkName('name', name);
    checkDevice(device, this.deviceCount);
    native(() => this.h.dropBlob(name, device));
  }

  /** Loads a family (reusing blobs already loaded under the same names and content) with its workspace in `pool`. */
  async loadFamily(manifest: FamilyManifest, pool: MemoryPool, opts: { baseDir?: string } = {}): Promise<ModelFamily> {
    return this.loadCompiled(compileFamilyManifest(manifest, opts.baseDir), pool);
  }

  /**
   * Reads a manifest JSON file (weight paths relative to it) and loads the family, or only some of its variants
   * (`variants`, by id; an unknown id is an InvalidOptionError listing the known ones).
   */
  async loadFamilyFile(file: string, pool: MemoryPool, opts: { variants?: readonly string[] } = {}): Promise<ModelFamily> {
    const spec = await readFamilyManifest(file);
    if (opts.variants === undefined) return this.loadCompiled(spec, pool);
    return this.loadCompiled(selectVariants(spec, opts.variants, `variants of ${file}`), pool);
  }

  /** Per-pool and per-device gauges. */
  metrics(): MetricSample[] {
    const out: MetricSample[] = [];
    for (const d of this.devices()) {
      const labels = { device: String(d.index), backend: d.backend };
      out.push({ name: 'shoal_native_device_total_bytes', labels, value: d.totalBytes });
      out.push({ name: 'shoal_native_device_free_bytes', labels, value: d.freeBytes });
      const b = this.blobStats(d.index);
      out.push({ name: 'shoal_native_blob_resident_bytes', labels, value: b.residentBytes });
      out.push({ name: 'shoal_native_blob_idle_bytes', labels, value: b.idleBytes });
      out.push({ name: 'shoal_native_blob_evicted_bytes', labels, value: b.evictedBytes });
      out.push({ name: 'shoal_native_blob_refs', labels, value: b.refs });
    }
    for (const [id, pool] of this.pools) {
      let s;
      try {
        s = pool.stats();
      } catch {
        this.pools.delete(id);  // destroyed since
        continue;
      }
      const labels = { pool: String(id), device: String(pool.device) };
      out.push({ name: 'shoal_native_pool_budget_bytes', labels, value: s.budgetBytes });
      out.push({ name: 'shoal_native_pool_used_bytes', labels, value: s.usedBytes });
      out.push({ name: 'shoal_native_pool_cached_bytes', labels, value: s.cachedBytes });
      out.push({ name: 'shoal_native_pool_peak_bytes', labels, value: s.peakBytes });
      out.push({ name: 'shoal_native_pool_cache_hits', labels, value: s.cacheHits });
      out.push({ name: 'shoal_native_pool_cache_misses', labels, value: s.cacheMisses });
    }
    return out;
  }

  private async loadCompiled(spec: ReturnType<typeof compileFamilyManifest>, pool: MemoryPool): Promise<ModelFamily> {
    if (!(pool instanceof MemoryPool)) throw new TypeError('pool must be a MemoryPool from createPool()');
    const info = await nativeAsync(() => this.h.loadFamily(spec, pool.id));
    return new ModelFamily(this.h, info.id, spec.name, info.inputDim, info.outputDim, info.variants);
  }
}

/**
 * Loads the addon (CUDA build first, then host; every fallback logged with its reason) and starts a runtime.
 * Throws AddonNotBuiltError, naming the build command, when no build loads.
 */
export function openNativeRuntime(options: NativeOptions = {}): NativeRuntime {
  const opts = compileNativeOptions(options, DEFAULT_ADDON_DIR);
  const logger = opts.logger ?? createLogger('native');
  const loaded = loadAddon({ addonDir: opts.addonDir, backend: opts.backend, probeCuda: opts.probeCuda, logger });
  const h = native(() => new loaded.addon.Runtime({ backend: opts.backend, hostCapacityBytes: opts.hostCapacityBytes, threads: opts.threads }));
  const r = native(() => h.report());
  const fallbacks = [...loaded.fallbacks];
  if (r.active !== 'cuda' && opts.backend !== 'host' && r.cudaFallbackReason !== '' && loaded.variant === 'cuda') {
    const line = `cuda backend unavailable: ${r.cudaFallbackReason}`;
    fallbacks.push(line);
    logger.info(`native: ${line}; using the host backend`);
  }
  logger.info(`native: ${r.active} backend active`, { addon: loaded.variant, threads: r.threads });
  return new NativeRuntime(h, {
    active: r.active,
    addon: loaded.variant,
    addonPath: loaded.path,
    cudaCompiledIn: r.cudaCompiledIn,
    fallbacks,
    threads: r.threads,
  });
}
