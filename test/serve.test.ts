/**
 * `shoal serve DIR` as a user runs it: a child process with real worker processes serving a model repository
 * generated into a temp directory, spoken to over the Open Inference Protocol (KServe v2) on the ingress.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTinyModel, tinyReference } from '@shoal/onnx';
import { isAlive, waitFor } from './helpers.ts';

const BIN = resolve(import.meta.dirname, '../packages/cli/bin/shoal.mjs');
const TOKEN = 'serve-test-token-0123456789';

let root: string;
let child: ChildProcessWithoutNullStreams;
let out = '';
let http = '';
let pids: number[] = [];
let control = '';

function put(rel: string, content: string | Uint8Array): void {
  const path = join(root, rel);
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, content);
}

async function call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; headers: Headers; json: any; raw: Buffer }> {
  const payload = body === undefined ? undefined : Buffer.isBuffer(body) ? body : JSON.stringify(body);
  const res = await fetch(`${http}${path}`, { method, headers, ...(payload === undefined ? {} : { body: payload }) });
  const raw = Buffer.from(await res.arrayBuffer());
  let json: unknown;
  try { json = JSON.parse(raw.toString()); } catch { json = undefined; }
  return { status: res.status, headers: res.headers, json, raw };
}

const auth = { authorization: `Bearer ${TOKEN}` };

/** Requests run and batches dispatched so far by the infer batchers of model `model`'s replicas (the head's /api/stats). */
async function batchTotals(model: string): Promise<{ items: number; batches: number }> {
  const stats = await (await fetch(`${control}/api/stats`, { headers: auth })).json() as { workers: Array<{ replicas: Array<{ deployment: string; batch: Record<string, { batchSizeCounts: Record<string, number> }> }> }> };
  const counts = stats.workers.flatMap((w) => w.replicas).filter((r) => r.deployment === model).flatMap((r) => Object.entries(r.batch['infer']?.batchSizeCounts ?? {}));
  return { items: counts.reduce((n, [size, k]) => n + Number(size) * k, 0), batches: counts.reduce((n, [, k]) => n + k, 0) };
}
const infer = (model: string, inputs: unknown[], extra: Record<string, unknown> = {}) => call('POST', `/v2/models/${model}/infer`, { inputs, ...extra });

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'shoal-serve-'));
  put('m/1/model.onnx', buildTinyModel());
  put('m/config.json', JSON.stringify({ batching: { maxBatchSize: 8, maxWaitMs: 2 }, threads: { sessions: 1, intraOp: 1 }, resources: { cpus: 0.5 } }));
  put('broken/1/model.onnx', 'this is not an onnx model');
  put('broken/config.json', JSON.stringify({ resources: { cpus: 0.5 } }));
  child = spawn(process.execPath, [BIN, 'serve', root, '--port', '0', '--http-port', '0', '--workers', '2', '--token', TOKEN], {
    env: { ...process.env, SHOAL_LOG_LEVEL: 'warn' }, stdio: 'pipe',
  });
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { out += d.toString(); });
  await waitFor('shoal serve to report the repository served', () => /served: http:\/\/\S+\/v2/.test(out) || child.exitCode !== null, 60_000);
  const m = /served: (http:\/\/[\d.:]+)\/v2/.exec(out);
  if (m === null) throw new Error(`shoal serve did not start:\n${out}`);
  http = m[1]!;
  const cluster = /cluster:\s+(ws:\/\/[\d.:]+)/.exec(out)![1]!;
  control = cluster.replace('ws', 'http');
  const st = await fetch(`${control}/api/status`, { headers: { authorization: `Bearer ${TOKEN}` } });
  pids = (await st.json() as { workers: Array<{ pid: number }> }).workers.map((w) => w.pid);
}, 90_000);

afterAll(async () => {
  if (child !== undefined && child.exitCode === null) {
    child.kill('SIGINT');
    await new Promise((r) => child.once('exit', r));
  }
  rmSync(root, { recursive: true, force: true });
});

describe('shoal serve DIR', () => {
  it('reports a broken model at start and serves the good one', () => {
    expect(out).toMatch(/model "broken" is UNAVAILABLE: .*onnxruntime failed to load the model/);
    expect(out).toMatch(/models ready: m\b/);
  });

  it('health, server and model metadata', async () => {
    expect(await call('GET', '/v2/health/live')).toMatchObject({ status: 200, json: { live: true } });
    expect(await call('GET', '/v2/health/ready')).toMatchObject({ status: 200, json: { ready: true } });
    expect((await call('GET', '/v2')).json).toEqual({ name: 'shoal', version: '0.1.0', extensions: ['binary_tensor_data', 'model_repository'] });
    expect((await call('GET', '/v2/models/m')).json).toEqual({
      name: 'm', versions: ['1'], platform: 'onnxruntime_onnx',
      inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 4] }],
      outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 4] }, { name: 'sum', datatype: 'FP32', shape: [-1] }],
    });
    expect(await call('GET', '/v2/models/m/ready')).toMatchObject({ status: 200, json: { name: 'm', ready: true } });
    expect(await call('GET', '/v2/models/m/versions/1/ready')).toMatchObject({ status: 200 });
  });

  it('JSON inference, concurrent requests batched on the replica', async () => {
    const rows = (k: number): number[] => [k, -k, 2 * k, 0.5];
    const before = await batchTotals('m');
    const results = await Promise.all(Array.from({ length: 24 }, (_, k) => infer('m', [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: rows(k) }], { id: `r${k}` })));
    results.forEach((r, k) => {
      expect(r.status).toBe(200);
      const ref = tinyReference(rows(k));
      expect(r.json.id).toBe(`r${k}`);
      expect(r.json.model_name).toBe('m');
      expect(r.json.model_version).toBe('1');
      expect(r.json.outputs[0]).toEqual({ name: 'y', datatype: 'FP32', shape: [1, 4], data: Array.from(ref.y) });
      expect(r.json.outputs[1]).toEqual({ name: 'sum', datatype: 'FP32', shape: [1], data: Array.from(ref.sum) });
    });
    // Each request ran once, and some runs carried more than one request: fewer batches than requests.
    const after = await batchTotals('m');
    expect(after.items - before.items).toBe(24);
    expect(after.batches - before.batches).toBeLessThan(24);
    const only = await infer('m', [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: rows(3) }], { outputs: [{ name: 'sum' }] });
    expect(only.json.outputs.map((o: { name: string }) => o.name)).toEqual(['sum']);
  });

  it('binary tensor extension in and out', async () => {
    const x = new Float32Array([1, 2, 3, 4, -1, -2, -3, -4]);
    const header = Buffer.from(JSON.stringify({
      inputs: [{ name: 'x', shape: [2, 4], datatype: 'FP32', parameters: { binary_data_size: x.byteLength } }],
      outputs: [{ name: 'y', parameters: { binary_data: true } }],
    }));
    const body = Buffer.concat([header, Buffer.from(x.buffer)]);
    const r = await call('POST', '/v2/models/m/infer', body, { 'inference-header-content-length': String(header.byteLength), 'content-type': 'application/octet-stream' });
    expect(r.status).toBe(200);
    const hl = Number(r.headers.get('inference-header-content-length'));
    const head = JSON.parse(r.raw.subarray(0, hl).toString());
    expect(head.outputs).toEqual([{ name: 'y', datatype: 'FP32', shape: [2, 4], parameters: { binary_data_size: 32 } }]);
    const y = new Float32Array(r.raw.buffer.slice(r.raw.byteOffset + hl, r.raw.byteOffset + hl + 32));
    expect(Array.from(y)).toEqual(Array.from(tinyReference(x).y));
  });

  it('malformed requests get 400 or 404 with a message that says what is wrong', async () => {
    const shape = await infer('m', [{ name: 'x', shape: [2, 3], datatype: 'FP32', data: [1, 2, 3, 4, 5, 6] }]);
    expect([shape.status, shape.json.error]).toEqual([400, 'input "x" of model "m": expected [batch,4], got [2,3] (dim 1 must be 4)']);
    const dtype = await infer('m', [{ name: 'x', shape: [1, 4], datatype: 'INT32', data: [1, 2, 3, 4] }]);
    expect(dtype.status).toBe(400);
    expect(dtype.json.error).toMatch(/input "x".*FP32.*INT32|input "x".*INT32.*FP32/);
    const length = await infer('m', [{ name: 'x', shape: [2, 4], datatype: 'FP32', data: [1, 2, 3] }]);
    expect(length.status).toBe(400);
    expect(length.json.error).toMatch(/input "x".*8.*3|input "x".*3.*8/);
    const unknown = await infer('nope', [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }]);
    expect([unknown.status, unknown.json.error]).toEqual([404, 'unknown model "nope"; models: broken, m']);
    const notJson = await call('POST', '/v2/models/m/infer', Buffer.from('{"inputs": ['));
    expect(notJson.status).toBe(400);
    expect(typeof notJson.json.error).toBe('string');
  });

  it('repository index, unload and load (a new version is picked up)', async () => {
    const idx = await call('POST', '/v2/repository/index');
    expect(idx.json.map((e: { name: string; version?: string; state: string }) => [e.name, e.version, e.state])).toEqual([['broken', '1', 'UNAVAILABLE'], ['m', '1', 'READY']]);

    // load and unload are control calls: refused without the cluster token, nothing changes.
    const refused = await call('POST', '/v2/repository/models/m/unload');
    expect([refused.status, refused.json.error]).toEqual([401, 'POST /v2/repository/models/m/unload is a control call: send "Authorization: Bearer <cluster token>"']);
    expect((await call('POST', '/v2/repository/models/m/unload', undefined, { authorization: 'Bearer wrong' })).status).toBe(401);
    expect((await call('GET', '/v2/models/m/ready')).status).toBe(200);
    expect((await call('POST', '/v2/repository/models/m/unload', undefined, auth)).status).toBe(200);
    const gone = await infer('m', [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }]);
    expect([gone.status, gone.json.error]).toEqual([404, 'model "m" is not loaded (UNAVAILABLE: unloaded); POST /v2/repository/models/m/load loads it']);
    expect((await call('GET', '/v2/health/ready')).status).toBe(200);

    put('m/2/model.onnx', buildTinyModel());
    expect((await call('POST', '/v2/repository/models/m/load', undefined, auth)).status).toBe(200);
    expect((await call('GET', '/v2/models/m')).json.versions).toEqual(['2']);
    const ok = await infer('m', [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 0, 0, 0] }]);
    expect([ok.status, ok.json.model_version]).toEqual([200, '2']);

    const nf = await call('POST', '/v2/repository/models/nope/load', undefined, auth);
    expect(nf.status).toBe(404);
    const br = await call('POST', '/v2/repository/models/broken/load', undefined, auth);
    expect(br.status).toBe(400);
    expect(br.json.error).toMatch(/failed to load model "broken": version 1: .*onnxruntime failed to load the model/);
  });

  it('Ctrl-C stops the head and its workers', async () => {
    expect(pids).toHaveLength(2);
    child.kill('SIGINT');
    await new Promise((r) => child.once('exit', r));
    await waitFor('workers to exit', () => pids.every((p) => !isAlive(p)), 10_000);
  });
});
