/**
 * Cuts a detected quad out of the image into an upright rectangle (perspective warp, bilinear sampling,
 * edges replicated), and the rotations that cls and tall crops need.
 */
import { InvalidOptionError } from '@shoal/core';
import { distance, type Quad } from './geometry.ts';
import type { RgbImage } from './image.ts';

export interface CropOptions {
  /**
   * Crops at least this many times taller than wide are turned 90 degrees counter-clockwise, since vertical
   * text lines read better by the horizontal recogniser. Infinity disables it.
   * @default 1.5
   */
  rotateTallRatio?: number;
}

/**
 * Warps `quad` (top-left, top-right, bottom-right, bottom-left) onto a rectangle as wide as its longer
 * horizontal edge and as tall as its longer vertical edge, as PaddleOCR's get_rotate_crop_image does.
 */
export function cropQuad(image: RgbImage, quad: Quad, opts: CropOptions = {}): RgbImage {
  const rotateTallRatio = opts.rotateTallRatio ?? 1.5;
  if (!(rotateTallRatio > 0)) throw new InvalidOptionError('crop.rotateTallRatio', 'must be > 0', rotateTallRatio);
  const [tl, tr, br, bl] = quad;
  const w = Math.max(1, Math.trunc(Math.max(distance(tl, tr), distance(br, bl))));
  const h = Math.max(1, Math.trunc(Math.max(distance(tl, bl), distance(tr, br))));
  // Homography from destination pixel (x, y) to source point, solved from the four corner pairs.
  const m = solveHomography([[0, 0], [w, 0], [w, h], [0, h]], [tl, tr, br, bl]);
  const out = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const d = m[6] * x + m[7] * y + 1;
      const u = (m[0] * x + m[1] * y + m[2]) / d;
      const v = (m[3] * x + m[4] * y + m[5]) / d;
      sampleBilinear(image, u, v, out, (y * w + x) * 3);
    }
  }
  const crop: RgbImage = { width: w, height: h, data: out };
  return h / w >= rotateTallRatio ? rotate90(crop) : crop;
}

/** Turns an image 90 degrees counter-clockwise (numpy's rot90). */
export function rotate90(image: RgbImage): RgbImage {
  const { width: w, height: h, data } = image;
  const out = new Uint8Array(data.length);
  // Source (x, y) lands at (y, w - 1 - x) in the h-wide result.
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const s = (y * w + x) * 3;
      const d = ((w - 1 - x) * h + y) * 3;
      out[d] = data[s]!;
      out[d + 1] = data[s + 1]!;
      out[d + 2] = data[s + 2]!;
    }
  }
  return { width: h, height: w, data: out };
}

/** Turns an image upside down. */
export function rotate180(image: RgbImage): RgbImage {
  const { data } = image;
  const n = image.width * image.height;
  const out = new Uint8Array(data.length);
  for (let i = 0; i < n; i++) {
    const s = i * 3;
    const d = (n - 1 - i) * 3;
    out[d] = data[s]!;
    out[d + 1] = data[s + 1]!;
    out[d + 2] = data[s + 2]!;
  }
  return { width: image.width, height: image.height, data: out };
}

function sampleBilinear(image: RgbImage, u: number, v: number, out: Uint8Array, o: number): void {
  const { width, height, data } = image;
  const fx = Math.min(Math.max(u, 0), width - 1);
  const fy = Math.min(Math.max(v, 0), height - 1);
  const x0 = Math.floor(fx);
  const y0 = Math.floor(fy);
  const x1 = Math.min(x0 + 1, width - 1);
  const y1 = Math.min(y0 + 1, height - 1);
  const wx = fx - x0;
  const wy = fy - y0;
  for (let c = 0; c < 3; c++) {
    const a = data[(y0 * width + x0) * 3 + c]!;
    const b = data[(y0 * width + x1) * 3 + c]!;
    const cc = data[(y1 * width + x0) * 3 + c]!;
    const d = data[(y1 * width + x1) * 3 + c]!;
    const top = a + (b - a) * wx;
    const bot = cc + (d - cc) * wx;
    out[o + c] = Math.round(top + (bot - top) * wy);
  }
}

type Mat8 = [number, number, number, number, number, number, number, number];

/** The 3x3 homography (h33 = 1) mapping each `from` point onto its `to` point, by Gaussian elimination. */
function solveHomography(from: readonly (readonly [number, number])[], to: readonly (readonly [number, number])[]): Mat8 {
  const a: number[][] = [];
  for (let i = 0; i < 4; i++) {
    const [x, y] = from[i]!;
    const [u, v] = to[i]!;
    a.push([x, y, 1, 0, 0, 0, -u * x, -u * y, u]);
    a.push([0, 0, 0, x, y, 1, -v * x, -v * y, v]);
  }
  for (let col = 0; col < 8; col++) {
    let pivot = col;
    for (let r = col + 1; r < 8; r++) if (Math.abs(a[r]![col]!) > Math.abs(a[pivot]![col]!)) pivot = r;
    [a[col], a[pivot]] = [a[pivot]!, a[col]!];
    const p = a[col]![col]!;
    // A degenerate quad (three collinear corners) has no homography; zeroing that coefficient below yields
    // clamped, edge-replicated samples instead of NaN.
    if (Math.abs(p) < 1e-12) continue;
    for (let r = 0; r < 8; r++) {
      if (r === col) continue;
      const f = a[r]![col]! / p;
      if (f === 0) continue;
      for (let k = col; k < 9; k++) a[r]![k]! -= f * a[col]![k]!;
    }
  }
  return a.map((row, i) => (Math.abs(row[i]!) < 1e-12 ? 0 : row[8]! / row[i]!)) as Mat8;
}
