import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BadRequestError, InvalidOptionError, RequestTooLargeError } from '@shoal/core';
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import { describe, expect, it } from 'vitest';
import { decodeImage, sniffImageFormat } from '../src/index.ts';

const fixtures = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures');

function encodePng(width: number, height: number, rgba: number[]): Buffer {
  const png = new PNG({ width, height });
  png.data.set(rgba);
  return PNG.sync.write(png);
}

describe('sniffImageFormat', () => {
  it('recognises PNG and JPEG magic bytes and nothing else', () => {
    expect(sniffImageFormat(readFileSync(path.join(fixtures, 'hello.png')))).toBe('png');
    expect(sniffImageFormat(readFileSync(path.join(fixtures, 'price.jpg')))).toBe('jpeg');
    expect(sniffImageFormat(Buffer.from('GIF89a'))).toBeUndefined();
    expect(sniffImageFormat(new Uint8Array(0))).toBeUndefined();
  });
});

describe('decodeImage', () => {
  it('decodes the PNG and JPEG fixtures to RGB', () => {
    const png = decodeImage(readFileSync(path.join(fixtures, 'hello.png')));
    expect([png.width, png.height, png.data.length]).toEqual([440, 64, 440 * 64 * 3]);
    expect(Array.from(png.data.subarray(0, 3))).toEqual([255, 255, 255]);
    const jpg = decodeImage(readFileSync(path.join(fixtures, 'price.jpg')));
    expect([jpg.width, jpg.height, jpg.data.length]).toEqual([440, 72, 440 * 72 * 3]);
  });

  it('keeps opaque pixels and composites transparent ones over white', () => {
    const bytes = encodePng(3, 1, [10, 20, 30, 255, 0, 0, 0, 0, 0, 0, 0, 128]);
    const img = decodeImage(bytes);
    expect(Array.from(img.data)).toEqual([10, 20, 30, 255, 255, 255, 127, 127, 127]);
  });

  it('decodes a JPEG produced by jpeg-js', () => {
    const rgba = new Uint8Array(16 * 8 * 4).fill(200);
    const bytes = jpeg.encode({ width: 16, height: 8, data: rgba }, 95).data;
    const img = decodeImage(bytes);
    expect([img.width, img.height]).toEqual([16, 8]);
    for (const v of img.data) expect(Math.abs(v - 200)).toBeLessThanOrEqual(2);
  });

  it('rejects unknown formats with the leading bytes in the message', () => {
    expect(() => decodeImage(Buffer.from('GIF89a-not-supported'))).toThrow(BadRequestError);
    expect(() => decodeImage(Buffer.from('GIF89a-not-supported'))).toThrow(/unsupported image format: first bytes \[47 49 46 38 39 61 2d 6e\]/);
  });

  it('rejects a truncated PNG as corrupt', () => {
    const bytes = readFileSync(path.join(fixtures, 'hello.png')).subarray(0, 100);
    expect(() => decodeImage(bytes)).toThrow(/corrupt PNG \(100 bytes\)/);
  });

  it('refuses images over maxPixels before inflating them', () => {
    const bytes = Buffer.from(readFileSync(path.join(fixtures, 'hello.png')));
    bytes.writeUInt32BE(100_000, 16);
    bytes.writeUInt32BE(100_000, 20);
    expect(() => decodeImage(bytes)).toThrow(RequestTooLargeError);
    expect(() => decodeImage(readFileSync(path.join(fixtures, 'hello.png')), { maxPixels: 1000 })).toThrow(/440x64=28160 pixels, maxPixels=1000/);
    expect(() => decodeImage(readFileSync(path.join(fixtures, 'price.jpg')), { maxPixels: 1000 })).toThrow(/JPEG/);
  });

  it('names the option on a bad maxPixels', () => {
    expect(() => decodeImage(new Uint8Array(8), { maxPixels: -1 })).toThrow(InvalidOptionError);
    expect(() => decodeImage(new Uint8Array(8), { maxPixels: -1 })).toThrow(/maxPixels/);
  });
});
