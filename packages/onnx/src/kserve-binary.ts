/**
 * The KServe v2 binary tensor data extension: a JSON header of `Inference-Header-Content-Length` bytes followed
 * by each binary tensor's bytes in order. Numeric tensors are raw little-endian elements; BYTES elements are a
 * 4-byte little-endian length followed by the bytes.
 */
import { BadRequestError } from '@shoal/core';
import { ELEMENT_BYTES, KSERVE_TO_ORT, type KserveDatatype } from './kserve-datatypes.ts';
import { TYPED_ARRAYS, elementCount, type NumericArray, type NumericTensorType, type TensorData } from './tensor.ts';

const utf8 = new TextDecoder('utf-8');
const utf8enc = new TextEncoder();

/** Parses the Inference-Header-Content-Length value (a header string or a number). */
export function parseHeaderLength(value: string | number | undefined, bodyLength: number): number | undefined {
  if (value === undefined || value === '') return undefined;
  const n = typeof value === 'number' ? value : Number(value);
  if (!Number.isInteger(n) || n < 0) throw new BadRequestError(`Inference-Header-Content-Length must be a non-negative integer, got ${JSON.stringify(value)}`);
  if (n > bodyLength) throw new BadRequestError(`Inference-Header-Content-Length is ${n} but the body has only ${bodyLength} bytes`);
  return n;
}

/**
 * Decodes one binary tensor. Numeric data is copied into its own aligned buffer (the HTTP body slice is rarely
 * aligned, and the copy is what gets transferred to the ORT thread without a second copy).
 */
export function decodeBinaryTensor(name: string, datatype: KserveDatatype, shape: readonly number[], bytes: Uint8Array): TensorData {
  const n = elementCount(shape);
  if (datatype === 'BYTES') {
    const out: string[] = [];
    let at = 0;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    while (at < bytes.byteLength) {
      if (at + 4 > bytes.byteLength) throw new BadRequestError(`input "${name}": BYTES element ${out.length} has a truncated 4-byte length prefix at byte ${at} of ${bytes.byteLength}`);
      const len = view.getUint32(at, true);
      at += 4;
      if (at + len > bytes.byteLength) throw new BadRequestError(`input "${name}": BYTES element ${out.length} declares ${len} bytes but only ${bytes.byteLength - at} remain`);
      out.push(utf8.decode(bytes.subarray(at, at + len)));
      at += len;
    }
    if (out.length !== n) throw new BadRequestError(`input "${name}": shape [${shape.join(',')}] needs ${n} BYTES elements, binary data has ${out.length}`);
    return { type: 'string', dims: [...shape], data: out };
  }
  const size = ELEMENT_BYTES[datatype];
  if (bytes.byteLength !== n * size) {
    throw new BadRequestError(`input "${name}": shape [${shape.join(',')}] of ${datatype} needs ${n * size} bytes (${n} elements x ${size}), binary_data_size is ${bytes.byteLength}`);
  }
  const type = KSERVE_TO_ORT[datatype] as NumericTensorType;
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  const data = new TYPED_ARRAYS[type](copy.buffer, 0, n);
  return { type, dims: [...shape], data } as TensorData;
}

/** Encodes one tensor's elements as binary data (numeric: a view of its bytes, no copy). */
export function encodeBinaryTensor(t: TensorData): Uint8Array {
  if (Array.isArray(t.data)) {
    const parts = (t.data as string[]).map((s) => utf8enc.encode(s));
    const out = new Uint8Array(parts.reduce((s, p) => s + 4 + p.byteLength, 0));
    const view = new DataView(out.buffer);
    let at = 0;
    for (const p of parts) {
      view.setUint32(at, p.byteLength, true);
      out.set(p, at + 4);
      at += 4 + p.byteLength;
    }
    return out;
  }
  const a = t.data as NumericArray;
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** Joins a JSON header and binary chunks into one body, with the header length to send. */
export function joinBinaryBody(header: unknown, chunks: readonly Uint8Array[]): { body: Buffer; headerLength: number } {
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  return { body: Buffer.concat([json, ...chunks]), headerLength: json.byteLength };
}
