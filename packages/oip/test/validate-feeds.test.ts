/** checkShape and validateFeeds, the one owner of tensor checks: every refusal is a 400 naming the input and the value. */
import { describe, expect, test } from 'vitest';
import { BadRequestError, ShapeMismatchError, ShoalError } from '@shoal/core';
import { checkShape, validateFeeds, type Feeds, type ModelMetadata, type TensorMetadata } from '../src/index.ts';

const x: TensorMetadata = { name: 'x', type: 'float32', shape: ['batch', 4] };
const meta: ModelMetadata = { inputs: [x, { name: 'ids', type: 'int64', shape: [2] }], outputs: [{ name: 'y', type: 'float32', shape: ['batch', 4] }] };

function refusal(fn: () => unknown): ShoalError {
  try { fn(); } catch (err) {
    expect(err).toBeInstanceOf(ShoalError);
    expect((err as ShoalError).httpStatus).toBe(400);
    return err as ShoalError;
  }
  throw new Error('expected a refusal');
}

describe('checkShape', () => {
  const cases: Array<[string, unknown, typeof BadRequestError | typeof ShapeMismatchError, string]> = [
    ['not an array', '1x4', BadRequestError, 'input "x" of model "m": "shape" must be an array of non-negative integers, got "1x4"'],
    ['negative dim', [-1, 4], BadRequestError, 'input "x" of model "m": shape[0] must be a non-negative integer, got -1'],
    ['fractional dim', [1.5, 4], BadRequestError, 'input "x" of model "m": shape[0] must be a non-negative integer, got 1.5'],
    ['dim not a number', [1, '4'], BadRequestError, 'input "x" of model "m": shape[1] must be a non-negative integer, got "4"'],
    ['dim past safe integers', [2 ** 60, 4], BadRequestError, `input "x" of model "m": shape[0] must be a non-negative integer, got ${2 ** 60}`],
    ['wrong rank', [4], ShapeMismatchError, 'input "x" of model "m": expected rank 2 [batch,4], got rank 1 [4]'],
    ['fixed dim differs', [1, 5], ShapeMismatchError, 'input "x" of model "m": expected [batch,4], got [1,5] (dim 1 must be 4)'],
    ['zero where the model fixes a non-zero dim', [1, 0], ShapeMismatchError, 'input "x" of model "m": expected [batch,4], got [1,0] (dim 1 must be 4)'],
    ['zero batch', [0, 4], ShapeMismatchError, 'input "x" of model "m": expected [batch,4], got [0,4] (dim 0 "batch" is dynamic and must be at least 1)'],
    ['more elements than maxElements', [1001, 4], BadRequestError, 'input "x" of model "m": shape [1001,4] has 4004 elements, more than maxElements=4000'],
  ];
  for (const [what, shape, cls, message] of cases) {
    test(what, () => {
      const err = refusal(() => checkShape('m', x, shape, 4000));
      expect(err).toBeInstanceOf(cls);
      expect(err.message).toBe(message);
    });
  }

  test('the bound is checked on the shape, so a shape past any body is refused whatever the data', () => {
    const err = refusal(() => checkShape('m', x, [2 ** 40, 4], 1 << 20));
    expect(err.message).toBe(`input "x" of model "m": shape [${2 ** 40},4] has ${2 ** 42} elements, more than maxElements=1048576`);
    expect(err.details).toEqual({ elements: 2 ** 42, maxElements: 1 << 20 });
  });

  test('a fitting shape comes back as numbers; a fixed zero dim the model declares is accepted', () => {
    expect(checkShape('m', x, [3, 4], 12)).toEqual([3, 4]);
    expect(checkShape('m', { name: 'e', type: 'float32', shape: [0] }, [0], 1)).toEqual([0]);
  });
});

describe('validateFeeds', () => {
  const good = (): Feeds => ({
    x: { type: 'float32', dims: [1, 4], data: new Float32Array(4) },
    ids: { type: 'int64', dims: [2], data: new BigInt64Array(2) },
  });

  test('good feeds pass', () => {
    expect(() => validateFeeds('m', meta, good(), ['y'])).not.toThrow();
  });

  const cases: Array<[string, (f: Feeds) => void, typeof BadRequestError | typeof ShapeMismatchError, string]> = [
    ['unknown input', (f) => { f.z = f.x!; }, BadRequestError, 'unknown input "z" for model "m"; inputs are: x, ids'],
    ['missing input', (f) => { delete f.ids; }, BadRequestError, 'missing input "ids" for model "m"'],
    ['wrong element type', (f) => { f.x = { type: 'float64', dims: [1, 4], data: new Float64Array(4) }; }, BadRequestError, 'input "x" of model "m": expected type float32, got float64'],
    ['fixed dim differs', (f) => { f.x = { type: 'float32', dims: [1, 3], data: new Float32Array(3) }; }, ShapeMismatchError, 'input "x" of model "m": expected [batch,4], got [1,3] (dim 1 must be 4)'],
    ['zero batch', (f) => { f.x = { type: 'float32', dims: [0, 4], data: new Float32Array(0) }; }, ShapeMismatchError, 'input "x" of model "m": expected [batch,4], got [0,4] (dim 0 "batch" is dynamic and must be at least 1)'],
    ['negative dim', (f) => { f.x = { type: 'float32', dims: [-2, 4], data: new Float32Array(8) }; }, BadRequestError, 'input "x" of model "m": shape[0] must be a non-negative integer, got -2'],
    ['data shorter than the shape', (f) => { f.x = { type: 'float32', dims: [2, 4], data: new Float32Array(7) }; }, ShapeMismatchError, 'input "x" of model "m": shape [2,4] needs 8 elements, data has 7'],
  ];
  for (const [what, edit, cls, message] of cases) {
    test(what, () => {
      const f = good();
      edit(f);
      const err = refusal(() => validateFeeds('m', meta, f));
      expect(err).toBeInstanceOf(cls);
      expect(err.message).toBe(message);
    });
  }

  test('unknown output', () => {
    const err = refusal(() => validateFeeds('m', meta, good(), ['logits']));
    expect(err).toBeInstanceOf(BadRequestError);
    expect(err.message).toBe('unknown output "logits" for model "m"; outputs are: y');
  });
});
