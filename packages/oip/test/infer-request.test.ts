/**
 * decodeInferRequest on its own (no handler, no transport): every bad input is refused with a 400 naming the input,
 * the field and the value, before a backend could answer it with a 500.
 */
import { describe, expect, test } from 'vitest';
import { BadRequestError, InvalidOptionError, ShapeMismatchError, ShoalError } from '@shoal/core';
import { DEFAULT_MAX_ELEMENTS, decodeInferRequest, tensorCopies, tensorCopiesBetween, toHalf, type ModelMetadata } from '../src/index.ts';

const meta: ModelMetadata = {
  inputs: [
    { name: 'x', type: 'float32', shape: ['batch', 4] },
    { name: 'h', type: 'float16', shape: ['batch'] },
    { name: 'd', type: 'float64', shape: [1] },
  ],
  outputs: [{ name: 'y', type: 'float32', shape: ['batch', 4] }],
};
const x = (over: Record<string, unknown> = {}) => ({ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4], ...over });
const h = (over: Record<string, unknown> = {}) => ({ name: 'h', shape: [1], datatype: 'FP16', data: [1], ...over });
const d = (over: Record<string, unknown> = {}) => ({ name: 'd', shape: [1], datatype: 'FP64', data: [1], ...over });

function decodeJson(json: string, maxElements?: number) {
  return decodeInferRequest('m', meta, Buffer.from(json), undefined, maxElements === undefined ? {} : { maxElements });
}
const decode = (inputs: unknown[], maxElements?: number) => decodeJson(JSON.stringify({ inputs }), maxElements);

function refusal(fn: () => unknown): ShoalError {
  try { fn(); } catch (err) {
    expect(err).toBeInstanceOf(ShoalError);
    expect((err as ShoalError).httpStatus).toBe(400);
    return err as ShoalError;
  }
  throw new Error('expected a refusal');
}

test('a binary input is copied once, into an aligned buffer of its own, and counted; a JSON input is not a copy', () => {
  const bytes = Buffer.from(Float32Array.of(1, 2, 3, 4).buffer);
  const header = Buffer.from(JSON.stringify({ inputs: [x({ data: undefined, parameters: { binary_data_size: 16 } }), h(), d()] }));
  const before = tensorCopies();
  const r = decodeInferRequest('m', meta, Buffer.concat([header, bytes]), header.byteLength);
  const data = r.feeds.x!.data as Float32Array;
  expect([Array.from(data), data.byteOffset, data.buffer.byteLength]).toEqual([[1, 2, 3, 4], 0, 16]);
  expect(tensorCopiesBetween(before)).toEqual({
    input: { count: 1, bytes: 16, sites: { 'oip.decode-binary': { count: 1, bytes: 16 } } },
    output: { count: 0, bytes: 0, sites: {} },
  });
});

test('a good request decodes into typed feeds', () => {
  const r = decode([x(), h({ data: [0.5] }), d({ data: [Math.PI] })]);
  expect(r.feeds.x).toEqual({ type: 'float32', dims: [1, 4], data: Float32Array.of(1, 2, 3, 4) });
  expect(Array.from(r.feeds.h!.data as Uint16Array)).toEqual([toHalf(0.5)]);
  expect(r.feeds.d!.data).toEqual(Float64Array.of(Math.PI));
});

describe('shapes the model does not take', () => {
  const cases: Array<[string, unknown[], typeof BadRequestError | typeof ShapeMismatchError, string]> = [
    ['fixed dim differs', [x({ shape: [1, 5], data: [1, 2, 3, 4, 5] }), h(), d()], ShapeMismatchError, 'input "x" of model "m": expected [batch,4], got [1,5] (dim 1 must be 4)'],
    ['zero where the model fixes 4', [x({ shape: [1, 0], data: [] }), h(), d()], ShapeMismatchError, 'input "x" of model "m": expected [batch,4], got [1,0] (dim 1 must be 4)'],
    ['zero where the model fixes 1', [x(), h(), d({ shape: [0], data: [] })], ShapeMismatchError, 'input "d" of model "m": expected [1], got [0] (dim 0 must be 1)'],
    ['zero batch', [x({ shape: [0, 4], data: [] }), h(), d()], ShapeMismatchError, 'input "x" of model "m": expected [batch,4], got [0,4] (dim 0 "batch" is dynamic and must be at least 1)'],
    ['negative dim', [x({ shape: [-1, 4] }), h(), d()], BadRequestError, 'input "x" of model "m": shape[0] must be a non-negative integer, got -1'],
    ['fractional dim', [x({ shape: [1, 4.5] }), h(), d()], BadRequestError, 'input "x" of model "m": shape[1] must be a non-negative integer, got 4.5'],
    ['dim as a string', [x({ shape: ['1', 4] }), h(), d()], BadRequestError, 'input "x" of model "m": shape[0] must be a non-negative integer, got "1"'],
    ['shape missing', [x({ shape: undefined }), h(), d()], BadRequestError, 'input "x" of model "m": "shape" must be an array of non-negative integers, got undefined'],
    ['wrong rank', [x({ shape: [4] }), h(), d()], ShapeMismatchError, 'input "x" of model "m": expected rank 2 [batch,4], got rank 1 [4]'],
  ];
  for (const [what, inputs, cls, message] of cases) {
    test(what, () => {
      const err = refusal(() => decode(inputs));
      expect(err).toBeInstanceOf(cls);
      expect(err.message).toBe(message);
    });
  }

  test('more elements than maxElements is refused on the shape, before the data is read', () => {
    // The data is absent: the bound holds whatever the body claims.
    const err = refusal(() => decode([x({ shape: [1000, 4], data: [] }), h(), d()], 1000));
    expect(err).toBeInstanceOf(BadRequestError);
    expect(err.message).toBe('input "x" of model "m": shape [1000,4] has 4000 elements, more than maxElements=1000');
  });

  test('the default bound refuses a shape no body could hold', () => {
    const err = refusal(() => decode([x({ shape: [DEFAULT_MAX_ELEMENTS, 4], data: [] }), h(), d()]));
    expect(err.message).toBe(`input "x" of model "m": shape [${DEFAULT_MAX_ELEMENTS},4] has ${DEFAULT_MAX_ELEMENTS * 4} elements, more than maxElements=${DEFAULT_MAX_ELEMENTS}`);
  });

  test('a bad maxElements is an option error naming it', () => {
    expect(() => decode([x(), h(), d()], 0)).toThrow(InvalidOptionError);
    expect(() => decode([x(), h(), d()], 0)).toThrow(/maxElements/);
  });
});

describe('data that does not fit the shape or the datatype', () => {
  const cases: Array<[string, unknown[], typeof BadRequestError | typeof ShapeMismatchError, string]> = [
    ['JSON data shorter than the shape', [x({ shape: [2, 4] }), h(), d()], ShapeMismatchError, 'input "x" of model "m": shape [2,4] needs 8 elements, data has 4'],
    ['JSON data longer than the shape', [x({ data: [1, 2, 3, 4, 5] }), h(), d()], ShapeMismatchError, 'input "x" of model "m": shape [1,4] needs 4 elements, data has 5'],
    ['datatype differs from the model input', [x({ datatype: 'FP64' }), h(), d()], BadRequestError, 'input "x" of model "m": expected datatype FP32, got FP64'],
    ['"NaN" as a string', [x({ data: [1, 'NaN', 3, 4] }), h(), d()], BadRequestError, 'input "x" of model "m": data[1] must be a finite number (|x| <= 3.4028234663852886e+38) for datatype FP32, got "NaN"'],
    ['"Infinity" as a string', [x(), h({ data: ['Infinity'] }), d()], BadRequestError, 'input "h" of model "m": data[0] must be a finite number (|x| <= 65504) for datatype FP16, got "Infinity"'],
    ['null (how JSON.stringify writes NaN)', [x({ data: [1, 2, null, 4] }), h(), d()], BadRequestError, 'input "x" of model "m": data[2] must be a finite number (|x| <= 3.4028234663852886e+38) for datatype FP32, got null'],
    ['FP32 past its range', [x({ data: [1, 2, 3, 1e39] }), h(), d()], BadRequestError, 'input "x" of model "m": data[3] must be a finite number (|x| <= 3.4028234663852886e+38) for datatype FP32, got 1e+39'],
    ['FP16 past its range', [x(), h({ data: [70000] }), d()], BadRequestError, 'input "h" of model "m": data[0] must be a finite number (|x| <= 65504) for datatype FP16, got 70000'],
  ];
  for (const [what, inputs, cls, message] of cases) {
    test(what, () => {
      const err = refusal(() => decode(inputs));
      expect(err).toBeInstanceOf(cls);
      expect(err.message).toBe(message);
    });
  }

  test('a JSON number too large for a double (it parses to Infinity) is refused for every float type', () => {
    const body = (x4: string, h1: string, d1: string) => `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,${x4}]},`
      + `{"name":"h","shape":[1],"datatype":"FP16","data":[${h1}]},{"name":"d","shape":[1],"datatype":"FP64","data":[${d1}]}]}`;
    expect(refusal(() => decodeJson(body('1e400', '1', '1'))).message).toBe('input "x" of model "m": data[3] must be a finite number (|x| <= 3.4028234663852886e+38) for datatype FP32, got Infinity');
    expect(refusal(() => decodeJson(body('1', '-1e400', '1'))).message).toBe('input "h" of model "m": data[0] must be a finite number (|x| <= 65504) for datatype FP16, got -Infinity');
    expect(refusal(() => decodeJson(body('1', '1', '1e400'))).message).toBe('input "d" of model "m": data[0] must be a finite number for datatype FP64, got Infinity');
  });

  test('binary data of the wrong length for the shape', () => {
    const header = Buffer.from(JSON.stringify({ inputs: [x({ data: undefined, parameters: { binary_data_size: 12 } }), h(), d()] }));
    const err = refusal(() => decodeInferRequest('m', meta, Buffer.concat([header, Buffer.alloc(12)]), header.byteLength));
    expect(err).toBeInstanceOf(ShapeMismatchError);
    expect(err.message).toBe('input "x" of model "m": shape [1,4] of FP32 needs 16 bytes (4 elements x 4), binary_data_size is 12');
  });

  test('binary BYTES with more elements than the shape', () => {
    const sm: ModelMetadata = { inputs: [{ name: 's', type: 'string', shape: ['batch'] }], outputs: [] };
    const el = (v: string) => { const b = Buffer.from(v); const n = Buffer.alloc(4); n.writeUInt32LE(b.byteLength); return Buffer.concat([n, b]); };
    const bin = Buffer.concat([el('a'), el('b')]);
    const header = Buffer.from(JSON.stringify({ inputs: [{ name: 's', shape: [1], datatype: 'BYTES', parameters: { binary_data_size: bin.byteLength } }] }));
    const err = refusal(() => decodeInferRequest('m', sm, Buffer.concat([header, bin]), header.byteLength));
    expect(err).toBeInstanceOf(ShapeMismatchError);
    expect(err.message).toBe('input "s" of model "m": shape [1] needs 1 elements, data has 2');
  });
});
