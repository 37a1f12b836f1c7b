/**
 * bench/models: serving real models, side by side in one run, for a GEMM-heavy MLP (generated here: 4 layers of
 * 2048x2048 float32, where batching pays), PaddleOCR v4 rec at [1,3,48,320] (where it hardly does) and the PaddleOCR
 * orientation classifier cls at [1,3,48,192] (small, cheap per item, batched by the OCR example):
 *
 *   ceiling       raw onnxruntime-node in one process, no HTTP, at its best batch size and intra-op thread count
 *   naive         a Node HTTP server running one session (ORT's default threads) on its main thread, one request
 *                 at a time (naive-server.mjs)
 *   hand-written  what a skilled user writes instead of shoal: node:http on the main thread, a batcher (the
 *                 ceiling's best batch or shoal's maxWaitMs, whichever comes first) and one session with every core
 *                 on one worker_thread (hand-written-server.mjs)
 *   shoal         `shoal serve`'s path: KServe v2 binary over the public HTTP address, a worker replica whose
 *                 batcher stacks requests along dim 0 and runs them on an ORT worker thread
 *
 * Every request carries one item. The load generator is its own process (loadgen.mjs). Every system runs every
 * load of its model in the same run: open-loop rates (relative to one batch-1 session's throughput or to the
 * ceiling), saturation (closed loop) and bursts (N requests at once). Also reported: the serving thread's
 * event-loop delay p99 at saturation (shoal: from the replica's stats(); the others: their GET /stats).
 *
 *   pnpm bench models [--seconds 3] [--models mlp,rec,cls] [--sessions N --intra N (shoal's threads, all models)]
 *                     [--spinning true|false] [--nice N (inference thread priority, see OrtPoolOptions.nice)]
 *                     [--out FILE (instead of bench/results/models.json, e.g. for a smoke run)]
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { silentLogger } from '@shoal/core';
import { Head } from '@shoal/head';
import { localWorkerCommand, serveRepository } from '@shoal/cli';
import { defaultModelPaths } from '@shoal/example-ocr';
import type { OnnxModelStats } from '@shoal/onnx';
import { machine, printGoals, printTable, round, writeResult, type Goal, type Row } from '../lib.ts';
import { writeMlpModel } from './make-mlp.ts';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '3' }, models: { type: 'string', default: 'mlp,rec,cls' }, sessions: { type: 'string' }, intra: { type: 'string' }, spinning: { type: 'string' }, nice: { type: 'string' }, out: { type: 'string' } } });
const seconds = Number(values.seconds);
const which = values.models.split(',');
const here = import.meta.dirname;
const cores = availableParallelism();

type ModelName = 'mlp' | 'rec' | 'cls';
type SystemName = 'naive' | 'hand-written' | 'shoal';
const SYSTEMS: readonly SystemName[] = ['naive', 'hand-written', 'shoal'];

/** An open-loop rate: `f` times one batch-1 session's items/s ("single") or the ceiling's items/s. */
interface RateSpec { f: number; of: 'single' | 'ceiling' }

interface ModelCase {
  name: ModelName;
  path: string;
  input: string;
  itemDims: number[];
  batches: number[];
  /** Connections of the saturation run. */
  concurrency: number;
  /** Requests sent at once in a burst. */
  burst: number;
  rates: RateSpec[];
  maxWaitMs: number;
  /** shoal's ORT sessions per replica and intra-op threads per session (config.json's threads). */
  sessions: number;
  intraOp: number;
  /** ORT threads spin between parallel sections (config.json threads.spinning). @default shoal's (off) */
  spinning?: boolean;
  /** config.json's warmup. */
  warmup: true | { dims: Record<string, number> };
}

interface Load { sent: number; ok: number; errors: number; dropped: number; seconds: number; rps: number; p50Ms: number | null; p99Ms: number | null; maxMs: number | null; firstError?: string }
interface CeilingRow { threads: number; batch: number; itemsPerSec: number; msPerRun: number }
interface LoadSpec { label: string; kind: 'rate' | 'closed' | 'burst'; rate?: number; spec?: RateSpec; mode: Record<string, unknown> }

/** One system under test, started for one model. */
interface System {
  url: string;
  bodyFile: string;
  headers: Record<string, string>;
  /** Reads and resets the serving thread's event-loop delay (and, for shoal, the batch sizes) since the last call. */
  stats(): Promise<{ eventLoopDelayP99Ms: number; batchSizeCounts?: unknown }>;
  stop(): Promise<void>;
}

/** Runs a node script as a child and returns its last stdout line as JSON. */
function child<T>(script: string, arg: unknown): Promise<T> {
  return new Promise((resolveP, reject) => {
    const c = spawn(process.execPath, [join(here, script), JSON.stringify(arg)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    c.on('exit', (code) => (code === 0 ? resolveP(JSON.parse(out.trim().split('\n').at(-1)!) as T) : reject(new Error(`${script} exited ${code}: ${out}`))));
  });
}

function load(sys: System, mode: Record<string, unknown>): Promise<Load> {
  return child<Load>('loadgen.mjs', { url: sys.url, bodyFile: sys.bodyFile, headers: sys.headers, ...mode });
}

/** Starts naive-server.mjs or hand-written-server.mjs (raw float32 rows in, the first output's bytes out). */
async function startServerProcess(script: string, cfg: Record<string, unknown>, rawFile: string): Promise<System> {
  const c = spawn(process.execPath, [join(here, script), JSON.stringify(cfg)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<string>((r, reject) => {
    createInterface({ input: c.stdout }).once('line', r);
    c.once('exit', (code) => reject(new Error(`${script} exited ${code} before listening`)));
  });
  const url = `http://127.0.0.1:${port}`;
  return {
    url: `${url}/`, bodyFile: rawFile, headers: {},
    stats: async () => (await (await fetch(`${url}/stats`)).json()) as { eventLoopDelayP99Ms: number },
    stop: async () => { c.kill('SIGTERM'); },
  };
}

/** A head in this process with one local worker, the model repository served over KServe v2 binary. */
async function startShoal(m: ModelCase, repo: string, item: Float32Array, tmp: string): Promise<System> {
  const head = new Head({ port: 0, httpPort: 0, workers: 1, workerCommand: localWorkerCommand(), logger: silentLogger });
  try {
    await head.start();
    await head.waitForWorkers(1);
    const { registry } = await serveRepository(head, repo, { loadAll: false });
    await registry.load(m.name);
    const meta = await (await fetch(`${head.httpAddress}/v2/models/${m.name}`)).json() as { outputs: Array<{ name: string }> };
    const header = Buffer.from(JSON.stringify({
      inputs: [{ name: m.input, shape: [1, ...m.itemDims], datatype: 'FP32', parameters: { binary_data_size: item.byteLength } }],
      outputs: [{ name: meta.outputs[0]!.name, parameters: { binary_data: true } }],
    }));
    const bodyFile = join(tmp, `${m.name}.kserve`);
    writeFileSync(bodyFile, Buffer.concat([header, Buffer.from(item.buffer)]));
    return {
      url: `${head.httpAddress}/v2/models/${m.name}/infer`, bodyFile, headers: { 'inference-header-content-length': String(header.byteLength) },
      stats: async () => {
        const s = await head.router.call(`kserve.${m.name}.1/${m.name}`, 'stats', [true]) as OnnxModelStats;
        return { eventLoopDelayP99Ms: s.eventLoopDelay.p99Ms, batchSizeCounts: s.batching?.batchSizeCounts };
      },
      stop: () => head.stop(),
    };
  } catch (err) {
    await head.stop();
    throw err;
  }
}

function progress(model: string, system: string, label: string, r: Load): void {
  process.stdout.write(`  ${model} ${system.padEnd(12)} ${label.padEnd(26)} ${round(r.rps, 0)} items/s, p50 ${round(r.p50Ms ?? NaN, 1)} ms, p99 ${round(r.p99Ms ?? NaN, 1)} ms${r.errors + r.dropped > 0 ? `, ${r.errors} errors, ${r.dropped} dropped ${r.firstError ?? ''}` : ''}\n`);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const ratioGoal = (goal: string, value: number, min: number): Goal => ({ goal, value: round(value, 2), target: `>= ${min}`, unit: 'x', met: value >= min });
const msGoal = (goal: string, value: number, below: number): Goal => ({ goal, value: round(value, 2), target: `< ${below}`, unit: 'ms', met: value < below });

const tmp = mkdtempSync(join(tmpdir(), 'shoal-bench-models-'));
const repo = join(tmp, 'repo');
const cases: ModelCase[] = [];
const DIM = (i: number): string => `p2o.DynamicDimension.${i}`;
if (which.includes('mlp')) {
  mkdirSync(join(repo, 'mlp', '1'), { recursive: true });
  await writeMlpModel(join(repo, 'mlp', '1', 'model.onnx'));
  cases.push({ name: 'mlp', path: join(repo, 'mlp', '1', 'model.onnx'), input: 'x', itemDims: [2048], batches: [1, 16, 64, 128],
    // 256 connections: batches of up to 128 form only when more requests wait than are in transit (Little's law).
    concurrency: 256, burst: 128, rates: [{ f: 0.5, of: 'single' }, { f: 2, of: 'single' }, { f: 0.2, of: 'ceiling' }], maxWaitMs: 2,
    // Large GEMMs split well across threads inside one run, but under HTTP load the worker's event loop and the
    // load generator need a core too: one session with one core fewer than the machine has (measured: 2053
    // against 1516 items/s at saturation with both cores, on 2).
    sessions: 1, intraOp: Math.max(1, cores - 1), warmup: true });
}
if (which.includes('rec')) {
  mkdirSync(join(repo, 'rec', '1'), { recursive: true });
  symlinkSync(defaultModelPaths().rec, join(repo, 'rec', '1', 'model.onnx'));
  cases.push({ name: 'rec', path: join(repo, 'rec', '1', 'model.onnx'), input: 'x', itemDims: [3, 48, 320], batches: [1, 4, 8], concurrency: 16, burst: 24,
    rates: [{ f: 0.5, of: 'single' }, { f: 0.9, of: 'single' }], maxWaitMs: 1,
    // Many small ops: intra-op threads spend their time synchronising (without spinning they sleep and wake between
    // ops, which halved rec's throughput here; spinning, they take the cores from the event loop and the load
    // generator: 0.74x naive), so one single-threaded session per core, each running its own requests. The cost:
    // one crop takes one core's time (~40 ms here) where naive's two threads take ~22 ms.
    sessions: cores, intraOp: 1, warmup: { dims: { [DIM(0)]: 1, [DIM(1)]: 320 } } });
}
if (which.includes('cls')) {
  mkdirSync(join(repo, 'cls', '1'), { recursive: true });
  symlinkSync(defaultModelPaths().cls, join(repo, 'cls', '1', 'model.onnx'));
  cases.push({ name: 'cls', path: join(repo, 'cls', '1', 'model.onnx'), input: 'x', itemDims: [3, 48, 192], batches: [1, 4, 8, 16, 32],
    // Its ceiling sits at small batches (about 8 on 2 cores: larger ones fall out of cache), so 32 connections
    // keep a few such batches waiting.
    concurrency: 32, burst: 32, rates: [{ f: 0.2, of: 'ceiling' }, { f: 0.5, of: 'ceiling' }, { f: 0.8, of: 'ceiling' }], maxWaitMs: 2,
    // Batched convolutions split well across threads: one session using every core, as for the MLP.
    sessions: 1, intraOp: cores, warmup: { dims: { [DIM(0)]: 1, [DIM(1)]: 48, [DIM(2)]: 192 } } });
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
  process.stdout.write(`  hand-written: 1 worker_thread, 1 ORT session x ${cores} intra-op threads, batches up to ${best.batch}, maxWaitMs ${m.maxWaitMs}\n`);
  writeFileSync(join(repo, m.name, 'config.json'), JSON.stringify({
    threads: { sessions, intraOp, ...(values.spinning === undefined ? (m.spinning === undefined ? {} : { spinning: m.spinning }) : { spinning: values.spinning === 'true' }), ...(values.nice === undefined ? {} : { nice: Number(values.nice) }) },
    batching: { maxBatchSize: best.batch, maxWaitMs: m.maxWaitMs },
    warmup: m.warmup,
  }));

  const item = new Float32Array(m.itemDims.reduce((a, b) => a * b, 1)).map((_, i) => ((i * 7919) % 1000) / 1000 - 0.5);
  const rawFile = join(tmp, `${m.name}.raw`);
  writeFileSync(rawFile, Buffer.from(item.buffer));

  const loads: LoadSpec[] = [
    ...m.rates.map((spec): LoadSpec => {
      const rate = Math.max(1, Math.round(spec.f * (spec.of === 'single' ? single.itemsPerSec : best.itemsPerSec)));
      return { label: `rate ${rate}/s (${spec.f}x ${spec.of})`, kind: 'rate', rate, spec, mode: { mode: 'rate', rate, seconds, maxInFlight: 512 } };
    }).sort((a, b) => a.rate! - b.rate!),
    { label: `saturation c=${m.concurrency}`, kind: 'closed', mode: { mode: 'closed', concurrency: m.concurrency, seconds: seconds + 1 } },
    { label: `burst ${m.burst}`, kind: 'burst', mode: { mode: 'burst', size: m.burst, count: 3, gapMs: 200 } },
  ];
  const results = { naive: {}, 'hand-written': {}, shoal: {} } as Record<SystemName, Record<string, Load>>;
  const eld = {} as Record<SystemName, number>;

  // (b) the three systems, one after another, each through every load
  for (const system of SYSTEMS) {
    const sys = system === 'naive'
      ? await startServerProcess('naive-server.mjs', { model: m.path, input: m.input, itemDims: m.itemDims }, rawFile)
      : system === 'hand-written'
        ? await startServerProcess('hand-written-server.mjs', { model: m.path, input: m.input, itemDims: m.itemDims, maxBatch: best.batch, maxWaitMs: m.maxWaitMs, intraOp: cores }, rawFile)
        : await startShoal(m, repo, item, tmp);
    try {
      await load(sys, { mode: 'closed', concurrency: 4, seconds: 1 }); // warm-up
      const check = await load(sys, { mode: 'burst', size: 1, count: 1 });
      if (check.ok !== 1) throw new Error(`${system} answered badly: ${check.firstError}`);
      for (const l of loads) {
        if (l.kind === 'closed') await sys.stats();
        results[system][l.label] = await load(sys, l.mode);
        progress(m.name, system, l.label, results[system][l.label]!);
        if (l.kind === 'closed') {
          const s = await sys.stats();
          eld[system] = s.eventLoopDelayP99Ms;
          if (s.batchSizeCounts !== undefined) extra[`${m.name}BatchSizes`] = s.batchSizeCounts;
        }
        await sleep(300);
      }
    } finally {
      await sys.stop();
    }
  }

  const opt = (x: number | null): number | null => (x === null ? null : round(x, 1));
  for (const l of loads) {
    const n = results.naive[l.label]!;
    const h = results['hand-written'][l.label]!;
    const s = results.shoal[l.label]!;
    for (const system of SYSTEMS) {
      const r = results[system][l.label]!;
      rows.push({ model: m.name, load: l.label, system, 'items/s': round(r.rps, 0), p50_ms: opt(r.p50Ms), p99_ms: opt(r.p99Ms), 'errors+dropped': r.errors + r.dropped,
        'shoal/naive': system === 'shoal' ? round(s.rps / n.rps, 2) : null, 'shoal/hand-written': system === 'shoal' ? round(s.rps / h.rps, 2) : null, 'vs ceiling': round(r.rps / best.itemsPerSec, 2) });
    }
  }
  extra[`${m.name}Shoal`] = { sessions, intraOp, maxBatchSize: best.batch, maxWaitMs: m.maxWaitMs };
  extra[`${m.name}HandWritten`] = { workerThreads: 1, intraOp: cores, maxBatchSize: best.batch, maxWaitMs: m.maxWaitMs };
  extra[`${m.name}EventLoopDelayP99Ms`] = eld;
  rows.push({ model: m.name, load: `ceiling b=${best.batch} t=${best.threads}`, system: 'ort in-process', 'items/s': round(best.itemsPerSec, 0), p50_ms: null, p99_ms: null, 'errors+dropped': 0, 'shoal/naive': null, 'shoal/hand-written': null, 'vs ceiling': 1 });

  // (c) issue 9's goals for this model. A missing percentile (every request failed) counts as not met.
  const sat = loads.find((l) => l.kind === 'closed')!.label;
  const burst = loads.find((l) => l.kind === 'burst')!.label;
  const rps = (system: SystemName, label: string): number => results[system][label]!.rps;
  const p = (system: SystemName, label: string, pct: 'p50Ms' | 'p99Ms'): number => results[system][label]![pct] ?? Infinity;
  const vsCeiling = rps('shoal', sat) / best.itemsPerSec;
  if (m.name === 'mlp') {
    goals.push(ratioGoal('mlp: shoal / hand-written items/s at saturation', rps('shoal', sat) / rps('hand-written', sat), 1.2));
    goals.push(ratioGoal(`mlp: shoal / hand-written items/s under bursts of ${m.burst}`, rps('shoal', burst) / rps('hand-written', burst), 1.2));
    const light = loads.find((l) => l.spec?.of === 'ceiling' && l.spec.f === 0.2)!;
    goals.push(msGoal(`mlp: shoal p50 - hand-written p50 at 20% of the ceiling (${light.rate}/s open loop; hand-written ${round(p('hand-written', light.label, 'p50Ms'), 2)} ms)`,
      p('shoal', light.label, 'p50Ms') - p('hand-written', light.label, 'p50Ms'), 1));
    goals.push(ratioGoal('mlp: shoal items/s at saturation / ceiling', vsCeiling, 0.55));
    goals.push(msGoal(`mlp: worker event-loop delay p99 at saturation (hand-written's main thread: ${round(eld['hand-written'] ?? NaN, 1)} ms, naive's: ${round(eld.naive ?? NaN, 1)} ms)`, eld.shoal ?? Infinity, 10));
  } else if (m.name === 'rec') {
    const worst = Math.min(...loads.map((l) => rps('shoal', l.label) / rps('naive', l.label)));
    goals.push(ratioGoal('rec: shoal / naive items/s, worst load', worst, 1.0));
    const light = loads[0]!;
    goals.push(msGoal(`rec: shoal p50 - naive p50 at light load (${light.label}; naive ${round(p('naive', light.label, 'p50Ms'), 2)} ms)`, p('shoal', light.label, 'p50Ms') - p('naive', light.label, 'p50Ms'), 2));
  } else {
    const upToHalf = loads.filter((l) => l.kind === 'rate' && l.rate! <= 0.5 * best.itemsPerSec + 1);
    const worst = upToHalf.reduce((a, l) => (p('shoal', l.label, 'p99Ms') > p('shoal', a.label, 'p99Ms') ? l : a));
    goals.push(msGoal(`cls: shoal p99, worst open-loop rate up to 50% of the ceiling (${worst.label})`, p('shoal', worst.label, 'p99Ms'), 10));
    goals.push(ratioGoal('cls: shoal items/s at saturation / ceiling', vsCeiling, 0.7));
  }
  extra[`${m.name}Loads`] = results;
}

process.stdout.write('\n');
printTable(rows);
process.stdout.write('\n');
printGoals(goals);
const file = writeResult('models', rows, goals, { settings: { seconds, cores, onePerRequest: true, systems: SYSTEMS }, ...extra }, values.out === undefined ? undefined : resolve(values.out));
process.stdout.write(`wrote ${file}\n`);
rmSync(tmp, { recursive: true, force: true });
