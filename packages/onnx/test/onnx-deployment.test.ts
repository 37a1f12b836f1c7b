import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { BadRequestError, IllegalStateError, InvalidOptionError, ShapeMismatchError, buildAppSpec, deployment, isBatched } from '@shoal/core';
import { tensorCopies, tensorCopiesBetween } from '@shoal/oip';
import { buildIdentityModel, buildTinyModel, defaultModelName, encodeModelBytes, onnxDeployment, onnxModel, tinyReference, type Feeds, type TensorData } from '../src/index.ts';

let dir: string;
let tinyPath: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'shoal-onnx-dep-'));
  mkdirSync(join(dir, 'tiny', '3'), { recursive: true });
  tinyPath = join(dir, 'tiny', '3', 'model.onnx');
  writeFileSync(tinyPath, buildTinyModel());
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const rows = (n: number, start = 0): Feeds => ({ x: { type: 'float32', dims: [n, 4], data: Float32Array.from({ length: n * 4 }, (_, i) => ((start + i) % 9) - 4) } });
const values = (t: TensorData | undefined): number[] => Array.from(t!.data as Float32Array);

describe('onnxModel()', () => {
  test('gives a class that deployment() accepts, named after the repository model, with the model methods', () => {
    const Tiny = onnxModel({ model: tinyPath, warmup: false });
    expect(Tiny.name).toBe('tiny');
    const d = deployment(Tiny, { numReplicas: 2 });
    expect(d.kind).toBe('class');
    expect(d.options.name).toBe('tiny');
    const spec = buildAppSpec(d.bind(), { name: 'app', routePrefix: null, modulePath: '/x.ts', exportName: 'default' });
    // infer is an instance field (a batched method when batching is on); handles reach it all the same.
    expect(spec.deployments[0]!.methods).toEqual(['inferBatch', 'metadata', 'stats']);
    expect(defaultModelName('/a/b/resnet-50.onnx')).toBe('resnet-50');
    expect(defaultModelName(new Uint8Array(1))).toBe('OnnxModel');
    expect(onnxModel({ model: buildTinyModel(), name: 'bytes' }).name).toBe('bytes');
  });

  test('options are checked when the class is made', () => {
    expect(() => onnxModel({ model: tinyPath, threads: 0 })).toThrow(InvalidOptionError);
    expect(() => onnxModel({ model: tinyPath, batching: { maxBatchSize: 0 } })).toThrow(/invalid option batching\.maxBatchSize/);
    expect(() => onnxModel({ model: tinyPath, batching: { shapeOf: () => '' } as never })).toThrow(/batching\.shapeOf: is set by onnxModel/);
    expect(() => onnxModel({ model: tinyPath, batching: 3 as never })).toThrow(/invalid option batching: must be a boolean or an object/);
    expect(() => onnxDeployment({ model: tinyPath, numReplicas: -1 })).toThrow(/deployment\.numReplicas/);
  });

  test('onnxDeployment() splits model and deployment options', () => {
    const d = onnxDeployment({ name: 'mlp', model: tinyPath, numReplicas: 3, resources: { cpus: 0.5 }, threads: 2, batching: { maxBatchSize: 4 } });
    expect(d.options).toMatchObject({ name: 'mlp', numReplicas: 3, resources: { cpus: 0.5 } });
    expect(d.factory.name).toBe('mlp');
  });

  test('with batching, concurrent infer() calls share stacked runs; stats report batches and event-loop delay', async () => {
    const m = new (onnxModel({ model: tinyPath, threads: 1, intraOpThreads: 1, batching: { maxBatchSize: 8, maxWaitMs: 20 }, eventLoopResolutionMs: 1 }))();
    expect(isBatched(m.infer)).toBe(true);
    await m.init();
    try {
      const inputs = Array.from({ length: 8 }, (_, k) => rows(1, k));
      const want = inputs.map((f) => Array.from(tinyReference(f.x!.data as Float32Array).y));
      const outs = await Promise.all(inputs.map((f) => m.infer(f)));
      outs.forEach((o, k) => expect(values(o.y)).toEqual(want[k]));
      // Block this event loop for 30 ms on purpose: the gauge (1 ms ticks) must see one delay of at least ~29 ms.
      await new Promise((r) => setTimeout(r, 5)); // the gauge's first tick only sets its baseline
      const until = performance.now() + 30;
      while (performance.now() < until) { /* spin */ }
      await new Promise((r) => setTimeout(r, 5));
      const st = m.stats(true);
      expect(st.runs).toBe(1);
      expect(st.batching?.batchSizeCounts).toEqual({ 8: 1 });
      expect(st.eventLoopDelay.count).toBeGreaterThan(0);
      expect(st.eventLoopDelay.maxMs).toBeGreaterThanOrEqual(25);
      expect(st.eventLoopDelay.p50Ms).toBeLessThanOrEqual(st.eventLoopDelay.p99Ms);
      expect(st.eventLoopDelay.p99Ms).toBeLessThanOrEqual(st.eventLoopDelay.maxMs);
      // stats(true) started a new window: nothing sampled in it yet.
      expect(m.stats().eventLoopDelay).toEqual({ count: 0, meanMs: 0, p50Ms: 0, p99Ms: 0, maxMs: 0 });
      // Different non-batch dims never share a run: the bad one fails alone.
      const [ok, bad] = await Promise.allSettled([m.infer(rows(1)), m.infer({ x: { type: 'float32', dims: [1, 3], data: new Float32Array(3) } })]);
      expect(ok.status).toBe('fulfilled');
      expect((bad as PromiseRejectedResult).reason).toBeInstanceOf(ShapeMismatchError);
    } finally {
      await m.shutdown();
    }
  });

  test('init loads and warms up; infer runs one request; shutdown closes', async () => {
    const Tiny = onnxModel({ model: tinyPath, threads: 1, intraOpThreads: 1 });
    const m = new Tiny();
    await expect(m.infer(rows(1))).rejects.toBeInstanceOf(IllegalStateError);
    await m.init();
    expect((await m.metadata()).inputs[0]).toEqual({ name: 'x', type: 'float32', shape: ['batch', 4] });
    m.checkHealth();
    const x = rows(2);
    const want = tinyReference(x.x!.data as Float32Array);
    const out = await m.infer(x);
    expect(values(out.y)).toEqual(Array.from(want.y));
    await expect(m.infer({ x: { type: 'float32', dims: [1, 3], data: new Float32Array(3) } })).rejects.toBeInstanceOf(ShapeMismatchError);
    await m.shutdown();
    await expect(m.infer(rows(1))).rejects.toThrow(/it is closed/);
  });

  test('init rejects when the model cannot load', async () => {
    const Missing = onnxModel({ model: join(dir, 'missing.onnx') });
    await expect(new Missing().init()).rejects.toThrow(/failed to load the model/);
  });

  test('inferBatch stacks compatible requests into one run, splits results, and fails only the bad ones', async () => {
    const m = new (onnxModel({ model: tinyPath, threads: 2, intraOpThreads: 1 }))();
    await m.init();
    try {
      const items = [rows(1, 0), rows(3, 5), { z: rows(1).x! }, rows(2, 11), { x: { type: 'float32', dims: [1, 5], data: new Float32Array(5) } as TensorData }];
      const want = items.map((f) => (f.x?.dims[1] === 4 ? tinyReference(f.x.data as Float32Array) : undefined));
      const before = m.stats().runs;
      const copiesBefore = tensorCopies();
      const out = await m.inferBatch(items);
      expect(m.stats().runs - before).toBe(1); // items 0, 1 and 3 in one stacked run
      // Stacking copies each item's rows once (6 rows of 4 floats); onnxruntime-node copies the run's two outputs
      // (y: 24 floats, sum: 6); splitting them back copies nothing: every item's outputs are views of the run's.
      expect(tensorCopiesBetween(copiesBefore, m.stats().tensorCopies)).toEqual({
        input: { count: 3, bytes: 96, sites: { 'onnx.stack': { count: 3, bytes: 96 } } },
        output: { count: 2, bytes: 120, sites: { 'ort.binding': { count: 2, bytes: 120 } } },
      });
      const ys = [0, 1, 3].map((i) => (out[i] as Feeds).y!.data as Float32Array);
      expect(ys.map((y) => [y.buffer === ys[0]!.buffer, y.byteOffset])).toEqual([[true, 0], [true, 16], [true, 64]]);
      expect(out).toHaveLength(5);
      for (const i of [0, 1, 3]) {
        const o = out[i] as Feeds;
        expect(o.y!.dims).toEqual([items[i]!.x!.dims[0], 4]);
        expect(values(o.y)).toEqual(Array.from(want[i]!.y));
        expect(values(o.sum)).toEqual(Array.from(want[i]!.sum));
      }
      expect(out[2]).toBeInstanceOf(BadRequestError);
      expect((out[2] as Error).message).toMatch(/unknown input "z"/);
      expect(out[4]).toBeInstanceOf(ShapeMismatchError);
      expect(await m.inferBatch([])).toEqual([]);
    } finally {
      await m.shutdown();
    }
  });

  test('requests with different non-batch dims go in separate runs; a fixed batch dim runs each alone', async () => {
    const m = new (onnxModel({ model: buildIdentityModel('width'), name: 'id' }))();
    await m.init();
    const fixed = new (onnxModel({
      name: 'fixed',
      model: encodeModelBytes({
        name: 'fixed', inputs: [{ name: 'a', type: 'float32', shape: [1, 'n'] }], outputs: [{ name: 'b', type: 'float32', shape: [1, 'n'] }],
        nodes: [{ opType: 'Identity', inputs: ['a'], outputs: ['b'] }],
      }),
    }))();
    await fixed.init();
    try {
      const idMeta = (await m.metadata()).inputs;
      const make = (w: number, v: number): Feeds => Object.fromEntries(idMeta.map((i) => [i.name, fill(i.type, [1, w], v)]));
      const out = await m.inferBatch([make(2, 1), make(3, 2), make(2, 3)]);
      expect(m.stats().runs).toBe(2); // width 2 twice, stacked; width 3 alone
      expect((out[0] as Feeds).out_float32!.dims).toEqual([1, 2]);
      expect(values((out[0] as Feeds).out_float32)).toEqual([1, 1]);
      expect((out[1] as Feeds).out_float32!.dims).toEqual([1, 3]);
      expect(values((out[2] as Feeds).out_float32)).toEqual([3, 3]);
      expect((out[2] as Feeds).out_string!.data).toEqual(['3', '3']);
      const f = await fixed.inferBatch([{ a: fill('float32', [1, 2], 4) }, { a: fill('float32', [1, 2], 5) }]);
      expect(f.map((o) => values((o as Feeds).b))).toEqual([[4, 4], [5, 5]]);
      expect(fixed.stats().runs).toBe(2);
    } finally {
      await m.shutdown();
      await fixed.shutdown();
    }
  });
});

function fill(type: string, dims: number[], v: number): TensorData {
  const n = dims.reduce((a, b) => a * b, 1);
  switch (type) {
    case 'string': return { type: 'string', dims, data: new Array<string>(n).fill(String(v)) };
    case 'bool': return { type: 'bool', dims, data: new Uint8Array(n).fill(v % 2) };
    case 'int64': return { type: 'int64', dims, data: new BigInt64Array(n).fill(BigInt(v)) };
    case 'uint64': return { type: 'uint64', dims, data: new BigUint64Array(n).fill(BigInt(v)) };
    case 'float16': return { type: 'float16', dims, data: new Uint16Array(n).fill(0x3c00) };
    default: {
      const C = { uint8: Uint8Array, uint16: Uint16Array, uint32: Uint32Array, int8: Int8Array, int16: Int16Array, int32: Int32Array, float32: Float32Array, float64: Float64Array }[type]!;
      return { type, dims, data: new C(n).fill(v) } as TensorData;
    }
  }
}
