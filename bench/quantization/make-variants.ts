/**
 * Writes the bench MLP (bench/models: 4 layers of 2048x2048, seeded weights) in three precisions made from the same
 * weights: mlp-fp32.onnx, mlp-fp16.onnx and mlp-int8.onnx (what each holds: MlpOptions.precision in @shoal/onnx).
 * Deterministic: the same options write byte-identical files. Input "x" and output "y" are float32 [batch, hidden]
 * in all three, so one request body serves every variant.
 *
 *   cd bench && node --import tsx quantization/make-variants.ts [DIR] [--hidden 2048] [--layers 4] [--seed 1]
 *
 * (from bench/, where tsx is installed). DIR defaults to $TMPDIR/shoal-quantization.
 */
import { mkdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { seededRandom } from '@shoal/core';
import type { MlpOptions } from '@shoal/onnx';
import { writeMlpModel } from '../models/make-mlp.ts';

export type Precision = NonNullable<MlpOptions['precision']>;

/** Every variant, the reference first. */
export const PRECISIONS: readonly Precision[] = ['fp32', 'fp16', 'int8'];

export interface Variant { precision: Precision; path: string; bytes: number }

export const variantFile = (precision: Precision): string => `mlp-${precision}.onnx`;

/** Writes the three variants into `dir` (created if missing); returns them in PRECISIONS order. */
export async function writeMlpVariants(dir: string, opts: Omit<MlpOptions, 'precision'> = {}): Promise<Variant[]> {
  mkdirSync(dir, { recursive: true });
  const out: Variant[] = [];
  for (const precision of PRECISIONS) {
    const path = join(dir, variantFile(precision));
    await writeMlpModel(path, { ...opts, precision });
    out.push({ precision, path, bytes: statSync(path).size });
  }
  return out;
}

/**
 * How far each variant's outputs may be from fp32's on accuracyInputs() (256 rows) with the default model: `max`
 * and `mean` absolute error, and the `least` max error that shows the variant is not fp32 under another name.
 * test/quantization.test.ts enforces them; the bench reports against them. Measured here (x86 with VNNI):
 * fp16 max 3.9e-4, mean 3.5e-5; int8 max 1.3e-2, mean 1.1e-3, for outputs of mean magnitude 0.083. The margins
 * (4-6x) leave room for other CPUs: without VNNI, onnxruntime's u8s8 kernel may saturate 16-bit sums.
 */
export const ACCURACY_BOUNDS: Record<Exclude<Precision, 'fp32'>, { max: number; mean: number; least: number }> = {
  fp16: { max: 2e-3, mean: 2e-4, least: 1e-6 },
  int8: { max: 5e-2, mean: 5e-3, least: 1e-4 },
};

/** The fixed input set accuracy is measured on: `rows` rows of `hidden` values uniform in [-1, 1), seeded. */
export function accuracyInputs(rows = 256, hidden = 2048, seed = 7): Float32Array {
  const next = seededRandom(seed);
  return new Float32Array(rows * hidden).map(() => next() * 2 - 1);
}

/** Max and mean absolute difference between a reference output and another of the same length. */
export function absError(reference: ArrayLike<number>, got: ArrayLike<number>): { max: number; mean: number } {
  if (reference.length !== got.length) throw new RangeError(`outputs differ in length: reference ${reference.length}, got ${got.length}`);
  let max = 0;
  let sum = 0;
  for (let i = 0; i < reference.length; i++) {
    const d = Math.abs(reference[i]! - got[i]!);
    // NaN would pass max() unnoticed.
    if (Number.isNaN(d)) return { max: NaN, mean: NaN };
    if (d > max) max = d;
    sum += d;
  }
  return { max, mean: sum / reference.length };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { hidden: { type: 'string' }, layers: { type: 'string' }, seed: { type: 'string' } } });
  const dir = positionals[0] ?? join(tmpdir(), 'shoal-quantization');
  const num = (v: string | undefined, name: string): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`--${name} must be a positive integer, got ${JSON.stringify(v)}`);
    return n;
  };
  const hidden = num(values.hidden, 'hidden');
  const layers = num(values.layers, 'layers');
  const seed = num(values.seed, 'seed');
  const variants = await writeMlpVariants(dir, { ...(hidden === undefined ? {} : { hidden }), ...(layers === undefined ? {} : { layers }), ...(seed === undefined ? {} : { seed }) });
  const fp32 = variants[0]!.bytes;
  for (const v of variants) process.stdout.write(`wrote ${v.path}: ${(v.bytes / 2 ** 20).toFixed(1)} MiB (${(v.bytes / fp32).toFixed(3)}x fp32)\n`);
}
