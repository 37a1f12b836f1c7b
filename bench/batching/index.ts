/**
 * bench/batching: what dynamic batching buys, side by side in one run. A synthetic model whose batch of n items
 * takes fixedMs + n * perItemMs on its own thread (off the event loop, like an accelerator) is served with no
 * batching, fixed batching at a few sizes, and adaptive batching with a p99 objective. An open-loop generator (fixed
 * arrival rate, latency counted from each request's scheduled send time, so a slow server cannot slow the clock)
 * offers loads from light to overload through handles; the replica runs in a worker process.
 *
 *   pnpm bench batching [--seconds 4] [--fixed-ms 8] [--per-item-ms 1] [--objective-ms 50]
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { silentLogger, toWireError, type AppSpec, type BatchOptions } from '@shoal/core';
import { Head } from '@shoal/head';
import { createHandle } from '@shoal/router';
import { loadAppSpec, localWorkerCommand } from '@shoal/cli';
import { machine, percentile, printGoals, printTable, round, writeResult, type Goal, type Row } from '../lib.ts';
import type { Curve, Synthetic } from './app.ts';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '4' },
    'fixed-ms': { type: 'string', default: '8' },
    'per-item-ms': { type: 'string', default: '1' },
    'objective-ms': { type: 'string', default: '50' },
    /** Runs only the settings whose name contains this. */
    only: { type: 'string' },
    /** Prints each replica's batch stats (adaptive state included) after every step. */
    trace: { type: 'boolean', default: false },
  },
});
const seconds = Number(values.seconds);
const curve: Curve = { fixedMs: Number(values['fixed-ms']), perItemMs: Number(values['per-item-ms']) };
const objectiveMs = Number(values['objective-ms']);
const ADAPTIVE_BOUND = 64;

interface Setting { name: string; batch: BatchOptions }
const settings: Setting[] = [
  { name: 'none', batch: { maxBatchSize: 1, maxWaitMs: 0 } },
  { name: 'fixed 8', batch: { maxBatchSize: 8, maxWaitMs: 5 } },
  { name: 'fixed 16', batch: { maxBatchSize: 16, maxWaitMs: 5 } },
  { name: 'fixed 32', batch: { maxBatchSize: 32, maxWaitMs: 5 } },
  { name: `adaptive p99<=${objectiveMs}`, batch: { maxBatchSize: ADAPTIVE_BOUND, maxWaitMs: 20, latencyObjective: { percentile: 99, ms: objectiveMs } } },
];
if (values.only !== undefined) settings.splice(0, settings.length, ...settings.filter((s) => s.name.includes(values.only!)));
/** Fractions of the probed capacity offered in turn, before the overload step. */
const LOADS = [0.1, 0.3, 0.5, 0.7, 0.9];

/** Best throughput the curve allows at a batch size, in items/s. */
const ideal = (b: number): number => (1000 * b) / (curve.fixedMs + curve.perItemMs * b);
const bestSize = Math.max(1, Math.min(ADAPTIVE_BOUND, Math.floor((objectiveMs - curve.fixedMs) / curve.perItemMs)));
const overloadRate = Math.round(1.5 * Math.max(ideal(32), ideal(bestSize)));

type Infer = (x: number) => Promise<number>;

interface StepResult { offered: number; throughput: number; p50: number; p99: number; rejected: number; errors: number; meanBatch: number; firstError?: string }

/** Offers `rate` requests/s for `secs`, open loop, and waits for every answer. */
async function step(infer: Infer, rate: number, secs: number): Promise<StepResult> {
  const latencies: number[] = [];
  const samples: Array<[number, number, number]> = [];
  let doneInWindow = 0;
  let rejected = 0;
  let errors = 0;
  let sizeSum = 0;
  let firstError: string | undefined;
  const pending: Array<Promise<void>> = [];
  const t0 = performance.now();
  const end = t0 + secs * 1000;
  let sent = 0;
  const total = Math.round(secs * rate);
  const send = (): void => {
    const scheduled = t0 + (sent * 1000) / rate;
    sent++;
    pending.push(infer(sent).then((size) => {
      const done = performance.now();
      latencies.push(done - scheduled);
      if (values.trace) samples.push([Math.round(scheduled - t0), Math.round(done - scheduled), size]);
      sizeSum += size;
      if (done <= end) doneInWindow++;
    }, (err: unknown) => {
      const wire = toWireError(err);
      if (wire.code === 'ERR_QUEUE_FULL') rejected++;
      else { errors++; firstError ??= `${wire.code}: ${wire.message}`; }
    }));
  };
  await new Promise<void>((done) => {
    const tick = (): void => {
      const now = performance.now();
      // Request k is due at t0 + k / rate.
      const due = Math.min(total, Math.floor(((now - t0) * rate) / 1000) + 1);
      while (sent < due) send();
      if (now >= end) done();
      else setTimeout(tick, 1);
    };
    tick();
  });
  await Promise.all(pending);
  latencies.sort((a, b) => a - b);
  if (values.trace) process.stderr.write(`worst [at ms, latency ms, batch]: ${JSON.stringify(samples.sort((x, y) => y[1] - x[1]).slice(0, 12))}\n`);
  return {
    offered: rate, throughput: doneInWindow / secs, p50: percentile(latencies, 50), p99: percentile(latencies, 99),
    rejected, errors, meanBatch: latencies.length === 0 ? 0 : sizeSum / latencies.length, ...(firstError ? { firstError } : {}),
  };
}

async function trace(name: string, r: StepResult): Promise<void> {
  const i = settings.findIndex((s) => s.name === name);
  const replica = (await head.stats()).workers.flatMap((w) => w.replicas).find((x) => x.app === `batching-${i}`);
  const b = replica?.batch.infer;
  const a = b?.adaptive;
  process.stderr.write(`${name} @${r.offered}/s p50=${r.p50.toFixed(1)} p99=${r.p99.toFixed(1)} effective=${JSON.stringify(b?.effective)}`
    + `${a ? ` phase=${a.phase} pays=${a.batchingPays} tail=${a.lastTailMs?.toFixed(1)} decisions=${a.decisions}` : ''}\n`);
}

const head = new Head({ port: 0, httpPort: 0, workers: 1, workerCommand: localWorkerCommand(), workerCpus: 8, logger: silentLogger });
const started = Date.now();
try {
  await head.start();
  await head.waitForWorkers(1);
  const base = await loadAppSpec(resolve(import.meta.dirname, 'app.ts'), {});
  const handles = new Map<string, Infer>();
  for (const [i, s] of settings.entries()) {
    const spec: AppSpec = structuredClone({ ...base, name: `batching-${i}`, routePrefix: null });
    spec.deployments[0]!.options.userConfig = { model: curve, batch: { infer: s.batch } };
    await head.deploy(spec);
    await head.waitReady(spec.name);
    const h = createHandle<Synthetic>({ router: head.router, key: `${spec.name}/Synthetic`, methods: spec.deployments[0]!.methods });
    handles.set(s.name, (x) => h.infer(x));
  }
  process.stdout.write(`bench/batching on ${machine()}\nmodel: ${curve.fixedMs} ms + ${curve.perItemMs} ms/item per batch on its own thread; `
    + `objective p99 <= ${objectiveMs} ms; ${seconds}s per step; overload = ${overloadRate} req/s\n`);

  // Probe: saturated throughput of each setting (after a warm-up), to place the offered loads.
  const probed = new Map<string, number>();
  for (const s of settings) {
    const infer = handles.get(s.name)!;
    await step(infer, 200, 1);
    probed.set(s.name, (await step(infer, overloadRate, 2)).throughput);
  }
  const capacity = Math.max(...probed.values());
  process.stdout.write(`probed capacity (best setting): ${capacity.toFixed(0)} req/s; offered loads: ${LOADS.map((f) => `${f * 100}%`).join(', ')} of it, then ${overloadRate} req/s\n\n`);

  const rows: Row[] = [];
  const results = new Map<string, Array<StepResult & { load: number }>>();
  for (const s of settings) {
    const infer = handles.get(s.name)!;
    const mine: Array<StepResult & { load: number }> = [];
    for (const load of [...LOADS, overloadRate / capacity]) {
      const r = await step(infer, Math.round(load * capacity), seconds);
      mine.push({ ...r, load });
      rows.push({
        batching: s.name, 'offered/s': r.offered, load: `${Math.round(load * 100)}%`, 'done/s': round(r.throughput, 0),
        p50_ms: round(r.p50, 1), p99_ms: round(r.p99, 1), 'mean batch': round(r.meanBatch, 1), rejected: r.rejected, errors: r.errors,
      });
      if (r.firstError !== undefined) process.stderr.write(`${s.name} at ${r.offered}/s: first error ${r.firstError}\n`);
      if (values.trace) await trace(s.name, r);
    }
    results.set(s.name, mine);
  }
  printTable(rows);

  const saturated = (name: string): number => results.get(name)!.at(-1)!.throughput;
  const fixed = settings.filter((s) => s.name.startsWith('fixed'));
  const bestFixed = fixed.reduce((best, s) => (saturated(s.name) > saturated(best.name) ? s : best));
  const adaptive = settings.at(-1)!.name;
  const ratio = saturated(adaptive) / saturated(bestFixed.name);
  const adaptiveTail = Math.max(...results.get(adaptive)!.filter((r) => r.load <= 0.7 + 1e-9).map((r) => r.p99));
  const goals: Goal[] = [
    { goal: `adaptive throughput at saturation / best fixed (${bestFixed.name})`, value: round(ratio, 2), target: '>= 0.9', unit: 'x', met: ratio >= 0.9 },
    { goal: 'adaptive p99 at loads up to 70% of capacity', value: round(adaptiveTail, 1), target: `<= ${objectiveMs}`, unit: 'ms', met: adaptiveTail <= objectiveMs },
  ];
  process.stdout.write('\n');
  printGoals(goals);
  const file = writeResult('batching', rows, goals, { settings: { seconds, curve, objectiveMs, overloadRate, capacity, probed: Object.fromEntries(probed), batching: settings } });
  process.stdout.write(`wrote ${file} (${((Date.now() - started) / 1000).toFixed(0)} s)\n`);
} finally {
  await head.stop();
}
