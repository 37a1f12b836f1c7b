import { InvalidOptionError, ShapeMismatchError } from '@shoal/core';
import { describe, expect, it } from 'vitest';
import { minAreaRect } from '../src/geometry.ts';
import { detPostprocess, detPreprocess, sortBoxes, type DetMeta, type FloatTensor, type Quad, type RgbImage } from '../src/index.ts';

function solid(width: number, height: number, rgb: [number, number, number]): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i++) data.set(rgb, i * 3);
  return { width, height, data };
}

/** A [1,1,H,W] map with `value` inside each [x0, y0, x1, y1] (inclusive) rectangle. */
function probMap(width: number, height: number, rects: [number, number, number, number, number][]): FloatTensor {
  const data = new Float32Array(width * height);
  for (const [x0, y0, x1, y1, value] of rects) {
    for (let y = y0; y <= y1; y++) for (let x = x0; x <= x1; x++) data[y * width + x] = value;
  }
  return { data, dims: [1, 1, height, width] };
}

const meta = (w: number, h: number, srcW = w, srcH = h): DetMeta => ({ srcWidth: srcW, srcHeight: srcH, inputWidth: w, inputHeight: h });

describe('detPreprocess', () => {
  it('rounds both sides to multiples of 32 without enlarging small images', () => {
    const { tensor, meta: m } = detPreprocess(solid(400, 64, [255, 255, 255]));
    expect(tensor.dims).toEqual([1, 3, 64, 416]);
    expect(m).toEqual({ srcWidth: 400, srcHeight: 64, inputWidth: 416, inputHeight: 64 });
    expect(detPreprocess(solid(10, 5, [0, 0, 0])).tensor.dims).toEqual([1, 3, 32, 32]);
  });

  it('limits the longer side to limitSideLen, keeping aspect', () => {
    expect(detPreprocess(solid(2000, 1000, [0, 0, 0])).tensor.dims).toEqual([1, 3, 480, 960]);
    expect(detPreprocess(solid(2000, 1000, [0, 0, 0]), { limitSideLen: 640 }).tensor.dims).toEqual([1, 3, 320, 640]);
    expect(detPreprocess(solid(100, 50, [0, 0, 0]), { limitType: 'min', limitSideLen: 128 }).tensor.dims).toEqual([1, 3, 128, 256]);
  });

  it('normalises with ImageNet mean/std into BGR planes', () => {
    const { tensor } = detPreprocess(solid(32, 32, [255, 0, 128]));
    const plane = 32 * 32;
    // Plane 0 is blue (128), normalised with the first mean/std pair, as PaddleOCR does on cv2's BGR arrays.
    expect(tensor.data[0]).toBeCloseTo((128 / 255 - 0.485) / 0.229, 5);
    expect(tensor.data[plane]).toBeCloseTo((0 - 0.456) / 0.224, 5);
    expect(tensor.data[2 * plane]).toBeCloseTo((1 - 0.406) / 0.225, 5);
  });

  it('names the option on bad values', () => {
    expect(() => detPreprocess(solid(8, 8, [0, 0, 0]), { limitSideLen: 4 })).toThrow(InvalidOptionError);
    expect(() => detPreprocess(solid(8, 8, [0, 0, 0]), { limitSideLen: 4 })).toThrow(/det\.limitSideLen/);
    expect(() => detPreprocess(solid(8, 8, [0, 0, 0]), { limitType: 'avg' as 'max' })).toThrow(/det\.limitType/);
  });
});

describe('detPostprocess', () => {
  it('finds one upright box and grows it by area*1.5/perimeter', () => {
    const boxes = detPostprocess(probMap(128, 64, [[20, 10, 79, 25, 0.9]]), meta(128, 64));
    expect(boxes).toHaveLength(1);
    // Pixel centres span 59 x 15; d = 59*15*1.5 / (2*(59+15)) = 8.97.
    expect(boxes[0]!.box).toEqual([[11, 1], [88, 1], [88, 34], [11, 34]]);
    expect(boxes[0]!.score).toBeCloseTo(0.9, 5);
  });

  it('maps boxes back to the original image size', () => {
    const boxes = detPostprocess(probMap(128, 64, [[20, 10, 79, 25, 0.9]]), meta(128, 64, 256, 96));
    expect(boxes[0]!.box).toEqual([[22, 2], [176, 2], [176, 51], [22, 51]]);
  });

  it('drops components below boxThresh, tiny ones, and ones under the pixel threshold', () => {
    const map = probMap(128, 64, [
      [5, 5, 40, 20, 0.5], // above thresh, mean below boxThresh
      [60, 5, 61, 30, 0.95], // 1 px wide in centres: short side < minSize
      [80, 40, 120, 60, 0.25], // never crosses thresh
    ]);
    expect(detPostprocess(map, meta(128, 64))).toEqual([]);
    expect(detPostprocess(map, meta(128, 64), { boxThresh: 0.4 })).toHaveLength(1);
  });

  it('returns boxes in reading order: lines top to bottom, left to right within a line', () => {
    const map = probMap(200, 100, [
      [120, 12, 180, 24, 0.9], // right word of line 1, two rows higher than the left word
      [10, 14, 100, 26, 0.9],
      [10, 60, 90, 75, 0.9],
    ]);
    const boxes = detPostprocess(map, meta(200, 100));
    expect(boxes.map((b) => b.box[0])).toEqual([[2, 6], [113, 5], [1, 51]]);
  });

  it('fits a rotated rectangle with minArea and an upright one with axisAligned', () => {
    const w = 160, h = 120;
    const data = new Float32Array(w * h);
    // A 80x12 bar turned by 20 degrees around (80, 60).
    const a = (20 * Math.PI) / 180;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const u = (x - 80) * Math.cos(a) + (y - 60) * Math.sin(a);
        const v = -(x - 80) * Math.sin(a) + (y - 60) * Math.cos(a);
        if (Math.abs(u) <= 40 && Math.abs(v) <= 6) data[y * w + x] = 0.9;
      }
    }
    const prob = { data, dims: [1, 1, h, w] };
    const [rotated] = detPostprocess(prob, meta(w, h));
    const [tl, tr, , bl] = rotated!.box;
    expect((Math.atan2(tr[1] - tl[1], tr[0] - tl[0]) * 180) / Math.PI).toBeCloseTo(20, -0.5);
    expect(Math.hypot(tr[0] - tl[0], tr[1] - tl[1])).toBeGreaterThan(Math.hypot(bl[0] - tl[0], bl[1] - tl[1]) * 2);
    // The bar fills about a third of its upright bounding box, so the mean-probability gate has to be lowered.
    expect(detPostprocess(prob, meta(w, h), { boxType: 'axisAligned' })).toEqual([]);
    const [upright] = detPostprocess(prob, meta(w, h), { boxType: 'axisAligned', boxThresh: 0.2 });
    expect(upright!.box[0][1]).toBe(upright!.box[1][1]);
    expect(upright!.box[0][0]).toBe(upright!.box[3][0]);
  });

  it('rejects maps that are not [1,1,H,W] and names bad options', () => {
    expect(() => detPostprocess({ data: new Float32Array(8), dims: [1, 2, 2, 2] }, meta(2, 2))).toThrow(ShapeMismatchError);
    expect(() => detPostprocess(probMap(4, 4, []), meta(4, 4), { thresh: 1.5 })).toThrow(/db\.thresh/);
    expect(() => detPostprocess(probMap(4, 4, []), meta(4, 4), { boxType: 'poly' as 'minArea' })).toThrow(/db\.boxType/);
  });
});

describe('sortBoxes', () => {
  it('swaps neighbours whose tops are within 10px into left-to-right order', () => {
    const q = (x: number, y: number): { box: Quad } => ({ box: [[x, y], [x + 10, y], [x + 10, y + 5], [x, y + 5]] });
    const sorted = sortBoxes([q(50, 3), q(0, 8), q(0, 40)]);
    expect(sorted.map((b) => b.box[0])).toEqual([[0, 8], [50, 3], [0, 40]]);
  });
});

describe('minAreaRect', () => {
  it('recovers a rotated square exactly', () => {
    const pts = [[10, 0], [20, 10], [10, 20], [0, 10]] as const;
    const r = minAreaRect(pts);
    expect(r.halfWidth * r.halfHeight * 4).toBeCloseTo(200, 6);
    expect(r.center[0]).toBeCloseTo(10, 6);
    expect(r.center[1]).toBeCloseTo(10, 6);
  });
});
