/** A multiplexed replica: getModel() per request, one model per batch, unloads after the requests on a model. */
import { describe, expect, it } from 'vitest';
import {
  BadRequestError, NotFoundError, batch, compileDeploymentOptions, currentModelId, getModel, requestContext, silentLogger, type RequestContext,
} from '@shoal/core';
import { Replica, type ReplicaInstance } from '../src/replica.ts';

interface Model { id: string }

class Models {
  readonly loads: string[] = [];
  readonly unloads: string[] = [];
  readonly batches: Array<[string, number[]]> = [];
  loadContexts: Array<RequestContext | undefined> = [];
  unloadsAtShutdown: string[] | undefined;
  release: (() => void) | undefined;

  async loadModel(modelId: string): Promise<Model> {
    this.loads.push(modelId);
    this.loadContexts.push(requestContext());
    return { id: modelId };
  }

  unloadModel(modelId: string, model: Model): void {
    expect(model.id).toBe(modelId);
    this.unloads.push(modelId);
  }

  async predict(x: number): Promise<string> {
    const m = await getModel<Model>();
    return `${m.id}:${x}:${currentModelId()}`;
  }

  /** Holds its model until the test calls release(). */
  async hold(): Promise<string> {
    const m = await getModel<Model>();
    await new Promise<void>((resolve) => { this.release = resolve; });
    return m.id;
  }

  embed = batch<number, string>(async (xs) => {
    const m = await getModel<Model>();
    this.batches.push([m.id, xs]);
    return xs.map((x) => `${m.id}:${x}`);
  }, { maxBatchSize: 8, maxWaitMs: 0 });

  shutdown(): void {
    this.unloadsAtShutdown = [...this.unloads];
  }
}

async function start(maxModelsPerReplica = 2): Promise<{ replica: Replica; models: Models }> {
  const replica = new Replica({ replicaId: 'r1', app: 'app', deployment: 'Models', options: compileDeploymentOptions({ multiplex: { maxModelsPerReplica } }, 'Models'), logger: silentLogger });
  const models = new Models();
  await replica.start(() => models as unknown as ReplicaInstance);
  return { replica, models };
}

const call = (r: Replica, method: string, args: unknown[], modelId?: string): Promise<unknown> => r.call(method, args, new AbortController().signal, undefined, undefined, modelId);

describe('multiplexed replica', () => {
  it('serves each request with its model, loading it once, in the replica context', async () => {
    const { replica, models } = await start();
    const caller = new AbortController();
    const first = replica.call('predict', [1], caller.signal, undefined, undefined, 'a');
    caller.abort(); // the request that asked first going away does not abort the shared load
    await first.catch(() => undefined);
    expect(await call(replica, 'predict', [2], 'a')).toBe('a:2:a');
    expect(await call(replica, 'predict', [3], 'b')).toBe('b:3:b');
    expect(models.loads).toEqual(['a', 'b']);
    expect(models.loadContexts[0]).toMatchObject({ replicaId: 'r1', deployment: 'Models', modelId: 'a' });
    expect(models.loadContexts[0]!.signal.aborted).toBe(false);
    expect(replica.stats().models).toMatchObject({ models: ['a', 'b'], loads: 2, hits: 1, misses: 2 });
    expect(replica.modelSet?.ids).toEqual(['a', 'b']);
    await replica.drain(1000);
  });

  it('answers 400 to a request that names no model, and keeps the hooks out of reach', async () => {
    const { replica } = await start();
    await expect(call(replica, 'predict', [1])).rejects.toThrow(BadRequestError);
    await expect(call(replica, 'loadModel', ['a'], 'a')).rejects.toThrow(NotFoundError);
    await expect(call(replica, 'unloadModel', ['a', {}], 'a')).rejects.toThrow(/has no method "unloadModel"/);
    await replica.drain(1000);
  });

  it('batches only requests for the same model together', async () => {
    const { replica, models } = await start(3);
    const out = await Promise.all([1, 2, 3, 4, 5].map((x) => call(replica, 'embed', [x], ['a', 'b', 'a', 'c', 'b'][x - 1])));
    expect(out).toEqual(['a:1', 'b:2', 'a:3', 'c:4', 'b:5']);
    expect(models.batches.map(([id, xs]) => `${id}=${xs.join()}`).sort()).toEqual(['a=1,3', 'b=2,5', 'c=4']);
    for (const [id, xs] of models.batches) for (const x of xs) expect(['a', 'b', 'a', 'c', 'b'][x - 1]).toBe(id);
    await replica.drain(1000);
  });

  it('evicts the least recently used idle model first; a busy one is unloaded only once its request is done', async () => {
    const { replica, models } = await start(2);
    const holding = call(replica, 'hold', [], 'a');
    await new Promise((r) => setTimeout(r, 0));
    await call(replica, 'predict', [1], 'b');
    await call(replica, 'predict', [1], 'c'); // a is the least recently used, but busy: b goes
    expect(replica.stats().models).toMatchObject({ models: ['a', 'c'], evictions: 1, unloading: 0 });
    expect(models.unloads).toEqual(['b']);
    await call(replica, 'predict', [1], 'd'); // c is the idle one: it goes
    expect(models.unloads).toEqual(['b', 'c']);
    await call(replica, 'predict', [1], 'e'); // d idle goes; a stays while its request runs
    expect(replica.stats().models?.models).toEqual(['a', 'e']);
    const one = await start(1);
    const held = call(one.replica, 'hold', [], 'a');
    await new Promise((r) => setTimeout(r, 0));
    expect(await call(one.replica, 'predict', [1], 'b')).toBe('b:1:b'); // a is the only victim: evicted while busy
    expect(one.replica.stats().models).toMatchObject({ models: ['b'], evictions: 1, unloading: 1 });
    expect(one.models.unloads).toEqual([]);
    one.models.release!();
    expect(await held).toBe('a');
    await new Promise((r) => setTimeout(r, 0));
    expect(one.models.unloads).toEqual(['a']);
    expect(one.replica.stats().models?.unloading).toBe(0);
    models.release!();
    await holding;
    await Promise.all([replica.drain(1000), one.replica.drain(1000)]);
  });

  it('unloads every model when it stops, before shutdown()', async () => {
    const { replica, models } = await start(2);
    await call(replica, 'predict', [1], 'a');
    await call(replica, 'predict', [1], 'b');
    await replica.drain(1000);
    expect(models.unloadsAtShutdown?.sort()).toEqual(['a', 'b']);
    expect(replica.state).toBe('STOPPED');
  });
});
