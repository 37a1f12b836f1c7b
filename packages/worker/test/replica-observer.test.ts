/**
 * What a replica tells its observer (the worker's metrics): each request's wait for a slot (0 when one was free)
 * and its time in user code; a batched method's times come from its queue instead; a multiplexed model's load time.
 */
import { describe, expect, it } from 'vitest';
import { batch, compileDeploymentOptions, getModel, silentLogger, type BatchObserver, type BatchReleaseReason, type DeploymentOptions } from '@shoal/core';
import { Replica, type ReplicaInstance, type ReplicaObserver } from '../src/replica.ts';

class RecordingObserver implements ReplicaObserver {
  readonly waits: number[] = [];
  readonly computes: number[] = [];
  readonly loads: Array<[number, boolean]> = [];
  readonly batches: Array<{ method: string; releases: Array<[number, BatchReleaseReason]>; waits: number[]; runs: Array<[number, number]> }> = [];
  queueWaited(waitMs: number): void { this.waits.push(waitMs); }
  computed(computeMs: number): void { this.computes.push(computeMs); }
  modelLoaded(loadMs: number, ok: boolean): void { this.loads.push([loadMs, ok]); }
  batch(method: string): BatchObserver {
    const b = { method, releases: [] as Array<[number, BatchReleaseReason]>, waits: [] as number[], runs: [] as Array<[number, number]> };
    this.batches.push(b);
    return {
      released: (size, reason) => { b.releases.push([size, reason]); },
      waited: (waitMs) => { b.waits.push(waitMs); },
      ran: (runMs, size) => { b.runs.push([runMs, size]); },
    };
  }
}

class Model {
  private gate: (() => void) | undefined;
  readonly loaded: string[] = [];
  /** Runs until release(). */
  hold(): Promise<string> { return new Promise((resolve) => { this.gate = () => resolve('held'); }); }
  release(): void { this.gate?.(); }
  quick(x: number): number { return x + 1; }
  fails(): never { throw new Error('user code failed'); }
  predict = batch((xs: number[]) => xs.map((x) => x * 10), { maxBatchSize: 4, maxWaitMs: 1000 });
  loadModel(id: string): string {
    if (id === 'bad') throw new Error('no such weights');
    this.loaded.push(id);
    return `model-${id}`;
  }
  async which(): Promise<unknown> { return getModel(); }
}

async function startReplica(opts: DeploymentOptions = {}): Promise<{ replica: Replica; model: Model; observer: RecordingObserver }> {
  const observer = new RecordingObserver();
  const replica = new Replica({ replicaId: 'r1', app: 'app', deployment: 'Model', options: compileDeploymentOptions(opts, 'Model'), logger: silentLogger, observer });
  const model = new Model();
  await replica.start(() => model as unknown as ReplicaInstance);
  return { replica, model, observer };
}

const call = (r: Replica, method: string, args: unknown[], modelId?: string): Promise<unknown> =>
  r.call(method, args, new AbortController().signal, undefined, undefined, modelId);

const tick = (ms = 5): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('replica observer', () => {
  it('reports 0 wait for a request that found a slot, the wait of one that queued, and each one\'s time in user code', async () => {
    const { replica, model, observer } = await startReplica({ maxOngoingRequests: 1 });
    expect(await call(replica, 'quick', [1])).toBe(2);
    expect(observer.waits).toEqual([0]);
    expect(observer.computes).toHaveLength(1);

    const t0 = performance.now();
    const held = call(replica, 'hold', []);
    const queued = call(replica, 'quick', [2]);
    await tick();
    // The second request is still waiting for the slot: its wait is reported once it gets it.
    expect(observer.waits).toEqual([0, 0]);
    model.release();
    expect(await Promise.all([held, queued])).toEqual(['held', 3]);
    const elapsed = performance.now() - t0;
    expect(observer.waits).toHaveLength(3);
    expect(observer.waits[2]).toBeGreaterThan(0);
    expect(observer.computes).toHaveLength(3);
    // Both lie within the span the test saw: the queued one's wait and the held one's time in user code. (The wait
    // ends just after the held call's compute does, when the slot passes on, so neither bounds the other exactly.)
    expect(observer.waits[2]).toBeLessThanOrEqual(elapsed);
    expect(observer.computes[1]).toBeLessThanOrEqual(elapsed);
    // And both span the tick the test held the slot for (a timer fires no earlier than 1 ms before its time).
    expect(observer.waits[2]).toBeGreaterThanOrEqual(4);
    expect(observer.computes[1]).toBeGreaterThanOrEqual(4);
  });

  it('reports a request whose user code threw', async () => {
    const { replica, observer } = await startReplica();
    await expect(call(replica, 'fails', [])).rejects.toThrow('user code failed');
    expect(observer.waits).toEqual([0]);
    expect(observer.computes).toHaveLength(1);
  });

  it('leaves a batched method\'s compute to its queue\'s observer, which sees the batch released, waited and run', async () => {
    const { replica, observer } = await startReplica();
    expect(observer.batches.map((b) => b.method)).toEqual(['predict']);
    expect(await Promise.all([call(replica, 'predict', [1]), call(replica, 'predict', [2])])).toEqual([10, 20]);
    // Both requests got a replica slot at once; neither counts a compute of its own.
    expect(observer.waits).toEqual([0, 0]);
    expect(observer.computes).toEqual([]);
    const b = observer.batches[0]!;
    // Submitted in one tick to an idle queue: they go together at once, without waiting out maxWaitMs.
    expect(b.releases).toEqual([[2, 'idle']]);
    expect(b.waits).toHaveLength(2);
    expect(b.runs.map(([, size]) => size)).toEqual([2]);
  });

  it('reports a multiplexed model\'s load time, and a failed load as not ok', async () => {
    const { replica, model, observer } = await startReplica({ multiplex: { maxModelsPerReplica: 2 } });
    expect(await call(replica, 'which', [], 'a')).toBe('model-a');
    expect(await call(replica, 'which', [], 'a')).toBe('model-a');
    await expect(call(replica, 'which', [], 'bad')).rejects.toThrow('no such weights');
    expect(model.loaded).toEqual(['a']);
    expect(observer.loads.map(([, ok]) => ok)).toEqual([true, false]);
  });
});
