/**
 * Tensor helpers of the ORT backend: warm-up fills and the transfer list for posting tensors to an ORT thread.
 * The tensor types themselves are @shoal/oip's, shared with the protocol.
 */
import { TYPED_ARRAYS, elementCount, type Feeds, type NumericArray, type TensorData, type TensorType } from '@shoal/oip';

/** A zero- or one-filled tensor of the given type and dims (warm-up inputs). */
export function filledTensor(type: TensorType, dims: readonly number[], fill: 0 | 1): TensorData {
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
