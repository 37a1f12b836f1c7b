import { describe, expect, test } from 'vitest';
import { generateWarmupFeeds } from '../src/warmup.ts';
import type { ModelMetadata } from '../src/index.ts';

const meta: ModelMetadata = {
  inputs: [
    { name: 'image', type: 'float32', shape: ['batch', 3, 'height', 'width'] },
    { name: 'ids', type: 'int64', shape: ['batch', 8] },
    { name: 'text', type: 'string', shape: ['batch'] },
    { name: 'half', type: 'float16', shape: [2] },
  ],
  outputs: [],
};

describe('generateWarmupFeeds', () => {
  test('dynamic dims become 1 unless declared; fill zeros or ones per type', () => {
    const f = generateWarmupFeeds(meta, { feeds: undefined, dims: { width: 32 }, fill: 1, runs: 1 });
    expect(f.image!.dims).toEqual([1, 3, 1, 32]);
    expect((f.image!.data as Float32Array).every((v) => v === 1)).toBe(true);
    expect(f.ids!.dims).toEqual([1, 8]);
    expect(Array.from(f.ids!.data as BigInt64Array)).toEqual(new Array(8).fill(1n));
    expect(f.text).toEqual({ type: 'string', dims: [1], data: ['1'] });
    expect(Array.from(f.half!.data as Uint16Array)).toEqual([0x3c00, 0x3c00]);
    const z = generateWarmupFeeds(meta, { feeds: undefined, dims: {}, fill: 0, runs: 1 });
    expect(z.image!.dims).toEqual([1, 3, 1, 1]);
    expect((z.image!.data as Float32Array).every((v) => v === 0)).toBe(true);
  });

  test('a declared dim that matches no dynamic dim is an option error naming it', () => {
    expect(() => generateWarmupFeeds(meta, { feeds: undefined, dims: { widht: 3 }, fill: 0, runs: 1 })).toThrow(/warmup\.dims\.widht.*dynamic dims: batch, height, width/);
  });
});
