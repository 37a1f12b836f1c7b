/**
 * The plain tensor shape that crosses thread boundaries and the KServe codec: element type, dims, and a typed
 * array (or strings). It is structurally what onnxruntime's Tensor takes, without the class, so it can be
 * posted between threads and its buffer transferred.
 */

/** onnxruntime element types shoal passes through (ORT's Tensor.Type minus the 4-bit types). */
export type OrtTensorType =
  | 'bool' | 'uint8' | 'uint16' | 'uint32' | 'uint64' | 'int8' | 'int16' | 'int32' | 'int64'
  | 'float16' | 'float32' | 'float64' | 'string';

export interface TensorArrayMap {
  bool: Uint8Array; uint8: Uint8Array; uint16: Uint16Array; uint32: Uint32Array; uint64: BigUint64Array;
  int8: Int8Array; int16: Int16Array; int32: Int32Array; int64: BigInt64Array;
  /** Raw IEEE-754 half bits, as onnxruntime-node takes them. */
  float16: Uint16Array; float32: Float32Array; float64: Float64Array;
  string: string[];
}

export type NumericTensorType = Exclude<OrtTensorType, 'string'>;
export type NumericArray = TensorArrayMap[NumericTensorType];
export type TensorArray = TensorArrayMap[OrtTensorType];

export interface TensorData<T extends OrtTensorType = OrtTensorType> {
  type: T;
  dims: readonly number[];
  data: TensorArrayMap[T];
}

/** Input or output tensors by name. */
export type Feeds = Record<string, TensorData>;

type Ctor = { new (n: number): NumericArray; new (b: ArrayBufferLike, offset: number, length: number): NumericArray; BYTES_PER_ELEMENT: number };

export const TYPED_ARRAYS: Record<NumericTensorType, Ctor> = {
  bool: Uint8Array, uint8: Uint8Array, uint16: Uint16Array, uint32: Uint32Array, uint64: BigUint64Array,
  int8: Int8Array, int16: Int16Array, int32: Int32Array, int64: BigInt64Array,
  float16: Uint16Array, float32: Float32Array, float64: Float64Array,
};

export const ORT_TENSOR_TYPES: readonly OrtTensorType[] = [...Object.keys(TYPED_ARRAYS) as NumericTensorType[], 'string'];

export function isOrtTensorType(t: unknown): t is OrtTensorType {
  return typeof t === 'string' && (ORT_TENSOR_TYPES as readonly string[]).includes(t);
}

export function elementCount(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

/** A zero- or one-filled tensor of the given type and dims (warm-up inputs). */
export function filledTensor(type: OrtTensorType, dims: readonly number[], fill: 0 | 1): TensorData {
  const n = elementCount(dims);
  if (type === 'string') return { type, dims, data: new Array<string>(n).fill(fill === 0 ? '' : '1') };
  const data = new TYPED_ARRAYS[type](n);
  if (fill === 1) {
    if (data instanceof BigInt64Array || data instanceof BigUint64Array) data.fill(1n);
    else if (type === 'float16') (data as Uint16Array).fill(0x3c00); // 1.0 in half precision
    else (data as Exclude<NumericArray, BigInt64Array | BigUint64Array>).fill(1);
  }
  return { type, dims, data } as TensorData;
}

/**
 * Buffers to transfer when posting tensors to another thread. A typed array that spans its whole ArrayBuffer is
 * transferred as is (zero copy, and the sender's array is detached); a view into a larger buffer (a slice of an
 * HTTP body, Node's Buffer pool) is first copied, so only its own bytes move and the larger buffer stays intact.
 */
export function prepareForTransfer(tensors: Feeds): { tensors: Feeds; transfer: ArrayBuffer[] } {
  const out: Feeds = {};
  const transfer: ArrayBuffer[] = [];
  for (const [name, t] of Object.entries(tensors)) {
    if (Array.isArray(t.data)) { out[name] = t; continue; }
    const arr = t.data as NumericArray;
    const whole = arr.buffer instanceof ArrayBuffer && arr.byteOffset === 0 && arr.byteLength === arr.buffer.byteLength;
    const own = whole && !transfer.includes(arr.buffer as ArrayBuffer) ? arr : (arr.slice() as NumericArray);
    transfer.push(own.buffer as ArrayBuffer);
    out[name] = { type: t.type, dims: [...t.dims], data: own } as TensorData;
  }
  return { tensors: out, transfer };
}
