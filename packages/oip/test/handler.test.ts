/**
 * The Open Inference Protocol handler against request/response examples written from the published
 * specification (KServe v2 REST, the binary tensor data extension, Triton's model repository extension), over a
 * fake registry that implements the real KServeRegistry interface. Several models here echo their inputs, which a
 * bug shared by decode and encode would pass: spec-examples.test.ts checks bytes against the specification's
 * layout with models whose outputs differ from their inputs.
 */
import { describe, expect, test } from 'vitest';
import { NotFoundError, QueueFullError } from '@shoal/core';
import {
  TENSOR_TYPES, TENSOR_TYPE_TO_KSERVE, createKServeHandler, fromHalf, responseBody, toHalf,
  type Feeds, type KServeModel, type KServeRegistry, type KServeRequest, type KServeResponse, type ModelMetadata, type RepositoryIndexEntry,
} from '../src/index.ts';

// The tiny model of @shoal/onnx's tests, in plain JS: y = relu(x · W + B), sum = row sums of y.
const W = [[1, 0, 0, 0], [0, 2, 0, 0], [0, 0, 3, 0], [1, 1, 1, -1]];
const B = [0.5, 0, -1, 0];
function tinyReference(x: Float32Array): { y: Float32Array; sum: Float32Array } {
  const rows = x.length / 4;
  const y = new Float32Array(rows * 4);
  const sum = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < 4; j++) {
      let acc = B[j]!;
      for (let i = 0; i < 4; i++) acc += x[r * 4 + i]! * W[i]![j]!;
      y[r * 4 + j] = Math.max(0, acc);
      sum[r] = sum[r]! + y[r * 4 + j]!;
    }
  }
  return { y, sum };
}

class FakeModel implements KServeModel {
  readonly platform = 'onnxruntime_onnx';
  ready = true;
  calls: Array<{ feeds: Feeds; outputs?: string[] }> = [];
  constructor(
    readonly name: string, readonly version: string, readonly versions: string[],
    readonly metadata: ModelMetadata | undefined, private readonly fn: (f: Feeds) => Feeds,
  ) {}

  async infer(feeds: Feeds, opts: { outputs?: string[] }): Promise<Feeds> {
    this.calls.push({ feeds, ...opts });
    const all = this.fn(feeds);
    return opts.outputs === undefined ? all : Object.fromEntries(opts.outputs.map((o) => [o, all[o]!]));
  }
}

class FakeRegistry implements KServeRegistry {
  models: FakeModel[] = [];
  loads: string[] = [];
  unloads: string[] = [];
  list(): RepositoryIndexEntry[] {
    return this.models.map((m) => ({ name: m.name, version: m.version, state: m.ready ? 'READY' : 'LOADING' }));
  }
  get(name: string, version?: string): KServeModel | undefined {
    const ms = this.models.filter((m) => m.name === name);
    return version === undefined ? ms[0] : ms.find((m) => m.version === version);
  }
  async load(name: string): Promise<void> {
    if (name === 'ghost') throw new NotFoundError(`model "ghost" is not in repository /models (models: tiny)`);
    this.loads.push(name);
  }
  async unload(name: string): Promise<void> { this.unloads.push(name); }
}

const tinyMeta: ModelMetadata = {
  inputs: [{ name: 'x', type: 'float32', shape: ['batch', 4] }],
  outputs: [{ name: 'y', type: 'float32', shape: ['batch', 4] }, { name: 'sum', type: 'float32', shape: ['batch'] }],
};
const tiny = (): FakeModel => new FakeModel('tiny', '1', ['1'], tinyMeta, (f) => {
  const x = f.x!;
  const r = tinyReference(x.data as Float32Array);
  return { y: { type: 'float32', dims: [...x.dims], data: r.y }, sum: { type: 'float32', dims: [x.dims[0]!], data: r.sum } };
});
// The model of the binary extension's example: input0 UINT32 [2,2] and input1 BOOL [3] echoed as output0/output1.
const specMeta: ModelMetadata = {
  inputs: [{ name: 'input0', type: 'uint32', shape: [2, 2] }, { name: 'input1', type: 'bool', shape: [3] }],
  outputs: [{ name: 'output0', type: 'uint32', shape: [2, 2] }, { name: 'output1', type: 'bool', shape: [3] }],
};
const spec = (): FakeModel => new FakeModel('mymodel', '1', ['1'], specMeta, (f) => ({ output0: f.input0!, output1: f.input1! }));
const identityMeta: ModelMetadata = {
  inputs: TENSOR_TYPES.map((t) => ({ name: `in_${t}`, type: t, shape: ['batch', 'w'] })),
  outputs: TENSOR_TYPES.map((t) => ({ name: `out_${t}`, type: t, shape: ['batch', 'w'] })),
};
const identity = (): FakeModel => new FakeModel('identity', '1', ['1'], identityMeta, (f) => Object.fromEntries(Object.entries(f).map(([k, v]) => [k.replace(/^in_/, 'out_'), v])));

function setup(): { reg: FakeRegistry; call: (method: string, path: string, body?: unknown, headers?: Record<string, string>) => ReturnType<ReturnType<typeof createKServeHandler>> } {
  const reg = new FakeRegistry();
  reg.models.push(tiny(), spec(), identity(), new FakeModel('tiny', '2', ['2', '1'], tinyMeta, () => ({})));
  reg.models[3]!.ready = true;
  const handler = createKServeHandler(reg, { serverVersion: '9.9.9', maxBodyBytes: 1 << 20 });
  const call = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const b = body === undefined ? Buffer.alloc(0) : Buffer.isBuffer(body) ? body : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
    const req: KServeRequest = { method, path, headers, body: b };
    return handler(req);
  };
  return { reg, call };
}

const bodyJson = (r: KServeResponse): any => JSON.parse(responseBody(r).toString('utf8'));

describe('health and metadata', () => {
  test('GET /v2 is the server metadata with the extensions implemented', async () => {
    const { call } = setup();
    const r = await call('GET', '/v2');
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('application/json');
    expect(bodyJson(r)).toEqual({ name: 'shoal', version: '9.9.9', extensions: ['binary_tensor_data', 'model_repository'] });
  });

  test('live and ready; ready is 503 while a model loads', async () => {
    const { reg, call } = setup();
    expect([(await call('GET', '/v2/health/live')).status, bodyJson(await call('GET', '/v2/health/live'))]).toEqual([200, { live: true }]);
    expect(bodyJson(await call('GET', '/v2/health/ready'))).toEqual({ ready: true });
    reg.models[0]!.ready = false;
    const r = await call('GET', '/v2/health/ready');
    expect([r.status, bodyJson(r)]).toEqual([503, { ready: false }]);
  });

  test('model metadata: datatypes in protocol names, dynamic dims as -1, versions', async () => {
    const { call } = setup();
    const r = await call('GET', '/v2/models/tiny');
    expect(r.status).toBe(200);
    expect(bodyJson(r)).toEqual({
      name: 'tiny', versions: ['1'], platform: 'onnxruntime_onnx',
      inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 4] }],
      outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 4] }, { name: 'sum', datatype: 'FP32', shape: [-1] }],
    });
    expect(bodyJson(await call('GET', '/v2/models/tiny/versions/2')).versions).toEqual(['2', '1']);
    expect(bodyJson(await call('GET', '/v2/models/identity')).inputs.map((i: { datatype: string }) => i.datatype))
      .toEqual(['BOOL', 'UINT8', 'UINT16', 'UINT32', 'UINT64', 'INT8', 'INT16', 'INT32', 'INT64', 'FP16', 'FP32', 'FP64', 'BYTES']);
  });

  test('model ready, per version; unknown model and version are 404 naming what exists', async () => {
    const { reg, call } = setup();
    expect(bodyJson(await call('GET', '/v2/models/tiny/ready'))).toEqual({ name: 'tiny', ready: true });
    reg.models[0]!.ready = false;
    const nr = await call('GET', '/v2/models/tiny/versions/1/ready');
    expect([nr.status, bodyJson(nr)]).toEqual([503, { name: 'tiny', ready: false }]);
    const u = await call('GET', '/v2/models/nope');
    expect(u.status).toBe(404);
    expect(bodyJson(u)).toEqual({ error: 'unknown model "nope"; models: tiny, mymodel, identity' });
    const v = await call('GET', '/v2/models/tiny/versions/7/ready');
    expect([v.status, bodyJson(v).error]).toEqual([404, 'model "tiny" has no version "7" (served versions: 1)']);
  });

  test('unknown paths are 404, wrong methods 405, bodies past the limit 413', async () => {
    const { call } = setup();
    const p = await call('GET', '/v2/modelz');
    expect([p.status, bodyJson(p).error]).toEqual([404, 'no Open Inference Protocol endpoint at GET /v2/modelz']);
    const m = await call('GET', '/v2/models/tiny/infer');
    expect([m.status, bodyJson(m).error]).toEqual([405, 'GET is not allowed on /v2/models/tiny/infer; use POST']);
    const big = await call('POST', '/v2/models/tiny/infer', Buffer.alloc((1 << 20) + 1));
    expect(big.status).toBe(413);
    expect(bodyJson(big).error).toMatch(/request body is 1048577 bytes, more than maxBodyBytes=1048576/);
  });
});

describe('inference with JSON tensors', () => {
  test('the spec example: id echoed, requested outputs only, row-major data', async () => {
    const { reg, call } = setup();
    const r = await call('POST', '/v2/models/tiny/infer', {
      id: '42',
      inputs: [{ name: 'x', shape: [2, 4], datatype: 'FP32', data: [1, 2, 3, 4, -1, -2, -3, -4] }],
      outputs: [{ name: 'sum' }],
    });
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('application/json');
    expect(bodyJson(r)).toEqual({
      model_name: 'tiny', model_version: '1', id: '42',
      outputs: [{ name: 'sum', datatype: 'FP32', shape: [2], data: [25.5, 4] }],
    });
    expect(reg.models[0]!.calls[0]!.outputs).toEqual(['sum']);
  });

  test('all outputs in model order when none are named; nested data is accepted; query strings ignored', async () => {
    const { call } = setup();
    const r = await call('POST', '/v2/models/tiny/versions/1/infer?x=1', { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [[1, 0, 0, 0]] }] });
    expect(r.status).toBe(200);
    const b = bodyJson(r);
    expect(b.id).toBeUndefined();
    expect(b.outputs.map((o: { name: string }) => o.name)).toEqual(['y', 'sum']);
    expect(b.outputs[0].data).toEqual([1.5, 0, 0, 0]); // relu([1,0,0,0]·W + B)
  });

  test('every datatype round-trips through JSON', async () => {
    const { call } = setup();
    const data: Record<string, unknown[]> = {
      bool: [true, false], uint8: [0, 255], uint16: [0, 65535], uint32: [0, 4294967295], uint64: [0, 2 ** 53 - 1],
      int8: [-128, 127], int16: [-32768, 32767], int32: [-2147483648, 2147483647], int64: [-(2 ** 53) + 1, 2 ** 53 - 1],
      float16: [1.5, -2], float32: [0.25, -1e30], float64: [Math.PI, -1e300], string: ['hello', 'wörld ✓'],
    };
    const r = await call('POST', '/v2/models/identity/infer', {
      inputs: TENSOR_TYPES.map((t) => ({ name: `in_${t}`, shape: [1, 2], datatype: TENSOR_TYPE_TO_KSERVE[t], data: data[t] })),
    });
    expect(r.status).toBe(200);
    // Every output, in the model's order: a dropped or reordered one fails here.
    expect(bodyJson(r).outputs).toEqual(TENSOR_TYPES.map((t) => ({
      name: `out_${t}`, datatype: TENSOR_TYPE_TO_KSERVE[t], shape: [1, 2], data: t === 'float32' ? [0.25, Math.fround(-1e30)] : data[t],
    })));
  });

  test('FP16 is packed as IEEE half precision', () => {
    expect(toHalf(1)).toBe(0x3c00);
    expect(toHalf(-2)).toBe(0xc000);
    expect(toHalf(65504)).toBe(0x7bff);
    expect(toHalf(1e6)).toBe(0x7c00);
    expect(fromHalf(toHalf(0.1))).toBeCloseTo(0.1, 3);
    expect(fromHalf(0x0001)).toBe(2 ** -24);
  });
});

describe('binary tensor data extension', () => {
  test('the spec example: binary input0, JSON input1, output0 binary by binary_data, output1 JSON', async () => {
    const { call } = setup();
    const header = Buffer.from(JSON.stringify({
      model_name: 'mymodel',
      inputs: [
        { name: 'input0', shape: [2, 2], datatype: 'UINT32', parameters: { binary_data_size: 16 } },
        { name: 'input1', shape: [3], datatype: 'BOOL', data: [true, false, true] },
      ],
      outputs: [{ name: 'output0', parameters: { binary_data: true } }, { name: 'output1' }],
    }));
    const raw = Buffer.from(Uint32Array.of(0, 1, 2, 3).buffer);
    const r = await call('POST', '/v2/models/mymodel/infer', Buffer.concat([header, raw]), {
      'Content-Type': 'application/octet-stream', 'Inference-Header-Content-Length': String(header.byteLength),
    });
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('application/octet-stream');
    const hl = Number(r.headers['inference-header-content-length']);
    const json = JSON.parse(responseBody(r).subarray(0, hl).toString());
    expect(json).toEqual({
      model_name: 'mymodel', model_version: '1',
      outputs: [
        { name: 'output0', datatype: 'UINT32', shape: [2, 2], parameters: { binary_data_size: 16 } },
        { name: 'output1', datatype: 'BOOL', shape: [3], data: [true, false, true] },
      ],
    });
    expect(responseBody(r).byteLength).toBe(hl + 16);
    expect(Array.from(new Uint32Array(new Uint8Array(responseBody(r).subarray(hl)).buffer))).toEqual([0, 1, 2, 3]);
  });

  test('binary_data_output returns every output as binary unless an output says otherwise; BYTES are length-prefixed', async () => {
    const { call } = setup();
    const strings = Buffer.concat(['ab', 'ü'].map((s) => {
      const b = Buffer.from(s);
      const len = Buffer.alloc(4);
      len.writeUInt32LE(b.byteLength);
      return Buffer.concat([len, b]);
    }));
    const inputs = TENSOR_TYPES.map((t) => (t === 'string'
      ? { name: 'in_string', shape: [1, 2], datatype: 'BYTES', parameters: { binary_data_size: strings.byteLength } }
      : { name: `in_${t}`, shape: [1, 2], datatype: TENSOR_TYPE_TO_KSERVE[t], data: t === 'bool' ? [true, true] : [1, 2] }));
    const header = Buffer.from(JSON.stringify({ inputs, parameters: { binary_data_output: true }, outputs: [{ name: 'out_string' }, { name: 'out_float32', parameters: { binary_data: false } }, { name: 'out_float16' }] }));
    const r = await call('POST', '/v2/models/identity/infer', Buffer.concat([header, strings]), { 'inference-header-content-length': String(header.byteLength) });
    expect(r.status).toBe(200);
    const hl = Number(r.headers['inference-header-content-length']);
    const json = JSON.parse(responseBody(r).subarray(0, hl).toString());
    expect(json.outputs).toEqual([
      { name: 'out_string', datatype: 'BYTES', shape: [1, 2], parameters: { binary_data_size: strings.byteLength } },
      { name: 'out_float32', datatype: 'FP32', shape: [1, 2], data: [1, 2] },
      { name: 'out_float16', datatype: 'FP16', shape: [1, 2], parameters: { binary_data_size: 4 } },
    ]);
    const bin = responseBody(r).subarray(hl);
    expect(bin.subarray(0, strings.byteLength).equals(strings)).toBe(true);
    expect([bin.readUInt16LE(strings.byteLength), bin.readUInt16LE(strings.byteLength + 2)]).toEqual([toHalf(1), toHalf(2)]);
  });

  test('FP16 and INT64 inputs in binary', async () => {
    const { reg, call } = setup();
    const inputs = TENSOR_TYPES.map((t) => {
      if (t === 'float16') return { name: 'in_float16', shape: [1, 2], datatype: 'FP16', parameters: { binary_data_size: 4 } };
      if (t === 'int64') return { name: 'in_int64', shape: [1, 2], datatype: 'INT64', parameters: { binary_data_size: 16 } };
      return { name: `in_${t}`, shape: [1, 2], datatype: TENSOR_TYPE_TO_KSERVE[t], data: t === 'bool' ? [false, true] : t === 'string' ? ['a', 'b'] : [3, 4] };
    });
    const header = Buffer.from(JSON.stringify({ inputs, outputs: [{ name: 'out_float16' }, { name: 'out_int64' }] }));
    const fp16 = Buffer.from(Uint16Array.of(toHalf(0.5), toHalf(-8)).buffer);
    const i64 = Buffer.from(BigInt64Array.of(-(2n ** 62n), 7n).buffer);
    // Binary data follows the order of the inputs in the JSON: in_int64 comes before in_float16.
    const r = await call('POST', '/v2/models/identity/infer', Buffer.concat([header, i64, fp16]), { 'inference-header-content-length': String(header.byteLength) });
    expect(r.status).toBe(200);
    expect(bodyJson(r).outputs.map((o: { data: unknown }) => o.data)).toEqual([[0.5, -8], [Number(-(2n ** 62n)), 7]]);
    const fed = reg.models[2]!.calls[0]!.feeds;
    expect(Array.from(fed.in_int64!.data as BigInt64Array)).toEqual([-(2n ** 62n), 7n]);
  });
});

describe('malformed requests get 400 with a message that says what is wrong', () => {
  const cases: Array<[string, unknown, number, RegExp]> = [
    ['wrong shape (non-batch dim)', { inputs: [{ name: 'x', shape: [1, 5], datatype: 'FP32', data: [1, 2, 3, 4, 5] }] }, 400, /^input "x" of model "tiny": expected \[batch,4\], got \[1,5\] \(dim 1 must be 4\)$/],
    ['wrong rank', { inputs: [{ name: 'x', shape: [4], datatype: 'FP32', data: [1, 2, 3, 4] }] }, 400, /^input "x" of model "tiny": expected rank 2 \[batch,4\], got rank 1 \[4\]$/],
    ['negative dim', { inputs: [{ name: 'x', shape: [-1, 4], datatype: 'FP32', data: [] }] }, 400, /^input "x" of model "tiny": shape\[0\] must be a non-negative integer, got -1$/],
    ['wrong datatype', { inputs: [{ name: 'x', shape: [1, 4], datatype: 'INT32', data: [1, 2, 3, 4] }] }, 400, /^input "x" of model "tiny": expected datatype FP32, got INT32$/],
    ['unknown datatype', { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FLOAT32', data: [1, 2, 3, 4] }] }, 400, /^input "x" of model "tiny": unknown datatype "FLOAT32"; expected one of BOOL, UINT8, .*, BYTES$/],
    ['data shorter than the shape', { inputs: [{ name: 'x', shape: [2, 4], datatype: 'FP32', data: [1, 2, 3, 4, 5, 6] }] }, 400, /^input "x" of model "tiny": shape \[2,4\] needs 8 elements, data has 6$/],
    ['data longer than the shape', { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4, 5] }] }, 400, /needs 4 elements, data has 5/],
    ['element of the wrong type', { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 'two', 3, 4] }] }, 400, /^input "x" of model "tiny": data\[1\] must be a finite number \(\|x\| <= 3.4028234663852886e\+38\) for datatype FP32, got "two"$/],
    ['unknown input', { inputs: [{ name: 'z', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] }, 400, /^unknown input "z" for model "tiny"; inputs are: x$/],
    ['no inputs', { inputs: [] }, 400, /"inputs" must be a non-empty array of input tensors \(model "tiny" takes x\)/],
    ['input twice', { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }, { name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] }, 400, /^input "x" of model "tiny" is given twice$/],
    ['no data', { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32' }] }, 400, /^input "x" of model "tiny": has neither "data" nor parameters.binary_data_size$/],
    ['unknown output', { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }], outputs: [{ name: 'logits' }] }, 400, /^unknown output "logits" for model "tiny"; outputs are: y, sum$/],
    ['binary_data not a boolean', { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }], outputs: [{ name: 'y', parameters: { binary_data: 'yes' } }] }, 400, /output "y": parameters.binary_data must be a boolean/],
    ['binary input without the header', { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', parameters: { binary_data_size: 16 } }] }, 400, /^input "x" of model "tiny": has parameters.binary_data_size but the request has no Inference-Header-Content-Length header$/],
    ['not JSON', '{"inputs": [', 400, /^request body is not valid JSON: /],
    ['id not a string', { id: 7, inputs: [] }, 400, /"id" must be a string, got 7/],
    ['zero batch', { inputs: [{ name: 'x', shape: [0, 4], datatype: 'FP32', data: [] }] }, 400, /^input "x" of model "tiny": expected \[batch,4\], got \[0,4\] \(dim 0 "batch" is dynamic and must be at least 1\)$/],
    ['"NaN" for a float', { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 'NaN', 4] }] }, 400, /^input "x" of model "tiny": data\[2\] must be a finite number .* for datatype FP32, got "NaN"$/],
    ['more elements than maxElements (defaults to maxBodyBytes)', { inputs: [{ name: 'x', shape: [1 << 20, 4], datatype: 'FP32', data: [] }] }, 400, /^input "x" of model "tiny": shape \[1048576,4\] has 4194304 elements, more than maxElements=1048576$/],
  ];
  for (const [what, body, status, message] of cases) {
    test(what, async () => {
      const { call } = setup();
      const r = await call('POST', '/v2/models/tiny/infer', body);
      expect(r.status).toBe(status);
      expect(r.headers['content-type']).toBe('application/json');
      expect(Object.keys(bodyJson(r))).toEqual(['error']);
      expect(bodyJson(r).error).toMatch(message);
    });
  }

  test('integers are range-checked per datatype, never wrapped', async () => {
    const { call } = setup();
    const inputs = TENSOR_TYPES.map((t) => ({ name: `in_${t}`, shape: [1, 2], datatype: TENSOR_TYPE_TO_KSERVE[t], data: t === 'bool' ? [true, 1] : t === 'string' ? ['a', 'b'] : t === 'uint8' ? [1, 256] : [1, 2] }));
    const r = await call('POST', '/v2/models/identity/infer', { inputs });
    expect([r.status, bodyJson(r).error]).toEqual([400, 'input "in_bool" of model "identity": data[1] must be true or false for datatype BOOL, got 1']);
    inputs[0]!.data = [true, false];
    const u = await call('POST', '/v2/models/identity/infer', { inputs });
    expect([u.status, bodyJson(u).error]).toEqual([400, 'input "in_uint8" of model "identity": data[1] must be an integer in [0, 255] for datatype UINT8, got 256']);
    inputs[1]!.data = [1, 2];
    inputs[6]!.data = [1.5, 2];
    const f = await call('POST', '/v2/models/identity/infer', { inputs });
    expect(bodyJson(f).error).toBe('input "in_int16" of model "identity": data[0] must be an integer for datatype INT16, got 1.5');
  });

  test('binary sizes that do not match the shape or the body', async () => {
    const { call } = setup();
    const send = (header: unknown, bin: Buffer, hl?: number) => {
      const h = Buffer.from(JSON.stringify(header));
      return call('POST', '/v2/models/mymodel/infer', Buffer.concat([h, bin]), { 'inference-header-content-length': String(hl ?? h.byteLength) });
    };
    const in1 = { name: 'input1', shape: [3], datatype: 'BOOL', data: [true, true, true] };
    const short = await send({ inputs: [{ name: 'input0', shape: [2, 2], datatype: 'UINT32', parameters: { binary_data_size: 12 } }, in1] }, Buffer.alloc(12));
    expect([short.status, bodyJson(short).error]).toEqual([400, 'input "input0" of model "mymodel": shape [2,2] of UINT32 needs 16 bytes (4 elements x 4), binary_data_size is 12']);
    const past = await send({ inputs: [{ name: 'input0', shape: [2, 2], datatype: 'UINT32', parameters: { binary_data_size: 16 } }, in1] }, Buffer.alloc(8));
    expect(bodyJson(past).error).toBe('input "input0" of model "mymodel": binary_data_size 16 at offset 0 runs past the 8 bytes of binary data in the body');
    const extra = await send({ inputs: [{ name: 'input0', shape: [2, 2], datatype: 'UINT32', parameters: { binary_data_size: 16 } }, in1] }, Buffer.alloc(20));
    expect(bodyJson(extra).error).toBe('binary_data_size of the inputs sums to 16 bytes but the body holds 20 bytes after the JSON header');
    const hl = await send({ inputs: [in1] }, Buffer.alloc(0), 10_000);
    expect(hl.status).toBe(400);
    expect(bodyJson(hl).error).toMatch(/Inference-Header-Content-Length is 10000 but the body has only \d+ bytes/);
    const both = await send({ inputs: [{ name: 'input0', shape: [2, 2], datatype: 'UINT32', data: [1, 2, 3, 4], parameters: { binary_data_size: 16 } }, in1] }, Buffer.alloc(16));
    expect(bodyJson(both).error).toBe('input "input0" of model "mymodel": has both "data" and parameters.binary_data_size; send one');
  });

  test('unknown model is 404, a model not ready 503, an overloaded model 503', async () => {
    const { reg, call } = setup();
    const body = { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] };
    const u = await call('POST', '/v2/models/resnet/infer', body);
    expect([u.status, bodyJson(u).error]).toEqual([404, 'unknown model "resnet"; models: tiny, mymodel, identity']);
    reg.models[0]!.ready = false;
    const nr = await call('POST', '/v2/models/tiny/infer', body);
    expect([nr.status, bodyJson(nr).error]).toEqual([503, 'model "tiny" version "1" is not ready']);
    reg.models[0]!.ready = true;
    reg.models[0]!.infer = async () => { throw new QueueFullError('model "tiny" queue full: pending=8, maxPending=8'); };
    const q = await call('POST', '/v2/models/tiny/infer', body);
    expect([q.status, bodyJson(q).error]).toEqual([503, 'model "tiny" queue full: pending=8, maxPending=8']);
  });
});

describe('model repository extension', () => {
  test('index lists every model with state; {"ready": true} filters', async () => {
    const { reg, call } = setup();
    reg.models[1]!.ready = false;
    const all = await call('POST', '/v2/repository/index');
    expect(all.status).toBe(200);
    expect(bodyJson(all)).toEqual([
      { name: 'tiny', version: '1', state: 'READY' }, { name: 'mymodel', version: '1', state: 'LOADING' },
      { name: 'identity', version: '1', state: 'READY' }, { name: 'tiny', version: '2', state: 'READY' },
    ]);
    const ready = await call('POST', '/v2/repository/index', { ready: true });
    expect(bodyJson(ready).map((e: { name: string }) => e.name)).toEqual(['tiny', 'identity', 'tiny']);
    const bad = await call('POST', '/v2/repository/index', { ready: 'yes' });
    expect([bad.status, bodyJson(bad).error]).toEqual([400, '"ready" must be a boolean, got "yes"']);
  });

  test('load and unload answer 200 with an empty body; errors carry the registry\'s message and status', async () => {
    const { reg, call } = setup();
    const l = await call('POST', '/v2/repository/models/tiny/load');
    expect([l.status, responseBody(l).byteLength]).toEqual([200, 0]);
    const u = await call('POST', '/v2/repository/models/tiny/unload', { parameters: { unload_dependents: false } });
    expect(u.status).toBe(200);
    expect([reg.loads, reg.unloads]).toEqual([['tiny'], ['tiny']]);
    const g = await call('POST', '/v2/repository/models/ghost/load');
    expect([g.status, bodyJson(g).error]).toEqual([404, 'model "ghost" is not in repository /models (models: tiny)']);
    const p = await call('POST', '/v2/repository/models/tiny/load', { parameters: [] });
    expect([p.status, bodyJson(p).error]).toEqual([400, '"parameters" must be an object']);
    const enc = await call('POST', '/v2/repository/models/a%2Fb/load');
    expect(reg.loads).toEqual(['tiny', 'a/b']);
    expect(enc.status).toBe(200);
  });
});

describe('request context', () => {
  test('each request\'s context reaches registry.get, so one handler serves requests with their own deadlines', async () => {
    const seen: unknown[] = [];
    const handle = createKServeHandler({
      list: () => [],
      get: (name, _version, context) => { seen.push([name, context]); return undefined; },
    });
    const a = await handle({ method: 'GET', path: '/v2/models/m', headers: {}, body: Buffer.alloc(0), context: { deadline: 1 } });
    const b = await handle({ method: 'GET', path: '/v2/models/m/ready', headers: {}, body: Buffer.alloc(0), context: { deadline: 2 } });
    expect([a.status, b.status]).toEqual([404, 404]);
    expect(seen).toEqual([['m', { deadline: 1 }], ['m', { deadline: 2 }]]);
  });
});
