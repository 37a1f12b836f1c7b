/**
 * bench/quantization: the bench MLP (4 layers of 2048x2048) in fp32, fp16 and int8 (make-variants.ts), served side
 * by side by one shoal cluster (a head in this process, one local worker process, a model repository of three
 * models with the same config.json), driven by bench/models' load generator in its own process. Per variant:
 *
 *   file           model file size
 *   worker RSS     growth of the worker process's resident memory when the model's replica loaded (loads in
 *                  PRECISIONS order, so a later one may reuse pages an earlier one freed)
 *   session RSS    the same for one onnxruntime session in a fresh process (session-memory.mjs), for comparison
 *   ort b1 / b128  raw onnxruntime items/s at batch 1 and at the batcher's largest batch, same threads (ceiling.mjs)
 *   items/s        shoal at saturation (closed loop), one item per request
 *   p50, p99       shoal latency at one fixed open-loop rate for all three (half of fp32's saturation items/s)
 *   max/mean err   absolute error against fp32's served outputs on a fixed seeded input set (256 rows, sent as
 *                  requests of 32 rows, each run alone)
 *   matmul kernels what onnxruntime multiplies with on this machine, from its profiler (kernels.ts)
 *
 * Each load (and the onnxruntime-alone runs) runs --rounds times, the variants interleaved, and the best round of each is reported (the machine's
 * other work during one round then does not decide a ratio); every round is in the JSON.
 *
 *   pnpm bench quantization [--seconds 3] [--rounds 3] [--out FILE (instead of bench/results/quantization.json)]
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { silentLogger } from '@shoal/core';
import { Head } from '@shoal/head';
import { localWorkerCommand, serveRepository } from '@shoal/cli';
import type { OnnxModelStats } from '@shoal/onnx';
import { machine, printGoals, printTable, round, writeResult, type Goal, type Row } from '../lib.ts';
import { writeMlpModel } from '../models/make-mlp.ts';
import { ACCURACY_BOUNDS, PRECISIONS, absError, accuracyInputs, writeMlpVariants, type Precision } from './make-variants.ts';
import { describeKernels, matmulKernels } from './kernels.ts';
import { inferBody, inferRows } from './kserve-client.ts';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '3' }, rounds: { type: 'string', default: '3' }, out: { type: 'string' } } });
const seconds = Number(values.seconds);
if (!(seconds > 0)) throw new RangeError(`--seconds must be a positive number, got ${JSON.stringify(values.seconds)}`);
const rounds = Number(values.rounds);
if (!Number.isInteger(rounds) || rounds < 1) throw new RangeError(`--rounds must be a positive integer, got ${JSON.stringify(values.rounds)}`);
const here = import.meta.dirname;
const cores = availableParallelism();
const HIDDEN = 2048;
const ACCURACY_ROWS = 256;
const ACCURACY_REQUEST_ROWS = 32;
/** bench/models' MLP settings: its ceiling sweep's best batch here, and one intra-op thread fewer than the cores
 * (the worker's event loop and the load generator need one under HTTP load). The same for every variant. */
const MAX_BATCH = 128;
const MAX_WAIT_MS = 2;
const INTRA_OP = Math.max(1, cores - 1);
const CONCURRENCY = 256;
/** The fixed open-loop rate, as a fraction of fp32's items/s at saturation. */
const RATE_OF_FP32 = 0.5;

interface Load { sent: number; ok: number; errors: number; dropped: number; seconds: number; rps: number; p50Ms: number | null; p99Ms: number | null; maxMs: number | null; firstError?: string }
interface CeilingRow { threads: number; batch: number; itemsPerSec: number; msPerRun: number }

/** Runs a node script as a child and returns its last stdout line as JSON. */
function child<T>(script: string, arg: unknown): Promise<T> {
  return new Promise((resolveP, reject) => {
    const c = spawn(process.execPath, [script, JSON.stringify(arg)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    c.on('exit', (code) => (code === 0 ? resolveP(JSON.parse(out.trim().split('\n').at(-1)!) as T) : reject(new Error(`${script} exited ${code}: ${out}`))));
  });
}

/** Resident memory of a process in MiB (Linux /proc), or null elsewhere. */
function rssMiB(pid: number): number | null {
  try {
    const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kb === undefined ? null : Number(kb) / 1024;
  } catch {
    return null;
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const mib = (bytes: number): number => bytes / 2 ** 20;
const model = (p: Precision): string => `mlp-${p}`;
const opt = (x: number | null, digits = 1): number | null => (x === null ? null : round(x, digits));
const ratio = (a: number | null, b: number | null): number | null => (a === null || b === null || b === 0 ? null : round(a / b, 2));

process.stdout.write(`bench/quantization on ${machine()}; ${seconds}s per load, best of ${rounds} rounds, one item per request\n`);
const tmp = mkdtempSync(join(tmpdir(), 'shoal-bench-quantization-'));
const head = new Head({ port: 0, httpPort: 0, workers: 1, workerCommand: localWorkerCommand(), logger: silentLogger });
try {
  const variants = await writeMlpVariants(join(tmp, 'models'));
  const warmupModel = join(tmp, 'models', 'tiny.onnx');
  await writeMlpModel(warmupModel, { hidden: 16, layers: 1 });
  const repo = join(tmp, 'repo');
  for (const v of variants) {
    mkdirSync(join(repo, model(v.precision), '1'), { recursive: true });
    symlinkSync(v.path, join(repo, model(v.precision), '1', 'model.onnx'));
    // Three replicas share the worker's cores (one CPU each would not fit three on two cores); only one is loaded at a time.
    writeFileSync(join(repo, model(v.precision), 'config.json'), JSON.stringify({
      resources: { cpus: Math.min(1, cores / PRECISIONS.length) },
      threads: { sessions: 1, intraOp: INTRA_OP }, batching: { maxBatchSize: MAX_BATCH, maxWaitMs: MAX_WAIT_MS }, warmup: true,
    }));
  }

  // (a) onnxruntime alone: kernels, session memory, raw items/s
  const kernels = {} as Record<Precision, string>;
  const session = {} as Record<Precision, number>;
  const ceiling = Object.fromEntries(PRECISIONS.map((p) => [p, { b1: 0, bMax: 0 }])) as Record<Precision, { b1: number; bMax: number }>;
  for (const v of variants) {
    kernels[v.precision] = describeKernels(await matmulKernels(v.path, HIDDEN));
    session[v.precision] = (await child<{ deltaMiB: number }>(join(here, 'session-memory.mjs'), { model: v.path, warmupModel, warmupWidth: 16, width: HIDDEN, rows: MAX_BATCH, intraOp: INTRA_OP })).deltaMiB;
    process.stdout.write(`  ${v.precision}: ${round(mib(v.bytes), 1)} MiB file; onnxruntime: ${kernels[v.precision]}; session +${round(session[v.precision], 0)} MiB\n`);
  }
  for (let r = 1; r <= rounds; r++) {
    for (const v of variants) {
      const sweep = await child<CeilingRow[]>(join(here, '../models/ceiling.mjs'), { model: v.path, input: 'x', itemDims: [HIDDEN], batches: [1, MAX_BATCH], threads: [INTRA_OP], seconds: 1, rounds: 1 });
      const c = ceiling[v.precision];
      c.b1 = Math.max(c.b1, sweep.find((x) => x.batch === 1)!.itemsPerSec);
      c.bMax = Math.max(c.bMax, sweep.find((x) => x.batch === MAX_BATCH)!.itemsPerSec);
      process.stdout.write(`  ${v.precision} onnxruntime alone #${r}: best so far ${round(c.b1, 0)} items/s at batch 1, ${round(c.bMax, 0)} at ${MAX_BATCH}\n`);
    }
  }
  const fp16Compute = kernels.fp16.includes('(float16)');

  // (b) shoal: one worker, the three models loaded one after another, its memory read around each load
  await head.start();
  await head.waitForWorkers(1);
  const pid = head.localWorkerPids()[0]!;
  const { registry } = await serveRepository(head, repo, { loadAll: false });
  const worker = {} as Record<Precision, number | null>;
  await sleep(500);
  for (const p of PRECISIONS) {
    const before = rssMiB(pid);
    await registry.load(model(p));
    await sleep(1000);
    const after = rssMiB(pid);
    worker[p] = before === null || after === null ? null : after - before;
    process.stdout.write(`  shoal: loaded ${model(p)}; worker RSS ${before === null ? 'n/a' : `${round(before, 0)} -> ${round(after!, 0)} MiB`}\n`);
  }

  // (c) accuracy through the served outputs
  const x = accuracyInputs(ACCURACY_ROWS, HIDDEN);
  const served = {} as Record<Precision, Float32Array>;
  for (const p of PRECISIONS) {
    const out = new Float32Array(ACCURACY_ROWS * HIDDEN);
    for (let r = 0; r < ACCURACY_ROWS; r += ACCURACY_REQUEST_ROWS) {
      out.set(await inferRows(head.httpAddress, model(p), x.subarray(r * HIDDEN, (r + ACCURACY_REQUEST_ROWS) * HIDDEN), ACCURACY_REQUEST_ROWS), r * HIDDEN);
    }
    served[p] = out;
  }
  const errors = Object.fromEntries(PRECISIONS.map((p) => [p, absError(served.fp32, served[p])])) as Record<Precision, { max: number; mean: number }>;
  const meanOutput = served.fp32.reduce((s, v) => s + Math.abs(v), 0) / served.fp32.length;

  // (d) load: saturation for each, then one fixed open-loop rate for each
  const item = new Float32Array(HIDDEN).map((_, i) => ((i * 7919) % 1000) / 1000 - 0.5);
  const { body, headerLength } = inferBody('x', 'y', item, 1);
  const bodyFile = join(tmp, 'item.kserve');
  writeFileSync(bodyFile, body);
  const load = (p: Precision, mode: Record<string, unknown>): Promise<Load> => child<Load>(join(here, '../models/loadgen.mjs'), {
    url: `${head.httpAddress}/v2/models/${model(p)}/infer`, bodyFile, headers: { 'inference-header-content-length': String(headerLength) }, ...mode,
  });
  const progress = (p: Precision, label: string, r: Load): void => {
    process.stdout.write(`  ${p} ${label.padEnd(18)} ${round(r.rps, 0)} items/s, p50 ${round(r.p50Ms ?? NaN, 1)} ms, p99 ${round(r.p99Ms ?? NaN, 1)} ms${r.errors + r.dropped > 0 ? `, ${r.errors} errors, ${r.dropped} dropped ${r.firstError ?? ''}` : ''}\n`);
  };
  // Every load runs `rounds` times, the variants interleaved, and each keeps its best round (most items/s; lowest
  // p99), so a burst of work from another process during one round does not decide a ratio. The first heavy run
  // of a fresh worker is slower (its heap and allocators grow), hence a warm-up at full concurrency.
  const all: Record<'saturation' | 'fixed', Record<Precision, Load[]>> = { saturation: { fp32: [], fp16: [], int8: [] }, fixed: { fp32: [], fp16: [], int8: [] } };
  for (const p of PRECISIONS) await load(p, { mode: 'closed', concurrency: CONCURRENCY, seconds: 1 });
  const batchCounts = async (p: Precision): Promise<Record<number, number>> => {
    const st = await head.router.call(`kserve.${model(p)}.1/${model(p)}`, 'stats', [false]) as OnnxModelStats;
    return { ...st.batching?.batchSizeCounts };
  };
  const meanBatch = {} as Record<Precision, number[]>;
  for (let r = 1; r <= rounds; r++) {
    for (const p of PRECISIONS) {
      const before = await batchCounts(p);
      const res = await load(p, { mode: 'closed', concurrency: CONCURRENCY, seconds: seconds + 1 });
      const after = await batchCounts(p);
      let batches = 0;
      let items = 0;
      for (const [size, n] of Object.entries(after)) {
        batches += n - (before[Number(size)] ?? 0);
        items += Number(size) * (n - (before[Number(size)] ?? 0));
      }
      (meanBatch[p] ??= []).push(batches === 0 ? 0 : items / batches);
      all.saturation[p].push(res);
      progress(p, `saturation c=${CONCURRENCY} #${r}`, res);
      process.stdout.write(`    mean batch ${round(meanBatch[p].at(-1)!, 1)}\n`);
      await sleep(300);
    }
  }
  const best = (loads: Load[], better: (a: Load, b: Load) => boolean): Load => loads.reduce((a, b) => (better(b, a) ? b : a));
  const saturation = Object.fromEntries(PRECISIONS.map((p) => [p, best(all.saturation[p], (a, b) => a.rps > b.rps)])) as Record<Precision, Load>;
  const rate = Math.max(1, Math.round(RATE_OF_FP32 * saturation.fp32.rps));
  for (let r = 1; r <= rounds; r++) {
    for (const p of PRECISIONS) {
      const res = await load(p, { mode: 'rate', rate, seconds, maxInFlight: 512 });
      all.fixed[p].push(res);
      progress(p, `rate ${rate}/s #${r}`, res);
      await sleep(300);
    }
  }
  const fixed = Object.fromEntries(PRECISIONS.map((p) => [p, best(all.fixed[p], (a, b) => (a.p99Ms ?? Infinity) < (b.p99Ms ?? Infinity))])) as Record<Precision, Load>;

  // (e) the table, ratios against fp32
  const rows: Row[] = PRECISIONS.map((p) => {
    const v = variants.find((x) => x.precision === p)!;
    return {
      variant: p,
      'file MiB': round(mib(v.bytes), 1), 'file x': ratio(v.bytes, variants[0]!.bytes),
      'worker +MiB': opt(worker[p], 0), 'session +MiB': round(session[p], 0), 'session x': ratio(session[p], session.fp32),
      'ort b1/s': round(ceiling[p].b1, 0), [`ort b${MAX_BATCH}/s`]: round(ceiling[p].bMax, 0),
      'items/s': round(saturation[p].rps, 0), 'items/s x': ratio(saturation[p].rps, saturation.fp32.rps),
      'mean batch': round(meanBatch[p][all.saturation[p].indexOf(saturation[p])]!, 0),
      p50_ms: opt(fixed[p].p50Ms), 'p50 x': ratio(fixed[p].p50Ms, fixed.fp32.p50Ms),
      p99_ms: opt(fixed[p].p99Ms), 'p99 x': ratio(fixed[p].p99Ms, fixed.fp32.p99Ms),
      'max err': Number(errors[p].max.toPrecision(2)), 'mean err': Number(errors[p].mean.toPrecision(2)),
      failed: saturation[p].errors + saturation[p].dropped + fixed[p].errors + fixed[p].dropped,
    };
  });
  const goals: Goal[] = [];
  for (const p of ['fp16', 'int8'] as const) {
    const b = ACCURACY_BOUNDS[p];
    goals.push({ goal: `${p}: max abs error vs fp32 (test/quantization.test.ts's bound)`, value: Number(errors[p].max.toPrecision(2)), target: `< ${b.max}, > ${b.least}`, unit: '', met: errors[p].max < b.max && errors[p].max > b.least });
    goals.push({ goal: `${p}: mean abs error vs fp32 (test/quantization.test.ts's bound)`, value: Number(errors[p].mean.toPrecision(2)), target: `< ${b.mean}`, unit: '', met: errors[p].mean < b.mean });
  }

  process.stdout.write(`\nworker/session +MiB: resident memory the model added (see the top of index.ts); items/s at saturation (c=${CONCURRENCY}); `
    + `p50/p99 at ${rate}/s open loop (${RATE_OF_FP32}x fp32's items/s); max/mean err: absolute, vs fp32's served outputs\n`);
  // printTable shows 2 decimals, which would print every error as 0.00.
  printTable(rows.map((r) => ({ ...r, 'max err': (r['max err'] as number).toExponential(1), 'mean err': (r['mean err'] as number).toExponential(1) })));
  process.stdout.write(`\nmatmul kernels (onnxruntime's profiler): ${PRECISIONS.map((p) => `${p}: ${kernels[p]}`).join('; ')}\n`);
  process.stdout.write(`mean |fp32 output| ${round(meanOutput, 3)}; errors on ${ACCURACY_ROWS} seeded rows in requests of ${ACCURACY_REQUEST_ROWS}\n`);
  if (!fp16Compute) {
    process.stdout.write('fp16 is weight-only here: this CPU has no float16 MatMul kernel in onnxruntime, which casts the fp16 graph back to\n'
      + 'float32 at load (weights folded to float32), so fp16 halves the file only; memory and speed are fp32\'s.\n');
  }
  if (kernels.fp16 === kernels.fp32) {
    process.stdout.write(`fp16 and fp32 run the same kernels here: their difference in speed (${ratio(saturation.fp16.rps, saturation.fp32.rps)}x items/s) is this machine's noise between runs.\n`);
  }
  process.stdout.write('int8 quantizes activations per tensor at run time, so a row\'s output depends slightly on the rows batched with it.\n\n');
  printGoals(goals);
  const file = writeResult('quantization', rows, goals, {
    settings: { seconds, rounds, cores, onePerRequest: true, maxBatchSize: MAX_BATCH, maxWaitMs: MAX_WAIT_MS, sessions: 1, intraOp: INTRA_OP, concurrency: CONCURRENCY, rate, accuracyRows: ACCURACY_ROWS, accuracyRequestRows: ACCURACY_REQUEST_ROWS },
    kernels, fp16Compute, meanAbsOutput: meanOutput, errors, ceiling, loads: all, meanBatchAtSaturation: meanBatch,
  }, values.out === undefined ? undefined : resolve(values.out));
  process.stdout.write(`wrote ${file}\n`);
} finally {
  await head.stop();
  rmSync(tmp, { recursive: true, force: true });
}
