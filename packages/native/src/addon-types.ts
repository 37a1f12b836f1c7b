/**
 * The native surface, typed by hand in one place. It mirrors native/binding/addon.cc: every method takes
 * normalised primitives and handles (numbers); TypeScript validates arguments before they get here.
 */

export type BackendName = 'cuda' | 'host';
export type ActivationName = 'none' | 'relu' | 'gelu';

export interface NativeRuntimeOptions {
  backend: 'auto' | 'cuda' | 'host';
  hostCapacityBytes: number;
  threads: number;
}

export interface NativeBackendReport {
  active: BackendName;
  cudaCompiledIn: boolean;
  /** Why CUDA is not active; empty when it is. */
  cudaFallbackReason: string;
  threads: number;
}

export interface NativeDevice {
  index: number;
  name: string;
  backend: BackendName;
  ccMajor: number;
  ccMinor: number;
  totalBytes: number;
  freeBytes: number;
}

export interface NativePoolStats {
  budgetBytes: number;
  /** Bytes in live blocks (rounded to size classes). */
  usedBytes: number;
  /** Bytes callers asked for in live blocks. */
  requestedBytes: number;
  /** Bytes parked in the caching allocator's free lists. */
  cachedBytes: number;
  /** used + cached: what the pool holds from the device. */
  reservedBytes: number;
  peakBytes: number;
  allocCount: number;
  freeCount: number;
  cacheHits: number;
  cacheMisses: number;
  liveBlocks: number;
}

export interface NativeBlobInfo {
  name: string;
  bytes: number;
  refs: number;
  state: 'resident' | 'evicted';
  shared: boolean;
  attached: boolean;
  tensors: number;
  evictions: number;
  restores: number;
}

export interface NativeBlobStats {
  blobs: number;
  refs: number;
  /** Device bytes held by blobs, each blob once however many references it has. */
  residentBytes: number;
  /** Resident bytes of blobs nobody references (evictable cache). */
  idleBytes: number;
  /** Bytes parked in host memory. */
  evictedBytes: number;
  /** Blobs replaced under their name (new content) but still referenced; their bytes count in residentBytes. */
  retired: number;
  loads: number;
  /** Loads of a name whose content was unchanged: no new memory. */
  dedupedLoads: number;
  /** Loads that replaced a blob because its file or buffer content changed (a redeploy). */
  reloads: number;
  /** Loads of a known file that read it again to compare content (its stat changed or was too recent to trust). */
  rehashedLoads: number;
  evictions: number;
  restores: number;
}

export interface NativeFamilyStats {
  batches: number;
  rows: number;
  variantGroups: number;
  baseGemms: number;
  adapterGemms: number;
  headGemms: number;
}

export interface NativeLayerSpec {
  weight: string;
  bias: string;
  activation: ActivationName;
}

export interface NativeFamilySpec {
  name: string;
  baseBlob: string;
  /** Empty: the blob must already be loaded. */
  basePath: string;
  layers: NativeLayerSpec[];
  variants: Array<{
    id: string;
    blob: string;
    path: string;
    loras: Array<{ layer: number; a: string; b: string; scale: number }>;
    head: NativeLayerSpec | null;
  }>;
}

export interface NativeFamilyInfo {
  id: number;
  inputDim: number;
  outputDim: number;
  variants: string[];
}

export interface NativeRuntimeHandle {
  report(): NativeBackendReport;
  devices(): NativeDevice[];
  createPool(budgetBytes: number, device: number): number;
  destroyPool(pool: number): void;
  poolAlloc(pool: number, bytes: number): number;
  poolFree(pool: number, allocation: number): void;
  poolStats(pool: number): NativePoolStats;
  poolEmptyCache(pool: number): void;
  loadBlobBuffer(name: string, device: number, data: Uint8Array, shared: boolean): Promise<NativeBlobInfo>;
  loadBlobFile(name: string, device: number, path: string, shared: boolean): Promise<NativeBlobInfo>;
  attachBlob(name: string, device: number): Promise<NativeBlobInfo>;
  acquireBlob(name: string, device: number): Promise<number>;
  releaseBlob(device: number, ref: number): void;
  blobInfo(name: string, device: number): NativeBlobInfo;
  listBlobs(device: number): NativeBlobInfo[];
  blobStats(device: number): NativeBlobStats;
  evictBlob(name: string, device: number): boolean;
  dropBlob(name: string, device: number): void;
  loadFamily(spec: NativeFamilySpec, pool: number): Promise<NativeFamilyInfo>;
  runFamily(family: number, input: Float32Array, variants: Int32Array): Promise<Float32Array>;
  familyStats(family: number): NativeFamilyStats;
  releaseFamily(family: number): void;
}

/** What `require('shoal_native_*.node')` returns. */
export interface NativeAddon {
  Runtime: new (options: NativeRuntimeOptions) => NativeRuntimeHandle;
  cudaCompiledIn: boolean;
  abiVersion: number;
}

/** The ABI this TypeScript expects; a stale build with another version is refused with a rebuild hint. */
export const ADDON_ABI_VERSION = 1;
