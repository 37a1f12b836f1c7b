import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { BadRequestError, InvalidOptionError, PeerGoneError, ShapeMismatchError, ShoalError, env } from '@shoal/core';
import { tensorCopies, tensorCopiesBetween } from '@shoal/oip';
import { OrtPool, buildMlpModel, buildTinyModel, tinyReference, type OnnxLogger } from '../src/index.ts';

let dir: string;
let tinyPath: string;
let mlpPath: string;
const MLP_HIDDEN = 512;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'shoal-onnx-'));
  tinyPath = join(dir, 'tiny.onnx');
  writeFileSync(tinyPath, buildTinyModel());
  mlpPath = join(dir, 'mlp.onnx');
  writeFileSync(mlpPath, Buffer.concat(buildMlpModel({ hidden: MLP_HIDDEN, layers: 4 })));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function recordingLogger(): OnnxLogger & { lines: string[] } {
  const lines: string[] = [];
  return { lines, warn: (m) => { lines.push(m); } };
}

const x2 = (): Float32Array => Float32Array.from([1, 2, 3, 4, -1, -2, -3, -4]);

describe('OrtPool', () => {
  test('loads from a path, reads metadata, runs with correct numbers', async () => {
    const m = await OrtPool.load({ model: tinyPath, threads: 1 });
    try {
      expect(m.metadata).toEqual({
        inputs: [{ name: 'x', type: 'float32', shape: ['batch', 4] }],
        outputs: [{ name: 'y', type: 'float32', shape: ['batch', 4] }, { name: 'sum', type: 'float32', shape: ['batch'] }],
      });
      expect(m.provider).toBe('cpu');
      expect(m.name).toBe('tiny.onnx');
      const out = await m.run({ x: { type: 'float32', dims: [2, 4], data: x2() } });
      const ref = tinyReference(x2());
      expect(out.y?.dims).toEqual([2, 4]);
      expect(Array.from(out.y!.data as Float32Array)).toEqual(Array.from(ref.y));
      expect(Array.from(out.sum!.data as Float32Array)).toEqual(Array.from(ref.sum));
    } finally {
      await m.close();
    }
  });

  test('loads from bytes; a batch of 8 across 2 threads; output selection', async () => {
    const m = await OrtPool.load({ model: buildTinyModel(), threads: 2, intraOpThreads: 1 });
    try {
      expect(m.name).toBe('model');
      const x = Float32Array.from({ length: 32 }, (_, i) => (i % 7) - 3);
      const ref = tinyReference(x);
      const outs = await Promise.all(Array.from({ length: 8 }, () => m.run({ x: { type: 'float32', dims: [8, 4], data: x.slice() } })));
      for (const o of outs) expect(Array.from(o.y!.data as Float32Array)).toEqual(Array.from(ref.y));
      const only = await m.run({ x: { type: 'float32', dims: [8, 4], data: x.slice() } }, { outputs: ['sum'] });
      expect(Object.keys(only)).toEqual(['sum']);
      expect(Array.from(only.sum!.data as Float32Array)).toEqual(Array.from(ref.sum));
    } finally {
      await m.close();
    }
  });

  test('transfers whole-buffer feeds (detached) and copies views into larger buffers, and counts each copy', async () => {
    const m = await OrtPool.load({ model: tinyPath });
    // Every run: onnxruntime-node copies its two outputs (y: 8 floats, sum: 2) into new ArrayBuffers.
    const outputCopies = { count: 2, bytes: 40, sites: { 'ort.binding': { count: 2, bytes: 40 } } };
    try {
      const whole = x2();
      let before = tensorCopies();
      const first = await m.run({ x: { type: 'float32', dims: [2, 4], data: whole } });
      expect(whole.byteLength).toBe(0); // transferred, not copied
      expect(tensorCopiesBetween(before)).toEqual({ input: { count: 0, bytes: 0, sites: {} }, output: outputCopies });
      const y = first.y!.data as Float32Array;
      expect(y.byteLength).toBe(y.buffer.byteLength); // the thread's buffer, whole

      const big = new Float32Array(16).fill(1);
      const view = big.subarray(4, 12);
      before = tensorCopies();
      const out = await m.run({ x: { type: 'float32', dims: [2, 4], data: view } });
      expect(big.byteLength).toBe(64);
      expect(out.y!.dims).toEqual([2, 4]);
      expect(tensorCopiesBetween(before)).toEqual({ input: { count: 1, bytes: 32, sites: { 'onnx.thread-post': { count: 1, bytes: 32 } } }, output: outputCopies });

      const kept = x2();
      before = tensorCopies();
      await m.run({ x: { type: 'float32', dims: [2, 4], data: kept } }, { transfer: false });
      expect(kept.length).toBe(8);
      // Not transferred, so structured-cloned: seen after the post, as the sender's buffer still attached.
      expect(tensorCopiesBetween(before)).toEqual({ input: { count: 1, bytes: 32, sites: { 'onnx.thread-post-clone': { count: 1, bytes: 32 } } }, output: outputCopies });
    } finally {
      await m.close();
    }
  });

  test('bad feeds fail on the main thread with messages naming the input', async () => {
    const m = await OrtPool.load({ model: tinyPath });
    try {
      await expect(m.run({ z: { type: 'float32', dims: [1, 4], data: new Float32Array(4) } })).rejects.toThrow(/unknown input "z".*inputs are: x/);
      await expect(m.run({})).rejects.toBeInstanceOf(BadRequestError);
      await expect(m.run({ x: { type: 'int32', dims: [1, 4], data: new Int32Array(4) } })).rejects.toThrow(/input "x".*expected type float32, got int32/);
      const wrongDim = m.run({ x: { type: 'float32', dims: [1, 5], data: new Float32Array(5) } });
      await expect(wrongDim).rejects.toBeInstanceOf(ShapeMismatchError);
      await expect(m.run({ x: { type: 'float32', dims: [1, 5], data: new Float32Array(5) } })).rejects.toThrow(/dim 1 must be 4/);
      await expect(m.run({ x: { type: 'float32', dims: [2, 4], data: new Float32Array(4) } })).rejects.toThrow(/needs 8 elements, data has 4/);
      await expect(m.run({ x: { type: 'float32', dims: [1, 4], data: new Float32Array(4) } }, { outputs: ['nope'] })).rejects.toThrow(/unknown output "nope"/);
    } finally {
      await m.close();
    }
  });

  test('options are validated with the option path in the message', async () => {
    await expect(OrtPool.load({ model: tinyPath, threads: 0 })).rejects.toThrow(/invalid option threads: must be >= 1/);
    await expect(OrtPool.load({ model: tinyPath, threads: 0 })).rejects.toBeInstanceOf(InvalidOptionError);
    await expect(OrtPool.load({ model: tinyPath, executionProviders: ['tpu' as 'cpu'] })).rejects.toThrow(/executionProviders\[0\]/);
    await expect(OrtPool.load({ model: tinyPath, warmup: { dims: { width: 3 } } })).rejects.toThrow(/warmup\.dims\.width.*dynamic dims: batch/);
    await expect(OrtPool.load({ model: tinyPath, nice: 20 })).rejects.toThrow(/invalid option nice: must be <= 19/);
    await expect(OrtPool.load({ model: tinyPath, nice: -1 })).rejects.toThrow(/invalid option nice: must be >= 0/);
  });

  /** Nice values of this process's threads, from /proc/self/task/<tid>/stat (field 19). */
  function threadNices(): number[] {
    return readdirSync('/proc/self/task').map((tid) => {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
    });
  }

  test.runIf(process.platform === 'linux')('inference threads run at a lower priority than the event loop (nice), and go with the pool', async () => {
    const before = threadNices();
    expect(before.filter((n) => n === 7)).toEqual([]);
    const logger = recordingLogger();
    const m = await OrtPool.load({ model: mlpPath, threads: 2, intraOpThreads: 2, nice: 7, logger });
    try {
      expect(logger.lines).toEqual([]);
      // Each of the two pool threads, and the intra-op thread each session spawned from it, inherit nice 7.
      expect(threadNices().filter((n) => n === 7).length).toBeGreaterThanOrEqual(4);
      expect(threadNices().filter((n) => n === 0).length).toBeGreaterThan(0);  // the event loop keeps its own
    } finally {
      await m.close();
    }
  });

  test('a missing model file rejects load with a BackendError naming the problem', async () => {
    const err = await OrtPool.load({ model: join(dir, 'nope.onnx'), threads: 2 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ShoalError);
    expect((err as ShoalError).code).toBe('ERR_BACKEND');
    expect((err as Error).message).toMatch(/failed to load the model/);
  });

  // Where CUDA can load (SHOAL_GPU_TESTS=1 on a GPU machine; .ci/run sets it when nvidia-smi lists a GPU) there is
  // no fallback to see, and the next test runs instead.
  const gpuSkip = env.gpuTests() ? '' : ' (skipped: needs a CUDA GPU and SHOAL_GPU_TESTS=1, which .ci/run sets when nvidia-smi lists one)';
  test.skipIf(env.gpuTests())(`cuda that fails to load falls back to cpu with a warning saying why${env.gpuTests() ? ' (skipped: SHOAL_GPU_TESTS=1, CUDA loads here)' : ''}`, async () => {
    const logger = recordingLogger();
    const m = await OrtPool.load({ model: tinyPath, executionProviders: ['cuda', 'cpu'], logger, threads: 2 });
    try {
      expect(m.provider).toBe('cpu');
      expect(logger.lines).toHaveLength(1);
      expect(logger.lines[0]).toMatch(/execution provider cuda failed to load, falling back to cpu: .+/);
      // The reason names what is missing, not just onnxruntime's "Failed to load shared library".
      expect(logger.lines[0]).toMatch(/libonnxruntime_providers_(shared|cuda)\.so not found in .+onnxruntime-node/);
      const out = await m.run({ x: { type: 'float32', dims: [2, 4], data: x2() } });
      expect(out.y!.dims).toEqual([2, 4]);
    } finally {
      await m.close();
    }
    await expect(OrtPool.load({ model: tinyPath, executionProviders: ['cuda'], cpuFallback: false, logger })).rejects.toThrow(/execution provider cuda \(cpuFallback is off\)/);
  });

  // On a GPU host onnxruntime-node also needs its CUDA provider libraries (a plain pnpm install skips the
  // postinstall that fetches them); without them this fails with the missing files and the remedy named.
  test.runIf(env.gpuTests())(`cuda loads where the provider is installed${gpuSkip}`, async () => {
    const logger = recordingLogger();
    const m = await OrtPool.load({ model: tinyPath, executionProviders: ['cuda', 'cpu'], cpuFallback: false, logger });
    try {
      expect(m.provider).toBe('cuda');
      expect(logger.lines).toEqual([]);
      const out = await m.run({ x: { type: 'float32', dims: [2, 4], data: x2() } });
      expect(Array.from(out.y!.data as Float32Array)).toEqual(Array.from(tinyReference(x2()).y));
    } finally {
      await m.close();
    }
  });

  test('warm-up runs on load with declared dims; a failing warm-up rejects load', async () => {
    const m = await OrtPool.load({ model: tinyPath, threads: 2, warmup: { dims: { batch: 8 }, fill: 'ones', runs: 2 } });
    await m.close();
    const bad = OrtPool.load({ model: tinyPath, warmup: { feeds: [{ x: { type: 'float32', dims: [1, 3], data: new Float32Array(3) } }] } });
    await expect(bad).rejects.toThrow(/input "x".*dim 1 must be 4/);
  });

  test('a dead thread rejects all its pending runs with PeerGoneError; the survivors keep serving', async () => {
    const logger = recordingLogger();
    const m = await OrtPool.load({ model: mlpPath, threads: 2, intraOpThreads: 1, logger });
    try {
      const run = (): Promise<unknown> => m.run({ x: { type: 'float32', dims: [16, MLP_HIDDEN], data: new Float32Array(16 * MLP_HIDDEN).fill(0.5) } });
      const before = [run(), run(), run(), run()];
      m.crashThreadForTest(0); // exits after the two runs already queued on it
      const after = [run(), run(), run(), run()];
      // Handled from the start: the thread may die (rejecting two of these) before `before` settles.
      const afterSettled = Promise.allSettled(after);
      expect(m.pendingPerThread()).toEqual([4, 4]);
      expect((await Promise.allSettled(before)).map((s) => s.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled', 'fulfilled']);
      const settled = await afterSettled;
      const rejected = settled.filter((s): s is PromiseRejectedResult => s.status === 'rejected');
      expect(rejected).toHaveLength(2);
      for (const r of rejected) {
        expect(r.reason).toBeInstanceOf(PeerGoneError);
        expect(String((r.reason as Error).message)).toMatch(/ort thread 0 of model "mlp.onnx" died \(exit code 1\) with 2 run\(s\) pending/);
      }
      expect(m.pendingPerThread()).toEqual([-1, 0]);
      expect(logger.lines.some((l) => /thread 0 died; 1 of 2 left/.test(l))).toBe(true);
      const again = await Promise.all([run(), run()]);
      for (const o of again) expect((o as Record<string, { dims: number[] }>).y?.dims).toEqual([16, MLP_HIDDEN]);
    } finally {
      await m.close();
    }
  });

  test('run after close is an illegal-state error naming the state', async () => {
    const m = await OrtPool.load({ model: tinyPath });
    await m.close();
    await expect(m.run({ x: { type: 'float32', dims: [1, 4], data: new Float32Array(4) } })).rejects.toThrow(/it is closed/);
  });
});
