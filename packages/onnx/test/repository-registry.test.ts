/** End to end in one process: a model repository on disk, real onnxruntime pools, and the KServe v2 handler. */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { TENSOR_TYPE_TO_KSERVE, createKServeHandler, responseBody, toHalf, type KServeHandler, type KServeResponse } from '@shoal/oip';
import { IDENTITY_TYPES, RepositoryRegistry, buildIdentityModel, buildTinyModel, tinyReference } from '../src/index.ts';

let root: string;
let registry: RepositoryRegistry;
let handle: KServeHandler;
const quiet = { warn: () => undefined };

function put(rel: string, content: string | Uint8Array): void {
  const path = join(root, rel);
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, content);
}

const call = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
  handle({ method, path, headers, body: body === undefined ? Buffer.alloc(0) : Buffer.isBuffer(body) ? body : Buffer.from(JSON.stringify(body)) });
const json = (r: KServeResponse): any => JSON.parse(responseBody(r).toString());

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'shoal-kserve-'));
  put('tiny/1/model.onnx', buildTinyModel());
  put('tiny/2/model.onnx', buildTinyModel());
  put('tiny/config.json', JSON.stringify({ versionPolicy: { latest: 2 }, threads: { sessions: 1, intraOp: 1 } }));
  put('identity/1/model.onnx', buildIdentityModel('w'));
  put('identity/config.json', JSON.stringify({ warmup: { dims: { w: 3 } } }));
  put('broken/1/model.onnx', 'this is not an onnx model');
  put('noversions/README', 'x');
  registry = await RepositoryRegistry.open({ root, pool: { logger: quiet } });
  handle = createKServeHandler(registry);
}, 60_000);
afterAll(async () => {
  await registry?.close();
  rmSync(root, { recursive: true, force: true });
});

describe('RepositoryRegistry + KServe handler', () => {
  test('the index shows every model, its versions and why the bad ones are unavailable', async () => {
    const r = await call('POST', '/v2/repository/index');
    expect(r.status).toBe(200);
    const idx = json(r) as Array<{ name: string; version?: string; state: string; reason?: string }>;
    expect(idx.map((e) => [e.name, e.version, e.state])).toEqual([
      ['broken', '1', 'UNAVAILABLE'], ['identity', '1', 'READY'], ['noversions', undefined, 'UNAVAILABLE'], ['tiny', '2', 'READY'], ['tiny', '1', 'READY'],
    ]);
    expect(idx[0]!.reason).toMatch(/onnxruntime failed to load the model/);
    expect(idx[2]!.reason).toMatch(/has no version directories \(found only: README\)/);
    // Server readiness ignores models that failed to load, as Triton does.
    expect((await call('GET', '/v2/health/ready')).status).toBe(200);
  });

  test('metadata comes from the model file', async () => {
    const r = json(await call('GET', '/v2/models/tiny'));
    expect(r).toEqual({
      name: 'tiny', versions: ['2', '1'], platform: 'onnxruntime_onnx',
      inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 4] }],
      outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 4] }, { name: 'sum', datatype: 'FP32', shape: [-1] }],
    });
    const b = await call('GET', '/v2/models/broken');
    expect([b.status, json(b).error]).toEqual([503, 'model "broken" version "1" is not ready']);
    const n = await call('GET', '/v2/models/noversions');
    expect(n.status).toBe(404);
    expect(json(n).error).toMatch(/model "noversions" is not loaded \(UNAVAILABLE: model "noversions" in .+ has no version directories/);
  });

  test('JSON inference on a real session, latest and pinned versions', async () => {
    const x = [1, 2, 3, 4, -1, -2, -3, -4];
    const ref = tinyReference(x);
    for (const path of ['/v2/models/tiny/infer', '/v2/models/tiny/versions/1/infer']) {
      const r = await call('POST', path, { id: 'a', inputs: [{ name: 'x', shape: [2, 4], datatype: 'FP32', data: x }] });
      expect(r.status).toBe(200);
      const b = json(r);
      expect(b.model_version).toBe(path.includes('versions/1') ? '1' : '2');
      expect(b.outputs[0]).toEqual({ name: 'y', datatype: 'FP32', shape: [2, 4], data: Array.from(ref.y) });
      expect(b.outputs[1].data).toEqual(Array.from(ref.sum));
    }
    const bad = await call('POST', '/v2/models/tiny/infer', { inputs: [{ name: 'x', shape: [2, 3], datatype: 'FP32', data: [1, 2, 3, 4, 5, 6] }] });
    expect([bad.status, json(bad).error]).toEqual([400, 'input "x" of model "tiny": expected [batch,4], got [2,3] (dim 1 must be 4)']);
  });

  test('every datatype through onnxruntime and back, JSON in and binary out', async () => {
    const data: Record<string, unknown[]> = {
      bool: [true, false, true], uint8: [0, 7, 255], uint16: [1, 2, 65535], uint32: [1, 2, 4294967295], uint64: [0, 1, 2 ** 40],
      int8: [-128, 0, 127], int16: [-1, 0, 1], int32: [-5, 6, 7], int64: [-(2 ** 40), 0, 2 ** 40], float16: [0.5, -2, 1024],
      float32: [0.25, -1.5, 3], float64: [Math.E, -0.1, 1e300], string: ['', 'a b', '日本'],
    };
    const inputs = IDENTITY_TYPES.map((t) => ({ name: `in_${t}`, shape: [1, 3], datatype: TENSOR_TYPE_TO_KSERVE[t], data: data[t] }));
    const r = await call('POST', '/v2/models/identity/infer', { inputs });
    expect(r.status).toBe(200);
    // Every output, in the model's order, each with its own datatype and the values sent in.
    expect(json(r).outputs).toEqual(IDENTITY_TYPES.map((t) => ({ name: `out_${t}`, datatype: TENSOR_TYPE_TO_KSERVE[t], shape: [1, 3], data: data[t] })));

    const bin = await call('POST', '/v2/models/identity/infer', { inputs, parameters: { binary_data_output: true }, outputs: [{ name: 'out_float16' }, { name: 'out_string' }, { name: 'out_int64' }] });
    const hl = Number(bin.headers['inference-header-content-length']);
    const head = JSON.parse(responseBody(bin).subarray(0, hl).toString());
    expect(head.outputs.map((o: { parameters: { binary_data_size: number } }) => o.parameters.binary_data_size)).toEqual([6, 4 * 3 + 0 + 3 + 6, 24]);
    const rest = responseBody(bin).subarray(hl);
    expect([rest.readUInt16LE(0), rest.readUInt16LE(2), rest.readUInt16LE(4)]).toEqual([toHalf(0.5), toHalf(-2), toHalf(1024)]);
    expect(rest.readBigInt64LE(6 + 21)).toBe(-(2n ** 40n));
  });

  test('unload stops serving; load brings the model back and picks up new versions', async () => {
    const u = await call('POST', '/v2/repository/models/tiny/unload');
    expect(u.status).toBe(200);
    const gone = await call('POST', '/v2/models/tiny/infer', { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] });
    expect([gone.status, json(gone).error]).toEqual([404, 'model "tiny" is not loaded (UNAVAILABLE: unloaded); POST /v2/repository/models/tiny/load loads it']);
    expect((await call('GET', '/v2/models/tiny/ready')).status).toBe(404);
    put('tiny/3/model.onnx', buildTinyModel());
    const l = await call('POST', '/v2/repository/models/tiny/load');
    expect(l.status).toBe(200);
    expect(json(await call('GET', '/v2/models/tiny')).versions).toEqual(['3', '2']);
    const ok = await call('POST', '/v2/models/tiny/infer', { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 0, 0, 0] }] });
    expect([ok.status, json(ok).model_version]).toEqual([200, '3']);
  });

  test('load errors: unknown model 404, a model that fails to load 400 with the reason', async () => {
    const nf = await call('POST', '/v2/repository/models/nope/load');
    expect([nf.status, json(nf).error]).toEqual([404, expect.stringMatching(/model "nope" is not in repository .+ \(models: broken, identity, noversions, tiny\)/)]);
    const br = await call('POST', '/v2/repository/models/broken/load');
    expect(br.status).toBe(400);
    expect(json(br).error).toMatch(/failed to load model "broken": version 1: onnxruntime failed to load the model/);
    const un = await call('POST', '/v2/repository/models/nope/unload');
    expect([un.status, json(un).error]).toEqual([404, 'unknown model "nope"; models: broken, identity, noversions, tiny']);
  });
});
