/**
 * Tensor data as JSON in the Open Inference Protocol: a flat (or nested, row-major) array of booleans, numbers
 * or strings. Decoding checks every element against the datatype and never wraps or rounds silently: an
 * integer out of range, a fraction for an integer type, or a string for a number is a 400 naming the element.
 */
import { BadRequestError } from '@shoal/core';
import { INT_RANGE, KSERVE_TO_ORT, fromHalf, toHalf, type KserveDatatype } from './kserve-datatypes.ts';
import { TYPED_ARRAYS, elementCount, type NumericTensorType, type TensorData } from './tensor.ts';

function describe(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 37)}...` : v);
  if (Array.isArray(v)) return 'an array';
  return v === null ? 'null' : typeof v === 'object' ? 'an object' : String(v);
}

/** Flattens nested arrays (row-major). Nesting deeper than the shape's rank is an error. */
function flatten(name: string, data: unknown[], rank: number): unknown[] {
  if (!data.some((x) => Array.isArray(x))) return data;
  const out: unknown[] = [];
  const walk = (a: unknown[], depth: number): void => {
    if (depth > Math.max(rank, 1)) throw new BadRequestError(`input "${name}": data is nested ${depth} deep but the shape has rank ${rank}`);
    for (const x of a) {
      if (Array.isArray(x)) walk(x, depth + 1); else out.push(x);
    }
  };
  walk(data, 1);
  return out;
}

/** Decodes the `data` of a JSON input tensor into typed data of the matching ORT type. */
export function decodeJsonTensor(name: string, datatype: KserveDatatype, shape: readonly number[], data: unknown): TensorData {
  if (!Array.isArray(data)) throw new BadRequestError(`input "${name}": "data" must be an array, got ${describe(data)}`);
  const flat = flatten(name, data, shape.length);
  const n = elementCount(shape);
  if (flat.length !== n) throw new BadRequestError(`input "${name}": shape [${shape.join(',')}] needs ${n} elements, data has ${flat.length}`);
  const bad = (i: number, want: string): never => {
    throw new BadRequestError(`input "${name}": element ${i} must be ${want} for datatype ${datatype}, got ${describe(flat[i])}`);
  };
  const type = KSERVE_TO_ORT[datatype];
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
    flat.forEach((x, i) => { if (typeof x !== 'number') bad(i, 'a number'); out[i] = toHalf(x as number); });
  } else {
    flat.forEach((x, i) => { if (typeof x !== 'number') bad(i, 'a number'); out[i] = x as number; });
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
