/**
 * bench/vram: what sharing one base across fine-tuned variants saves, side by side in one run.
 *   1. Device memory for N = 1..64 variants of an MLP tower: one family (the base loaded once, N LoRA
 *      adapters + heads) against N separate full models (a base copy each), measured by the addon's
 *      device accounting (cudaMemGetInfo on CUDA; the host backend's capacity counter otherwise).
 *   2. Throughput of a mixed-variant workload (each request one row for a random variant, arriving in
 *      windows of --batch requests): grouped batching (the base once per window, adapters grouped by
 *      variant) against one separate model per variant (each runs its own sub-batch of the window).
 *
 *   pnpm bench vram [--requests 2048] [--batch 64] [--backend auto|host|cuda]
 */
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { silentLogger } from '@shoal/core';
import { openNativeRuntime, writeExampleFamily, type ExampleFamily, type FamilyManifest, type ModelFamily, type NativeRuntime } from '../../packages/native/src/index.ts';
import { machine, printGoals, printTable, round, writeResult, type Goal, type Row } from '../lib.ts';

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '2048' },
    batch: { type: 'string', default: '64' },
    backend: { type: 'string', default: 'auto' },
  },
});
const requests = Number(values.requests);
const batch = Number(values.batch);
const backend = values.backend as 'auto' | 'host' | 'cuda';
const DIMS = [512, 1024, 1024, 512];
const RANK = 8;
const HEAD = 16;
const COUNTS = [1, 2, 4, 8, 16, 32, 64];
const THROUGHPUT_COUNTS = [4, 16, 64];
const MiB = 1024 * 1024;

const dir = join(tmpdir(), `shoal-bench-vram-${process.pid}`);
const fam = await writeExampleFamily({ dir, name: 'tower', dims: DIMS, variants: Math.max(...COUNTS), rank: RANK, headDim: HEAD, seed: 11 });

function open(): NativeRuntime {
  return openNativeRuntime({ backend, hostCapacityBytes: 8 * 1024 * MiB, logger: silentLogger });
}

function usedBytes(rt: NativeRuntime): number {
  const d = rt.devices()[0]!;
  return d.totalBytes - d.freeBytes;
}

/** One family: the base once, the first n variants. */
function sharedManifest(f: ExampleFamily, n: number): FamilyManifest {
  return { ...f.manifest, variants: f.manifest.variants.slice(0, n) };
}

/** n independent models: each its own base blob (a full copy) and one variant. */
function separateManifests(f: ExampleFamily, n: number): FamilyManifest[] {
  return f.manifest.variants.slice(0, n).map((v, i) => ({
    name: `copy${i}`,
    base: { ...f.manifest.base, blob: `copy${i}/base` },
    variants: [{ ...v, blob: `copy${i}/${v.id}` }],
  }));
}

/** xorshift32: deterministic, and exact in JS numbers (an LCG on doubles loses its low bits). */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
}

function randomRows(n: number, dim: number, seed: number): Float32Array {
  const next = rng(seed);
  const x = new Float32Array(n * dim);
  for (let i = 0; i < x.length; i++) x[i] = next() * 2 - 1;
  return x;
}

const rt0 = open();
const device = rt0.devices()[0]!;
process.stdout.write(`bench/vram on ${machine()}\nbackend ${rt0.backend} (${device.name}); fallbacks: ${rt0.report.fallbacks.join('; ') || 'none'}\n`);
process.stdout.write(`tower ${DIMS.join('->')}: base ${round(fam.baseBytes / MiB, 2)} MiB, variant (LoRA r=${RANK} on ${DIMS.length - 1} layers + head ${HEAD}) ${round(fam.variantBytes[0]! / MiB, 3)} MiB\n\n`);

// ---- 1. device memory ----
const memRows: Row[] = [];
for (const n of COUNTS) {
  const workspaceBudget = 64 * MiB;
  const shared = open();
  const pool = shared.createPool({ budgetBytes: workspaceBudget });
  const before = usedBytes(shared);
  const model = await shared.loadFamily(sharedManifest(fam, n), pool, { baseDir: dir });
  await model.run(randomRows(batch, DIMS[0]!, 1), Array.from({ length: batch }, (_, i) => i % n));  // workspace into the pool cache
  const sharedBytes = usedBytes(shared) - before;
  model.release();

  const separate = open();
  const beforeSep = usedBytes(separate);
  const models: ModelFamily[] = [];
  for (const m of separateManifests(fam, n)) {
    const p = separate.createPool({ budgetBytes: workspaceBudget });
    const one = await separate.loadFamily(m, p, { baseDir: dir });
    await one.run(randomRows(Math.ceil(batch / n), DIMS[0]!, 1), Array(Math.ceil(batch / n)).fill(0));
    models.push(one);
  }
  const separateBytes = usedBytes(separate) - beforeSep;
  for (const m of models) m.release();
  memRows.push({
    variants: n,
    shared_MiB: round(sharedBytes / MiB, 1),
    full_copies_MiB: round(separateBytes / MiB, 1),
    'shared/full': round(sharedBytes / separateBytes, 3),
    saved_MiB: round((separateBytes - sharedBytes) / MiB, 1),
  });
}
process.stdout.write('device memory: one shared base + N adapters vs N full models (weights + cached workspace)\n');
printTable(memRows);

// ---- 2. throughput of a mixed-variant workload ----
const tputRows: Row[] = [];
for (const n of THROUGHPUT_COUNTS) {
  const x = randomRows(requests, DIMS[0]!, 5);
  const next = rng(17);
  const variants = Array.from({ length: requests }, () => Math.floor(next() * n));

  const grt = open();
  const grouped = await grt.loadFamily(sharedManifest(fam, n), grt.createPool({ budgetBytes: 256 * MiB }), { baseDir: dir });
  const srt = open();
  const separate: ModelFamily[] = [];
  for (const m of separateManifests(fam, n)) separate.push(await srt.loadFamily(m, srt.createPool({ budgetBytes: 256 * MiB }), { baseDir: dir }));

  const runGrouped = async (): Promise<number> => {
    const t0 = performance.now();
    for (let o = 0; o < requests; o += batch) {
      const end = Math.min(requests, o + batch);
      await grouped.run(x.subarray(o * DIMS[0]!, end * DIMS[0]!), variants.slice(o, end));
    }
    return performance.now() - t0;
  };
  const runSeparate = async (): Promise<number> => {
    const t0 = performance.now();
    const dim = DIMS[0]!;
    for (let o = 0; o < requests; o += batch) {
      const end = Math.min(requests, o + batch);
      const byVariant = new Map<number, number[]>();
      for (let i = o; i < end; i++) byVariant.set(variants[i]!, [...(byVariant.get(variants[i]!) ?? []), i]);
      // Each model serves its own sub-batch of the window, one model after another (same native threads).
      for (const [v, rows] of byVariant) {
        const input = new Float32Array(rows.length * dim);
        rows.forEach((r, j) => input.set(x.subarray(r * dim, (r + 1) * dim), j * dim));
        await separate[v]!.run(input, Array(rows.length).fill(0));
      }
    }
    return performance.now() - t0;
  };
  await runGrouped();  // warm-up: workspace cached, pages touched
  await runSeparate();
  const g = Math.min(await runGrouped(), await runGrouped());
  const sp = Math.min(await runSeparate(), await runSeparate());
  const st = grouped.stats();
  tputRows.push({
    variants: n,
    batch,
    grouped_rows_per_s: Math.round(requests / (g / 1000)),
    separate_rows_per_s: Math.round(requests / (sp / 1000)),
    'grouped/separate': round(sp / g, 2),
    base_gemms_per_window: round(st.baseGemms / st.batches, 1),
    groups_per_window: round(st.variantGroups / st.batches, 1),
  });
  grouped.release();
  for (const m of separate) m.release();
}
process.stdout.write(`\nmixed-variant throughput: ${requests} one-row requests in windows of ${batch}, ${rt0.report.threads} native threads\n`);
printTable(tputRows);

const at64 = memRows.find((r) => r.variants === 64)!;
const at16 = tputRows.find((r) => r.variants === 16)!;
const goals: Goal[] = [
  { goal: 'device memory, 64 variants on one shared base / 64 full copies', value: at64['shared/full'] as number, target: '<= 0.1', unit: 'x', met: (at64['shared/full'] as number) <= 0.1 },
  { goal: 'mixed-variant throughput, grouped batching / one model per variant (16 variants)', value: at16['grouped/separate'] as number, target: '>= 2', unit: 'x', met: (at16['grouped/separate'] as number) >= 2 },
];
process.stdout.write('\n');
printGoals(goals);
const file = writeResult('vram', [...memRows.map((r) => ({ part: 'memory', ...r })), ...tputRows.map((r) => ({ part: 'throughput', ...r }))], goals, {
  settings: { backend: rt0.backend, device: device.name, dims: DIMS, rank: RANK, headDim: HEAD, requests, batch, threads: rt0.report.threads, fallbacks: rt0.report.fallbacks },
});
process.stdout.write(`wrote ${file}\n`);
await rm(dir, { recursive: true, force: true });
