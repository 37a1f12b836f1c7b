import { ShapeMismatchError } from '@shoal/core';
import { describe, expect, it } from 'vitest';
import { applyCls, clsPostprocess, clsPreprocess, type RgbImage } from '../src/index.ts';

function solid(width: number, height: number, v: number): RgbImage {
  return { width, height, data: new Uint8Array(width * height * 3).fill(v) };
}

describe('clsPreprocess', () => {
  it('resizes to height 48 keeping aspect, normalises to [-1, 1] and zero-pads on the right', () => {
    const t = clsPreprocess([solid(50, 24, 255)]);
    expect(t.dims).toEqual([1, 3, 48, 192]);
    // 50x24 becomes 100x48: columns 0..99 are white (1.0), the rest padding (0).
    expect(t.data[0]).toBeCloseTo(1, 6);
    expect(t.data[99]).toBeCloseTo(1, 6);
    expect(t.data[100]).toBe(0);
    expect(t.data[2 * 48 * 192 + 47 * 192 + 99]).toBeCloseTo(1, 6);
  });

  it('batches crops of any size into [n, 3, 48, 192], item i from crop i', () => {
    const t = clsPreprocess([solid(50, 24, 255), solid(1000, 20, 0), solid(10, 40, 255)]);
    expect(t.dims).toEqual([3, 3, 48, 192]);
    const item = 3 * 48 * 192;
    expect(t.data[0]).toBeCloseTo(1, 6);
    expect(t.data[item + 191]).toBeCloseTo(-1, 6); // 1000x20 is squeezed to the full width
    expect(t.data[2 * item + 11]).toBeCloseTo(1, 6); // 10x40 becomes 12x48
    expect(t.data[2 * item + 12]).toBe(0);
  });

  it('names bad sizes and refuses an empty batch', () => {
    expect(() => clsPreprocess([solid(4, 4, 0)], { width: 0 })).toThrow(/cls\.width/);
    expect(() => clsPreprocess([])).toThrow(ShapeMismatchError);
  });
});

describe('clsPostprocess / applyCls', () => {
  const crop: RgbImage = { width: 2, height: 1, data: Uint8Array.from([1, 1, 1, 2, 2, 2]) };

  it('gives each item the angle with the larger probability', () => {
    expect(clsPostprocess({ data: Float32Array.from([0.8, 0.2, 0.05, 0.95]), dims: [2, 2] })).toEqual([
      { angle: 0, score: Math.fround(0.8) },
      { angle: 180, score: Math.fround(0.95) },
    ]);
    expect(() => clsPostprocess({ data: new Float32Array(3), dims: [1, 3] })).toThrow(/expected dims \[n,2\], got \[1,3\]/);
    expect(() => clsPostprocess({ data: new Float32Array(2), dims: [2, 2] })).toThrow(ShapeMismatchError);
  });

  it('turns the crop only for 180 above the threshold', () => {
    expect(Array.from(applyCls(crop, { angle: 180, score: 0.95 }).data)).toEqual([2, 2, 2, 1, 1, 1]);
    expect(applyCls(crop, { angle: 180, score: 0.85 })).toBe(crop);
    expect(applyCls(crop, { angle: 0, score: 0.99 })).toBe(crop);
    expect(applyCls(crop, { angle: 180, score: 0.85 }, 0.8)).not.toBe(crop);
  });
});
