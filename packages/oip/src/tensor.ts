/**
 * The plain tensor every shoal backend and the protocol share: element type, dims, and a typed array (or
 * strings). It is structurally what onnxruntime's Tensor takes, without the class, so a backend can post it
 * between threads and transfer its buffer, and the protocol can encode it without knowing the backend.
 */

/** Element types shoal passes through (onnxruntime's names, minus the 4-bit types). */
export type TensorType =
  | 'bool' | 'uint8' | 'uint16' | 'uint32' | 'uint64' | 'int8' | 'int16' | 'int32' | 'int64'
  | 'float16' | 'float32' | 'float64' | 'string';

export interface TensorArrayMap {
  bool: Uint8Array; uint8: Uint8Array; uint16: Uint16Array; uint32: Uint32Array; uint64: BigUint64Array;
  int8: Int8Array; int16: Int16Array; int32: Int32Array; int64: BigInt64Array;
  /** Raw IEEE-754 half bits, as onnxruntime-node takes them. */
  float16: Uint16Array; float32: Float32Array; float64: Float64Array;
  string: string[];
}

export type NumericTensorType = Exclude<TensorType, 'string'>;
export type NumericArray = TensorArrayMap[NumericTensorType];
export type TensorArray = TensorArrayMap[TensorType];

export interface TensorData<T extends TensorType = TensorType> {
  type: T;
  dims: readonly number[];
  data: TensorArrayMap[T];
}

/** Input or output tensors by name. */
export type Feeds = Record<string, TensorData>;

/** Shape of one model input or output. Strings are symbolic (dynamic) dims, e.g. "batch". */
export interface TensorMetadata {
  name: string;
  type: TensorType;
  shape: Array<number | string>;
}

/** A model's inputs and outputs: all the protocol needs to check a request and describe the model. */
export interface ModelMetadata {
  inputs: TensorMetadata[];
  outputs: TensorMetadata[];
}

type Ctor = { new (n: number): NumericArray; new (b: ArrayBufferLike, offset: number, length: number): NumericArray; BYTES_PER_ELEMENT: number };

export const TYPED_ARRAYS: Record<NumericTensorType, Ctor> = {
  bool: Uint8Array, uint8: Uint8Array, uint16: Uint16Array, uint32: Uint32Array, uint64: BigUint64Array,
  int8: Int8Array, int16: Int16Array, int32: Int32Array, int64: BigInt64Array,
  float16: Uint16Array, float32: Float32Array, float64: Float64Array,
};

export const TENSOR_TYPES: readonly TensorType[] = [...Object.keys(TYPED_ARRAYS) as NumericTensorType[], 'string'];

export function isTensorType(t: unknown): t is TensorType {
  return typeof t === 'string' && (TENSOR_TYPES as readonly string[]).includes(t);
}

export function elementCount(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}
