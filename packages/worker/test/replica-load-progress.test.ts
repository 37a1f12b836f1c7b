/** A starting replica shows the load progress its constructor or init() reported, and forgets it once running. */
import { describe, expect, it } from 'vitest';
import { compileDeploymentOptions, loadProgressOf, reportLoadProgress, silentLogger } from '@shoal/core';
import { Replica, type ReplicaInstance } from '../src/replica.ts';

function replica(id: string): Replica {
  return new Replica({ replicaId: id, app: 'app', deployment: 'Loader', options: compileDeploymentOptions({}, 'Loader'), logger: silentLogger });
}

describe('replica load progress', () => {
  it('reports what init() reported while STARTING, and nothing once RUNNING', async () => {
    const r = replica('rl-1');
    let release!: () => void;
    const gate = new Promise<void>((res) => { release = res; });
    let reported!: () => void;
    const halfway = new Promise<void>((res) => { reported = res; });
    class Loader {
      constructor() { reportLoadProgress(0, 1000); }
      async init(): Promise<void> { reportLoadProgress(400, 1000); reported(); await gate; reportLoadProgress(1000, 1000); }
    }
    const started = r.start(() => new Loader() as unknown as ReplicaInstance);
    await halfway;
    expect(r.state).toBe('STARTING');
    expect(r.loadProgress).toEqual([400, 1000]);
    release();
    await started;
    expect(r.state).toBe('RUNNING');
    expect(r.loadProgress).toBeUndefined();
    expect(loadProgressOf('rl-1')).toBeUndefined();
    await r.drain(1000);
  });

  it('forgets the progress of a replica that failed to start', async () => {
    const r = replica('rl-2');
    class Broken { constructor() { reportLoadProgress(5, 10); throw new Error('disk gone'); } }
    await expect(r.start(() => new Broken() as unknown as ReplicaInstance)).rejects.toThrow(/disk gone/);
    expect(r.state).toBe('FAILED');
    expect(loadProgressOf('rl-2')).toBeUndefined();
  });
});
