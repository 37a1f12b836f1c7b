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
 * Measured in process: the replica instances are called directly (the streaming transport between processes was
 * not in the tree when this section was written), so the figures are the batching's own, without a wire.
 */
import { seededRandom } from '@shoal/core';
import { CharRnnContinuous, CharRnnStatic, type GenerateInput } from '../../examples/charrnn/app.ts';
import { median, percentile, round, type Goal, type Row } from '../lib.ts';

const REQUESTS = Number(process.env['BENCH_CONTINUOUS_REQUESTS'] ?? 320);
const CLIENTS = 32;
const ROUNDS = 3;
const SHORT_TOKENS = 8;
const LONG_TOKENS = 128;
const LONG_SHARE = 0.2;

interface Sample { ttfcMs: number; latencyMs: number; chars: number }
interface Round { mode: Mode; wallMs: number; samples: Sample[] }
type Mode = 'continuous' | 'static';
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

export async function section(): Promise<{ rows: Row[]; goals: Goal[] }> {
  const cont = new CharRnnContinuous();
  const stat = new CharRnnStatic();
  await Promise.all([cont.init(), stat.init()]);
  const calls: Record<Mode, Call> = {
    continuous: async (input) => {
      const t0 = performance.now();
      let first = -1;
      let chars = 0;
      for await (const c of cont.generate(input)) {
        if (first < 0) first = performance.now();
        chars += c.length;
      }
      const end = performance.now();
      return { ttfcMs: (first < 0 ? end : first) - t0, latencyMs: end - t0, chars };
    },
    static: async (input) => {
      const t0 = performance.now();
      const text = await stat.complete(input);
      const ms = performance.now() - t0;
      return { ttfcMs: ms, latencyMs: ms, chars: text.length };
    },
  };
  try {
    const inputs = workload(REQUESTS, 13);
    // Warm-up: both sessions have run every batch size once before anything is timed.
    await runRound('continuous', calls.continuous, inputs.slice(0, 64));
    await runRound('static', calls.static, inputs.slice(0, 64));
    const rounds: Round[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      for (const mode of (i % 2 === 0 ? ['continuous', 'static'] : ['static', 'continuous']) as Mode[]) {
        rounds.push(await runRound(mode, calls[mode], inputs));
      }
    }
    const c = summary(rounds.filter((r) => r.mode === 'continuous'));
    const s = summary(rounds.filter((r) => r.mode === 'static'));
    const stepSizes = cont.generate.stats().batchSizeCounts;
    const steps = Object.values(stepSizes).reduce((a, b) => a + b, 0);
    const meanStep = Object.entries(stepSizes).reduce((a, [size, n]) => a + Number(size) * n, 0) / Math.max(1, steps);
    const where = `in process, ${CLIENTS} closed-loop clients, ${REQUESTS} requests/round (${Math.round(LONG_SHARE * 100)}% ${LONG_TOKENS} chars, else ${SHORT_TOKENS}), median of ${ROUNDS} alternating rounds`;
    const rows: Row[] = [
      { mode: 'continuous', ...c, meanStepBatch: round(meanStep, 1), setup: where },
      { mode: 'static', ...s, setup: where },
    ];
    const ratio = round(c.tokensPerSec / s.tokensPerSec, 2);
    const p99Ratio = round(c.latencyP99Ms / s.latencyP99Ms, 2);
    const goals: Goal[] = [
      { goal: 'continuous batching throughput vs static on the mixed workload (tokens/s)', value: ratio, target: '>= 2', unit: 'x', met: ratio >= 2 },
      { goal: 'continuous batching request latency p99 vs static on the mixed workload', value: p99Ratio, target: '<= 1', unit: 'x', met: p99Ratio <= 1 },
    ];
    return { rows, goals };
  } finally {
    await cont.generate.close();
    await stat.complete.close();
    await Promise.all([cont.shutdown(), stat.shutdown()]);
  }
}
