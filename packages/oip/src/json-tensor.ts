/**
 * Tensor data as JSON in the Open Inference Protocol: a flat (or nested, row-major) array of booleans, numbers
 * or strings. Decoding checks every element against the datatype and never wraps, rounds to infinity, or
 * passes NaN: an integer out of range, a fraction for an integer type, a float the type cannot hold, or a
 * string for a number is a 400 naming the input and the element.
 */
import { BadRequestError } from '@shoal/core';
import { INT_RANGE, KSERVE_TO_TENSOR_TYPE, fromHalf, toHalf, type KserveDatatype } from './datatypes.ts';
import { TYPED_ARRAYS, type NumericTensorType, type TensorData } from './tensor.ts';
import { checkDataLength } from './validate-feeds.ts';

function describe(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 37)}...` : v);
  if (Array.isArray(v)) return 'an array';
  return v === null ? 'null' : typeof v === 'object' ? 'an object' : String(v);
}

/** Flattens nested arrays (row-major). Nesting deeper than the shape's rank is an error. */
function flatten(at: string, data: unknown[], rank: number): unknown[] {
  if (!data.some((x) => Array.isArray(x))) return data;
  const out: unknown[] = [];
  const walk = (a: unknown[], depth: number): void => {
    if (depth > Math.max(rank, 1)) throw new BadRequestError(`${at}: "data" is nested ${depth} deep but the shape has rank ${rank}`);
    for (const x of a) {
      if (Array.isArray(x)) walk(x, depth + 1); else out.push(x);
    }
  };
  walk(data, 1);
  return out;
}

/** Largest finite FP16 value. */
const HALF_MAX = 65504;
const FLOAT_MAX = 3.4028234663852886e38;

/**
 * Decodes the `data` of a JSON input tensor into typed data of the datatype's element type. `at` names the
 * tensor in errors (`input "x" of model "tiny"`); `shape` has passed checkShape.
 */
export function decodeJsonTensor(at: string, datatype: KserveDatatype, shape: readonly number[], data: unknown): TensorData {
  if (!Array.isArray(data)) throw new BadRequestError(`${at}: "data" must be an array, got ${describe(data)}`);
  const flat = flatten(at, data, shape.length);
  checkDataLength(at, shape, flat.length);
  const n = flat.length;
  const bad = (i: number, want: string): never => {
    throw new BadRequestError(`${at}: data[${i}] must be ${want} for datatype ${datatype}, got ${describe(flat[i])}`);
  };
  const type = KSERVE_TO_TENSOR_TYPE[datatype];
  if (type === 'string') {
    flat.forEach((x, i) => { if (typeof x !== 'string') bad(i, 'a string'); });
    return { type, dims: [...shape], data: flat as string[] };
  }
  if (type === 'bool') {
    const out = new Uint8Array(n);
    flat.forEach((x, i) => { if (typeof x !== 'boolean') bad(i, 'true or false'); out[i] = x ? 1 : 0; });
    return { type, dims: [...shape], data: out };
  }
  if (type === 'int64' || type === 'uint64') {
    const out = type === 'int64' ? new BigInt64Array(n) : new BigUint64Array(n);
    const min = type === 'int64' ? -(2n ** 63n) : 0n;
    const max = type === 'int64' ? 2n ** 63n - 1n : 2n ** 64n - 1n;
    flat.forEach((x, i) => {
      if (typeof x !== 'number' || !Number.isInteger(x)) bad(i, 'an integer');
      const b = BigInt(x as number);
      if (b < min || b > max) bad(i, `an integer in [${min}, ${max}]`);
      out[i] = b;
    });
    return { type, dims: [...shape], data: out } as TensorData;
  }
  const out = new TYPED_ARRAYS[type as NumericTensorType](n) as Float32Array;
  const range = INT_RANGE[type as NumericTensorType];
  if (range !== undefined) {
    const [lo, hi] = range;
    flat.forEach((x, i) => {
      if (typeof x !== 'number' || !Number.isInteger(x)) bad(i, 'an integer');
      if ((x as number) < lo || (x as number) > hi) bad(i, `an integer in [${lo}, ${hi}]`);
      out[i] = x as number;
    });
  } else if (type === 'float16') {
    flat.forEach((x, i) => {
      const h = typeof x === 'number' ? toHalf(x) : 0x7c00;
      // Exponent bits all ones: NaN or infinity, from a non-finite number or one past FP16's range.
      if ((h & 0x7c00) === 0x7c00) bad(i, `a finite number (|x| <= ${HALF_MAX})`);
      out[i] = h;
    });
  } else if (type === 'float32') {
    flat.forEach((x, i) => {
      if (typeof x !== 'number' || !Number.isFinite(Math.fround(x))) bad(i, `a finite number (|x| <= ${FLOAT_MAX})`);
      out[i] = x as number;
    });
  } else {
    flat.forEach((x, i) => { if (typeof x !== 'number' || !Number.isFinite(x)) bad(i, 'a finite number'); out[i] = x as number; });
  }
  return { type, dims: [...shape], data: out } as unknown as TensorData;
}

/**
 * A tensor's elements as a flat JSON array. INT64/UINT64 become JSON numbers, exact up to 2^53 (as the protocol's
 * JSON form has it); FP16 is widened to a number; BOOL becomes true/false.
 */
export function encodeJsonData(t: TensorData): Array<number | boolean | string> {
  if (t.type === 'string') return t.data as string[];
  if (t.type === 'bool') return Array.from(t.data as Uint8Array, (v) => v !== 0);
  if (t.type === 'float16') return Array.from(t.data as Uint16Array, fromHalf);
  if (t.type === 'int64' || t.type === 'uint64') return Array.from(t.data as BigInt64Array, (v) => Number(v));
  return Array.from(t.data as Float32Array);
}
