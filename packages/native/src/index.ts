/**
 * @shoal/native: GPU memory as a managed, shared resource. Budgeted memory pools over a caching allocator,
 * named weight blobs loaded once per device and shared by reference (LRU-evicted to host memory when idle),
 * and model families (shared base + LoRA adapters/heads) whose mixed-variant batches run the base once.
 * CUDA when the addon was built with nvcc and a device works; otherwise the host backend, same API.
 *
 *   import { openNativeRuntime, writeExampleFamily } from '@shoal/native';
 *   const rt = openNativeRuntime();                       // logs the backend and every fallback
 *   console.log(rt.backend, rt.devices());
 *   const pool = rt.createPool({ budgetBytes: 64 << 20 });
 *   const { manifestPath } = await writeExampleFamily({ dir: '/tmp/tower', variants: 3 });
 *   const fam = await rt.loadFamilyFile(manifestPath, pool);
 *   const y = await fam.run(new Float32Array(2 * fam.inputDim), ['v0', 'v2']);  // [2 x outputDim]
 *   fam.release();
 *
 *   // As a deployment (deployment() from @shoal/core): N variants from one base, mixed-variant batches.
 *   const Tower = deployment(familyDeployment({ manifest: manifestPath }), { numReplicas: 2 });
 *
 * Build the addon with `pnpm --filter @shoal/native build` (cmake-js; runs during `pnpm install` too).
 */
export { openNativeRuntime, NativeRuntime, type Device, type BackendReport, type PoolOptions, type BlobOptions, type MetricSample } from './runtime.ts';
export { MemoryPool, Allocation } from './pool.ts';
export { BlobRef } from './blob.ts';
export { ModelFamily, type FamilyItem } from './family.ts';
export { processRuntime } from './process-runtime.ts';
export { familyDeployment, familyResources, FAMILY_DEPLOYMENT_DEFAULTS, type FamilyDeploymentOptions, type FamilyRequest, type FamilyReplica, type FamilyReplicaStats } from './deployment.ts';
export { compileFamilyManifest, readFamilyManifest, readFamilyManifestSync, selectVariants, type FamilyManifest, type LayerManifest, type LoraManifest, type VariantManifest } from './manifest.ts';
export { encodeSafetensors, type F32Tensor } from './safetensors.ts';
export { writeExampleFamily, type ExampleFamily, type ExampleFamilyOptions } from './example-family.ts';
export { MemoryBudgetError, InvalidHandleError, AddonNotBuiltError, BUILD_COMMAND } from './errors.ts';
export { NATIVE_DEFAULTS, type NativeOptions } from './options.ts';
export { DEFAULT_ADDON_DIR, type AddonVariant } from './loader.ts';
export type { BackendName, ActivationName, NativePoolStats as PoolStats, NativeBlobInfo as BlobInfo, NativeBlobStats as BlobStats, NativeFamilyStats as FamilyStats } from './addon-types.ts';
