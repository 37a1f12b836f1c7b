/** encodeInferResponse: binary outputs go out as views over the output tensors, JSON outputs in the header. */
import { describe, expect, test } from 'vitest';
import { BackendError } from '@shoal/core';
import { encodeInferResponse, tensorCopies, tensorCopiesBetween, type Feeds } from '../src/index.ts';

const outputs = (): Feeds => ({
  y: { type: 'float32', dims: [1, 3], data: Float32Array.of(1, 2, 3) },
  ids: { type: 'int64', dims: [2], data: BigInt64Array.of(7n, -1n) },
  s: { type: 'string', dims: [1], data: ['ok'] },
});

describe('encodeInferResponse', () => {
  test('JSON only: one chunk, application/json', () => {
    const enc = encodeInferResponse({ model: 'm', version: '1', id: 'a', outputs: outputs(), order: ['y', 'ids'], binary: () => false });
    expect(enc.headers).toEqual({ 'content-type': 'application/json' });
    expect(enc.chunks).toHaveLength(1);
    expect(enc.byteLength).toBe(enc.chunks[0]!.byteLength);
    expect(JSON.parse(enc.chunks[0]!.toString())).toEqual({
      model_name: 'm', model_version: '1', id: 'a',
      outputs: [{ name: 'y', datatype: 'FP32', shape: [1, 3], data: [1, 2, 3] }, { name: 'ids', datatype: 'INT64', shape: [2], data: [7, -1] }],
    });
  });

  test('binary outputs are views over the output typed arrays, not copies, after the JSON header', () => {
    const out = outputs();
    const y = out.y!.data as Float32Array;
    const before = tensorCopies();
    const enc = encodeInferResponse({ model: 'm', version: undefined, id: undefined, outputs: out, order: ['y', 'ids', 's'], binary: (n) => n !== 'ids' });
    expect(tensorCopiesBetween(before).output).toEqual({ count: 0, bytes: 0, sites: {} });
    expect(enc.chunks).toHaveLength(3);
    const [header, yBytes, sBytes] = enc.chunks as [Buffer, Buffer, Buffer];
    expect(enc.headers).toEqual({ 'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.byteLength) });
    expect(yBytes.buffer).toBe(y.buffer);
    expect([yBytes.byteOffset, yBytes.byteLength]).toEqual([y.byteOffset, 12]);
    y[0] = 9; // the same memory: a copy would not see this
    expect(yBytes.readFloatLE(0)).toBe(9);
    expect([...sBytes]).toEqual([2, 0, 0, 0, 0x6f, 0x6b]);
    expect(enc.byteLength).toBe(header.byteLength + 12 + 6);
    expect(JSON.parse(header.toString()).outputs).toEqual([
      { name: 'y', datatype: 'FP32', shape: [1, 3], parameters: { binary_data_size: 12 } },
      { name: 'ids', datatype: 'INT64', shape: [2], data: [7, -1] },
      { name: 's', datatype: 'BYTES', shape: [1], parameters: { binary_data_size: 6 } },
    ]);
  });

  test('BYTES elements are UTF-8 with a 4-byte little-endian length each, as TextEncoder writes them', () => {
    const strings = ['', 'é', '日本', '\u{1F600}', 'lone \ud800 surrogate'];
    const enc = encodeInferResponse({ model: 'm', version: '1', id: undefined, outputs: { s: { type: 'string', dims: [5], data: strings } }, order: ['s'], binary: () => true });
    const want = Buffer.concat(strings.flatMap((s) => {
      const utf8 = new TextEncoder().encode(s);
      const len = Buffer.alloc(4);
      len.writeUInt32LE(utf8.byteLength);
      return [len, utf8];
    }));
    expect(enc.chunks[1]!.equals(want)).toBe(true);
  });

  test('a view into a larger buffer (a split batch) is sent as exactly its own bytes', () => {
    const batch = Float32Array.of(1, 2, 3, 4, 5, 6);
    const row = batch.subarray(3);
    const enc = encodeInferResponse({ model: 'm', version: '1', id: undefined, outputs: { y: { type: 'float32', dims: [1, 3], data: row } }, order: ['y'], binary: () => true });
    expect(Array.from(new Float32Array(new Uint8Array(enc.chunks[1]!).buffer))).toEqual([4, 5, 6]);
  });

  test('an output the backend did not return is a BackendError (500), not a 400', () => {
    expect(() => encodeInferResponse({ model: 'm', version: '1', id: undefined, outputs: {}, order: ['y'], binary: () => false }))
      .toThrow(BackendError);
  });
});
