/**
 * examples/ocr/app.ts on real worker processes: the ingress and the det, cls and rec deployments each run as
 * replicas, every model call crosses the cluster's data path, and the text read from the committed fixtures
 * must equal what they say (see examples/ocr/test/fixtures/README.md).
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Head } from '@shoal/head';
import { loadAppSpec } from '../packages/cli/src/main.ts';
import { startCluster, waitFor } from './helpers.ts';
import { EXPECTED_TEXT as EXPECTED } from '../examples/ocr/test/expected.ts';

const APP = resolve(import.meta.dirname, '../examples/ocr/app.ts');
const FIXTURES = resolve(import.meta.dirname, '../examples/ocr/test/fixtures');


interface Line { text: string; score: number; box: Array<[number, number]> }

let head: Head;

beforeAll(async () => {
  head = await startCluster({ workers: 2 });
  const spec = await loadAppSpec(APP, { name: 'ocr' });
  expect(spec.deployments.map((d) => [d.name, d.dependencies]).sort()).toEqual([['cls', []], ['det', []], ['ocr', ['det', 'cls', 'rec']], ['rec', []]]);
  await head.deploy(spec);
  await head.waitReady('ocr', 90_000);
}, 120_000);
afterAll(async () => { await head?.stop(); });

const post = async (body: Uint8Array): Promise<{ status: number; json: any }> => {
  const res = await fetch(`${head.httpAddress}/`, { method: 'POST', body, headers: { 'content-type': 'application/octet-stream' } });
  return { status: res.status, json: await res.json() };
};

describe('examples/ocr/app.ts on a cluster', () => {
  for (const [file, texts] of Object.entries(EXPECTED)) {
    it(`reads ${file} as ${JSON.stringify(texts)}`, async () => {
      const r = await post(readFileSync(resolve(FIXTURES, file)));
      expect(r.status).toBe(200);
      const lines = r.json.lines as Line[];
      expect(lines.map((l) => l.text)).toEqual(texts);
      for (const l of lines) {
        expect(l.score).toBeGreaterThan(0.9);
        expect(l.box).toHaveLength(4);
      }
    });
  }

  it('serves concurrent requests (batched on the model replicas) with the same answers', async () => {
    /** Model calls run and batches dispatched so far by each model deployment's infer batcher. */
    const totals = async (): Promise<Record<string, { items: number; batches: number }>> => {
      const replicas = (await head.stats()).workers.flatMap((w) => w.replicas);
      return Object.fromEntries(['det', 'cls', 'rec'].map((model) => {
        const counts = replicas.filter((r) => r.deployment === model).flatMap((r) => Object.entries(r.batch['infer']?.batchSizeCounts ?? {}));
        return [model, { items: counts.reduce((n, [size, k]) => n + Number(size) * k, 0), batches: counts.reduce((n, [, k]) => n + k, 0) }];
      }));
    };
    const files = Object.keys(EXPECTED);
    const before = await totals();
    const results = await Promise.all([...files, ...files].map(async (f) => ({ f, r: await post(readFileSync(resolve(FIXTURES, f))) })));
    for (const { f, r } of results) expect([f, r.status, (r.json.lines as Line[]).map((l) => l.text)]).toEqual([f, 200, EXPECTED[f]]);
    const after = await totals();
    const delta = (m: string, k: 'items' | 'batches'): number => after[m]![k] - before[m]![k];
    // One det call and one cls call per image (every fixture has text); requests shared runs: fewer batches than calls.
    expect([delta('det', 'items'), delta('cls', 'items')]).toEqual([2 * files.length, 2 * files.length]);
    expect(delta('rec', 'items')).toBeGreaterThanOrEqual(2 * files.length);
    const calls = ['det', 'cls', 'rec'].reduce((n, m) => n + delta(m, 'items'), 0);
    const batches = ['det', 'cls', 'rec'].reduce((n, m) => n + delta(m, 'batches'), 0);
    expect(batches).toBeLessThan(calls);
  });

  it('answers 400 with a message for bytes that are not an image, and usage on GET', async () => {
    const bad = await post(Buffer.from('not an image'));
    expect(bad.status).toBe(400);
    expect(bad.json.error).toMatch(/PNG|JPEG|image/i);
    const usage = await fetch(`${head.httpAddress}/`);
    expect(await usage.text()).toMatch(/POST a PNG or JPEG image/);
  });
});

describe('the Open Inference Protocol for every model of the app (det, cls, rec), next to its own route', () => {
  const v2 = (p: string, init?: RequestInit): Promise<Response> => fetch(`${head.httpAddress}/v2${p}`, init);
  const json = (body: unknown, headers: Record<string, string> = {}): RequestInit => ({ method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json', ...headers } });
  const clsInput = (n: number, fill = 0.5): { name: string; shape: number[]; datatype: string; data: number[] } => ({ name: 'x', shape: [n, 3, 48, 192], datatype: 'FP32', data: new Array<number>(n * 3 * 48 * 192).fill(fill) });

  it('answers server and model metadata and readiness for each model', async () => {
    expect((await v2('/health/ready')).status).toBe(200);
    expect((await v2('/health/live')).status).toBe(200);
    expect(await (await v2('')).json()).toMatchObject({ name: 'shoal', extensions: ['binary_tensor_data'] });
    for (const model of ['det', 'cls', 'rec']) {
      const meta = await (await v2(`/models/${model}`)).json() as { name: string; versions: string[]; platform: string; inputs: Array<{ name: string; datatype: string; shape: number[] }>; outputs: unknown[] };
      expect(meta).toMatchObject({ name: model, versions: ['1'], platform: 'onnxruntime_onnx' });
      expect(meta.inputs.map((i) => [i.name, i.datatype, i.shape.slice(0, 2)])).toEqual([['x', 'FP32', [-1, 3]]]);
      expect(meta.outputs.length).toBeGreaterThan(0);
      expect(await (await v2(`/models/${model}/ready`)).json()).toEqual({ name: model, ready: true });
    }
    // The app's own route still answers at /.
    expect(await (await fetch(`${head.httpAddress}/`)).text()).toMatch(/POST a PNG or JPEG image/);
  });

  it('infers with JSON and with binary tensors, with the same numbers', async () => {
    const res = await v2('/models/cls/infer', json({ id: 'r1', inputs: [clsInput(2)] }));
    expect(res.status).toBe(200);
    const out = await res.json() as { id: string; model_name: string; outputs: Array<{ name: string; shape: number[]; datatype: string; data: number[] }> };
    expect(out).toMatchObject({ id: 'r1', model_name: 'cls', model_version: '1' });
    const probs = out.outputs[0]!;
    expect([probs.shape, probs.datatype]).toEqual([[2, 2], 'FP32']);
    expect(probs.data[0]! + probs.data[1]!).toBeCloseTo(1, 4);

    const item = new Float32Array(3 * 48 * 192).fill(0.5);
    const header = Buffer.from(JSON.stringify({ inputs: [{ name: 'x', shape: [1, 3, 48, 192], datatype: 'FP32', parameters: { binary_data_size: item.byteLength } }], outputs: [{ name: probs.name, parameters: { binary_data: true } }] }));
    const bin = await v2('/models/cls/infer', { method: 'POST', body: Buffer.concat([header, Buffer.from(item.buffer)]), headers: { 'inference-header-content-length': String(header.byteLength), 'content-type': 'application/octet-stream' } });
    expect(bin.status).toBe(200);
    const raw = Buffer.from(await bin.arrayBuffer());
    const hlen = Number(bin.headers.get('inference-header-content-length'));
    const tail = raw.subarray(hlen);
    expect(tail.byteLength).toBe(8);
    const got = new Float32Array(tail.buffer.slice(tail.byteOffset, tail.byteOffset + 8));
    expect(got[0]).toBeCloseTo(probs.data[0]!, 5);
    expect(got[1]).toBeCloseTo(probs.data[1]!, 5);
  });

  it('refuses malformed requests with 400 or 404 naming the problem, never a 500 from onnxruntime', async () => {
    const cases: Array<[RequestInit, string, number, RegExp]> = [
      [json({ inputs: [{ ...clsInput(1), shape: [1, 4, 48, 192] }] }), '/models/cls/infer', 400, /x/],
      [json({ inputs: [{ ...clsInput(1), shape: [0, 3, 48, 192], data: [] }] }), '/models/cls/infer', 400, /x/],
      [json({ inputs: [{ ...clsInput(1), data: ['NaN', ...clsInput(1).data.slice(1)] }] }), '/models/cls/infer', 400, /finite|NaN/],
      [json({ inputs: [{ ...clsInput(1), shape: [100000, 3, 4800, 1920] }] }), '/models/cls/infer', 400, /element|maxElements|exceeds/],
      [json({ inputs: [{ ...clsInput(1), datatype: 'INT64' }] }), '/models/cls/infer', 400, /datatype|INT64/],
      [{ method: 'POST', body: '{"inputs": [', headers: { 'content-type': 'application/json' } }, '/models/cls/infer', 400, /JSON/],
      [json({ inputs: [clsInput(1)] }), '/models/nope/infer', 404, /unknown model "nope"; models: cls, det, rec/],
    ];
    // A body over the model deployment's maxRequestBytes (16 MiB by default) is refused before it is read whole.
    cases.push([{ method: 'POST', body: Buffer.alloc(17 * 1024 * 1024), headers: { 'content-type': 'application/octet-stream' } }, '/models/cls/infer', 413, /exceeds maxRequestBytes=16777216/]);
    for (const [init, path, status, message] of cases) {
      const res = await v2(path, init);
      const body = await res.json() as { error: string };
      expect([path, res.status]).toEqual([path, status]);
      expect(body.error).toMatch(message);
    }
  });

  it('answers 504 past x-shoal-timeout-ms, and a client that leaves cancels the request at the replica', async () => {
    const big = { name: 'x', shape: [1, 3, 960, 960], datatype: 'FP32', data: new Array<number>(3 * 960 * 960).fill(0.2) };
    const late = await v2('/models/det/infer', json({ inputs: [big] }, { 'x-shoal-timeout-ms': '1' }));
    expect(late.status).toBe(504);
    expect((await late.json() as { error: string }).error).toMatch(/deadline/);

    const detTotals = async (): Promise<{ submitted: number; cancelled: number }> => {
      const { workers } = await head.stats();
      const r = workers.flatMap((w) => w.replicas).find((x) => x.deployment === 'det' && x.state === 'RUNNING')!;
      return r.batch.infer!.totals;
    };
    // Binary bodies, so decoding is quick; three keep the replica busy, the fourth waits behind them and leaves.
    const pixels = new Float32Array(3 * 960 * 960).fill(0.2);
    const header = Buffer.from(JSON.stringify({ inputs: [{ name: 'x', shape: [1, 3, 960, 960], datatype: 'FP32', parameters: { binary_data_size: pixels.byteLength } }] }));
    const binary = (signal?: AbortSignal): RequestInit => ({ method: 'POST', body: Buffer.concat([header, Buffer.from(pixels.buffer)]), headers: { 'inference-header-content-length': String(header.byteLength) }, ...(signal ? { signal } : {}) });
    const before = await detTotals();
    const busy = Array.from({ length: 3 }, () => v2('/models/det/infer', binary()).then((r) => r.status));
    const ac = new AbortController();
    const leaving = v2('/models/det/infer', binary(ac.signal)).then((r) => r.status, () => 'aborted');
    await waitFor('all four to reach the replica', async () => (await detTotals()).submitted - before.submitted >= 4, 20_000);
    ac.abort();
    expect(await leaving).toBe('aborted');
    expect(await Promise.all(busy)).toEqual([200, 200, 200]);
    await waitFor('the cancellation to be counted', async () => (await detTotals()).cancelled - before.cancelled >= 1, 10_000);
    const after = await detTotals();
    expect(after.submitted - before.submitted).toBe(4);
    expect(after.cancelled - before.cancelled).toBe(1);
  });
});
