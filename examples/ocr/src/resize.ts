/**
 * Bilinear resize fused with normalisation into a CHW float32 buffer, the one image-to-tensor kernel that det,
 * cls and rec share. Channels are written in BGR order: PaddleOCR's models were trained on OpenCV-decoded
 * (BGR) images with the mean/std lists applied in that order.
 */
import type { RgbImage } from './image.ts';

export interface NormalizeSpec {
  /** Per output channel (B, G, R), subtracted after scaling by 1/255. */
  readonly mean: readonly [number, number, number];
  /** Per output channel (B, G, R). */
  readonly std: readonly [number, number, number];
}

/** (x/255 - 0.5) / 0.5 on every channel: the [-1, 1] scaling cls and rec were trained with. */
export const HALF_NORM: NormalizeSpec = { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] };

/**
 * Resizes `image` to outWidth x outHeight (sample centres aligned as OpenCV's INTER_LINEAR does) and writes
 * ((v/255 - mean) / std) into `out`, laid out as [3, outHeight, rowStride]. Columns from outWidth to rowStride
 * are left as they are (zero for a fresh buffer), which is the right-padding cls and rec expect.
 */
export function resizeNormalizeChw(
  image: RgbImage,
  outWidth: number,
  outHeight: number,
  norm: NormalizeSpec,
  out: Float32Array,
  rowStride: number = outWidth,
): void {
  const { width: sw, height: sh, data } = image;
  const plane = outHeight * rowStride;
  const sx = sw / outWidth;
  const sy = sh / outHeight;
  // Precompute the horizontal taps once per column; they are the same on every row.
  const x0s = new Int32Array(outWidth);
  const x1s = new Int32Array(outWidth);
  const fxs = new Float32Array(outWidth);
  for (let x = 0; x < outWidth; x++) {
    const fx = Math.min(Math.max((x + 0.5) * sx - 0.5, 0), sw - 1);
    const x0 = Math.floor(fx);
    x0s[x] = x0;
    x1s[x] = Math.min(x0 + 1, sw - 1);
    fxs[x] = fx - x0;
  }
  // scale[c] and bias[c] fold /255, -mean and /std into one multiply-add; c indexes BGR output planes.
  const scale = [0, 1, 2].map((c) => 1 / (255 * norm.std[c]!));
  const bias = [0, 1, 2].map((c) => -norm.mean[c]! / norm.std[c]!);
  for (let y = 0; y < outHeight; y++) {
    const fy = Math.min(Math.max((y + 0.5) * sy - 0.5, 0), sh - 1);
    const y0 = Math.floor(fy);
    const y1 = Math.min(y0 + 1, sh - 1);
    const wy = fy - y0;
    const row0 = y0 * sw * 3;
    const row1 = y1 * sw * 3;
    for (let x = 0; x < outWidth; x++) {
      const a = x0s[x]! * 3;
      const b = x1s[x]! * 3;
      const wx = fxs[x]!;
      for (let c = 0; c < 3; c++) {
        const top = data[row0 + a + c]! + (data[row0 + b + c]! - data[row0 + a + c]!) * wx;
        const bot = data[row1 + a + c]! + (data[row1 + b + c]! - data[row1 + a + c]!) * wx;
        const v = top + (bot - top) * wy;
        const o = 2 - c; // RGB source channel c lands in BGR plane 2-c
        out[o * plane + y * rowStride + x] = v * scale[o]! + bias[o]!;
      }
    }
  }
}
