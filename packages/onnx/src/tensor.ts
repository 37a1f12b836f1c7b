/**
 * Tensor helpers of the ORT backend: warm-up fills, and the transfer list for posting tensors to or from an ORT
 * thread with the check that they were transferred, not copied.
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

/** Tensors ready to post to another thread. */
export interface PreparedTensors {
  tensors: Feeds;
  /** The buffers to list in postMessage's transfer list. */
  transfer: ArrayBuffer[];
}

/**
 * Buffers to transfer when posting tensors to another thread. A typed array that spans its whole ArrayBuffer is
 * transferred as is (zero copy, and the sender's array is detached); a view into a larger buffer (a slice of an
 * HTTP body, Node's Buffer pool) is first copied, so only its own bytes move and the larger buffer stays intact.
 */
export function prepareForTransfer(tensors: Feeds): PreparedTensors {
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

/**
 * The byte lengths of the numeric tensors of `original` that are not posted as the very same array (copied on
 * their way to the post, by prepareForTransfer or anything before it). Compare with what the data came as.
 */
export function copiedForPost(original: Feeds, posted: Feeds): number[] {
  const copied: number[] = [];
  for (const [name, t] of Object.entries(original)) {
    if (!Array.isArray(t.data) && posted[name]?.data !== t.data) copied.push(t.data.byteLength);
  }
  return copied;
}

/**
 * Checks a postMessage after the fact: the byte lengths of the posted tensors' buffers that are still attached,
 * which therefore went by structured clone (a copy of the whole buffer, once however many views share it) rather
 * than by transfer. A transferred buffer is detached (byteLength 0); a SharedArrayBuffer is shared, not copied.
 */
export function clonedOnPost(posted: Feeds): number[] {
  const seen = new Set<ArrayBuffer>();
  for (const t of Object.values(posted)) {
    if (Array.isArray(t.data)) continue;
    const buffer = (t.data as NumericArray).buffer;
    if (buffer instanceof ArrayBuffer && buffer.byteLength > 0) seen.add(buffer);
  }
  return [...seen].map((b) => b.byteLength);
}
