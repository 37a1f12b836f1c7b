import { describe, expect, it } from 'vitest';
import { BadRequestError, IllegalStateError, InvalidOptionError, compileDeploymentOptions, contextStorage } from '@shoal/core';
import { familyDeployment, familyResources, processRuntime, writeExampleFamily, type FamilyReplica } from '../src/index.ts';
import { addonBuilt, recordingLogger, skipReason, tempDir } from './helpers.ts';
import { input, reference } from './reference.ts';

describe('familyDeployment options', () => {
  it('names the bad option', () => {
    expect(() => familyDeployment({ manifest: '' })).toThrow(/familyDeployment\.manifest/);
    expect(() => familyDeployment({ manifest: 'x.json', variants: [] })).toThrow(/familyDeployment\.variants/);
    expect(() => familyDeployment({ manifest: 'x.json', memoryBudgetBytes: 0 })).toThrow(/familyDeployment\.memoryBudgetBytes/);
    expect(() => familyDeployment({ manifest: 'x.json', batching: { maxBatchSize: 0 } })).toThrow(/familyDeployment\.batching\.maxBatchSize/);
    expect(() => familyDeployment({ manifest: 'x.json', gpu: 1 } as never)).toThrow(InvalidOptionError);
  });
});

describe.skipIf(!addonBuilt)(`familyDeployment replicas${skipReason}`, () => {
  it('serves mixed-variant batches from one base that replicas share, and releases it on shutdown', async () => {
    const fam = await writeExampleFamily({ dir: tempDir('dep'), name: `dep${process.pid}`, dims: [16, 32, 24], variants: 4, headDim: 5 });
    const rt = processRuntime({ backend: 'host', threads: 2, logger: recordingLogger() });
    const opts = { manifest: fam.manifestPath, variants: ['v0', 'v1', 'v3'], memoryBudgetBytes: 1 << 20, batching: { maxBatchSize: 16, maxWaitMs: 20 } };
    const Family = familyDeployment(opts);
    const a: FamilyReplica = new Family();
    const b: FamilyReplica = new Family();
    await Promise.all([a.init(), b.init()]);
    expect(a.info()).toEqual({ family: `dep${process.pid}`, variants: ['v0', 'v1', 'v3'], inputDim: 16, outputDim: 5 });

    // Twelve callers, three variants, one batch: the base runs once, adapters and heads once per variant.
    const x = input(12, 16, 5);
    const variants = Array.from({ length: 12 }, (_, i) => ['v0', 'v1', 'v3'][i % 3]!);
    const ys = await Promise.all(variants.map((v, i) => a.predict({ variant: v, input: x.slice(i * 16, (i + 1) * 16) })));
    ys.forEach((y, i) => {
      const ref = reference(fam, x.subarray(i * 16, (i + 1) * 16), Number(variants[i]!.slice(1)));
      const scale = Math.max(...ref.map(Math.abs));
      ref.forEach((r, j) => expect(Math.abs(y[j]! - r) / scale).toBeLessThan(1e-4));
    });
    expect(a.stats().compute).toEqual({ batches: 1, rows: 12, variantGroups: 3, baseGemms: 2, adapterGemms: 6, headGemms: 3 });

    // A bad item fails alone, naming the variant and the ones served; plain arrays are accepted.
    const [bad, ok, short] = await Promise.allSettled([
      a.predict({ variant: 'v2', input: x.slice(0, 16) }),
      a.predict({ variant: 'v1', input: Array.from(x.slice(0, 16)) }),
      a.predict({ variant: 'v1', input: [1, 2] }),
    ]);
    expect(bad.status === 'rejected' && bad.reason).toBeInstanceOf(BadRequestError);
    expect(bad.status === 'rejected' && (bad.reason as Error).message).toBe(`unknown variant "v2" of family "dep${process.pid}" (known: v0, v1, v3)`);
    expect(ok.status).toBe('fulfilled');
    expect(short.status === 'rejected' && (short.reason as Error).message).toMatch(/input has 2 numbers, family "dep\d+" takes inputDim=16/);

    // Both replicas hold the one base: refs 2, resident bytes counted once (base + the three variants served).
    const sa = a.stats();
    const sb = b.stats();
    expect(sa.base).toMatchObject({ name: `dep${process.pid}/base`, refs: 2, state: 'resident', bytes: fam.baseBytes });
    expect(sb.base.refs).toBe(2);
    expect(sa.blobs.residentBytes).toBe(fam.baseBytes + fam.variantBytes[0]! + fam.variantBytes[1]! + fam.variantBytes[3]!);
    expect(sb.pool.budgetBytes).toBe(1 << 20);

    // What to declare for placement matches what was loaded.
    const res = familyResources(opts);
    expect(res.gpuMemory).toBe(1 << 20);
    expect(res.sharedBlobs).toEqual([
      { name: `dep${process.pid}/base`, bytes: fam.baseBytes },
      ...[0, 1, 3].map((v) => ({ name: `dep${process.pid}/v${v}`, bytes: fam.variantBytes[v]! })),
    ]);
    expect(compileDeploymentOptions({ resources: { ...res, device: 'host' } }, 'F').resources.sharedBlobs).toHaveLength(4);

    await a.shutdown();
    expect(rt.blobInfo(`dep${process.pid}/base`).refs).toBe(1);
    expect(() => a.stats()).toThrow(IllegalStateError);
    await b.shutdown();
    expect(rt.blobStats().refs).toBe(0);
  });

  it('refuses a variant the manifest does not have, naming the known ones', async () => {
    const fam = await writeExampleFamily({ dir: tempDir('depbad'), name: `depbad${process.pid}`, variants: 2 });
    processRuntime({ backend: 'host', logger: recordingLogger() });
    const Family = familyDeployment({ manifest: fam.manifestPath, variants: ['v0', 'v9'] });
    await expect(new Family().init()).rejects.toThrow(`invalid option familyDeployment.variants[1]: names no variant of family "depbad${process.pid}" (known: v0, v1)`);
    expect(() => familyResources({ manifest: fam.manifestPath, variants: ['v7'] })).toThrow(/familyResources\.variants\[0\]/);
  });
});

// Last: it leaves its family's blobs cached on device 0, which the device-wide counts above would see.
describe.skipIf(!addonBuilt)(`familyDeployment placement${skipReason}`, () => {
  it('runs on the device the head placed the replica on, unless the option names one', async () => {
    const fam = await writeExampleFamily({ dir: tempDir('dev'), name: `dev${process.pid}`, dims: [8, 8], variants: 1, headDim: 2 });
    processRuntime({ backend: 'host', threads: 2, logger: recordingLogger() });
    const placed = (devices: number[], fn: () => Promise<void>): Promise<void> =>
      contextStorage.run({ signal: new AbortController().signal, deadline: undefined, app: 'a', deployment: 'F', replicaId: 'r', devices }, fn);
    // The host backend has device 0 only: a replica placed on device 2 fails, naming it; the option wins over placement.
    const OnPlaced = familyDeployment({ manifest: fam.manifestPath });
    const onTwo: FamilyReplica = new OnPlaced();
    await expect(placed([2], () => onTwo.init())).rejects.toThrow("device must be an integer in [0, 1), got 2");
    const OnZero = familyDeployment({ manifest: fam.manifestPath, device: 0 });
    const onZero: FamilyReplica = new OnZero();
    await placed([2], () => onZero.init());
    expect(onZero.stats().device).toBe(0);
    await onZero.shutdown();
  });
});
