/** A replica stopped while it is still being built: its instance, once built, is shut down, never left running. */
import { describe, expect, it } from 'vitest';
import { CancelledError, compileDeploymentOptions, silentLogger } from '@shoal/core';
import { Replica, type ReplicaInstance } from '../src/replica.ts';

function replica(): Replica {
  return new Replica({ replicaId: 'r1', app: 'app', deployment: 'Slow', options: compileDeploymentOptions({}, 'Slow'), logger: silentLogger });
}

/** A replica whose init() waits for finishInit(), started and left STARTING. */
async function startingReplica(): Promise<{ r: Replica; finishInit: () => void; shutdowns: string[]; startOutcome: Promise<unknown> }> {
  let finishInit!: () => void;
  const shutdowns: string[] = [];
  const r = replica();
  const started = r.start(() => ({
    init: () => new Promise<void>((resolve) => { finishInit = resolve; }),
    shutdown: () => { shutdowns.push('down'); },
  }) as unknown as ReplicaInstance);
  const startOutcome = started.then(() => 'running', (e: unknown) => e);
  await new Promise((res) => setImmediate(res));
  return { r, finishInit, shutdowns, startOutcome };
}

describe('replica stopped while starting', () => {
  it('waits for init() to finish, then runs shutdown() and ends STOPPED; start() rejects with CancelledError', async () => {
    const { r, finishInit, shutdowns, startOutcome } = await startingReplica();
    expect(r.state).toBe('STARTING');
    const drained = r.drain(5000);
    finishInit();
    await drained;
    expect(await startOutcome).toBeInstanceOf(CancelledError);
    expect(shutdowns).toEqual(['down']);
    expect(r.state).toBe('STOPPED');
  });

  it('gives up waiting after its timeout, and a build that finishes later is still shut down', async () => {
    const { r, finishInit, shutdowns, startOutcome } = await startingReplica();
    await r.drain(20);
    expect(r.state).toBe('STOPPED');
    finishInit();
    expect(await startOutcome).toBeInstanceOf(CancelledError);
    expect(shutdowns).toEqual(['down']);
    expect(r.state).toBe('STOPPED');
  });
});
