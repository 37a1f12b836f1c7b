import { describe, expect, it } from 'vitest';
import { UnhashableInputError, inputHash, tryInputHash } from '../src/input-hash.ts';

describe('inputHash: one key per input a replica can tell apart', () => {
  it('is stable over object key order, at every depth', () => {
    expect(inputHash({ a: 1, b: { c: [1, 2], d: 'x' } })).toBe(inputHash({ b: { d: 'x', c: [1, 2] }, a: 1 }));
  });

  it('keeps types apart: 1, "1", 1n, true, null, undefined, [1], {0: 1}', () => {
    const values: unknown[] = [1, '1', 1n, true, null, undefined, [1], { 0: 1 }, 0, -0, '', [], {}, NaN, [undefined], [null]];
    const hashes = values.map((v) => inputHash(v));
    expect(new Set(hashes).size).toBe(values.length);
  });

  it('does not let a string fake structure', () => {
    expect(inputHash(['a', 'b'])).not.toBe(inputHash(['a", "b']));
    expect(inputHash({ ab: 'c' })).not.toBe(inputHash({ a: 'bc' }));
    expect(inputHash(['ab'])).not.toBe(inputHash(['a', 'b']));
  });

  it('hashes a typed array by element type, length and bytes', () => {
    const bytes = new Uint8Array([0, 0, 128, 63, 0, 0, 0, 64]);
    const f32 = new Float32Array(bytes.buffer);
    const i32 = new Int32Array(bytes.buffer);
    expect(inputHash(f32)).not.toBe(inputHash(i32));
    expect(inputHash(f32)).toBe(inputHash(new Float32Array([1, 2])));
    expect(inputHash(f32)).not.toBe(inputHash(new Float32Array([1, 2.5])));
    // A Buffer and a Uint8Array of the same bytes reach a replica as the same thing.
    expect(inputHash(Buffer.from(bytes))).toBe(inputHash(bytes));
    expect(inputHash(bytes)).not.toBe(inputHash(f32));
    // A view is hashed by its own bytes, not its whole buffer.
    const big = new Float32Array([9, 1, 2, 9]);
    expect(inputHash(big.subarray(1, 3))).toBe(inputHash(new Float32Array([1, 2])));
  });

  it('hashes OIP tensors by dtype, shape and bytes', () => {
    const t = (type: string, dims: number[], data: ArrayBufferView): unknown => ({ x: { type, dims, data } });
    const data = new Float32Array([1, 2, 3, 4]);
    expect(inputHash(t('float32', [2, 2], data))).toBe(inputHash(t('float32', [2, 2], new Float32Array([1, 2, 3, 4]))));
    expect(inputHash(t('float32', [2, 2], data))).not.toBe(inputHash(t('float32', [4], data)));
    expect(inputHash(t('float32', [2, 2], data))).not.toBe(inputHash(t('int32', [2, 2], new Int32Array(data.buffer))));
  });

  it('treats Maps and Sets by content, not insertion order', () => {
    expect(inputHash(new Map([['a', 1], ['b', 2]]))).toBe(inputHash(new Map([['b', 2], ['a', 1]])));
    expect(inputHash(new Set([1, 2]))).toBe(inputHash(new Set([2, 1])));
    expect(inputHash(new Set([1, 2]))).not.toBe(inputHash([1, 2]));
  });

  it('refuses what it cannot key on: functions, symbols, class instances, cycles', () => {
    class Thing { x = 1; }
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    for (const v of [() => 1, Symbol('s'), new Thing(), cyclic]) {
      expect(() => inputHash(v)).toThrow(UnhashableInputError);
      expect(tryInputHash(v)).toBeUndefined();
    }
  });

  it('hashes long inputs whole (past the text flush)', () => {
    const a = Array.from({ length: 20_000 }, (_, i) => `item-${i}`);
    const b = [...a];
    b[19_999] = 'changed';
    expect(inputHash(a)).not.toBe(inputHash(b));
    expect(inputHash(a)).toBe(inputHash([...a]));
  });
});
