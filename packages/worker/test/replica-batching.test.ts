/**
 * The replica host and batched methods, in process: priority from the call reaches the batch queue, userConfig.batch
 * reconfigures batched fields without a restart, stats count what runs and waits, and a stop closes the queues.
 */
import { describe, expect, it } from 'vitest';
import {
  CancelledError, InvalidOptionError, ReplicaUnavailableError, isNotRun, batch, compileDeploymentOptions, requestContext, silentLogger, type DeploymentOptions,
} from '@shoal/core';
import { Replica, type ReplicaInstance } from '../src/replica.ts';

/** A model whose batches wait for the test to release them, and that records each batch. */
class Model {
  readonly batches: number[][] = [];
  readonly configs: unknown[] = [];
  private gate: (() => void) | undefined;
  private gated = false;
  predict = batch(async (xs: number[]) => {
    this.batches.push(xs);
    if (this.gated) await new Promise<void>((resolve) => { this.gate = resolve; });
    return xs.map((x) => x * 10);
  }, { maxBatchSize: 4, maxWaitMs: 1000, priorityLevels: 3 });
  hold(): void { this.gated = true; }
  release(): void { this.gated = false; this.gate?.(); }
  priority(): number | undefined { return requestContext()?.priority; }
  reconfigure(userConfig: unknown): void { this.configs.push(userConfig); }
}

async function startReplica(opts: DeploymentOptions = {}): Promise<{ replica: Replica; model: Model }> {
  const replica = new Replica({ replicaId: 'r1', app: 'app', deployment: 'Model', options: compileDeploymentOptions(opts, 'Model'), logger: silentLogger });
  const model = new Model();
  await replica.start(() => model as unknown as ReplicaInstance);
  return { replica, model };
}

const call = (r: Replica, method: string, args: unknown[], priority?: number, signal = new AbortController().signal): Promise<unknown> =>
  r.call(method, args, signal, undefined, priority);

const tick = (ms = 5): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('replica host: batched methods', () => {
  it('passes the caller\'s priority to requestContext() and so to the batch queue', async () => {
    const { replica, model } = await startReplica({ userConfig: { batch: { predict: { maxBatchSize: 1, maxWaitMs: 0 } } } });
    expect(await call(replica, 'priority', [], 2)).toBe(2);
    model.hold();
    const first = call(replica, 'predict', [1]);
    await tick();
    const rest = [call(replica, 'predict', [2], 0), call(replica, 'predict', [3], 2), call(replica, 'predict', [4], 1)];
    await tick();
    model.release();
    await Promise.all([first, ...rest]);
    expect(model.batches).toEqual([[1], [3], [4], [2]]);
  });

  it('applies userConfig.batch at start and on reconfigure, then calls the user hook with the whole userConfig', async () => {
    const { replica, model } = await startReplica({ userConfig: { batch: { predict: { maxBatchSize: 2 } }, tag: 'a' } });
    expect(replica.stats().batch.predict?.effective.maxBatchSize).toBe(2);
    await replica.reconfigure({ batch: { predict: { maxBatchSize: 3, maxWaitMs: 0 } }, tag: 'b' });
    expect(replica.stats().batch.predict?.effective).toEqual({ maxBatchSize: 3, maxWaitMs: 0 });
    expect(model.configs).toEqual([{ batch: { predict: { maxBatchSize: 2 } }, tag: 'a' }, { batch: { predict: { maxBatchSize: 3, maxWaitMs: 0 } }, tag: 'b' }]);
    // Without the key the declared options come back.
    await replica.reconfigure({ tag: 'c' });
    expect(replica.stats().batch.predict?.effective).toEqual({ maxBatchSize: 4, maxWaitMs: 1000 });
    expect(replica.state).toBe('RUNNING');
  });

  it('refuses an invalid userConfig.batch naming the option, and changes nothing', async () => {
    const { replica, model } = await startReplica({ userConfig: { batch: { predict: { maxBatchSize: 2 } } } });
    const unknownMethod = await replica.reconfigure({ batch: { nope: {} } }).catch((e: unknown) => e);
    expect(unknownMethod).toBeInstanceOf(InvalidOptionError);
    expect((unknownMethod as Error).message).toMatch(/userConfig\.batch\.nope: is not a batched method of deployment "Model" \(batched: predict\)/);
    const badValue = await replica.reconfigure({ batch: { predict: { maxBatchSize: 0 } } }).catch((e: unknown) => e);
    expect(badValue).toBeInstanceOf(InvalidOptionError);
    expect((badValue as Error).message).toMatch(/userConfig\.batch\.predict\.maxBatchSize/);
    const notObject = await replica.reconfigure({ batch: 5 }).catch((e: unknown) => e);
    expect((notObject as Error).message).toMatch(/invalid option userConfig\.batch: must be an object/);
    expect(replica.stats().batch.predict?.effective.maxBatchSize).toBe(2);
    expect(model.configs).toHaveLength(1);
  });

  it('fails start with the option named when the initial userConfig.batch is invalid', async () => {
    const replica = new Replica({ replicaId: 'r2', app: 'app', deployment: 'Model', options: compileDeploymentOptions({ userConfig: { batch: { predict: { timeoutAction: 'DROP' } } } }, 'Model'), logger: silentLogger });
    const err = await replica.start(() => new Model() as unknown as ReplicaInstance).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/userConfig\.batch\.predict\.timeoutAction/);
    expect(replica.state).toBe('FAILED');
  });

  it('counts running and queued batched calls, and every count returns to 0 after cancellation', async () => {
    const { replica, model } = await startReplica({ maxOngoingRequests: 6, userConfig: { batch: { predict: { maxBatchSize: 2, maxWaitMs: 0 } } } });
    model.hold();
    const ac = new AbortController();
    const calls = Array.from({ length: 10 }, (_, i) => call(replica, 'predict', [i], undefined, ac.signal).catch((e: unknown) => e));
    await tick();
    const s = replica.stats();
    expect(s).toMatchObject({ ongoing: 6, queued: 4 });
    expect(s.batch.predict).toMatchObject({ running: 2, queued: 4, inFlight: 6 });
    ac.abort();
    const results = await Promise.all(calls);
    for (const r of results) expect(r).toBeInstanceOf(CancelledError);
    model.release();
    await tick();
    const after = replica.stats();
    expect(after).toMatchObject({ ongoing: 0, queued: 0 });
    expect(after.batch.predict).toMatchObject({ running: 0, runningBatches: 0, queued: 0, inFlight: 0 });
  });

  it('on drain lets running batches finish, then closes the queues and refuses new calls', async () => {
    const { replica, model } = await startReplica({ userConfig: { batch: { predict: { maxBatchSize: 2, maxWaitMs: 0 } } } });
    model.hold();
    const running = call(replica, 'predict', [1]);
    await tick();
    const draining = replica.drain(5000);
    await tick();
    expect(replica.state).toBe('DRAINING');
    await expect(call(replica, 'predict', [2])).rejects.toMatchObject({ code: 'ERR_REPLICA_UNAVAILABLE' });
    model.release();
    expect(await running).toBe(10);
    await draining;
    expect(replica.state).toBe('STOPPED');
    expect(replica.stats().batch.predict?.state).toBe('closed');
  });

  it('on a drain timeout rejects what is still batched', async () => {
    const { replica, model } = await startReplica({ userConfig: { batch: { predict: { maxBatchSize: 1, maxWaitMs: 0 } } } });
    model.hold();
    const running = call(replica, 'predict', [1]).catch((e: unknown) => e);
    await tick();
    const queued = call(replica, 'predict', [2]).catch((e: unknown) => e);
    await tick();
    await replica.drain(20);
    // Handed back to the caller's router as never run (retried on another replica), not cancelled.
    expect(await queued).toBeInstanceOf(ReplicaUnavailableError);
    expect(isNotRun(await queued)).toBe(true);
    expect((await queued as Error).message).toMatch(/stopped before the request was batched/);
    model.release();
    expect(await running).toBe(10);
    expect(replica.stats().batch.predict).toMatchObject({ queued: 0, inFlight: 0 });
  });
});
