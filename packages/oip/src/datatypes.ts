/**
 * Open Inference Protocol (KServe v2) datatypes and the tensor element types they map to, plus the
 * element-level conversions JSON needs: range checks for integers and IEEE half-precision packing for FP16.
 */
import type { NumericTensorType, TensorType } from './tensor.ts';

export type KserveDatatype =
  | 'BOOL' | 'UINT8' | 'UINT16' | 'UINT32' | 'UINT64' | 'INT8' | 'INT16' | 'INT32' | 'INT64'
  | 'FP16' | 'FP32' | 'FP64' | 'BYTES';

export const KSERVE_TO_TENSOR_TYPE: Record<KserveDatatype, TensorType> = {
  BOOL: 'bool', UINT8: 'uint8', UINT16: 'uint16', UINT32: 'uint32', UINT64: 'uint64',
  INT8: 'int8', INT16: 'int16', INT32: 'int32', INT64: 'int64',
  FP16: 'float16', FP32: 'float32', FP64: 'float64', BYTES: 'string',
};

export const TENSOR_TYPE_TO_KSERVE: Record<TensorType, KserveDatatype> = Object.fromEntries(
  Object.entries(KSERVE_TO_TENSOR_TYPE).map(([k, v]) => [v, k]),
) as Record<TensorType, KserveDatatype>;

export const KSERVE_DATATYPES = Object.keys(KSERVE_TO_TENSOR_TYPE) as KserveDatatype[];

export function isKserveDatatype(v: unknown): v is KserveDatatype {
  return typeof v === 'string' && Object.prototype.hasOwnProperty.call(KSERVE_TO_TENSOR_TYPE, v);
}

/** Bytes per element in the binary extension (BYTES is variable: 4-byte length prefix + bytes). */
export const ELEMENT_BYTES: Record<Exclude<KserveDatatype, 'BYTES'>, number> = {
  BOOL: 1, UINT8: 1, UINT16: 2, UINT32: 4, UINT64: 8, INT8: 1, INT16: 2, INT32: 4, INT64: 8, FP16: 2, FP32: 4, FP64: 8,
};

/** Inclusive ranges of the integer datatypes up to 32 bits; JSON numbers outside are rejected, never wrapped. */
export const INT_RANGE: Partial<Record<NumericTensorType, readonly [number, number]>> = {
  uint8: [0, 255], uint16: [0, 65535], uint32: [0, 4294967295],
  int8: [-128, 127], int16: [-32768, 32767], int32: [-2147483648, 2147483647],
};

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float -> IEEE-754 binary16 bits, round to nearest even; overflow gives ±Infinity. */
export function toHalf(v: number): number {
  f32[0] = v;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant = (mant | 0x800000) >>> (1 - e);
    if ((mant & 0x1000) !== 0) mant += 0x2000;
    return sign | (mant >>> 13);
  }
  const half = sign | (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  return rest > 0x1000 || (rest === 0x1000 && (half & 1) === 1) ? half + 1 : half;
}

/** IEEE-754 binary16 bits -> float. */
export function fromHalf(h: number): number {
  const s = (h & 0x8000) !== 0 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f !== 0 ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}
