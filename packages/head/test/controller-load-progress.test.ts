/** The controller shows each STARTING replica's model load progress from heartbeats, and drops it once it runs. */
import { describe, expect, it } from 'vitest';
import { appSpec, flush, rig } from './fake-cluster.ts';

describe('Controller: model load progress', () => {
  it('lists the last reported bytes of a starting replica in status, and none once it is running', async () => {
    const { ctl, ops, addWorker } = rig();
    const w1 = addWorker(4);
    ops.autoStart = false;
    ctl.deploy(appSpec('app', [{ name: 'Big', numReplicas: 2 }]));
    void ctl.reconcile();
    await flush();
    expect(ops.starts).toHaveLength(2);
    const [a, b] = ops.starts.map((s) => s.replicaId);
    ctl.heartbeat(w1, { replicas: [{ replicaId: a!, ongoing: 0, queued: 0, p: [300, 1200] }, { replicaId: b!, ongoing: 0, queued: 0 }] });
    const replicas = (): ReturnType<typeof ctl.status>['replicas'] => ctl.status().replicas;
    expect(replicas().find((r) => r.replicaId === a)).toMatchObject({ state: 'STARTING', load: { bytes: 300, total: 1200 } });
    expect(replicas().find((r) => r.replicaId === b)?.load).toBeUndefined();
    // The next heartbeat replaces the last one's progress.
    ctl.heartbeat(w1, { replicas: [{ replicaId: a!, ongoing: 0, queued: 0, p: [1200, 1200] }, { replicaId: b!, ongoing: 0, queued: 0, p: [1, 2] }] });
    expect(replicas().find((r) => r.replicaId === a)?.load).toEqual({ bytes: 1200, total: 1200 });
    expect(replicas().find((r) => r.replicaId === b)?.load).toEqual({ bytes: 1, total: 2 });
    // Running: a stale report (the heartbeat sent before it started) is not shown.
    for (const s of ops.starts) s.resolve();
    await flush();
    expect(replicas().every((r) => r.state === 'RUNNING')).toBe(true);
    expect(replicas().map((r) => r.load)).toEqual([undefined, undefined]);
  });
});
