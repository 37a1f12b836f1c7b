/** DeploymentRegistry over a fake cluster: what it deploys for a repository, and how load, unload and failures show. */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DeployError, NotFoundError, type AppSpec } from '@shoal/core';
import { createKServeHandler, responseBody, type Feeds, type ModelMetadata } from '@shoal/oip';
import { DeploymentRegistry, buildTinyModel, type ModelCluster } from '../src/index.ts';

const META: ModelMetadata = { inputs: [{ name: 'x', type: 'float32', shape: ['batch', 4] }], outputs: [{ name: 'y', type: 'float32', shape: ['batch', 4] }, { name: 'sum', type: 'float32', shape: ['batch'] }] };

class FakeCluster implements ModelCluster {
  readonly apps = new Map<string, AppSpec>();
  readonly calls: Array<[string, string, string]> = [];
  /** Apps whose replicas fail to start, with the message. */
  readonly failing = new Map<string, string>();

  async deploy(spec: AppSpec): Promise<void> { this.apps.set(spec.name, spec); }
  async remove(app: string): Promise<void> {
    if (!this.apps.delete(app)) throw new NotFoundError(`no application named "${app}"`);
  }
  appReady(app: string): boolean { return this.apps.has(app) && !this.failing.has(app); }
  appFailure(app: string): string | undefined { return this.apps.has(app) ? this.failing.get(app) : undefined; }
  async call(app: string, deployment: string, method: string, args: unknown[]): Promise<unknown> {
    this.calls.push([app, deployment, method]);
    if (method === 'metadata') return META;
    const x = (args[0] as Feeds).x!;
    return { y: x, sum: { type: 'float32', dims: [x.dims[0]!], data: new Float32Array(x.dims[0]!) } } satisfies Feeds;
  }
}

let root: string;
const put = (rel: string, content: string | Uint8Array): void => {
  const path = join(root, rel);
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, content);
};

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'shoal-depreg-'));
  put('m/1/model.onnx', buildTinyModel());
  put('m/2/model.onnx', buildTinyModel());
  put('m/config.json', JSON.stringify({ versionPolicy: { latest: 2 }, numReplicas: 2, batching: { maxBatchSize: 16, maxWaitMs: 1 }, threads: { sessions: 2, intraOp: 1 } }));
  put('bad/1/model.onnx', buildTinyModel());
  put('noconfig/config.json', '{ nope');
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('DeploymentRegistry', () => {
  test('loadAll deploys one application per served version, with the config carried to the workers', async () => {
    const cluster = new FakeCluster();
    cluster.failing.set('kserve.bad.1', 'deployment "bad": replica failed to start (1 in a row, retry in 500 ms): boom');
    const reg = new DeploymentRegistry({ root, cluster, pollMs: 1 });
    const r = await reg.loadAll();
    expect(r.loaded).toEqual(['m']);
    expect(r.failed.map((f) => f.name).sort()).toEqual(['bad', 'noconfig']);
    expect(r.failed.find((f) => f.name === 'bad')!.error).toBe('failed to load model "bad": version 1: deployment "bad": replica failed to start (1 in a row, retry in 500 ms): boom');
    // The failed version is removed so the controller does not retry it forever.
    expect([...cluster.apps.keys()].sort()).toEqual(['kserve.m.1', 'kserve.m.2']);
    const spec = cluster.apps.get('kserve.m.2')!;
    expect(spec.routePrefix).toBeNull();
    expect(spec.deployments).toEqual([expect.objectContaining({ name: 'm.v2', options: expect.objectContaining({ numReplicas: 2, maxOngoingRequests: 100 }) })]);
    const q = JSON.parse(Buffer.from(new URL(spec.modulePath).searchParams.get('spec')!, 'base64url').toString());
    expect(q).toMatchObject({ model: 'm', version: '2', deployment: 'm.v2', pool: { threads: 2, intraOpThreads: 1 }, batching: { maxBatchSize: 16, maxWaitMs: 1 } });

    const idx = await reg.list();
    expect(idx.map((e) => [e.name, e.version, e.state])).toEqual([['bad', '1', 'UNAVAILABLE'], ['m', '2', 'READY'], ['m', '1', 'READY'], ['noconfig', undefined, 'UNAVAILABLE']]);
    expect(reg.ready()).toBe(true);
  });

  test('infer goes to the version\'s deployment; unload removes the applications; unknown models are 404', async () => {
    const cluster = new FakeCluster();
    const reg = new DeploymentRegistry({ root, cluster, pollMs: 1 });
    await reg.load('m');
    const handle = createKServeHandler(reg);
    const body = Buffer.from(JSON.stringify({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }], outputs: [{ name: 'y' }] }));
    const r = await handle({ method: 'POST', path: '/v2/models/m/versions/1/infer', headers: {}, body });
    expect(r.status).toBe(200);
    expect(JSON.parse(responseBody(r).toString()).outputs).toEqual([{ name: 'y', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }]);
    expect(cluster.calls.at(-1)).toEqual(['kserve.m.1', 'm.v1', 'infer']);

    // Replicas being replaced: not ready, and the index says LOADING.
    cluster.failing.set('kserve.m.2', 'x');
    expect(reg.ready()).toBe(false);
    expect((await reg.list()).find((e) => e.version === '2')!.state).toBe('LOADING');
    cluster.failing.delete('kserve.m.2');

    await reg.unload('m');
    expect(cluster.apps.size).toBe(0);
    expect(reg.get('m')).toBeUndefined();
    await reg.unload('m');
    await expect(reg.unload('zzz')).rejects.toBeInstanceOf(NotFoundError);
    await expect(reg.load('zzz')).rejects.toBeInstanceOf(NotFoundError);
    await expect(reg.load('noconfig')).rejects.toBeInstanceOf(DeployError);
  });

  test('a load that does not become ready in time fails with the timeout named', async () => {
    const cluster = new FakeCluster();
    cluster.appReady = () => false;
    const reg = new DeploymentRegistry({ root, cluster, pollMs: 1, loadTimeoutMs: 20 });
    await expect(reg.load('bad')).rejects.toThrow(/failed to load model "bad": version 1: replicas of "bad" not running within loadTimeoutMs=20/);
    expect(cluster.apps.size).toBe(0);
  });
});
