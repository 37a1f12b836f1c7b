import { describe, expect, it } from 'vitest';
import { cropQuad, rotate180, rotate90, type RgbImage } from '../src/index.ts';

/** A w x h image whose pixel (x, y) is [x, y, 7]. */
function ramp(width: number, height: number): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data.set([x, y, 7], (y * width + x) * 3);
  return { width, height, data };
}

const px = (img: RgbImage, x: number, y: number): number[] => Array.from(img.data.subarray((y * img.width + x) * 3, (y * img.width + x) * 3 + 3));

describe('cropQuad', () => {
  it('cuts an upright quad out pixel for pixel', () => {
    const crop = cropQuad(ramp(64, 32), [[10, 5], [40, 5], [40, 15], [10, 15]]);
    expect([crop.width, crop.height]).toEqual([30, 10]);
    expect(px(crop, 0, 0)).toEqual([10, 5, 7]);
    expect(px(crop, 29, 9)).toEqual([39, 14, 7]);
  });

  it('straightens a tilted quad', () => {
    // A 40x10 box turned by 30 degrees about its top-left corner (20, 10).
    const c = Math.cos(Math.PI / 6), s = Math.sin(Math.PI / 6);
    const at = (u: number, v: number): [number, number] => [20 + u * c - v * s, 10 + u * s + v * c];
    const crop = cropQuad(ramp(100, 60), [at(0, 0), at(40, 0), at(40, 10), at(0, 10)]);
    expect([crop.width, crop.height]).toEqual([40, 10]);
    const [x, y] = at(20, 5);
    const [r, g] = px(crop, 20, 5);
    expect(Math.abs(r! - x)).toBeLessThanOrEqual(1);
    expect(Math.abs(g! - y)).toBeLessThanOrEqual(1);
  });

  it('turns tall crops 90 degrees counter-clockwise unless disabled', () => {
    const tall: [[number, number], [number, number], [number, number], [number, number]] = [[0, 0], [10, 0], [10, 15], [0, 15]];
    const turned = cropQuad(ramp(20, 20), tall);
    expect([turned.width, turned.height]).toEqual([15, 10]);
    // The top-right source pixel (9, 0) ends up top-left.
    expect(px(turned, 0, 0)).toEqual([9, 0, 7]);
    const kept = cropQuad(ramp(20, 20), tall, { rotateTallRatio: Infinity });
    expect([kept.width, kept.height]).toEqual([10, 15]);
    expect(cropQuad(ramp(20, 20), [[0, 0], [10, 0], [10, 14], [0, 14]]).width).toBe(10);
  });

  it('names a bad rotateTallRatio', () => {
    expect(() => cropQuad(ramp(4, 4), [[0, 0], [2, 0], [2, 2], [0, 2]], { rotateTallRatio: 0 })).toThrow(/crop\.rotateTallRatio/);
  });
});

describe('rotate90 / rotate180', () => {
  it('match numpy rot90 and an upside-down turn', () => {
    const img = ramp(3, 2);
    const r90 = rotate90(img);
    expect([r90.width, r90.height]).toEqual([2, 3]);
    expect([px(r90, 0, 0), px(r90, 1, 0), px(r90, 0, 2)]).toEqual([[2, 0, 7], [2, 1, 7], [0, 0, 7]]);
    const r180 = rotate180(img);
    expect([px(r180, 0, 0), px(r180, 2, 1)]).toEqual([[2, 1, 7], [0, 0, 7]]);
    expect(rotate180(r180).data).toEqual(img.data);
  });
});
