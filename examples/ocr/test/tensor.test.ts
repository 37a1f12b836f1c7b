import { ShapeMismatchError } from '@shoal/core';
import { describe, expect, it } from 'vitest';
import { float32Tensor } from '../src/index.ts';

describe('float32Tensor', () => {
  it('tags float32 data with its dims', () => {
    const data = Float32Array.from([1, 2, 3, 4]);
    expect(float32Tensor(data, [1, 2, 2])).toEqual({ type: 'float32', data, dims: [1, 2, 2] });
  });

  it('rejects data that does not fill the dims, with the numbers', () => {
    expect(() => float32Tensor(new Float32Array(6), [1, 2, 2])).toThrow(ShapeMismatchError);
    expect(() => float32Tensor(new Float32Array(6), [1, 2, 2])).toThrow(/6 values do not fill dims \[1,2,2\] \(4 values\)/);
  });
});
