/**
 * bench/models: serving real models, side by side in one run, for a GEMM-heavy MLP (generated here: 4 layers of
 * 2048x2048 float32, where batching pays) and PaddleOCR v4 rec at [1,3,48,320] (where it hardly does):
 *
 *   ceiling  raw onnxruntime-node in one process, no HTTP, at its best batch size and intra-op thread count
 *   naive    a Node HTTP server running one session (ORT's default threads) on its main thread, one request at a time
 *   shoal    `shoal serve`'s path: KServe v2 binary over the head's ingress, the router, a worker replica whose
 *            batcher stacks requests along dim 0 and runs them on an ORT worker thread
 *
 * Every request carries one item. The load generator is its own process (loadgen.mjs). Offered loads: open-loop
 * rates (relative to what one batch-1 session does), saturation (closed loop) and bursts (N requests at once).
 * Also reported: the worker's event-loop delay p99 while it serves (from the replica's stats()).
 *
 *   pnpm bench models [--seconds 3] [--models mlp,rec] [--sessions N --intra N (shoal's threads, both models)]
 *                     [--spinning true|false] [--nice N (inference thread priority, see OrtPoolOptions.nice)]
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { silentLogger } from '@shoal/core';
import { Head } from '@shoal/head';
import { lateRoute, serveRepository } from '@shoal/cli';
import { defaultModelPaths } from '@shoal/example-ocr';
import type { OnnxModelStats } from '@shoal/onnx';
import { machine, printGoals, printTable, round, writeResult, type Goal, type Row } from '../lib.ts';
import { writeMlpModel } from './make-mlp.ts';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '3' }, models: { type: 'string', default: 'mlp,rec' }, sessions: { type: 'string' }, intra: { type: 'string' }, spinning: { type: 'string' }, nice: { type: 'string' } } });
const seconds = Number(values.seconds);
const which = values.models.split(',');
const here = import.meta.dirname;
const cores = availableParallelism();

interface ModelCase {
  name: 'mlp' | 'rec';
  path: string;
  input: string;
  itemDims: number[];
  batches: number[];
  /** Connections of the saturation run. */
  concurrency: number;
  /** Requests sent at once in a burst. */
  burst: number;
  /** Open-loop rates as multiples of one batch-1 session's throughput. */
  rates: number[];
  maxWaitMs: number;
  /** shoal's ORT sessions per replica and intra-op threads per session (config.json's threads). */
  sessions: number;
  intraOp: number;
}

interface Load { sent: number; ok: number; errors: number; dropped: number; seconds: number; rps: number; p50Ms: number | null; p99Ms: number | null; maxMs: number | null; firstError?: string }
interface CeilingRow { threads: number; batch: number; itemsPerSec: number; msPerRun: number }

/** Runs a node script as a child and returns its last stdout line as JSON. */
function child<T>(script: string, arg: unknown): Promise<T> {
  return new Promise((resolveP, reject) => {
    const c = spawn(process.execPath, [join(here, script), JSON.stringify(arg)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    c.on('exit', (code) => (code === 0 ? resolveP(JSON.parse(out.trim().split('\n').at(-1)!) as T) : reject(new Error(`${script} exited ${code}: ${out}`))));
  });
}

function load(url: string, bodyFile: string, headers: Record<string, string>, mode: Record<string, unknown>): Promise<Load> {
  return child<Load>('loadgen.mjs', { url, bodyFile, headers, ...mode });
}

async function startNaive(m: ModelCase): Promise<{ url: string; stop: () => void }> {
  const c = spawn(process.execPath, [join(here, 'naive-server.mjs'), JSON.stringify({ model: m.path, input: m.input, itemDims: m.itemDims })], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<string>((r) => createInterface({ input: c.stdout }).once('line', r));
  return { url: `http://127.0.0.1:${port}`, stop: () => c.kill('SIGTERM') };
}

function progress(model: string, system: string, label: string, r: Load): void {
  process.stdout.write(`  ${model} ${system.padEnd(5)} ${label.padEnd(18)} ${round(r.rps, 0)} items/s, p99 ${round(r.p99Ms ?? NaN, 1)} ms${r.errors + r.dropped > 0 ? `, ${r.errors} errors, ${r.dropped} dropped ${r.firstError ?? ''}` : ''}\n`);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const tmp = mkdtempSync(join(tmpdir(), 'shoal-bench-models-'));
const repo = join(tmp, 'repo');
const cases: ModelCase[] = [];
if (which.includes('mlp')) {
  mkdirSync(join(repo, 'mlp', '1'), { recursive: true });
  await writeMlpModel(join(repo, 'mlp', '1', 'model.onnx'));
  cases.push({ name: 'mlp', path: join(repo, 'mlp', '1', 'model.onnx'), input: 'x', itemDims: [2048], batches: [1, 16, 64, 128],
    // 256 connections: batches of up to 128 form only when more requests wait than are in transit (Little's law).
    concurrency: 256, burst: 128, rates: [0.5, 2], maxWaitMs: 2,
    // Large GEMMs split well across threads inside one run: one session using every core.
    sessions: 1, intraOp: cores });
}
if (which.includes('rec')) {
  mkdirSync(join(repo, 'rec', '1'), { recursive: true });
  symlinkSync(defaultModelPaths().rec, join(repo, 'rec', '1', 'model.onnx'));
  cases.push({ name: 'rec', path: join(repo, 'rec', '1', 'model.onnx'), input: 'x', itemDims: [3, 48, 320], batches: [1, 4, 8], concurrency: 16, burst: 24, rates: [0.5, 0.9], maxWaitMs: 1,
    // Many small ops: intra-op threads spend their time synchronising (and collapse when another process takes a
    // core), so one single-threaded session per core, each running its own requests, does more.
    sessions: cores, intraOp: 1 });
}

process.stdout.write(`bench/models on ${machine()}; ${seconds}s per load, one item per request\n`);
const rows: Row[] = [];
const goals: Goal[] = [];
const extra: Record<string, unknown> = {};
const threadChoices = [...new Set([1, cores])];

for (const m of cases) {
  // (a) the ceiling, and one batch-1 session with every core (what the naive server can at best do)
  const sweep = await child<CeilingRow[]>('ceiling.mjs', { model: m.path, input: m.input, itemDims: m.itemDims, batches: m.batches, threads: threadChoices, seconds: 1, rounds: 2 });
  const best = sweep.reduce((a, b) => (b.itemsPerSec > a.itemsPerSec ? b : a));
  const single = sweep.filter((r) => r.batch === 1).reduce((a, b) => (b.itemsPerSec > a.itemsPerSec ? b : a));
  process.stdout.write(`\n${m.name}: ceiling ${round(best.itemsPerSec, 0)} items/s at batch ${best.batch}, ${best.threads} intra-op threads (${round(best.msPerRun, 2)} ms/run); batch 1: ${round(single.itemsPerSec, 0)} items/s\n`);
  extra[`${m.name}Sweep`] = sweep;

  // config.json for shoal: the model's thread layout, batches up to the ceiling's best size.
  const sessions = Number(values.sessions ?? m.sessions);
  const intraOp = Number(values.intra ?? m.intraOp);
  process.stdout.write(`  shoal: 1 replica, ${sessions} ORT session(s) x ${intraOp} intra-op thread(s), batches up to ${best.batch}, maxWaitMs ${m.maxWaitMs}\n`);
  writeFileSync(join(repo, m.name, 'config.json'), JSON.stringify({
    threads: { sessions, intraOp, ...(values.spinning === undefined ? {} : { spinning: values.spinning === 'true' }), ...(values.nice === undefined ? {} : { nice: Number(values.nice) }) },
    batching: { maxBatchSize: best.batch, maxWaitMs: m.maxWaitMs },
    warmup: m.name === 'rec' ? { dims: { 'p2o.DynamicDimension.0': 1, 'p2o.DynamicDimension.1': 320 } } : true,
  }));

  const item = new Float32Array(m.itemDims.reduce((a, b) => a * b, 1)).map((_, i) => ((i * 7919) % 1000) / 1000 - 0.5);
  const rawFile = join(tmp, `${m.name}.raw`);
  writeFileSync(rawFile, Buffer.from(item.buffer));

  const loads: Array<{ label: string; mode: Record<string, unknown> }> = [
    ...m.rates.map((f) => ({ label: `rate ${round(f * single.itemsPerSec, 0)}/s`, mode: { mode: 'rate', rate: Math.max(1, Math.round(f * single.itemsPerSec)), seconds, maxInFlight: 512 } })),
    { label: `saturation c=${m.concurrency}`, mode: { mode: 'closed', concurrency: m.concurrency, seconds: seconds + 1 } },
    { label: `burst ${m.burst}`, mode: { mode: 'burst', size: m.burst, count: 3, gapMs: 200 } },
  ];
  const results: Record<string, Record<string, Load>> = { naive: {}, shoal: {} };
  const eld: Record<string, number> = {};

  // (b) naive
  const naive = await startNaive(m);
  try {
    await load(`${naive.url}/`, rawFile, {}, { mode: 'closed', concurrency: 4, seconds: 1 }); // warm-up
    for (const l of loads) {
      if (l.label.startsWith('saturation')) await fetch(`${naive.url}/stats`);
      results.naive![l.label] = await load(`${naive.url}/`, rawFile, {}, l.mode);
      progress(m.name, 'naive', l.label, results.naive![l.label]!);
      if (l.label.startsWith('saturation')) eld.naive = (await (await fetch(`${naive.url}/stats`)).json() as { eventLoopDelayP99Ms: number }).eventLoopDelayP99Ms;
      await sleep(300);
    }
  } finally {
    naive.stop();
  }

  // (c) shoal: a head in this process with one local worker, the model repository served over KServe v2
  const kserve = lateRoute();
  const head = new Head({ port: 0, httpPort: 0, workers: 1, logger: silentLogger, extraRoutes: [kserve.route] });
  try {
    await head.start();
    await head.waitForWorkers(1);
    const { registry } = await serveRepository(head, repo, kserve.attach, { loadAll: false });
    await registry.load(m.name);
    const meta = await (await fetch(`${head.httpAddress}/v2/models/${m.name}`)).json() as { outputs: Array<{ name: string }> };
    const header = Buffer.from(JSON.stringify({
      inputs: [{ name: m.input, shape: [1, ...m.itemDims], datatype: 'FP32', parameters: { binary_data_size: item.byteLength } }],
      outputs: [{ name: meta.outputs[0]!.name, parameters: { binary_data: true } }],
    }));
    const kFile = join(tmp, `${m.name}.kserve`);
    writeFileSync(kFile, Buffer.concat([header, Buffer.from(item.buffer)]));
    const url = `${head.httpAddress}/v2/models/${m.name}/infer`;
    const hdrs = { 'inference-header-content-length': String(header.byteLength) };
    const stats = (reset: boolean): Promise<OnnxModelStats> => head.router.call(`kserve.${m.name}.1/${m.name}`, 'stats', [reset]) as Promise<OnnxModelStats>;
    await load(url, kFile, hdrs, { mode: 'closed', concurrency: 4, seconds: 1 }); // warm-up
    const check = await load(url, kFile, hdrs, { mode: 'burst', size: 1, count: 1 });
    if (check.ok !== 1) throw new Error(`shoal answered badly: ${check.firstError}`);
    for (const l of loads) {
      if (l.label.startsWith('saturation')) await stats(true);
      results.shoal![l.label] = await load(url, kFile, hdrs, l.mode);
      progress(m.name, 'shoal', l.label, results.shoal![l.label]!);
      if (l.label.startsWith('saturation')) {
        const s = await stats(true);
        eld.shoal = s.eventLoopDelay.p99Ms;
        extra[`${m.name}BatchSizes`] = s.batching?.batchSizeCounts;
      }
      await sleep(300);
    }
  } finally {
    await head.stop();
  }

  for (const l of loads) {
    const n = results.naive![l.label]!;
    const s = results.shoal![l.label]!;
    for (const [system, r] of [['naive', n], ['shoal', s]] as const) {
      rows.push({ model: m.name, load: l.label, system, 'items/s': round(r.rps, 0), p50_ms: r.p50Ms === null ? null : round(r.p50Ms, 1), p99_ms: r.p99Ms === null ? null : round(r.p99Ms, 1), 'errors+dropped': r.errors + r.dropped, 'shoal/naive': system === 'shoal' ? round(s.rps / n.rps, 2) : null, 'vs ceiling': round(r.rps / best.itemsPerSec, 2) });
    }
  }
  extra[`${m.name}Shoal`] = { sessions, intraOp, maxBatchSize: best.batch, maxWaitMs: m.maxWaitMs };
  rows.push({ model: m.name, load: `ceiling b=${best.batch} t=${best.threads}`, system: 'ort in-process', 'items/s': round(best.itemsPerSec, 0), p50_ms: null, p99_ms: null, 'errors+dropped': 0, 'shoal/naive': null, 'vs ceiling': 1 });

  const sat = loads.find((l) => l.label.startsWith('saturation'))!.label;
  const burst = loads.find((l) => l.label.startsWith('burst'))!.label;
  const satShoal = results.shoal![sat]!;
  const satNaive = results.naive![sat]!;
  const vsCeiling = satShoal.rps / best.itemsPerSec;
  goals.push({ goal: `${m.name}: shoal items/s at saturation / ceiling`, value: round(vsCeiling, 2), target: '>= 0.9', unit: 'x', met: vsCeiling >= 0.9 });
  if (m.name === 'mlp') {
    const r = satShoal.rps / satNaive.rps;
    goals.push({ goal: 'mlp: shoal / naive items/s at saturation', value: round(r, 2), target: '>= 5', unit: 'x', met: r >= 5 });
  } else {
    const worst = Math.min(...loads.map((l) => results.shoal![l.label]!.rps / results.naive![l.label]!.rps));
    goals.push({ goal: 'rec: shoal / naive items/s, worst load (no worse; 5% run-to-run noise)', value: round(worst, 2), target: '>= 0.95', unit: 'x', met: worst >= 0.95 });
    const pb = results.shoal![burst]!.p99Ms ?? Infinity;
    const nb = results.naive![burst]!.p99Ms ?? Infinity;
    goals.push({ goal: `rec: p99 under a burst of ${m.burst}, shoal vs naive (${round(nb, 1)} ms)`, value: round(pb, 1), target: `< ${round(nb, 1)}`, unit: 'ms', met: pb < nb });
  }
  goals.push({ goal: `${m.name}: worker event-loop delay p99 at saturation (naive server's: ${round(eld.naive ?? NaN, 1)} ms)`, value: round(eld.shoal ?? NaN, 2), target: '< 5', unit: 'ms', met: (eld.shoal ?? Infinity) < 5 });
  extra[`${m.name}Loads`] = results;
}

process.stdout.write('\n');
printTable(rows);
process.stdout.write('\n');
printGoals(goals);
const file = writeResult('models', rows, goals, { settings: { seconds, cores, onePerRequest: true }, ...extra });
process.stdout.write(`wrote ${file}\n`);
rmSync(tmp, { recursive: true, force: true });
