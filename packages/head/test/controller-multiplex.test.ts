/** The controller carries what multiplexed replicas hold from heartbeats into the route table routers choose by. */
import { describe, expect, it } from 'vitest';
import { appSpec, rig } from './fake-cluster.ts';

describe('Controller: model multiplexing', () => {
  it('lists the models each replica reported, with the hot threshold, and republishes when they change', async () => {
    const { ctl, ops, addWorker } = rig();
    const w1 = addWorker(4);
    ctl.deploy(appSpec('app', [{ name: 'Models', numReplicas: 2, maxOngoingRequests: 8, multiplex: { maxModelsPerReplica: 2 } }, { name: 'Plain' }]));
    await ctl.reconcile();
    const [r1, r2] = ops.routed('app/Models');
    expect(ops.routes['app/Models']).toMatchObject({ hotOngoingRequests: 4 });
    expect(ops.routes['app/Plain']!.hotOngoingRequests).toBeUndefined();
    const published = ops.published.length;

    ctl.heartbeat(w1, { replicas: [{ replicaId: r1!, ongoing: 1, queued: 0, models: { v: 2, ids: ['a'] } }, { replicaId: r2!, ongoing: 0, queued: 0 }] });
    expect(ops.published).toHaveLength(published + 1);
    expect(ops.routes['app/Models']!.replicas.find((r) => r.replicaId === r1)?.models).toEqual({ v: 2, ids: ['a'] });
    expect(ops.routes['app/Models']!.replicas.find((r) => r.replicaId === r2)?.models).toBeUndefined();

    // The same sets again: nothing to publish.
    ctl.heartbeat(w1, { replicas: [{ replicaId: r1!, ongoing: 3, queued: 1, models: { v: 2, ids: ['a'] } }, { replicaId: r2!, ongoing: 0, queued: 0 }] });
    expect(ops.published).toHaveLength(published + 1);

    ctl.heartbeat(w1, { replicas: [{ replicaId: r1!, ongoing: 0, queued: 0, models: { v: 4, ids: ['a', 'b'] } }, { replicaId: r2!, ongoing: 0, queued: 0, models: { v: 1, ids: ['c'] } }] });
    expect(ops.published).toHaveLength(published + 2);
    expect(ops.routes['app/Models']!.replicas.map((r) => r.models?.ids)).toEqual(
      [r1, r2].sort().map((id) => (id === r1 ? ['a', 'b'] : ['c'])),
    );
  });
});
