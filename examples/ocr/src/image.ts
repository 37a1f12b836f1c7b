/**
 * Decodes PNG and JPEG bytes into packed RGB. The format is sniffed from magic bytes, never from a file name,
 * because images arrive as request bodies.
 */
import { BadRequestError, InvalidOptionError, RequestTooLargeError } from '@shoal/core';
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';

/** A packed 8-bit RGB image, row-major, 3 bytes per pixel. */
export interface RgbImage {
  readonly width: number;
  readonly height: number;
  readonly data: Uint8Array;
}

export type ImageFormat = 'png' | 'jpeg';

export interface DecodeImageOptions {
  /**
   * Largest accepted width*height. Checked against the header before the pixels are inflated, so a small
   * file that claims a huge image is refused cheaply.
   * @default 40_000_000
   */
  maxPixels?: number;
}

const PNG_MAGIC = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a] as const;
const JPEG_MAGIC = [0xff, 0xd8, 0xff] as const;

/** Returns the format named by the leading magic bytes, or undefined for anything else. */
export function sniffImageFormat(bytes: Uint8Array): ImageFormat | undefined {
  if (PNG_MAGIC.every((b, i) => bytes[i] === b)) return 'png';
  if (JPEG_MAGIC.every((b, i) => bytes[i] === b)) return 'jpeg';
  return undefined;
}

/**
 * Decodes a PNG or JPEG into RGB. Transparent pixels are composited over white: text documents saved with an
 * alpha channel usually have transparent paper, and black-on-transparent would otherwise read as all black.
 */
export function decodeImage(bytes: Uint8Array, opts: DecodeImageOptions = {}): RgbImage {
  const maxPixels = opts.maxPixels ?? 40_000_000;
  if (!Number.isInteger(maxPixels) || maxPixels <= 0) throw new InvalidOptionError('maxPixels', 'must be a positive integer', maxPixels);
  const format = sniffImageFormat(bytes);
  if (format === undefined) {
    const head = Array.from(bytes.subarray(0, 8), (b) => b.toString(16).padStart(2, '0')).join(' ');
    throw new BadRequestError(
      `unsupported image format: first bytes [${head}] (${bytes.length} bytes); expected PNG (89 50 4e 47 0d 0a 1a 0a) or JPEG (ff d8 ff)`,
      { length: bytes.length },
    );
  }
  return format === 'png' ? decodePng(bytes, maxPixels) : decodeJpeg(bytes, maxPixels);
}

function decodePng(bytes: Uint8Array, maxPixels: number): RgbImage {
  // IHDR is always the first chunk: width and height are big-endian u32 at offsets 16 and 20.
  if (bytes.length >= 24) {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    checkPixels(view.getUint32(16), view.getUint32(20), maxPixels);
  }
  let png: { width: number; height: number; data: Uint8Array };
  try {
    png = PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  } catch (err) {
    throw new BadRequestError(`corrupt PNG (${bytes.length} bytes): ${(err as Error).message}`);
  }
  return rgbaToRgb(png.width, png.height, png.data);
}

function decodeJpeg(bytes: Uint8Array, maxPixels: number): RgbImage {
  let img: { width: number; height: number; data: Uint8Array };
  try {
    img = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: true, maxResolutionInMP: maxPixels / 1e6 });
  } catch (err) {
    throw new BadRequestError(`corrupt or oversized JPEG (${bytes.length} bytes): ${(err as Error).message}`);
  }
  checkPixels(img.width, img.height, maxPixels);
  return rgbaToRgb(img.width, img.height, img.data);
}

function checkPixels(width: number, height: number, maxPixels: number): void {
  if (width * height > maxPixels) {
    throw new RequestTooLargeError(`image too large: ${width}x${height}=${width * height} pixels, maxPixels=${maxPixels}`, { width, height, maxPixels });
  }
  if (width === 0 || height === 0) throw new BadRequestError(`empty image: ${width}x${height}`);
}

function rgbaToRgb(width: number, height: number, rgba: Uint8Array): RgbImage {
  const n = width * height;
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    const a = rgba[i * 4 + 3]!;
    for (let c = 0; c < 3; c++) {
      const v = rgba[i * 4 + c]!;
      out[i * 3 + c] = a === 255 ? v : Math.round((v * a + 255 * (255 - a)) / 255);
    }
  }
  return { width, height, data: out };
}
