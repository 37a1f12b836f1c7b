/** The handler over fixedModelRegistry: a deployment given by metadata() and infer() alone, no backend package. */
import { describe, expect, test } from 'vitest';
import { InvalidOptionError } from '@shoal/core';
import { createKServeHandler, fixedModelRegistry, responseBody, type Feeds, type KServeResponse, type ModelMetadata } from '../src/index.ts';

const meta: ModelMetadata = { inputs: [{ name: 'x', type: 'float32', shape: ['batch', 2] }], outputs: [{ name: 'y', type: 'float32', shape: ['batch', 2] }] };
const json = (r: KServeResponse): any => JSON.parse(responseBody(r).toString());

function setup(metadata: () => Promise<ModelMetadata>) {
  const seen: Feeds[] = [];
  const registry = fixedModelRegistry([{
    name: 'double', metadata,
    infer: async (feeds) => {
      seen.push(feeds);
      const x = feeds.x!;
      return { y: { type: 'float32', dims: x.dims, data: (x.data as Float32Array).map((v) => 2 * v) } };
    },
  }]);
  const handle = createKServeHandler(registry);
  const call = (method: string, path: string, body?: unknown) => handle({ method, path, headers: {}, body: body === undefined ? Buffer.alloc(0) : Buffer.from(JSON.stringify(body)) });
  return { call, seen };
}

describe('fixedModelRegistry', () => {
  test('serves metadata and inference; no model_repository extension', async () => {
    const { call, seen } = setup(async () => meta);
    expect(json(await call('GET', '/v2')).extensions).toEqual(['binary_tensor_data']);
    expect(json(await call('GET', '/v2/models/double'))).toEqual({
      name: 'double', versions: ['1'], platform: 'shoal',
      inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 2] }], outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 2] }],
    });
    const r = await call('POST', '/v2/models/double/versions/1/infer', { inputs: [{ name: 'x', shape: [1, 2], datatype: 'FP32', data: [1, 2] }] });
    expect([r.status, json(r).outputs[0].data]).toEqual([200, [2, 4]]);
    expect(json(await call('POST', '/v2/repository/index'))).toEqual([{ name: 'double', version: '1', state: 'READY' }]);
    const load = await call('POST', '/v2/repository/models/double/load');
    expect([load.status, json(load).error]).toEqual([404, 'no Open Inference Protocol endpoint at POST /v2/repository/models/double/load: this server serves a fixed set of models and does not load them']);
    expect(seen).toHaveLength(1);
  });

  test('bad requests are refused before infer() runs', async () => {
    const { call, seen } = setup(async () => meta);
    const r = await call('POST', '/v2/models/double/infer', { inputs: [{ name: 'x', shape: [0, 2], datatype: 'FP32', data: [] }] });
    expect([r.status, json(r).error]).toEqual([400, 'input "x" of model "double": expected [batch,2], got [0,2] (dim 0 "batch" is dynamic and must be at least 1)']);
    expect(seen).toHaveLength(0);
  });

  test('while metadata() fails the model is UNAVAILABLE with the reason, and 503; it is asked again', async () => {
    let up = false;
    let asked = 0;
    const { call } = setup(async () => { asked++; if (!up) throw new Error('deployment "double" is starting'); return meta; });
    expect(json(await call('POST', '/v2/repository/index'))).toEqual([{ name: 'double', version: '1', state: 'UNAVAILABLE', reason: 'deployment "double" is starting' }]);
    const r = await call('POST', '/v2/models/double/infer', { inputs: [{ name: 'x', shape: [1, 2], datatype: 'FP32', data: [1, 2] }] });
    expect([r.status, json(r).error]).toEqual([503, 'model "double" version "1" is not ready']);
    up = true;
    expect((await call('GET', '/v2/models/double/ready')).status).toBe(200);
    await call('GET', '/v2/models/double/ready');
    expect(asked).toBe(3); // cached once it succeeded
  });

  test('model names are checked once, at construction', () => {
    const m = { name: 'a', metadata: () => meta, infer: async (f: Feeds) => f };
    expect(() => fixedModelRegistry([m, m])).toThrow(InvalidOptionError);
    expect(() => fixedModelRegistry([m, m])).toThrow(/models\[1\]\.name/);
    expect(() => fixedModelRegistry([{ ...m, name: '' }])).toThrow(/models\[0\]\.name: must be a non-empty string/);
  });
});
