/**
 * Text detection (PaddleOCR DB): resize-and-normalise preprocess, and the postprocess that turns the model's
 * probability map into boxes in original-image coordinates.
 */
import { InvalidOptionError, ShapeMismatchError } from '@shoal/core';
import { connectedComponents } from './components.ts';
import { boundingRect, distance, expandRect, insideConvexQuad, minAreaRect, orderQuad, rectCorners, type Point, type Quad } from './geometry.ts';
import type { RgbImage } from './image.ts';
import { resizeNormalizeChw, type NormalizeSpec } from './resize.ts';
import type { FloatTensor, Tensor } from './tensor.ts';

/** ImageNet statistics, applied to the BGR planes in list order as PaddleOCR does. */
const DET_NORM: NormalizeSpec = { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };

export interface DetPreprocessOptions {
  /** Side length limit before rounding to multiples of 32. @default 960 */
  limitSideLen?: number;
  /**
   * 'max': shrink so the longer side is at most limitSideLen (never enlarge).
   * 'min': enlarge so the shorter side is at least limitSideLen (never shrink).
   * @default 'max'
   */
  limitType?: 'max' | 'min';
}

/**
 * What the postprocess needs to map the probability map back onto the original image. Plain numbers only, so
 * it can travel from the preprocess step to a postprocess step in another process.
 */
export interface DetMeta {
  readonly srcWidth: number;
  readonly srcHeight: number;
  /** Width and height of the tensor fed to the model (multiples of 32). */
  readonly inputWidth: number;
  readonly inputHeight: number;
}

export interface DetInput {
  /** [1, 3, inputHeight, inputWidth], BGR, ImageNet-normalised. */
  readonly tensor: Tensor;
  readonly meta: DetMeta;
}

/** Resizes (keeping aspect, both sides multiples of 32) and normalises one image for the detector. */
export function detPreprocess(image: RgbImage, opts: DetPreprocessOptions = {}): DetInput {
  const limitSideLen = opts.limitSideLen ?? 960;
  const limitType = opts.limitType ?? 'max';
  if (!Number.isFinite(limitSideLen) || limitSideLen < 32) throw new InvalidOptionError('det.limitSideLen', 'must be a number >= 32', limitSideLen);
  if (limitType !== 'max' && limitType !== 'min') throw new InvalidOptionError('det.limitType', "must be 'max' or 'min'", limitType);
  const { width: w, height: h } = image;
  let ratio = 1;
  if (limitType === 'max' && Math.max(w, h) > limitSideLen) ratio = limitSideLen / Math.max(w, h);
  if (limitType === 'min' && Math.min(w, h) < limitSideLen) ratio = limitSideLen / Math.min(w, h);
  const inputWidth = Math.max(Math.round((w * ratio) / 32) * 32, 32);
  const inputHeight = Math.max(Math.round((h * ratio) / 32) * 32, 32);
  const data = new Float32Array(3 * inputWidth * inputHeight);
  resizeNormalizeChw(image, inputWidth, inputHeight, DET_NORM, data);
  return { tensor: { type: 'float32', data, dims: [1, 3, inputHeight, inputWidth] }, meta: { srcWidth: w, srcHeight: h, inputWidth, inputHeight } };
}

export interface DetPostprocessOptions {
  /** A map pixel is text when its probability exceeds this. @default 0.3 */
  thresh?: number;
  /** A box is kept when the mean probability inside it is at least this. @default 0.6 */
  boxThresh?: number;
  /** Boxes grow by area*unclipRatio/perimeter on each side, undoing DB's shrunk training targets. @default 1.5 */
  unclipRatio?: number;
  /** Components considered at most, in scan order. @default 1000 */
  maxCandidates?: number;
  /** Boxes whose short side (in map pixels) is below this are dropped. @default 3 */
  minSize?: number;
  /** 'minArea': rotated minimum-area rectangle (quads may be tilted); 'axisAligned': upright bounding box. @default 'minArea' */
  boxType?: 'minArea' | 'axisAligned';
}

export interface DetBox {
  /** Corners in original-image pixels: top-left, top-right, bottom-right, bottom-left. */
  readonly box: Quad;
  /** Mean text probability inside the box on the map. */
  readonly score: number;
}

/**
 * Turns the detector's probability map (dims [1, 1, H, W]) for the image `meta` describes into boxes in
 * original-image coordinates, sorted top-to-bottom then left-to-right.
 */
export function detPostprocess(prob: FloatTensor, meta: DetMeta, opts: DetPostprocessOptions = {}): DetBox[] {
  const thresh = opts.thresh ?? 0.3;
  const boxThresh = opts.boxThresh ?? 0.6;
  const unclipRatio = opts.unclipRatio ?? 1.5;
  const maxCandidates = opts.maxCandidates ?? 1000;
  const minSize = opts.minSize ?? 3;
  const boxType = opts.boxType ?? 'minArea';
  if (!(thresh >= 0 && thresh < 1)) throw new InvalidOptionError('db.thresh', 'must be in [0, 1)', thresh);
  if (!(boxThresh >= 0 && boxThresh <= 1)) throw new InvalidOptionError('db.boxThresh', 'must be in [0, 1]', boxThresh);
  if (!(unclipRatio >= 0)) throw new InvalidOptionError('db.unclipRatio', 'must be >= 0', unclipRatio);
  if (boxType !== 'minArea' && boxType !== 'axisAligned') throw new InvalidOptionError('db.boxType', "must be 'minArea' or 'axisAligned'", boxType);

  const dims = prob.dims;
  const height = dims[dims.length - 2] ?? 0;
  const width = dims[dims.length - 1] ?? 0;
  if (dims.length !== 4 || dims[0] !== 1 || dims[1] !== 1 || prob.data.length !== width * height) {
    throw new ShapeMismatchError(`detPostprocess: expected probability map dims [1,1,H,W], got [${dims.join(',')}] with ${prob.data.length} values`);
  }
  const map = prob.data;
  const mask = new Uint8Array(width * height);
  for (let i = 0; i < mask.length; i++) mask[i] = map[i]! > thresh ? 1 : 0;

  const sx = meta.srcWidth / width;
  const sy = meta.srcHeight / height;
  const boxes: DetBox[] = [];
  for (const comp of connectedComponents(mask, width, height, { maxComponents: maxCandidates })) {
    const rect = boxType === 'minArea' ? minAreaRect(comp.outline) : boundingRect(comp.outline);
    if (2 * Math.min(rect.halfWidth, rect.halfHeight) < minSize) continue;
    const score = meanInside(map, width, height, rectCorners(rect));
    if (score < boxThresh) continue;
    // For a rectangle, offsetting by d with round joins and taking the min-area rectangle again is exactly
    // the rectangle grown by d on each side, so pyclipper's unclip reduces to arithmetic.
    const w = 2 * rect.halfWidth;
    const h = 2 * rect.halfHeight;
    const grown = expandRect(rect, w + h > 0 ? (w * h * unclipRatio) / (2 * (w + h)) : 0);
    if (2 * Math.min(grown.halfWidth, grown.halfHeight) < minSize + 2) continue;
    const mapped = rectCorners(grown).map(([x, y]): Point => [
      clamp(Math.round(x * sx), 0, meta.srcWidth),
      clamp(Math.round(y * sy), 0, meta.srcHeight),
    ]) as unknown as [Point, Point, Point, Point];
    const box = orderQuad(mapped);
    if (distance(box[0], box[1]) <= 3 || distance(box[0], box[3]) <= 3) continue;
    boxes.push({ box, score });
  }
  return sortBoxes(boxes);
}

/**
 * Reading order as PaddleOCR's sorted_boxes: by top-left y then x, then adjacent boxes whose tops are within
 * `sameLineTolerance` pixels are ordered left to right.
 */
export function sortBoxes<T extends { readonly box: Quad }>(boxes: readonly T[], sameLineTolerance = 10): T[] {
  const out = [...boxes].sort((a, b) => a.box[0][1] - b.box[0][1] || a.box[0][0] - b.box[0][0]);
  for (let i = 0; i < out.length - 1; i++) {
    for (let j = i; j >= 0; j--) {
      const a = out[j]!;
      const b = out[j + 1]!;
      if (Math.abs(b.box[0][1] - a.box[0][1]) < sameLineTolerance && b.box[0][0] < a.box[0][0]) {
        out[j] = b;
        out[j + 1] = a;
      } else {
        break;
      }
    }
  }
  return out;
}

/** Mean of `map` over the pixels inside `quad` (PaddleOCR's "fast" box score). */
function meanInside(map: Float32Array, width: number, height: number, quad: Quad): number {
  const xs = quad.map((p) => p[0]);
  const ys = quad.map((p) => p[1]);
  const x0 = clamp(Math.floor(Math.min(...xs)), 0, width - 1);
  const x1 = clamp(Math.ceil(Math.max(...xs)), 0, width - 1);
  const y0 = clamp(Math.floor(Math.min(...ys)), 0, height - 1);
  const y1 = clamp(Math.ceil(Math.max(...ys)), 0, height - 1);
  // Test against the rounded corners, as fillPoly does, so thin boxes still cover their own pixels.
  const rounded = quad.map(([x, y]): Point => [Math.round(x), Math.round(y)]) as unknown as Quad;
  let sum = 0;
  let n = 0;
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      if (!insideConvexQuad(rounded, x, y)) continue;
      sum += map[y * width + x]!;
      n++;
    }
  }
  return n === 0 ? 0 : sum / n;
}

function clamp(v: number, lo: number, hi: number): number {
  return v < lo ? lo : v > hi ? hi : v;
}
