/**
 * Integration: the examples/lora app on a real head and a real worker process. Mixed-variant requests are answered
 * like a float64 reference; two replicas in one worker hold the base once; the head places them by device memory
 * on the worker's (host backend) device and refuses a deployment that cannot fit, with the numbers.
 */
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BadRequestError, InsufficientResourcesError, type AppSpec } from '@shoal/core';
import type { Head } from '@shoal/head';
import { formatStatus, loadAppSpec } from '../packages/cli/src/main.ts';
import { writeExampleFamily, type ExampleFamily, type FamilyReplica, type FamilyReplicaStats } from '../packages/native/src/index.ts';
import { addonBuilt, skipReason, tempDir } from '../packages/native/test/helpers.ts';
import { input, reference } from '../packages/native/test/reference.ts';
import { EXAMPLE } from '../examples/lora/app.ts';
import { handleFor, startCluster, waitFor } from './helpers.ts';

const APP = resolve(import.meta.dirname, '../examples/lora/app.ts');
const DIM = EXAMPLE.dims[0]!;

function expectClose(got: ArrayLike<number>, ref: readonly number[]): void {
  const scale = Math.max(1e-6, ...ref.map(Math.abs));
  expect(got.length).toBe(ref.length);
  ref.forEach((r, j) => expect(Math.abs(got[j]! - r) / scale).toBeLessThan(1e-4));
}

describe.skipIf(!addonBuilt)(`the lora example on a real cluster${skipReason}`, () => {
  let head: Head;
  let spec: AppSpec;
  let fam: ExampleFamily;

  beforeAll(async () => {
    // The same options and seed as the app: the same weights, with the tensors kept for the reference.
    fam = await writeExampleFamily({ dir: tempDir('lora-ref'), ...EXAMPLE });
    head = await startCluster({ workers: 1 });
    spec = await loadAppSpec(APP, { name: 'lora', routePrefix: '/lora' });
    await head.deploy(spec);
    await head.waitReady('lora', 60_000);
  });
  afterAll(async () => {
    await head?.stop();
  });

  it('answers a burst of mixed-variant requests like the float64 reference', async () => {
    const tower = handleFor<FamilyReplica>(head, spec, 'Tower');
    const rows = 96;
    const x = input(rows, DIM, 11);
    const variants = Array.from({ length: rows }, (_, i) => `v${(i * 5 + 2) % EXAMPLE.variants}`);
    const ys = await Promise.all(variants.map((v, i) => tower.predict({ variant: v, input: x.slice(i * DIM, (i + 1) * DIM) })));
    ys.forEach((y, i) => {
      expect(y).toBeInstanceOf(Float32Array);
      expectClose(y, reference(fam, x.subarray(i * DIM, (i + 1) * DIM), Number(variants[i]!.slice(1))));
    });

    const res = await fetch(`${head.httpAddress}/lora/predict`, { method: 'POST', body: JSON.stringify({ variant: 'v3', input: Array.from(x.subarray(0, DIM)) }) });
    expect(res.status).toBe(200);
    const body = await res.json() as { variant: string; output: number[] };
    expectClose(body.output, reference(fam, x.subarray(0, DIM), 3));
  });

  it('refuses an unknown variant with the variant and the known ones, alone in its batch', async () => {
    const tower = handleFor<FamilyReplica>(head, spec, 'Tower');
    const row = input(1, DIM, 3);
    const [bad, good] = await Promise.allSettled([tower.predict({ variant: 'v9', input: row }), tower.predict({ variant: 'v0', input: row })]);
    expect(bad.status).toBe('rejected');
    const err = (bad as PromiseRejectedResult).reason as Error;
    expect(err).toBeInstanceOf(BadRequestError);
    expect(err.message).toBe('unknown variant "v9" of family "tower" (known: v0, v1, v2, v3)');
    expect(good.status).toBe('fulfilled');
    const res = await fetch(`${head.httpAddress}/lora/predict`, { method: 'POST', body: JSON.stringify({ variant: 'fr', input: Array.from(row) }) });
    expect(res.status).toBe(400);
    expect(await res.text()).toContain('unknown variant \\"fr\\" of family \\"tower\\" (known: v0, v1, v2, v3)');
  });

  it('holds the base once for two replicas in one worker, and runs the base once per mixed batch', async () => {
    const tower = handleFor<FamilyReplica>(head, spec, 'Tower');
    const seen = new Map<string, FamilyReplicaStats>();
    for (let i = 0; i < 400 && seen.size < 2; i++) {
      const s = await tower.stats();
      seen.set(s.replicaId!, s);
    }
    expect(seen.size).toBe(2);
    const [a, b] = [...seen.values()];
    expect(a!.pid).toBe(b!.pid);
    const allWeights = fam.baseBytes + fam.variantBytes.reduce((s, n) => s + n, 0);
    for (const s of [a!, b!]) {
      expect(s.backend).toBe('host');
      expect(s.base).toMatchObject({ name: 'tower/base', refs: 2, state: 'resident', bytes: fam.baseBytes });
      expect(s.blobs.residentBytes).toBe(allWeights);  // not 2 x
      // Two base layers per batch, whatever the mix of variants in it; adapters and heads per variant group.
      expect(s.compute.baseGemms).toBe(2 * s.compute.batches);
      expect(s.compute.adapterGemms).toBe(2 * s.compute.variantGroups);
      expect(s.compute.headGemms).toBe(s.compute.variantGroups);
    }
    const rows = a!.compute.rows + b!.compute.rows;
    const batches = a!.compute.batches + b!.compute.batches;
    expect(rows).toBeGreaterThanOrEqual(96);
    expect(batches).toBeLessThan(rows);  // requests were batched
  });

  it('places the replicas on the worker device by memory, shows devices in status, and refuses what cannot fit', async () => {
    const st = { ...head.controller.status(), cluster: head.clusterAddress, http: head.httpAddress };
    const worker = st.workers[0]!;
    const device = worker.resources.devices[0]!;
    expect(device).toMatchObject({ index: 0, kind: 'host' });
    expect(st.replicas.filter((r) => r.deployment === 'Tower').map((r) => r.devices)).toEqual([[0], [0]]);
    const text = formatStatus(st);
    expect(text).toContain(`host0 ${device.name}`);
    expect(text).toMatch(/lora\.Tower\.\w+\s+lora\s+Tower\s+RUNNING\s+w1:host0/);

    const big = structuredClone(spec);
    big.name = 'lora-big';
    big.routePrefix = '/big';
    const tower = big.deployments.find((d) => d.name === 'Tower')!;
    tower.options.resources.gpuMemory = 2 * 1024 ** 3;
    let err: unknown;
    try { await head.deploy(big); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(InsufficientResourcesError);
    const msg = (err as Error).message;
    expect(msg).toContain('deployment "Tower" cannot place replica 1 of 1: needs 2.00 GiB (2147483648 B) of device memory + shared "tower/base"');
    expect(msg).toMatch(/w1\/host0 \([^)]*\): needed [\d.]+ GiB \(\d+ B\) > free [\d.]+ [GM]iB \(\d+ B\) - headroom 256\.00 MiB \(268435456 B\)/);
    expect(head.controller.appSpecs().map((a) => a.name)).toEqual(['lora']);
  });

  it('releases the base reference of a replica that stops', async () => {
    const one = structuredClone(spec);
    one.deployments.find((d) => d.name === 'Tower')!.options.numReplicas = 1;
    await head.deploy(one);
    await waitFor('one Tower replica', () => head.controller.status().replicas.filter((r) => r.deployment === 'Tower').length === 1);
    const tower = handleFor<FamilyReplica>(head, spec, 'Tower');
    await waitFor('the base held once', async () => (await tower.stats()).base.refs === 1);
  });
});
