/**
 * Text recognition (PaddleOCR v4 SVTR-LCNet, CTC head): preprocess crops into batches of [n, 3, 48, W] whose
 * widths come from a few buckets, and greedy CTC decoding against ppocr_keys_v1.txt.
 */
import { InvalidOptionError, ShapeMismatchError } from '@shoal/core';
import type { RgbImage } from './image.ts';
import { HALF_NORM, resizeNormalizeChw } from './resize.ts';
import type { FloatTensor, Tensor } from './tensor.ts';

export interface RecPreprocessOptions {
  /** Input height the model was trained with. @default 48 */
  height?: number;
  /**
   * Widest line produced; longer lines are squeezed to this width. Bounds the cost of one pathological crop.
   * @default 2560
   */
  maxWidth?: number;
  /** Batch widths are multiples of this. @default 64 */
  widthMultiple?: number;
  /**
   * Narrowest batch width. PaddleOCR pads every batch to at least 320 (its training width); narrower inputs
   * also work, but padding them costs little and fewer distinct widths batch better.
   * @default 320
   */
  minWidth?: number;
  /** Crops per batch at most (PaddleOCR's rec_batch_num). @default 6 */
  maxBatchSize?: number;
}

export interface RecBatch {
  /** [indices.length, 3, height, width]: each crop resized to the height, keeping aspect, right-padded with zeros. */
  readonly tensor: Tensor;
  /** Item k of the batch is crops[indices[k]]. */
  readonly indices: readonly number[];
}

/**
 * The batch width for a line `width` pixels wide once resized to the model's height: rounded up to a multiple
 * of `widthMultiple`, at least `minWidth`.
 */
export function recBucketWidth(width: number, opts: RecPreprocessOptions = {}): number {
  const multiple = opts.widthMultiple ?? 64;
  const minWidth = opts.minWidth ?? 320;
  if (!Number.isInteger(multiple) || multiple <= 0) throw new InvalidOptionError('rec.widthMultiple', 'must be a positive integer', multiple);
  if (!Number.isInteger(minWidth) || minWidth < 0) throw new InvalidOptionError('rec.minWidth', 'must be a non-negative integer', minWidth);
  return Math.max(minWidth, Math.ceil(width / multiple) * multiple);
}

/**
 * Resizes each crop to height 48 and width ceil(48 * w / h) (at most maxWidth), normalised to [-1, 1], and
 * packs them into batches whose items share one padded width. PaddleOCR pads each batch to its widest line
 * with zeros (mid-grey after normalisation); here the width is also rounded up to a bucket, so that batches
 * from different requests have the same shape and a rec deployment's batcher can merge them. Batches come out
 * widest first; within a batch, crops keep their input order.
 */
export function recPreprocess(crops: readonly RgbImage[], opts: RecPreprocessOptions = {}): RecBatch[] {
  const height = opts.height ?? 48;
  const maxWidth = opts.maxWidth ?? 2560;
  const maxBatchSize = opts.maxBatchSize ?? 6;
  if (!Number.isInteger(height) || height <= 0) throw new InvalidOptionError('rec.height', 'must be a positive integer', height);
  if (!Number.isInteger(maxWidth) || maxWidth <= 0) throw new InvalidOptionError('rec.maxWidth', 'must be a positive integer', maxWidth);
  if (!Number.isInteger(maxBatchSize) || maxBatchSize <= 0) throw new InvalidOptionError('rec.maxBatchSize', 'must be a positive integer', maxBatchSize);
  recBucketWidth(1, opts); // checks the bucket options even when there are no crops

  const widths = crops.map((c) => Math.max(1, Math.min(maxWidth, Math.ceil((height * c.width) / c.height))));
  const buckets = new Map<number, number[]>();
  widths.forEach((w, i) => {
    const bucket = recBucketWidth(w, opts);
    const indices = buckets.get(bucket);
    if (indices === undefined) buckets.set(bucket, [i]);
    else indices.push(i);
  });

  const batches: RecBatch[] = [];
  for (const [bucket, all] of [...buckets].sort((a, b) => b[0] - a[0])) {
    for (let start = 0; start < all.length; start += maxBatchSize) {
      const indices = all.slice(start, start + maxBatchSize);
      const itemSize = 3 * height * bucket;
      const data = new Float32Array(itemSize * indices.length);
      indices.forEach((ci, k) => {
        resizeNormalizeChw(crops[ci]!, widths[ci]!, height, HALF_NORM, data.subarray(k * itemSize, (k + 1) * itemSize), bucket);
      });
      batches.push({ tensor: { type: 'float32', data, dims: [indices.length, 3, height, bucket] }, indices });
    }
  }
  return batches;
}

/**
 * The CTC character set for a PaddleOCR dictionary file: index 0 is the blank, then one entry per line, then
 * a space (the v4 models are trained with use_space_char=True). Its length must equal the rec output's last dim.
 */
export function parseRecDictionary(text: string, opts: { useSpaceChar?: boolean } = {}): string[] {
  const lines = text.split('\n').map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
  if (lines[lines.length - 1] === '') lines.pop();
  return ['', ...lines, ...(opts.useSpaceChar ?? true ? [' '] : [])];
}

/** Throws when the character set does not match the model's class count, naming both numbers. */
export function checkRecCharset(charset: readonly string[], numClasses: number): void {
  if (charset.length !== numClasses) {
    throw new ShapeMismatchError(
      `rec dictionary does not match the model: ${charset.length} classes (blank + ${charset.length - 2} lines + space) vs model output dim ${numClasses}`,
    );
  }
}

export interface RecResult {
  readonly text: string;
  /** Mean probability of the kept characters; 0 for an empty line. */
  readonly score: number;
}

/**
 * Greedy CTC decoding of a [n, T, C] output (probabilities, as the v4 model emits after softmax): per item,
 * argmax per step, merge repeats, drop blanks. Result i belongs to batch item i.
 */
export function recPostprocess(output: FloatTensor, charset: readonly string[]): RecResult[] {
  const [n, steps, classes] = output.dims;
  if (output.dims.length !== 3 || n === undefined || steps === undefined || classes === undefined || output.data.length !== n * steps * classes) {
    throw new ShapeMismatchError(`recPostprocess: expected dims [n,T,C], got [${output.dims.join(',')}] with ${output.data.length} values`);
  }
  checkRecCharset(charset, classes);
  const results: RecResult[] = [];
  for (let i = 0; i < n; i++) results.push(ctcGreedyDecode(output.data, i * steps * classes, steps, classes, charset));
  return results;
}

function ctcGreedyDecode(d: Float32Array, offset: number, steps: number, classes: number, charset: readonly string[]): RecResult {
  let text = '';
  let sum = 0;
  let kept = 0;
  let prev = -1;
  for (let t = 0; t < steps; t++) {
    const base = offset + t * classes;
    let best = 0;
    let bestP = d[base]!;
    for (let k = 1; k < classes; k++) {
      const p = d[base + k]!;
      if (p > bestP) {
        bestP = p;
        best = k;
      }
    }
    if (best !== 0 && best !== prev) {
      text += charset[best]!;
      sum += bestP;
      kept++;
    }
    prev = best;
  }
  return { text, score: kept === 0 ? 0 : sum / kept };
}
