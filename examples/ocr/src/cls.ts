/**
 * Text-line orientation (PaddleOCR mobile cls): preprocess a batch of crops into [n, 3, 48, 192], and read
 * the [n, 2] softmax back into the angle of each crop, which says whether to turn it upside down.
 */
import { InvalidOptionError, ShapeMismatchError } from '@shoal/core';
import { rotate180 } from './crop.ts';
import type { RgbImage } from './image.ts';
import { HALF_NORM, resizeNormalizeChw } from './resize.ts';
import type { FloatTensor, Tensor } from './tensor.ts';

export interface ClsPreprocessOptions {
  /** Input height. @default 48 */
  height?: number;
  /** Input width; narrower crops are right-padded with zeros, wider ones squeezed. @default 192 */
  width?: number;
}

export interface ClsResult {
  /** Degrees the text line is turned: 180 means upside down. */
  readonly angle: 0 | 180;
  /** Softmax probability of `angle`. */
  readonly score: number;
}

/**
 * Resizes each crop to height 48 keeping aspect (at most 192 wide), normalises to [-1, 1] and right-pads with
 * zeros, as PaddleOCR's cls does: one [n, 3, 48, 192] tensor, item i from crops[i].
 */
export function clsPreprocess(crops: readonly RgbImage[], opts: ClsPreprocessOptions = {}): Tensor {
  const height = opts.height ?? 48;
  const width = opts.width ?? 192;
  if (!Number.isInteger(height) || height <= 0) throw new InvalidOptionError('cls.height', 'must be a positive integer', height);
  if (!Number.isInteger(width) || width <= 0) throw new InvalidOptionError('cls.width', 'must be a positive integer', width);
  if (crops.length === 0) throw new ShapeMismatchError('clsPreprocess: no crops (a batch needs at least one)');
  const itemSize = 3 * height * width;
  const data = new Float32Array(itemSize * crops.length);
  crops.forEach((crop, i) => {
    const resizedWidth = Math.min(width, Math.ceil((height * crop.width) / crop.height));
    resizeNormalizeChw(crop, resizedWidth, height, HALF_NORM, data.subarray(i * itemSize, (i + 1) * itemSize), width);
  });
  return { type: 'float32', data, dims: [crops.length, 3, height, width] };
}

/** Reads the [n, 2] softmax output: class 0 is upright, class 1 upside down. */
export function clsPostprocess(output: FloatTensor): ClsResult[] {
  const [n, classes] = output.dims;
  if (output.dims.length !== 2 || n === undefined || classes !== 2 || output.data.length !== n * 2) {
    throw new ShapeMismatchError(`clsPostprocess: expected dims [n,2], got [${output.dims.join(',')}] with ${output.data.length} values`);
  }
  const results: ClsResult[] = [];
  for (let i = 0; i < n; i++) {
    const p0 = output.data[2 * i]!;
    const p1 = output.data[2 * i + 1]!;
    results.push(p1 > p0 ? { angle: 180, score: p1 } : { angle: 0, score: p0 });
  }
  return results;
}

/** Turns the crop upside down when cls says 180 with a score above `thresh` (PaddleOCR's cls_thresh). */
export function applyCls(crop: RgbImage, result: ClsResult, thresh = 0.9): RgbImage {
  return result.angle === 180 && result.score > thresh ? rotate180(crop) : crop;
}
