import { readFileSync } from 'node:fs';
import { ShapeMismatchError } from '@shoal/core';
import { describe, expect, it } from 'vitest';
import {
  checkRecCharset, defaultModelPaths, loadRecCharset, parseRecDictionary, recBucketWidth, recPostprocess, recPreprocess,
  type FloatTensor, type RgbImage,
} from '../src/index.ts';

function solid(width: number, height: number, v: number): RgbImage {
  return { width, height, data: new Uint8Array(width * height * 3).fill(v) };
}

/** One-hot-ish [n, T, C] probabilities: item i step t puts `p` on class paths[i][t] and spreads the rest. */
function probs(paths: number[][], classes: number, p = 0.9): FloatTensor {
  const steps = paths[0]!.length;
  const data = new Float32Array(paths.length * steps * classes).fill((1 - p) / (classes - 1));
  paths.forEach((path, i) => {
    path.forEach((k, t) => {
      data[(i * steps + t) * classes + k] = p;
    });
  });
  return { data, dims: [paths.length, steps, classes] };
}

describe('recPreprocess', () => {
  it('keeps aspect at height 48, ceil-ing the width, normalised to [-1, 1], zero-padded to the bucket width', () => {
    const [batch, ...rest] = recPreprocess([solid(101, 32, 0)]);
    expect(rest).toEqual([]);
    expect(batch!.indices).toEqual([0]);
    expect(batch!.tensor.dims).toEqual([1, 3, 48, 320]); // ceil(48 * 101 / 32) = 152, padded to 320
    expect(batch!.tensor.data[151]).toBeCloseTo(-1, 6);
    expect(batch!.tensor.data[152]).toBe(0);
    expect(batch!.tensor.data[320 + 151]).toBeCloseTo(-1, 6);
  });

  it('squeezes lines wider than maxWidth', () => {
    expect(recPreprocess([solid(5000, 10, 0)])[0]!.tensor.dims).toEqual([1, 3, 48, 2560]);
    expect(recPreprocess([solid(5000, 10, 0)], { maxWidth: 640 })[0]!.tensor.dims).toEqual([1, 3, 48, 640]);
  });

  it('groups crops by bucket width, widest first, in batches of at most maxBatchSize', () => {
    // Widths at height 48: 50, 400, 300, 390, 100, 120 -> buckets 320, 448, 320, 448, 320, 320.
    const crops = [50, 400, 300, 390, 100, 120].map((w) => solid(w, 48, 255));
    const batches = recPreprocess(crops, { maxBatchSize: 3 });
    expect(batches.map((b) => [b.tensor.dims, b.indices])).toEqual([
      [[2, 3, 48, 448], [1, 3]],
      [[3, 3, 48, 320], [0, 2, 4]],
      [[1, 3, 48, 320], [5]],
    ]);
    // Item 1 of the 448 batch is crop 3 (390 wide): white up to column 389, padding after.
    const item = 3 * 48 * 448;
    expect(batches[0]!.tensor.data[item + 389]).toBeCloseTo(1, 6);
    expect(batches[0]!.tensor.data[item + 390]).toBe(0);
    expect(recPreprocess([])).toEqual([]);
  });

  it('names bad options', () => {
    expect(() => recPreprocess([solid(4, 4, 0)], { maxWidth: 1.5 })).toThrow(/rec\.maxWidth/);
    expect(() => recPreprocess([solid(4, 4, 0)], { maxBatchSize: 0 })).toThrow(/rec\.maxBatchSize/);
    expect(() => recPreprocess([], { widthMultiple: 0 })).toThrow(/rec\.widthMultiple/);
  });
});

describe('recBucketWidth', () => {
  it('rounds widths up to the bucket multiple, at least minWidth', () => {
    expect(recBucketWidth(100)).toBe(320);
    expect(recBucketWidth(321)).toBe(384);
    expect(recBucketWidth(100, { minWidth: 0, widthMultiple: 32 })).toBe(128);
    expect(() => recBucketWidth(100, { minWidth: -1 })).toThrow(/rec\.minWidth/);
  });
});

describe('parseRecDictionary / checkRecCharset / loadRecCharset', () => {
  it('puts the blank first and the space last', () => {
    expect(parseRecDictionary('a\nb\r\nc\n')).toEqual(['', 'a', 'b', 'c', ' ']);
    expect(parseRecDictionary('a\nb', { useSpaceChar: false })).toEqual(['', 'a', 'b']);
  });

  it('gives 6625 classes for ppocr_keys_v1.txt (6623 lines + blank + space)', async () => {
    const charset = parseRecDictionary(readFileSync(defaultModelPaths().dict, 'utf8'));
    expect(charset).toHaveLength(6625);
    expect(await loadRecCharset()).toEqual(charset);
    expect(() => checkRecCharset(charset, 6625)).not.toThrow();
    expect(() => checkRecCharset(charset, 97)).toThrow(/6625 classes \(blank \+ 6623 lines \+ space\) vs model output dim 97/);
  });
});

describe('recPostprocess', () => {
  const charset = ['', 'a', 'b', 'c', ' '];

  it('decodes each item: merges repeats, drops blanks, and averages the kept probabilities', () => {
    const [first, second] = recPostprocess(probs([[1, 1, 0, 1, 2, 2, 0, 0, 4, 3], [3, 0, 0, 0, 0, 0, 0, 0, 0, 1]], 5), charset);
    expect(first!.text).toBe('aab c');
    expect(first!.score).toBeCloseTo(0.9, 6);
    expect(second!.text).toBe('ca');
  });

  it('averages per-character maxima', () => {
    const out = probs([[1, 2]], 5);
    out.data[1 * 5 + 2] = 0.5;
    expect(recPostprocess(out, charset)[0]!.score).toBeCloseTo(0.7, 6);
  });

  it('returns an empty text with score 0 for an all-blank line', () => {
    expect(recPostprocess(probs([[0, 0, 0]], 5), charset)).toEqual([{ text: '', score: 0 }]);
  });

  it('rejects a charset that does not match the class count, and bad dims', () => {
    expect(() => recPostprocess(probs([[1]], 6), charset)).toThrow(ShapeMismatchError);
    expect(() => recPostprocess({ data: new Float32Array(10), dims: [2, 1, 4] }, charset)).toThrow(/expected dims \[n,T,C\], got \[2,1,4\] with 10 values/);
  });
});
