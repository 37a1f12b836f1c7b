import { describe, expect, test } from 'vitest';
import { BatchSizeMismatchError, ShapeMismatchError } from '@shoal/core';
import { batchKey, batchRows, splitFeeds, splitTensor, stackFeeds, stackTensors, type TensorData } from '../src/index.ts';

const f32 = (dims: number[], ...v: number[]): TensorData => ({ type: 'float32', dims, data: Float32Array.from(v) });

describe('stackTensors / splitTensor', () => {
  test('stacks along dim 0 and splits back into the same parts', () => {
    const a = f32([1, 2], 1, 2);
    const b = f32([2, 2], 3, 4, 5, 6);
    const s = stackTensors('x', [a, b]);
    expect(s.dims).toEqual([3, 2]);
    expect(Array.from(s.data as Float32Array)).toEqual([1, 2, 3, 4, 5, 6]);
    const [pa, pb] = splitTensor('x', s, [1, 2]);
    expect(pa!.dims).toEqual([1, 2]);
    expect(Array.from(pa!.data as Float32Array)).toEqual([1, 2]);
    expect(pb!.dims).toEqual([2, 2]);
    expect(Array.from(pb!.data as Float32Array)).toEqual([3, 4, 5, 6]);
    // Parts are views of the stacked buffer, not copies.
    expect((pb!.data as Float32Array).buffer).toBe((s.data as Float32Array).buffer);
  });

  test('one part is returned as is; strings, bigints and higher ranks stack', () => {
    const a = f32([1, 2], 1, 2);
    expect(stackTensors('x', [a])).toBe(a);
    const s = stackTensors('s', [{ type: 'string', dims: [1], data: ['a'] }, { type: 'string', dims: [2], data: ['b', 'c'] }]);
    expect(s).toEqual({ type: 'string', dims: [3], data: ['a', 'b', 'c'] });
    const i = stackTensors('i', [{ type: 'int64', dims: [1, 1, 2], data: BigInt64Array.of(1n, 2n) }, { type: 'int64', dims: [1, 1, 2], data: BigInt64Array.of(3n, 4n) }]);
    expect(i.dims).toEqual([2, 1, 2]);
    expect(Array.from(i.data as BigInt64Array)).toEqual([1n, 2n, 3n, 4n]);
    expect(splitTensor('s', s, [2, 1]).map((p) => p.data)).toEqual([['a', 'b'], ['c']]);
  });

  test('mismatched non-batch dims, types, ranks and data lengths are named', () => {
    expect(() => stackTensors('x', [f32([1, 2], 1, 2), f32([1, 3], 1, 2, 3)])).toThrow(ShapeMismatchError);
    expect(() => stackTensors('x', [f32([1, 2], 1, 2), f32([1, 3], 1, 2, 3)])).toThrow(/input "x": item 1 has dims \[1,3\], item 0 has \[1,2\]/);
    expect(() => stackTensors('x', [f32([1, 2], 1, 2), { type: 'int32', dims: [1, 2], data: Int32Array.of(1, 2) }])).toThrow(/item 1 has type int32, item 0 has float32/);
    expect(() => stackTensors('x', [f32([1, 2], 1, 2), f32([1, 2, 1], 1, 2)])).toThrow(/item 1 has dims \[1,2,1\]/);
    expect(() => stackTensors('x', [f32([1, 2], 1, 2), f32([1, 2], 1)])).toThrow(/item 1 has shape \[1,2\] \(2 elements\) but 1 elements/);
    expect(() => stackTensors('x', [f32([], 1), f32([], 2)])).toThrow(/scalar/);
  });

  test('split refuses an output whose dim 0 does not follow the batch', () => {
    const err = (() => { try { splitTensor('y', f32([2, 1], 1, 2), [1, 2]); } catch (e) { return e; } return undefined; })();
    expect(err).toBeInstanceOf(BatchSizeMismatchError);
    expect((err as Error).message).toMatch(/output "y" has dims \[2,1\], expected 3 rows along dim 0 \(the batch was 2 request\(s\) of 1\+2 rows\)/);
  });
});

describe('stackFeeds / splitFeeds / batchKey', () => {
  test('round trip over several inputs and outputs', () => {
    const items = [
      { a: f32([1, 2], 1, 2), b: { type: 'int32', dims: [1], data: Int32Array.of(7) } as TensorData },
      { a: f32([2, 2], 3, 4, 5, 6), b: { type: 'int32', dims: [2], data: Int32Array.of(8, 9) } as TensorData },
    ];
    expect(batchKey(items[0]!)).toBe(batchKey(items[1]!));
    const { feeds, sizes } = stackFeeds(items);
    expect(sizes).toEqual([1, 2]);
    expect(feeds.a!.dims).toEqual([3, 2]);
    expect(Array.from(feeds.b!.data as Int32Array)).toEqual([7, 8, 9]);
    const back = splitFeeds({ y: feeds.a!, z: feeds.b! }, sizes);
    expect(back.map((o) => Array.from(o.z!.data as Int32Array))).toEqual([[7], [8, 9]]);
    expect(back.map((o) => o.y!.dims)).toEqual([[1, 2], [2, 2]]);
  });

  test('keys differ when non-batch dims or types differ, not when the batch dim does', () => {
    expect(batchKey({ a: f32([1, 2], 1, 2) })).toBe(batchKey({ a: f32([5, 2], ...new Array(10).fill(0)) }));
    expect(batchKey({ a: f32([1, 2], 1, 2) })).not.toBe(batchKey({ a: f32([1, 3], 1, 2, 3) }));
    expect(batchKey({ a: f32([1, 2], 1, 2) })).not.toBe(batchKey({ a: { type: 'float64', dims: [1, 2], data: Float64Array.of(1, 2) } }));
  });

  test('inputs of one request must agree on dim 0; requests must have the same inputs', () => {
    expect(() => batchRows({ a: f32([1, 2], 1, 2), b: f32([2], 1, 2) }, 3)).toThrow(/item 3: inputs disagree on the batch dim: "a" has 1 rows, "b" has 2/);
    expect(() => stackFeeds([{ a: f32([1], 1) }, { b: f32([1], 1) }])).toThrow(/item 1 has inputs \[b\], item 0 has \[a\]/);
  });
});
