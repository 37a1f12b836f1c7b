/**
 * Continuous against static batching of one step-wise model (examples/charrnn: a char RNN step, H=1024, run in an
 * OrtPool thread), on a mix of short and long sequences: 80% ask for 8 characters, 20% for 128 (seeded, with
 * varied prompts). CLIENTS clients in a closed loop send REQUESTS requests per round; rounds alternate between the
 * two deployments (this host is noisy) and each figure is the median over its rounds.
 *
 * Both deployments hold at most 16 sequences per step. Static batching is `batch()` whose batch function steps its
 * unfinished sequences until the longest is done, so a short answer waits for the batch's long ones; continuous
 * batching admits waiting sequences at every step boundary and drops finished ones. Time to first chunk is the
 * first character for continuous, the whole answer for static (it has nothing earlier to give).
 *
 * Measured through a cluster (a head in this process, the deployments on one worker process, called with handles)
 * in two ways, streamed (a chunk per character crosses the data path: what a streaming client pays) and gathered
 * (the worker gathers the stream into one answer, as for a caller that takes no stream: the batching alone plus one
 * reply per request, as static has); and in process (the replica instances called directly, no wire at all).
 */
import { resolve } from 'node:path';
import { loadAppSpec, localWorkerCommand } from '@shoal/cli';
import { seededRandom, silentLogger, type Handle } from '@shoal/core';
import { Head } from '@shoal/head';
import { createHandle } from '@shoal/router';
import { CharRnnContinuous, CharRnnStatic, type GenerateInput } from '../../examples/charrnn/app.ts';
import { median, percentile, round, type Goal, type Row } from '../lib.ts';

const APP = resolve(import.meta.dirname, '../../examples/charrnn/app.ts');
const REQUESTS = Number(process.env['BENCH_CONTINUOUS_REQUESTS'] ?? 320);
const CLIENTS = 32;
const ROUNDS = Number(process.env['BENCH_CONTINUOUS_ROUNDS'] ?? 5);
const SHORT_TOKENS = 8;
const LONG_TOKENS = 128;
const LONG_SHARE = 0.2;

interface Sample { ttfcMs: number; latencyMs: number; chars: number }
interface Round { mode: Mode; wallMs: number; samples: Sample[] }
/** `continuous`: streamed, a chunk per character; `continuous-whole`: the same stream gathered into one answer by the worker (a caller that takes no stream); `static`: batch(). */
type Mode = 'continuous' | 'continuous-whole' | 'static';
type Call = (input: GenerateInput) => Promise<Sample>;

function workload(n: number, seed: number): GenerateInput[] {
  const rand = seededRandom(seed);
  const prompts = ['', 'The ', 'hello', 'Once upon a time ', 'q: ', '42 + 17 = '];
  return Array.from({ length: n }, () => ({
    prompt: prompts[Math.floor(rand() * prompts.length)]!,
    maxTokens: rand() < LONG_SHARE ? LONG_TOKENS : SHORT_TOKENS,
  }));
}

async function runRound(mode: Mode, call: Call, inputs: readonly GenerateInput[]): Promise<Round> {
  const samples: Sample[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: CLIENTS }, async () => {
    while (next < inputs.length) samples.push(await call(inputs[next++]!));
  }));
  return { mode, wallMs: performance.now() - t0, samples };
}

function summary(rounds: Round[]): Row & { tokensPerSec: number; requestsPerSec: number; latencyP99Ms: number; ttfcP50Ms: number; ttfcP99Ms: number } {
  const per = rounds.map((r) => {
    const chars = r.samples.reduce((s, x) => s + x.chars, 0);
    const ttfc = r.samples.map((s) => s.ttfcMs).sort((a, b) => a - b);
    const lat = r.samples.map((s) => s.latencyMs).sort((a, b) => a - b);
    return {
      tokensPerSec: chars / (r.wallMs / 1e3), requestsPerSec: r.samples.length / (r.wallMs / 1e3),
      ttfcP50Ms: percentile(ttfc, 50), ttfcP99Ms: percentile(ttfc, 99), latencyP50Ms: percentile(lat, 50), latencyP99Ms: percentile(lat, 99),
    };
  });
  const med = (k: keyof (typeof per)[number]): number => median(per.map((p) => p[k]));
  return {
    tokensPerSec: round(med('tokensPerSec'), 0), requestsPerSec: round(med('requestsPerSec'), 1),
    ttfcP50Ms: round(med('ttfcP50Ms'), 1), ttfcP99Ms: round(med('ttfcP99Ms'), 1),
    latencyP50Ms: round(med('latencyP50Ms'), 1), latencyP99Ms: round(med('latencyP99Ms'), 1),
    perRoundTokensPerSec: per.map((p) => Math.round(p.tokensPerSec)).join(' / '),
  };
}

interface Measured { rows: Row[]; summaries: Partial<Record<Mode, Summary>> }
type Summary = ReturnType<typeof summary>;

/**
 * Warm-up, then ROUNDS rounds of every mode, the order reversed every other round; one row per mode. `meanStep`
 * reads the continuous deployment's mean sequences per step (warm-up included) once the rounds are done.
 */
async function compare(calls: Partial<Record<Mode, Call>>, where: string, hidden: number, meanStep: () => Promise<number>): Promise<Measured> {
  const inputs = workload(REQUESTS, 13);
  const modes = Object.keys(calls) as Mode[];
  // Warm-up: every session has run every batch size before anything is timed.
  for (const m of modes) await runRound(m, calls[m]!, inputs.slice(0, 64));
  const rounds: Round[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    for (const m of i % 2 === 0 ? modes : [...modes].reverse()) rounds.push(await runRound(m, calls[m]!, inputs));
  }
  const setup = `${where}, ${CLIENTS} closed-loop clients, ${REQUESTS} requests/round (${Math.round(LONG_SHARE * 100)}% ${LONG_TOKENS} chars, else ${SHORT_TOKENS}), median of ${ROUNDS} alternating rounds`;
  const summaries: Partial<Record<Mode, Summary>> = {};
  const rows: Row[] = [];
  const step = round(await meanStep(), 1);
  for (const m of modes) {
    const sm = summary(rounds.filter((r) => r.mode === m));
    summaries[m] = sm;
    rows.push({ mode: m, via: where, hidden, ...sm, ...(m === 'static' ? {} : { meanStepBatch: step }), setup });
  }
  return { rows, summaries };
}

function ratios(m: Measured, mode: Mode): { tokens: number; p99: number } {
  const c = m.summaries[mode]!;
  const s = m.summaries.static!;
  return { tokens: round(c.tokensPerSec / s.tokensPerSec, 2), p99: round(c.latencyP99Ms / s.latencyP99Ms, 2) };
}

/** Chunks of a stream, timed: first chunk and end, from the call. */
async function timedStream(t0: number, stream: AsyncIterable<string>): Promise<Sample> {
  let first = -1;
  let chars = 0;
  for await (const c of stream) {
    if (first < 0) first = performance.now();
    chars += c.length;
  }
  const end = performance.now();
  return { ttfcMs: (first < 0 ? end : first) - t0, latencyMs: end - t0, chars };
}

async function timedAnswer(t0: number, answer: Promise<string>): Promise<Sample> {
  const text = await answer;
  const ms = performance.now() - t0;
  return { ttfcMs: ms, latencyMs: ms, chars: text.length };
}

function meanOf(sizes: Readonly<Record<number, number>>): number {
  const steps = Object.values(sizes).reduce((a, b) => a + b, 0);
  return Object.entries(sizes).reduce((a, [size, n]) => a + Number(size) * n, 0) / Math.max(1, steps);
}

async function inCluster(hidden: number): Promise<Measured> {
  const head = new Head({ port: 0, httpPort: 0, workers: 1, workerCommand: localWorkerCommand(), workerCpus: 4, heartbeatMs: 500, workerTimeoutMs: 30_000, logger: silentLogger });
  try {
    await head.start();
    await head.waitForWorkers(1);
    const spec = await loadAppSpec(APP, { name: `charrnn-bench-${hidden}`, exportName: hidden === 2048 ? 'wide' : 'default' });
    await head.deploy(spec);
    await head.waitReady(spec.name, 120_000);
    const handle = <T>(deployment: string): Handle<T> => {
      const d = spec.deployments.find((x) => x.name === deployment);
      if (d === undefined) throw new Error(`examples/charrnn/app.ts has no deployment "${deployment}"`);
      return createHandle({ router: head.router, key: `${spec.name}/${deployment}`, methods: d.methods }) as Handle<T>;
    };
    const cont = handle<CharRnnContinuous>('charrnn');
    const stat = handle<CharRnnStatic>('charrnn-static');
    const calls: Partial<Record<Mode, Call>> = {
      // A continuousBatch field streams through a handle (the replica reported it as a stream field).
      continuous: (input) => timedStream(performance.now(), cont.generate(input)),
      // A router call without a stream window (a caller that takes no stream) gets the stream gathered by the worker
      // into one array of chunks; a handle would stream it.
      'continuous-whole': (input) => { const t0 = performance.now(); return timedAnswer(t0, (head.router.call(`${spec.name}/charrnn`, 'generate', [input]) as Promise<string[]>).then((cs) => cs.join(''))); },
      static: (input) => timedAnswer(performance.now(), stat.complete(input)),
    };
    // The step sizes come from the worker's metrics: shoal_batch_batches_total{method="generate",size}.
    const meanStep = async (): Promise<number> => meanOf(stepSizes(await (await fetch(`${head.httpAddress}/-/metrics`)).text()));
    return await compare(calls, 'cluster (handles, 1 worker process)', hidden, meanStep);
  } finally {
    await head.stop();
  }
}

function stepSizes(metricsText: string): Record<number, number> {
  const out: Record<number, number> = {};
  for (const line of metricsText.split('\n')) {
    if (!line.startsWith('shoal_batch_batches_total{') || !line.includes('method="generate"')) continue;
    const size = /size="(\d+)"/.exec(line)?.[1];
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (size !== undefined && Number.isFinite(value)) out[Number(size)] = (out[Number(size)] ?? 0) + value;
  }
  return out;
}

async function inProcess(hidden: number): Promise<Measured> {
  const cont = new CharRnnContinuous({ hidden });
  const stat = new CharRnnStatic({ hidden });
  await Promise.all([cont.init(), stat.init()]);
  try {
    const calls: Partial<Record<Mode, Call>> = {
      continuous: (input) => timedStream(performance.now(), cont.generate(input)),
      static: (input) => timedAnswer(performance.now(), stat.complete(input)),
    };
    return await compare(calls, 'in process (instances called directly)', hidden, async () => meanOf(cont.generate.stats().batchSizeCounts));
  } finally {
    await cont.generate.close();
    await stat.complete.close();
    await Promise.all([cont.shutdown(), stat.shutdown()]);
  }
}

/**
 * The goals are judged at hidden size 2048, where a step's cost is mostly reading the weights (as in LLM decoding);
 * the same comparison at 1024, where the weights stay in cache and a batch of 16 costs about 3x a batch of one, is
 * in the rows beside it, so the table shows how the gain depends on the model.
 */
export async function section(): Promise<{ rows: Row[]; goals: Goal[] }> {
  const cluster = await inCluster(2048);
  const local = await inProcess(2048);
  const narrow = await inCluster(1024);
  const streamed = ratios(cluster, 'continuous');
  const whole = ratios(cluster, 'continuous-whole');
  const own = ratios(local, 'continuous');
  const narrowStreamed = ratios(narrow, 'continuous');
  const narrowWhole = ratios(narrow, 'continuous-whole');
  const goals: Goal[] = [
    { goal: 'continuous batching throughput vs static on the mixed workload (tokens/s, cluster, streamed, H=2048)', value: streamed.tokens, target: '>= 2', unit: 'x', met: streamed.tokens >= 2 },
    { goal: 'continuous batching request latency p99 vs static on the mixed workload (cluster, streamed, H=2048)', value: streamed.p99, target: '<= 1', unit: 'x', met: streamed.p99 <= 1 },
    { goal: 'continuous batching throughput vs static on the mixed workload (tokens/s, cluster, answers gathered, H=2048)', value: whole.tokens, target: '>= 2', unit: 'x', met: whole.tokens >= 2 },
    { goal: 'continuous batching request latency p99 vs static on the mixed workload (cluster, answers gathered, H=2048)', value: whole.p99, target: '<= 1', unit: 'x', met: whole.p99 <= 1 },
  ];
  const rows: Row[] = [
    ...cluster.rows, ...local.rows, ...narrow.rows,
    { mode: 'ratio continuous/static', via: 'cluster, streamed', hidden: 2048, tokensPerSec: streamed.tokens, latencyP99Ms: streamed.p99 },
    { mode: 'ratio continuous/static', via: 'cluster, gathered', hidden: 2048, tokensPerSec: whole.tokens, latencyP99Ms: whole.p99 },
    { mode: 'ratio continuous/static', via: 'in process', hidden: 2048, tokensPerSec: own.tokens, latencyP99Ms: own.p99 },
    { mode: 'ratio continuous/static', via: 'cluster, streamed', hidden: 1024, tokensPerSec: narrowStreamed.tokens, latencyP99Ms: narrowStreamed.p99 },
    { mode: 'ratio continuous/static', via: 'cluster, gathered', hidden: 1024, tokensPerSec: narrowWhole.tokens, latencyP99Ms: narrowWhole.p99 },
  ];
  return { rows, goals };
}
