/**
 * A replica's busy time (heartbeat `b`, for cost and idle share): ms with at least one request holding a slot,
 * counted once however many overlap, and still while idle.
 */
import { describe, expect, it } from 'vitest';
import { compileDeploymentOptions, silentLogger } from '@shoal/core';
import { Replica, type ReplicaInstance } from '../src/replica.ts';

class Model {
  private gates: Array<() => void> = [];
  hold(): Promise<string> { return new Promise((resolve) => { this.gates.push(() => resolve('held')); }); }
  releaseAll(): void { for (const g of this.gates.splice(0)) g(); }
  quick(): number { return 1; }
}

const tick = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function startReplica(): Promise<{ replica: Replica; model: Model }> {
  const replica = new Replica({ replicaId: 'r1', app: 'app', deployment: 'Model', options: compileDeploymentOptions({}, 'Model'), logger: silentLogger });
  const model = new Model();
  await replica.start(() => model as unknown as ReplicaInstance);
  return { replica, model };
}

describe('Replica busy time', () => {
  it('grows only while a request runs, once for overlapping requests, and stands still while idle', async () => {
    const { replica, model } = await startReplica();
    expect(replica.busyMs).toBe(0);
    const before = performance.now();
    const a = replica.call('hold', [], new AbortController().signal, undefined);
    await tick(5);
    const b = replica.call('hold', [], new AbortController().signal, undefined);
    await tick(5);
    const running = replica.busyMs;
    expect(running).toBeGreaterThan(0);
    model.releaseAll();
    await Promise.all([a, b]);
    const elapsed = performance.now() - before;
    const done = replica.busyMs;
    // Two overlapping requests: the busy period is one, no longer than the time they spanned together.
    expect(done).toBeGreaterThanOrEqual(running);
    expect(done).toBeLessThanOrEqual(elapsed);
    await tick(5);
    expect(replica.busyMs).toBe(done);
    await replica.call('quick', [], new AbortController().signal, undefined);
    expect(replica.busyMs).toBeGreaterThanOrEqual(done);
    expect(replica.ongoingCount).toBe(0);
  });
});
