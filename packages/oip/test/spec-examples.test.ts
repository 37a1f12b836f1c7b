/**
 * The Open Inference Protocol handler against examples written from the specification (KServe v2 REST and its
 * binary tensor data extension), byte for byte: request bodies are literal JSON text and hex bytes, never produced
 * by this package's encoder, and binary responses are compared with the hex the specification's layout gives
 * (little-endian, row-major, no padding; BOOL one byte 0/1; BYTES a 4-byte little-endian length then the bytes).
 * A bug shared by the decoder and the encoder (a byte order, a length prefix) cannot cancel out here.
 *
 * The models answer with outputs unlike their inputs (other names, types, shapes and values), over the real
 * fixedModelRegistry, and record the feeds they were given, so what reached the model is checked on its own.
 */
import { describe, expect, test } from 'vitest';
import { createKServeHandler, fixedModelRegistry, responseBody, type Feeds, type KServeResponse, type ModelMetadata } from '../src/index.ts';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** The specification's example model: UINT32 [2,2] and BOOL [3] in; FP32 [3,2] and INT32 [2,2] out. */
const mymodelMeta: ModelMetadata = {
  inputs: [{ name: 'input0', type: 'uint32', shape: [2, 2] }, { name: 'input1', type: 'bool', shape: [3] }],
  outputs: [{ name: 'output0', type: 'float32', shape: [3, 2] }, { name: 'output1', type: 'int32', shape: [2, 2] }],
};
/** Strings in, three outputs of other types out. */
const textMeta: ModelMetadata = {
  inputs: [{ name: 'text', type: 'string', shape: [2] }],
  outputs: [{ name: 'upper', type: 'string', shape: [2] }, { name: 'chars', type: 'int64', shape: [2] }, { name: 'half', type: 'float16', shape: [2] }],
};

function setup() {
  const fed: Array<{ model: string; feeds: Feeds; outputs: string[] | undefined }> = [];
  const registry = fixedModelRegistry([
    {
      name: 'mymodel',
      metadata: () => mymodelMeta,
      infer: async (feeds, opts) => {
        fed.push({ model: 'mymodel', feeds, outputs: opts.outputs });
        return {
          output0: { type: 'float32', dims: [3, 2], data: Float32Array.of(1.0, 1.1, 2.0, 2.1, 3.0, 3.1) },
          output1: { type: 'int32', dims: [2, 2], data: Int32Array.of(8, 9, 4, 7) },
        };
      },
    },
    {
      name: 'text',
      metadata: () => textMeta,
      infer: async (feeds, opts) => {
        fed.push({ model: 'text', feeds, outputs: opts.outputs });
        const text = feeds.text!.data as string[];
        return {
          upper: { type: 'string', dims: [2], data: text.map((s) => s.toUpperCase()) },
          chars: { type: 'int64', dims: [2], data: BigInt64Array.from(text, (s) => BigInt([...s].length)) },
          half: { type: 'float16', dims: [2], data: Uint16Array.of(0x3c00, 0xc000) }, // 1 and -2 in IEEE half
        };
      },
    },
  ]);
  const handler = createKServeHandler(registry, { serverVersion: '1.0.0' });
  const post = (path: string, body: Buffer, headers: Record<string, string> = {}): Promise<KServeResponse> =>
    Promise.resolve(handler({ method: 'POST', path, headers, body }));
  return { fed, post };
}

/** Splits a binary-extension response at Inference-Header-Content-Length: the JSON header and the bytes after. */
function split(r: KServeResponse): { json: unknown; binary: Buffer } {
  const body = responseBody(r);
  const hl = Number(r.headers['inference-header-content-length']);
  expect(Number.isInteger(hl) && hl > 0 && hl <= body.byteLength).toBe(true);
  return { json: JSON.parse(body.subarray(0, hl).toString('utf8')), binary: body.subarray(hl) };
}

describe('JSON request and response (the inference example)', () => {
  test('typed feeds from JSON data, only the requested output, id echoed', async () => {
    const { fed, post } = setup();
    // The specification's request, with input1 given its three elements (the published example lists one).
    const body = Buffer.from(`{
      "id" : "42",
      "inputs" : [
        { "name" : "input0", "shape" : [ 2, 2 ], "datatype" : "UINT32", "data" : [ 1, 2, 3, 4 ] },
        { "name" : "input1", "shape" : [ 3 ], "datatype" : "BOOL", "data" : [ true, false, true ] }
      ],
      "outputs" : [ { "name" : "output0" } ]
    }`);
    const r = await post('/v2/models/mymodel/infer', body, { 'content-type': 'application/json' });
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('application/json');
    expect(r.headers['inference-header-content-length']).toBeUndefined();
    expect(JSON.parse(responseBody(r).toString('utf8'))).toEqual({
      model_name: 'mymodel', model_version: '1', id: '42',
      outputs: [{ name: 'output0', shape: [3, 2], datatype: 'FP32', data: [1.0, 1.1, 2.0, 2.1, 3.0, 3.1].map(Math.fround) }],
    });
    expect(fed).toEqual([{
      model: 'mymodel', outputs: ['output0'],
      feeds: {
        input0: { type: 'uint32', dims: [2, 2], data: Uint32Array.of(1, 2, 3, 4) },
        input1: { type: 'bool', dims: [3], data: Uint8Array.of(1, 0, 1) },
      },
    }]);
  });

  test('every output in the metadata order when none is named', async () => {
    const { post } = setup();
    const r = await post('/v2/models/mymodel/infer', Buffer.from('{"inputs":[{"name":"input0","shape":[2,2],"datatype":"UINT32","data":[[1,2],[3,4]]},{"name":"input1","shape":[3],"datatype":"BOOL","data":[false,false,true]}]}'));
    expect(r.status).toBe(200);
    expect(JSON.parse(responseBody(r).toString('utf8')).outputs).toEqual([
      { name: 'output0', shape: [3, 2], datatype: 'FP32', data: [1.0, 1.1, 2.0, 2.1, 3.0, 3.1].map(Math.fround) },
      { name: 'output1', shape: [2, 2], datatype: 'INT32', data: [8, 9, 4, 7] },
    ]);
  });
});

describe('binary tensor data extension (the extension\'s example)', () => {
  test('binary inputs decoded little-endian; output0 as binary, output1 as JSON', async () => {
    const { fed, post } = setup();
    const header = Buffer.from(`{
      "model_name" : "mymodel",
      "inputs" : [
        { "name" : "input0", "shape" : [ 2, 2 ], "datatype" : "UINT32", "parameters" : { "binary_data_size" : 16 } },
        { "name" : "input1", "shape" : [ 3 ], "datatype" : "BOOL", "parameters" : { "binary_data_size" : 3 } }
      ],
      "outputs" : [
        { "name" : "output0", "parameters" : { "binary_data" : true } },
        { "name" : "output1", "parameters" : { "binary_data" : false } }
      ]
    }`);
    // input0 = [1, 2, 3, 0x01020304] as little-endian UINT32; input1 = [true, false, true] as one byte each.
    const data = hex('01000000 02000000 03000000 04030201' + '01 00 01');
    const r = await post('/v2/models/mymodel/infer', Buffer.concat([header, data]), {
      'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.byteLength),
    });
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('application/octet-stream');
    expect(fed[0]!.feeds).toEqual({
      input0: { type: 'uint32', dims: [2, 2], data: Uint32Array.of(1, 2, 3, 0x01020304) },
      input1: { type: 'bool', dims: [3], data: Uint8Array.of(1, 0, 1) },
    });
    const { json, binary } = split(r);
    expect(json).toEqual({
      model_name: 'mymodel', model_version: '1',
      outputs: [
        { name: 'output0', shape: [3, 2], datatype: 'FP32', parameters: { binary_data_size: 24 } },
        { name: 'output1', shape: [2, 2], datatype: 'INT32', data: [8, 9, 4, 7] },
      ],
    });
    // [1.0, 1.1, 2.0, 2.1, 3.0, 3.1] as little-endian IEEE single precision (1.1f = 0x3f8ccccd ...).
    expect(binary.toString('hex')).toBe(hex('0000803f cdcc8c3f 00000040 66660640 00004040 66664640').toString('hex'));
  });

  test('BYTES in and out length-prefixed, INT64 and FP16 out, every output binary by binary_data_output', async () => {
    const { fed, post } = setup();
    const header = Buffer.from('{"inputs":[{"name":"text","shape":[2],"datatype":"BYTES","parameters":{"binary_data_size":14}}],'
      + '"parameters":{"binary_data_output":true}}');
    // "ab" and "ü" (UTF-8 c3 bc), each after its 4-byte little-endian length.
    const data = hex('02000000 6162' + '02000000 c3bc');
    expect(data.byteLength).toBe(12);
    // binary_data_size 14 above is wrong on purpose: the body holds 12 bytes, and the handler must say so.
    const wrong = await post('/v2/models/text/infer', Buffer.concat([header, data]), { 'inference-header-content-length': String(header.byteLength) });
    expect([wrong.status, JSON.parse(responseBody(wrong).toString()).error]).toEqual([400, 'input "text" of model "text": binary_data_size 14 at offset 0 runs past the 12 bytes of binary data in the body']);
    expect(fed).toEqual([]);

    const fixed = Buffer.from(header.toString().replace('"binary_data_size":14', '"binary_data_size":12'));
    const r = await post('/v2/models/text/infer', Buffer.concat([fixed, data]), { 'inference-header-content-length': String(fixed.byteLength) });
    expect(r.status).toBe(200);
    expect(fed[0]!.feeds).toEqual({ text: { type: 'string', dims: [2], data: ['ab', 'ü'] } });
    const { json, binary } = split(r);
    expect(json).toEqual({
      model_name: 'text', model_version: '1',
      outputs: [
        { name: 'upper', shape: [2], datatype: 'BYTES', parameters: { binary_data_size: 12 } },
        { name: 'chars', shape: [2], datatype: 'INT64', parameters: { binary_data_size: 16 } },
        { name: 'half', shape: [2], datatype: 'FP16', parameters: { binary_data_size: 4 } },
      ],
    });
    expect(binary.toString('hex')).toBe(hex(
      '02000000 4142 02000000 c39c' // "AB", "Ü" (UTF-8 c3 9c)
      + '0200000000000000 0100000000000000' // 2 and 1 characters, little-endian INT64
      + '003c 00c0', // 1 and -2, little-endian IEEE half
    ).toString('hex'));
  });

  test('JSON for BYTES, INT64 and FP16 outputs, with values as numbers and strings', async () => {
    const { post } = setup();
    const r = await post('/v2/models/text/infer', Buffer.from('{"inputs":[{"name":"text","shape":[2],"datatype":"BYTES","data":["ab","ü"]}]}'));
    expect(r.status).toBe(200);
    expect(JSON.parse(responseBody(r).toString('utf8')).outputs).toEqual([
      { name: 'upper', shape: [2], datatype: 'BYTES', data: ['AB', 'Ü'] },
      { name: 'chars', shape: [2], datatype: 'INT64', data: [2, 1] },
      { name: 'half', shape: [2], datatype: 'FP16', data: [1, -2] },
    ]);
  });
});
