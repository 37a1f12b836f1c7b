/**
 * The replica host and continuous methods, in process: a call streams its sequence's chunks, userConfig.batch
 * reconfigures the field (and an invalid one names its path and changes nothing), the request's signal reaches
 * the batcher, stats and the batch observer see the steps, and a stop fails what is still in flight.
 */
import { describe, expect, it } from 'vitest';
import {
  InvalidOptionError, compileDeploymentOptions, continuousBatch, silentLogger,
  type BatchObserver, type BatchReleaseReason, type DeploymentOptions,
} from '@shoal/core';
import { Replica, type ReplicaInstance, type ReplicaObserver } from '../src/replica.ts';
import type { ReplicaStream } from '../src/stream-replica.ts';

/** Counts down from n, one chunk per step; a gated model's steps wait for release(). */
class Counter {
  readonly steps: number[] = [];
  private gated = false;
  private gates: Array<() => void> = [];
  generate = continuousBatch<number, { left: number }, number>({
    start: (n) => ({ left: n }),
    step: async (states) => {
      this.steps.push(states.length);
      if (this.gated) await new Promise<void>((resolve) => this.gates.push(resolve));
      return states.map((s) => ({ emit: s.left, done: --s.left === 0 }));
    },
  }, { maxBatchSize: 4 });
  hold(): void { this.gated = true; }
  release(): void { this.gated = false; for (const g of this.gates.splice(0)) g(); }
}

async function startReplica(opts: DeploymentOptions = {}) {
  const released: Array<[number, BatchReleaseReason]> = [];
  const waits: number[] = [];
  const observer: ReplicaObserver = {
    queueWaited: () => undefined, computed: () => undefined, modelLoaded: () => undefined,
    batch: (): BatchObserver => ({ released: (n, r) => released.push([n, r]), waited: (ms) => waits.push(ms), ran: () => undefined }),
  };
  const replica = new Replica({ replicaId: 'r1', app: 'app', deployment: 'Counter', options: compileDeploymentOptions(opts, 'Counter'), logger: silentLogger, observer });
  let model: Counter | undefined;
  await replica.start(() => (model = new Counter()) as unknown as ReplicaInstance);
  return { replica, model: model!, released, waits };
}

async function drain(rs: ReplicaStream): Promise<unknown[]> {
  const out: unknown[] = [];
  for (;;) { const r = await rs.next(); if (r.done === true) return out; out.push(r.value); }
}

const call = (r: Replica, n: number, signal = new AbortController().signal): Promise<ReplicaStream> =>
  r.call('generate', [n], signal, undefined) as Promise<ReplicaStream>;

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('replica host: continuous methods', () => {
  it('streams each call\'s chunks; concurrent calls share steps; the observer sees steps as batches with reason step', async () => {
    const { replica, model, released, waits } = await startReplica();
    const outs = await Promise.all([call(replica, 3), call(replica, 1), call(replica, 2)].map(async (p) => drain(await p)));
    expect(outs).toEqual([[3, 2, 1], [1], [2, 1]]);
    expect(model.steps).toEqual([3, 2, 1]);
    expect(released).toEqual([[3, 'step'], [2, 'step'], [1, 'step']]);
    expect(waits).toHaveLength(3);
    const stats = replica.stats().batch.generate!;
    expect(stats.totals).toMatchObject({ submitted: 3, succeeded: 3 });
    expect(stats.batchSizeCounts).toEqual({ 1: 1, 2: 1, 3: 1 });
    await replica.drain(1000);
  });

  it('applies userConfig.batch.<field> at start and on reconfigure; an invalid one names its path and changes nothing', async () => {
    const { replica, model } = await startReplica({ userConfig: { batch: { generate: { maxBatchSize: 1 } } } });
    expect(replica.stats().batch.generate?.effective.maxBatchSize).toBe(1);
    await Promise.all([call(replica, 2), call(replica, 2)].map(async (p) => drain(await p)));
    expect(model.steps).toEqual([1, 1, 1, 1]);
    await expect(replica.reconfigure({ batch: { generate: { maxWaitMs: 5 } } })).rejects.toThrow(InvalidOptionError);
    await expect(replica.reconfigure({ batch: { generate: { maxBatchSize: 0 } } })).rejects.toThrow('invalid option userConfig.batch.generate.maxBatchSize: must be >= 1 (got 0)');
    expect(replica.stats().batch.generate?.effective.maxBatchSize).toBe(1);
    await replica.reconfigure({ batch: { generate: { maxBatchSize: 3 } } });
    expect(replica.stats().batch.generate?.effective.maxBatchSize).toBe(3);
    // Without the key the declared options come back.
    await replica.reconfigure({});
    expect(replica.stats().batch.generate?.effective.maxBatchSize).toBe(4);
    await replica.drain(1000);
  });

  it('the caller\'s signal makes the sequence leave at the next step boundary', async () => {
    const { replica, model } = await startReplica();
    model.hold();
    const ac = new AbortController();
    const rs = await call(replica, 100, ac.signal);
    const first = rs.next();
    first.catch(() => undefined);
    while (model.steps.length === 0) await turn();
    ac.abort();
    model.release();
    await expect(first).rejects.toBeDefined();
    for (let i = 0; i < 20; i++) await turn();
    expect(model.steps.length).toBeLessThanOrEqual(2);
    expect(replica.stats().batch.generate).toMatchObject({ running: 0, inFlight: 0 });
    expect(replica.stats().batch.generate?.totals.cancelled).toBe(1);
    await replica.drain(1000);
  });

  it('a stop fails the sequences still in flight', async () => {
    const { replica, model } = await startReplica();
    model.hold();
    const rs = await call(replica, 100);
    const read = drain(rs);
    read.catch(() => undefined);
    while (model.steps.length === 0) await turn();
    // The step never returns on its own: the stop cannot wait for it. It stops the stream (the read ends at once)
    // and closes the batcher, which drops the sequence when the step returns.
    await replica.drain(50);
    expect(await read).toEqual([]);
    expect(replica.state).toBe('STOPPED');
    expect(replica.stats().batch.generate?.state).toBe('closing');
    model.release();
    for (let i = 0; i < 20 && replica.stats().batch.generate?.state !== 'closed'; i++) await turn();
    expect(replica.stats().batch.generate).toMatchObject({ state: 'closed', inFlight: 0 });
    expect(model.steps).toEqual([1]);
  });
});
