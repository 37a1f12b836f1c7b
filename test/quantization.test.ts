/**
 * Quantized accuracy bounds: the fp16 and int8 variants of the bench MLP (bench/quantization/make-variants.ts),
 * run through onnxruntime directly (an OrtPool, no serving) on the bench's fixed input set, stay within a bound of the fp32 model's
 * outputs, and differ from them (a variant that is secretly fp32 fails); their files are half and a quarter the
 * size. One request per variant through a real head and worker checks that shoal serves each as itself.
 * The bounds (ACCURACY_BOUNDS, shared with the bench) are measured errors with a 4-6x margin.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Head } from '@shoal/head';
import { OrtPool, encodeModelBytes } from '@shoal/onnx';
import { serveRepository } from '../packages/cli/src/serve.ts';
import { ACCURACY_BOUNDS as BOUNDS, absError, accuracyInputs, PRECISIONS, writeMlpVariants, type Precision, type Variant } from '../bench/quantization/make-variants.ts';
import { inferRows } from '../bench/quantization/kserve-client.ts';
import { startCluster } from './helpers.ts';

const HIDDEN = 2048;
const ROWS = 256;

let dir: string;
let variants: Variant[];
const outputs = {} as Record<Precision, Float32Array>;
const x = accuracyInputs(ROWS, HIDDEN);

async function runDirect(path: string, input: Float32Array, rows: number): Promise<Float32Array> {
  const pool = await OrtPool.load({ model: path, threads: 1, intraOpThreads: 1, warmup: false });
  try {
    const out = await pool.run({ x: { type: 'float32', dims: [rows, HIDDEN], data: input.slice() } });
    return out.y!.data as Float32Array;
  } finally {
    await pool.close();
  }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'shoal-quantization-test-'));
  variants = await writeMlpVariants(dir);
  for (const v of variants) outputs[v.precision] = await runDirect(v.path, x, ROWS);
}, 120_000);

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('quantized variants of the bench MLP', () => {
  it('writes fp16 at half the size of fp32 and int8 at a quarter', () => {
    const bytes = Object.fromEntries(variants.map((v) => [v.precision, v.bytes])) as Record<Precision, number>;
    const weights = 4 * HIDDEN * HIDDEN * 4;
    expect(bytes.fp32).toBeGreaterThan(weights);
    expect(bytes.fp16 / bytes.fp32).toBeGreaterThan(0.49);
    expect(bytes.fp16 / bytes.fp32).toBeLessThan(0.51);
    expect(bytes.int8 / bytes.fp32).toBeGreaterThan(0.24);
    expect(bytes.int8 / bytes.fp32).toBeLessThan(0.26);
  });

  it('writes the same bytes for the same seed, other bytes for another', async () => {
    const small = { hidden: 32, layers: 2 };
    const a = await writeMlpVariants(join(dir, 'a'), small);
    const b = await writeMlpVariants(join(dir, 'b'), small);
    const c = await writeMlpVariants(join(dir, 'c'), { ...small, seed: 2 });
    for (let i = 0; i < PRECISIONS.length; i++) {
      expect(readFileSync(a[i]!.path).equals(readFileSync(b[i]!.path))).toBe(true);
      expect(readFileSync(a[i]!.path).equals(readFileSync(c[i]!.path))).toBe(false);
    }
  });

  it('gives outputs of a sensible size (so that small errors mean something)', () => {
    const mean = outputs.fp32.reduce((s, v) => s + Math.abs(v), 0) / outputs.fp32.length;
    expect(mean).toBeGreaterThan(0.01);
    expect(mean).toBeLessThan(10);
    expect(outputs.fp32.some((v) => v > 0)).toBe(true);
  });

  for (const precision of ['fp16', 'int8'] as const) {
    it(`${precision}: max and mean absolute error vs fp32 within ${BOUNDS[precision].max} and ${BOUNDS[precision].mean}, and not zero`, () => {
      const e = absError(outputs.fp32, outputs[precision]);
      expect(e.max).toBeLessThan(BOUNDS[precision].max);
      expect(e.mean).toBeLessThan(BOUNDS[precision].mean);
      expect(e.max).toBeGreaterThan(BOUNDS[precision].least);
    });
  }

  it('int8 is less accurate than fp16 (its bound is the looser one for a reason)', () => {
    expect(absError(outputs.fp32, outputs.int8).mean).toBeGreaterThan(absError(outputs.fp32, outputs.fp16).mean * 3);
  });

  it('rejects an initializer whose typed array does not match its type, naming it', () => {
    const spec = { name: 'bad', inputs: [], outputs: [], nodes: [] };
    expect(() => encodeModelBytes({ ...spec, initializers: [{ name: 'w', dims: [2], type: 'float16', data: new Float32Array(2) as unknown as Uint16Array }] })).toThrow(/initializer "w": type float16 needs a Uint16Array, got Float32Array/);
    expect(() => encodeModelBytes({ ...spec, initializers: [{ name: 'w', dims: [2, 2], type: 'int8', data: new Int8Array(3) }] })).toThrow(RangeError);
  });
});

describe('the variants served side by side by shoal', () => {
  let head: Head;
  const rows = 8;

  beforeAll(async () => {
    const repo = join(dir, 'repo');
    for (const v of variants) {
      mkdirSync(join(repo, `mlp-${v.precision}`, '1'), { recursive: true });
      symlinkSync(v.path, join(repo, `mlp-${v.precision}`, '1', 'model.onnx'));
      writeFileSync(join(repo, `mlp-${v.precision}`, 'config.json'), JSON.stringify({ threads: { sessions: 1, intraOp: 1 }, resources: { cpus: 0.5 }, warmup: false }));
    }
    head = await startCluster({ workers: 1 });
    const { failed } = await serveRepository(head, repo);
    expect(failed).toEqual([]);
  }, 120_000);

  afterAll(async () => {
    await head?.stop();
  });

  it('answers each variant as onnxruntime runs it, with its own error vs fp32', async () => {
    const some = x.subarray(0, rows * HIDDEN);
    const served = {} as Record<Precision, Float32Array>;
    for (const p of PRECISIONS) {
      served[p] = await inferRows(head.httpAddress, `mlp-${p}`, some, rows);
      // A request alone is run alone: int8's per-tensor activation scale then sees the same rows as here.
      expect(absError(await runDirect(variants.find((v) => v.precision === p)!.path, some, rows), served[p]).max).toBeLessThan(1e-5);
    }
    for (const p of ['fp16', 'int8'] as const) {
      const e = absError(served.fp32, served[p]);
      expect(e.max).toBeLessThan(BOUNDS[p].max);
      expect(e.max).toBeGreaterThan(BOUNDS[p].least);
    }
  });
});
