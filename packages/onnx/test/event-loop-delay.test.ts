/**
 * Event-loop delay: the monitor itself, and the claim the ORT pool exists for (inference runs off the event loop).
 * Nothing here asserts a wall-clock figure: the pool is judged against onnxruntime run on the main thread, by how
 * many timer intervals each lets a model run stretch.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { OrtPool, buildMlpModel, measureEventLoopDelay, startEventLoopDelayMonitor, type Feeds } from '../src/index.ts';

let dir: string;
let mlpPath: string;
const HIDDEN = 512;
const ROWS = 2048;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'shoal-eld-'));
  mlpPath = join(dir, 'mlp.onnx');
  writeFileSync(mlpPath, Buffer.concat(buildMlpModel({ hidden: HIDDEN, layers: 4 })));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/**
 * Runs `fn` while a 1 ms interval timer records when it ticks; `fn` reports the start and end of each model run
 * through `timed`. Gives, per run, the ticks the event loop made while that run was in progress.
 */
async function ticksDuringRuns(fn: (timed: <T>(run: () => Promise<T>) => Promise<T>) => Promise<void>): Promise<{ ticks: number[]; runMs: number[] }> {
  const at: number[] = [];
  const runs: Array<[number, number]> = [];
  const timer = setInterval(() => { at.push(performance.now()); }, 1);
  const timed = async <T>(run: () => Promise<T>): Promise<T> => {
    const t0 = performance.now();
    const out = await run();
    runs.push([t0, performance.now()]);
    return out;
  };
  try {
    await fn(timed);
  } finally {
    clearInterval(timer);
  }
  return { ticks: runs.map(([t0, t1]) => at.filter((t) => t > t0 && t < t1).length), runMs: runs.map(([t0, t1]) => t1 - t0) };
}

describe('event-loop delay', () => {
  test('the monitor sees a blocked loop (so a low figure below means something)', async () => {
    const { delay } = await measureEventLoopDelay(async () => {
      await new Promise((r) => setTimeout(r, 30));
      const end = Date.now() + 120;
      while (Date.now() < end) { /* block the loop */ }
      await new Promise((r) => setTimeout(r, 30));
    }, 5);
    expect(delay.maxMs).toBeGreaterThan(80);
  });

  test('the sampling period itself is not counted as delay', async () => {
    // Node records whole intervals, each at least the 20 ms period: were the period not taken off, the median
    // would be 20 ms or more whatever the load. Taken off, an idle loop's median is the small lateness left.
    const { delay } = await measureEventLoopDelay(() => new Promise((r) => setTimeout(r, 300)), 20);
    expect(delay.count).toBeGreaterThan(2);
    expect(delay.p50Ms).toBeLessThan(20);
  });

  test('validates its resolution', () => {
    expect(() => startEventLoopDelayMonitor(0)).toThrow(RangeError);
    const m = startEventLoopDelayMonitor(1);
    expect(m.stop()).toBe(m.stop()); // stop is idempotent
  });

  test('the pool runs the model off the event loop: the loop ticks through its runs, and not through runs on the main thread', async () => {
    const RUNS = 6;
    const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);

    // The comparison: onnxruntime's own session.run on this thread, where the native run holds the loop, so no
    // timer tick lands inside a run (one at most, where the binding defers the call).
    const session = await ort.InferenceSession.create(mlpPath, { intraOpNumThreads: 1, interOpNumThreads: 1 });
    let onLoop: { ticks: number[]; runMs: number[] };
    try {
      const x = new ort.Tensor('float32', new Float32Array(ROWS * HIDDEN).fill(0.1), [ROWS, HIDDEN]);
      await session.run({ x }); // warm-up, outside the count
      onLoop = await ticksDuringRuns(async (timed) => {
        for (let i = 0; i < RUNS; i++) {
          await timed(() => session.run({ x }));
          await new Promise((r) => setTimeout(r, 2));
        }
      });
    } finally {
      await session.release();
    }
    const runs = `runs of ${onLoop.runMs.map((d) => d.toFixed(0)).join(', ')} ms, ticks inside them ${onLoop.ticks.join(', ')}`;
    expect(onLoop.ticks, `on the main thread: ${runs}`).toHaveLength(RUNS);
    expect(sum(onLoop.ticks), `on the main thread: ${runs}`).toBeLessThanOrEqual(RUNS);

    // The pool: two ORT threads with a run in flight on each, the same number of runs. The loop keeps ticking
    // inside them; only a scheduler stall covering nearly every run could bring the count down to one per run.
    const pool = await OrtPool.load({ model: mlpPath, threads: 2, intraOpThreads: 1 });
    try {
      const feeds = (): Feeds => ({ x: { type: 'float32', dims: [ROWS, HIDDEN], data: new Float32Array(ROWS * HIDDEN).fill(0.1) } });
      await pool.run(feeds());
      const offLoop = await ticksDuringRuns(async (timed) => {
        await Promise.all([0, 1].map(async () => {
          for (let i = 0; i < RUNS / 2; i++) await timed(() => pool.run(feeds()));
        }));
      });
      expect(offLoop.ticks).toHaveLength(RUNS);
    expect(sum(offLoop.ticks), `off the loop: ticks inside runs ${offLoop.ticks.join(', ')}; ${runs}`).toBeGreaterThan(3 * RUNS);
    } finally {
      await pool.close();
    }
  });
});
