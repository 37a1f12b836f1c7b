/** Model multiplexing in core: its options, model ids, getModel() and batches that hold one model each. */
import { describe, expect, it } from 'vitest';
import {
  BadRequestError, IllegalStateError, InvalidOptionError, batch, buildAppSpec, checkModelId, compileDeploymentOptions, contextStorage, currentModelId,
  deployment, getModel, type DeploymentOptions, type ModelSource, type RequestContext,
} from '../src/index.ts';
import { BatchQueue, type BatchContext } from '../src/batching/index.ts';
import { FakeClock } from '../src/clock.ts';
import { errorFor } from './option-error.ts';


class Models {
  async loadModel(modelId: string): Promise<string> { return `model ${modelId}`; }
  async unloadModel(): Promise<void> {}
  async predict(x: number): Promise<string> { return `${String(await getModel())}: ${x}`; }
}

describe('multiplex options', () => {
  it('fills its defaults, the hot threshold from maxOngoingRequests, and recompiles to itself', () => {
    expect(compileDeploymentOptions({}, 'M').multiplex).toBeUndefined();
    const c = compileDeploymentOptions({ maxOngoingRequests: 7, multiplex: {} }, 'M');
    expect(c.multiplex).toEqual({ maxModelsPerReplica: 3, hotOngoingRequests: 4 });
    expect(compileDeploymentOptions(c, 'M')).toEqual(c);
    expect(compileDeploymentOptions({ multiplex: { maxModelsPerReplica: 1, hotOngoingRequests: 100 } }, 'M').multiplex).toEqual({ maxModelsPerReplica: 1, hotOngoingRequests: 100 });
  });

  it.each<[string, unknown, string, string]>([
    ['not an object', { multiplex: 3 }, 'deployment.multiplex', 'must be an object (got 3)'],
    ['an unknown key', { multiplex: { maxModels: 2 } }, 'deployment.multiplex.maxModels', 'is not a multiplex option (maxModelsPerReplica, hotOngoingRequests)'],
    ['zero models', { multiplex: { maxModelsPerReplica: 0 } }, 'deployment.multiplex.maxModelsPerReplica', 'must be between 1 and 1024 (got 0)'],
    ['a fraction of a model', { multiplex: { maxModelsPerReplica: 1.5 } }, 'deployment.multiplex.maxModelsPerReplica', 'must be an integer (got 1.5)'],
    ['a hot threshold above maxOngoingRequests', { maxOngoingRequests: 4, multiplex: { hotOngoingRequests: 5 } }, 'deployment.multiplex.hotOngoingRequests', 'must be at most maxOngoingRequests (4) (got 5)'],
    ['a hot threshold of 0', { multiplex: { hotOngoingRequests: 0 } }, 'deployment.multiplex.hotOngoingRequests', 'must be between 1 and'],
  ])('refuses %s, naming the option', (_what, input, path, problem) => {
    const err = errorFor(input);
    expect(err.message).toContain(`invalid option ${path}: ${problem}`);
    expect(err.details).toEqual({ path });
  });

  it('needs a class with loadModel, checked at declaration (and by withOptions)', () => {
    expect(() => deployment(class NoHook { predict(): number { return 1; } }, { multiplex: {} })).toThrow(/invalid option deployment.multiplex: needs a loadModel\(modelId\) method on class "NoHook"/);
    expect(() => deployment(function plain(): number { return 1; }, { multiplex: {} })).toThrow(/deployment.multiplex: needs a class with a loadModel\(modelId\) method; "plain" is a function/);
    const ok = deployment(class Bare { predict(): number { return 1; } });
    expect(() => ok.withOptions({ multiplex: {} })).toThrow(InvalidOptionError);
    expect(deployment(Models, { multiplex: { maxModelsPerReplica: 2 } }).options.multiplex?.maxModelsPerReplica).toBe(2);
  });

  it('keeps loadModel and unloadModel out of the methods callers reach', () => {
    const spec = buildAppSpec(deployment(Models, { multiplex: {} }).bind(), { name: 'app', routePrefix: null, modulePath: '/x.ts', exportName: 'default' });
    expect(spec.deployments[0]!.methods).toEqual(['predict']);
  });
});

describe('model ids', () => {
  it('accepts printable ids up to 256 characters, unicode included', () => {
    for (const id of ['a', 'llama-3/8b:lora-7', 'модель', 'x'.repeat(256), 'with space']) expect(checkModelId('header x-shoal-model-id', id)).toBe(id);
  });

  it.each<[string, unknown, string]>([
    ['empty', '', 'must be 1-256 characters long, got 0'],
    ['too long', 'y'.repeat(257), 'must be 1-256 characters long, got 257'],
    ['a newline', 'a\nb', 'must not contain control characters (got "a\\nb")'],
    ['a NUL', 'a\u0000', 'must not contain control characters'],
    ['DEL', 'a\u007f', 'must not contain control characters'],
    ['a number', 7, 'must be a string (the model id) (got 7)'],
  ])('refuses %s with a 400 naming where it came from', (_what, id, problem) => {
    let err: unknown;
    try { checkModelId('header x-shoal-model-id', id); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(InvalidOptionError);
    expect((err as InvalidOptionError).httpStatus).toBe(400);
    expect((err as Error).message).toContain(`invalid option header x-shoal-model-id: ${problem}`);
  });
});

function ctxWith(extra: Partial<RequestContext>): RequestContext {
  return { signal: new AbortController().signal, deadline: undefined, app: 'app', deployment: 'Models', replicaId: 'r1', ...extra };
}

const fakeModels = (loaded: string[] = []): ModelSource & { asked: string[] } => {
  const asked: string[] = [];
  return { asked, get: async (id: string) => { asked.push(id); loaded.push(id); return `model ${id}`; } };
};

describe('getModel() and currentModelId()', () => {
  it('read the request context', async () => {
    const models = fakeModels();
    await contextStorage.run(ctxWith({ modelId: 'm1', models }), async () => {
      expect(currentModelId()).toBe('m1');
      expect(await getModel()).toBe('model m1');
    });
    expect(models.asked).toEqual(['m1']);
    expect(currentModelId()).toBeUndefined();
  });

  it('say why there is no model: outside a request, not multiplexed, no model id', async () => {
    await expect(getModel()).rejects.toThrow(IllegalStateError);
    await contextStorage.run(ctxWith({ modelId: 'm1' }), async () => {
      await expect(getModel()).rejects.toThrow(/deployment "Models" is not multiplexed: give it the multiplex option and a loadModel\(modelId\) method/);
    });
    await contextStorage.run(ctxWith({ models: fakeModels() }), async () => {
      const err = await getModel().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BadRequestError);
      expect((err as Error).message).toMatch(/names no model: send the x-shoal-model-id header, or call through handle.withOptions\(\{ modelId \}\)/);
    });
  });
});

describe('batches hold one model each', () => {
  it('BatchQueue never mixes model ids in one batch and names the batch model', async () => {
    const clock = new FakeClock();
    const batches: Array<[string | undefined, string, string[]]> = [];
    const fn = (items: string[], ctx: BatchContext): string[] => { batches.push([ctx.modelId, ctx.shapeKey, items]); return items; };
    const queue = new BatchQueue<string, string>({ maxBatchSize: 8, maxWaitMs: 0, maxConcurrentBatches: 8 }, fn, { clock });
    const submits: Array<[string, string | undefined, string]> = [['1', 'a', 's'], ['2', 'b', 's'], ['3', 'a', 's'], ['4', undefined, 's'], ['5', 'b', 't'], ['6', 'a', 's'], ['7', undefined, 's']];
    const out = submits.map(([x, modelId, shapeKey]) => queue.submit(x, { shapeKey, ...(modelId === undefined ? {} : { modelId }) }));
    await clock.advanceAsync(0);
    expect(await Promise.all(out)).toEqual(['1', '2', '3', '4', '5', '6', '7']);
    expect(batches).toEqual([['a', 's', ['1', '3', '6']], ['b', 's', ['2']], [undefined, 's', ['4', '7']], ['b', 't', ['5']]]);
  });

  it('keeps models apart under padding too, and after a reconfigure regroups', async () => {
    const clock = new FakeClock();
    const batches: Array<[string | undefined, string, string[]]> = [];
    const fn = (items: string[], ctx: BatchContext): string[] => { batches.push([ctx.modelId, ctx.shapeKey, items]); return items; };
    const queue = new BatchQueue<string, string>({ maxBatchSize: 8, maxWaitMs: 10, maxConcurrentBatches: 8, pad: { bucket: () => 'all' } }, fn, { clock });
    const out = [['1', 'a', 'x'], ['2', 'b', 'y'], ['3', 'a', 'z']].map(([x, modelId, shapeKey]) => queue.submit(x!, { modelId: modelId!, shapeKey: shapeKey! }));
    queue.reconfigure({ maxWaitMs: 5 });
    await clock.advanceAsync(5);
    await Promise.all(out);
    expect(batches.sort()).toEqual([['a', 'all', ['1', '3']], ['b', 'all', ['2']]]);
  });

  it('batch(): groups by the request model, and getModel() in the batch function is the batch model', async () => {
    const seen: Array<[string | undefined, unknown, string[]]> = [];
    const models = fakeModels();
    const method = batch<string, string>(async (items, ctx) => {
      seen.push([currentModelId(), await getModel(), items]);
      expect(ctx.modelId).toBe(currentModelId());
      return items.map((x) => `${x}@${ctx.modelId}`);
    }, { maxBatchSize: 8, maxWaitMs: 0 });
    const call = (x: string, modelId: string): Promise<string> => contextStorage.run(ctxWith({ modelId, models }), () => method(x));
    const out = await Promise.all([call('1', 'a'), call('2', 'b'), call('3', 'a'), call('4', 'b'), call('5', 'c')]);
    expect(out).toEqual(['1@a', '2@b', '3@a', '4@b', '5@c']);
    expect(seen.map(([id, model, items]) => [id, model, items.join()]).sort()).toEqual([['a', 'model a', '1,3'], ['b', 'model b', '2,4'], ['c', 'model c', '5']]);
    await method.close();
  });
});
