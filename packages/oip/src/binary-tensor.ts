/**
 * The KServe v2 binary tensor data extension: a JSON header of `Inference-Header-Content-Length` bytes followed
 * by each binary tensor's bytes in order. Numeric tensors are raw little-endian elements; BYTES elements are a
 * 4-byte little-endian length followed by the bytes.
 */
import { BadRequestError, ShapeMismatchError } from '@shoal/core';
import { ELEMENT_BYTES, KSERVE_TO_TENSOR_TYPE, type KserveDatatype } from './datatypes.ts';
import { TYPED_ARRAYS, elementCount, type NumericArray, type NumericTensorType, type TensorData } from './tensor.ts';
import { countTensorCopy } from './tensor-copies.ts';
import { checkDataLength } from './validate-feeds.ts';

const utf8 = new TextDecoder('utf-8');

/** Parses the Inference-Header-Content-Length value (a header string or a number). */
export function parseHeaderLength(value: string | number | undefined, bodyLength: number): number | undefined {
  if (value === undefined || value === '') return undefined;
  const n = typeof value === 'number' ? value : Number(value);
  if (!Number.isInteger(n) || n < 0) throw new BadRequestError(`Inference-Header-Content-Length must be a non-negative integer, got ${JSON.stringify(value)}`);
  if (n > bodyLength) throw new BadRequestError(`Inference-Header-Content-Length is ${n} but the body has only ${bodyLength} bytes`);
  return n;
}

/**
 * Decodes one binary tensor; `at` names it in errors, `shape` has passed checkShape. Numeric data is copied, once,
 * into its own aligned buffer: the body slice is rarely aligned for its element type, and a tensor that owns its
 * whole buffer can be transferred to another thread (or kept past the body) without a second copy.
 */
export function decodeBinaryTensor(at: string, datatype: KserveDatatype, shape: readonly number[], bytes: Uint8Array): TensorData {
  const n = elementCount(shape);
  if (datatype === 'BYTES') {
    const out: string[] = [];
    let pos = 0;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    while (pos < bytes.byteLength) {
      if (pos + 4 > bytes.byteLength) throw new BadRequestError(`${at}: BYTES element ${out.length} has a truncated 4-byte length prefix at byte ${pos} of ${bytes.byteLength}`);
      const len = view.getUint32(pos, true);
      pos += 4;
      if (pos + len > bytes.byteLength) throw new BadRequestError(`${at}: BYTES element ${out.length} declares ${len} bytes but only ${bytes.byteLength - pos} remain`);
      out.push(utf8.decode(bytes.subarray(pos, pos + len)));
      pos += len;
    }
    checkDataLength(at, shape, out.length);
    return { type: 'string', dims: [...shape], data: out };
  }
  const size = ELEMENT_BYTES[datatype];
  if (bytes.byteLength !== n * size) {
    throw new ShapeMismatchError(`${at}: shape [${shape.join(',')}] of ${datatype} needs ${n * size} bytes (${n} elements x ${size}), binary_data_size is ${bytes.byteLength}`);
  }
  const type = KSERVE_TO_TENSOR_TYPE[datatype] as NumericTensorType;
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  countTensorCopy('input', 'oip.decode-binary', bytes.byteLength);
  const data = new TYPED_ARRAYS[type](copy.buffer, 0, n);
  return { type, dims: [...shape], data } as TensorData;
}

/**
 * One tensor's elements as binary data. Numeric tensors give a Buffer view over their typed array's bytes, no copy
 * (the extension is little-endian, as typed arrays are on x86-64 and arm64; a big-endian host would need a byte
 * swap here). BYTES tensors are UTF-8 encoded, length-prefixed, straight into one new buffer.
 */
export function encodeBinaryTensor(t: TensorData): Buffer {
  if (Array.isArray(t.data)) {
    const strings = t.data as string[];
    const lengths = strings.map((s) => Buffer.byteLength(s, 'utf8'));
    const out = Buffer.allocUnsafe(lengths.reduce((n, l) => n + 4 + l, 0));
    let pos = 0;
    strings.forEach((s, i) => {
      out.writeUInt32LE(lengths[i]!, pos);
      out.write(s, pos + 4, 'utf8');
      pos += 4 + lengths[i]!;
    });
    return out;
  }
  const a = t.data as NumericArray;
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}
