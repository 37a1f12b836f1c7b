import { dirname } from 'node:path';
import { describe, expect, it } from 'vitest';
import { InvalidOptionError } from '@shoal/core';
import { InvalidHandleError, MemoryBudgetError, openNativeRuntime, writeExampleFamily } from '../src/index.ts';
import { addonBuilt, recordingLogger, skipReason, tempDir } from './helpers.ts';
import { input, reference } from './reference.ts';

describe.skipIf(!addonBuilt)(`model families${skipReason}`, () => {
  it('a mixed-variant batch matches a float64 reference and runs the base once', async () => {
    const fam = await writeExampleFamily({ dir: tempDir('fam'), name: `mix${process.pid}`, dims: [24, 64, 40], variants: 5, rank: 4, headDim: 6 });
    const rt = openNativeRuntime({ backend: 'host', threads: 2, logger: recordingLogger() });
    const pool = rt.createPool({ budgetBytes: 4 << 20 });
    const model = await rt.loadFamilyFile(fam.manifestPath, pool);
    expect([model.inputDim, model.outputDim, model.variants]).toEqual([24, 6, ['v0', 'v1', 'v2', 'v3', 'v4']]);
    const rows = 37;
    const x = input(rows, 24, 7);
    const variants = Array.from({ length: rows }, (_, i) => `v${(i * 3 + 1) % 4}`);  // v4 absent
    const y = await model.run(x, variants);
    let maxDiff = 0;
    let maxRef = 1e-6;
    for (let i = 0; i < rows; i++) {
      const ref = reference(fam, x.subarray(i * 24, (i + 1) * 24), Number(variants[i]!.slice(1)));
      ref.forEach((r, j) => {
        maxDiff = Math.max(maxDiff, Math.abs(y[i * 6 + j]! - r));
        maxRef = Math.max(maxRef, Math.abs(r));
      });
    }
    expect(maxDiff / maxRef).toBeLessThan(1e-4);
    // Two base layers ran once for 37 rows of 4 variants; adapters ran per (layer, variant group).
    expect(model.stats()).toEqual({ batches: 1, rows, variantGroups: 4, baseGemms: 2, adapterGemms: 8, headGemms: 4 });
    expect(pool.stats().usedBytes).toBe(0);  // the workspace went back to the pool's cache
    const items = await model.runItems([{ variant: 'v2', input: x.slice(0, 24) }, { variant: 'v0', input: x.slice(24, 48) }]);
    expect(items[0]!.length).toBe(6);
    const alone = reference(fam, x.subarray(0, 24), 2);
    alone.forEach((r, j) => expect(items[0]![j]).toBeCloseTo(r, 4));
    model.release();
  });

  it('replicas share one base copy; release returns every reference', async () => {
    const fam = await writeExampleFamily({ dir: tempDir('share'), name: `share${process.pid}`, variants: 3 });
    const rt = openNativeRuntime({ backend: 'host', logger: recordingLogger() });
    const pool = rt.createPool({ budgetBytes: 1 << 20 });
    const replicas = await Promise.all([0, 1, 2, 3].map(() => rt.loadFamily(fam.manifest, pool, { baseDir: dirname(fam.manifestPath) })));
    const stats = rt.blobStats();
    expect(stats.blobs).toBe(4);  // base + 3 variants, loaded once
    expect(stats.residentBytes).toBe(fam.baseBytes + fam.variantBytes.reduce((a, b) => a + b, 0));
    expect(rt.blobInfo(`share${process.pid}/base`).refs).toBe(4);
    for (const r of replicas) r.release();
    expect(rt.blobStats().refs).toBe(0);
    expect(() => replicas[0]!.release()).toThrow(InvalidHandleError);
    await expect(replicas[0]!.run(new Float32Array(32), ['v0'])).rejects.toBeInstanceOf(InvalidHandleError);
  });

  it('a batch in flight survives release; nothing blocks the event loop', async () => {
    const fam = await writeExampleFamily({ dir: tempDir('flight'), name: `flight${process.pid}`, dims: [256, 512, 512], variants: 4, rank: 8 });
    const rt = openNativeRuntime({ backend: 'host', threads: 2, logger: recordingLogger() });
    const pool = rt.createPool({ budgetBytes: 64 << 20 });
    const model = await rt.loadFamilyFile(fam.manifestPath, pool);
    const rows = 512;
    const pending = model.run(input(rows, 256, 3), Array.from({ length: rows }, (_, i) => i % 4));
    let ticks = 0;
    const timer = setInterval(() => ticks++, 0);
    model.release();  // the native side keeps the weights until the batch finishes
    const y = await pending;
    clearInterval(timer);
    expect(y.length).toBe(rows * 8);
    expect(Number.isFinite(y[0]!)).toBe(true);
    expect(ticks).toBeGreaterThan(0);
    expect(rt.blobInfo(`flight${process.pid}/base`).refs).toBe(0);
  });

  it('a family redeployed under the same names and paths serves the new weights', async () => {
    const dir = tempDir('redeploy');
    const name = `redeploy${process.pid}`;
    const shape = { dir, name, dims: [24, 32, 16], variants: 2, rank: 4, headDim: 4 };
    const v1 = await writeExampleFamily({ ...shape, seed: 1 });
    const rt = openNativeRuntime({ backend: 'host', logger: recordingLogger() });
    const pool = rt.createPool({ budgetBytes: 1 << 20 });
    const x = input(3, 24, 9);
    const variants = ['v0', 'v1', 'v0'];
    const expectMatches = (y: Float32Array, fam: typeof v1): void => {
      for (let i = 0; i < 3; i++) {
        reference(fam, x.subarray(i * 24, (i + 1) * 24), Number(variants[i]!.slice(1))).forEach((r, j) => expect(y[i * 4 + j]).toBeCloseTo(r, 4));
      }
    };
    const old = await rt.loadFamilyFile(v1.manifestPath, pool);
    const before = await old.run(x, variants);
    expectMatches(before, v1);
    // Same files rewritten in place with other weights of the same shapes (same sizes), at once.
    const v2 = await writeExampleFamily({ ...shape, seed: 2 });
    expect(v2.baseBytes).toBe(v1.baseBytes);
    const fresh = await rt.loadFamilyFile(v2.manifestPath, pool);
    const after = await fresh.run(x, variants);
    expectMatches(after, v2);
    expect(after).not.toEqual(before);
    // The family loaded before keeps serving the weights it was built on until it is released.
    expect(await old.run(x, variants)).toEqual(before);
    expect(rt.blobStats()).toMatchObject({ blobs: 3, reloads: 3, retired: 3 });
    old.release();
    expect(rt.blobStats()).toMatchObject({ blobs: 3, retired: 0, residentBytes: v2.baseBytes + v2.variantBytes.reduce((a, b) => a + b, 0) });
    // Loading the unchanged files again is deduplicated.
    const again = await rt.loadFamilyFile(v2.manifestPath, pool);
    expect(rt.blobStats()).toMatchObject({ blobs: 3, reloads: 3 });
    expect(await again.run(x, variants)).toEqual(after);
    again.release();
    fresh.release();
  });

  it('validates inputs and manifests, and the workspace obeys the pool budget', async () => {
    const fam = await writeExampleFamily({ dir: tempDir('bad'), name: `bad${process.pid}`, variants: 2 });
    const rt = openNativeRuntime({ backend: 'host', logger: recordingLogger() });
    const pool = rt.createPool({ budgetBytes: 2048 });
    const model = await rt.loadFamilyFile(fam.manifestPath, pool);
    await expect(model.run(new Float32Array(5), ['v0'])).rejects.toThrow(/expected rows=1 x inputDim=32/);
    await expect(model.run(new Float32Array(32), ['nope'])).rejects.toThrow(/unknown variant "nope"/);
    await expect(model.run(new Float32Array(32), [7])).rejects.toBeInstanceOf(RangeError);
    await expect(model.run(new Float32Array(32 * 64), Array(64).fill('v0'))).rejects.toBeInstanceOf(MemoryBudgetError);
    expect(pool.stats().usedBytes).toBe(0);
    await expect(rt.loadFamily({ ...fam.manifest, variants: [] }, pool)).rejects.toBeInstanceOf(InvalidOptionError);
    await expect(rt.loadFamily({ ...fam.manifest, variants: [{ id: 'x', path: 'a', lora: [{ layer: 9, a: 'a', b: 'b' }] }] }, pool, { baseDir: '/tmp' }))
      .rejects.toThrow(/family\.variants\[0\]\.lora\[0\]\.layer/);
    const wrongTensor = { ...fam.manifest, name: `wrong${process.pid}`, variants: [{ id: 'v0', path: fam.manifest.variants[0]!.path!, head: { weight: 'missing.w' } }] };
    await expect(rt.loadFamily(wrongTensor, pool, { baseDir: dirname(fam.manifestPath) })).rejects.toThrow(/no tensor "missing.w"/);
    expect(rt.blobStats().refs).toBe(2 + 1);  // the first model's refs only: the failed load returned its own
  });
});
