import { describe, expect, it } from 'vitest';
import { DeployError, InsufficientResourcesError, NotFoundError, PeerGoneError } from '@shoal/core';
import { appSpec, flush, placement, rig } from './fake-cluster.ts';

describe('Controller reconciliation', () => {
  describe('deploy', () => {
    it('starts numReplicas replicas, spread across the workers they fit on, and publishes them', async () => {
      const { ctl, ops, addWorker } = rig();
      const w1 = addWorker(4);
      const w2 = addWorker(4);
      ctl.deploy(appSpec('shop', [{ name: 'Api', numReplicas: 4, resources: { cpus: 1 } }]));
      expect(ctl.isReady('shop')).toBe(false);
      await ctl.reconcile();
      expect(ops.starts).toHaveLength(4);
      expect(placement(ctl, 'Api')).toEqual({ [w1]: 2, [w2]: 2 });
      expect(ctl.isReady('shop')).toBe(true);
      expect(ctl.deploymentStatus('shop', 'Api')).toMatchObject({ status: 'HEALTHY', message: '', failures: 0 });
      expect(ops.routed('shop/Api')).toHaveLength(4);
      expect(ops.routes['shop/Api']).toMatchObject({ maxOngoingRequests: 100, maxQueuedRequests: 1000, requestTimeoutMs: 0 });
      expect(ops.routes['shop/Api']!.replicas.every((r) => r.dataAddress.startsWith('ws://127.0.0.1:'))).toBe(true);
      // Reconciling a steady state changes nothing.
      const published = ops.published.length;
      await ctl.reconcile();
      expect(ops.starts).toHaveLength(4);
      expect(ops.stops).toHaveLength(0);
      expect(ops.published).toHaveLength(published);
    });

    it('places by resource fit: only on workers with enough CPU, GPU and memory', async () => {
      const { ctl, addWorker } = rig();
      const small = addWorker(1);
      const big = addWorker(12);
      const gpu1 = addWorker(2, { gpus: 1, memory: 1 << 30 });
      const gpu2 = addWorker(2, { gpus: 1, memory: 1 << 30 });
      ctl.deploy(appSpec('a', [
        { name: 'Cpu', numReplicas: 3, resources: { cpus: 3 } },
        { name: 'Gpu', numReplicas: 4, resources: { cpus: 0, gpus: 0.5, memory: 256 << 20 } },
      ]));
      await ctl.reconcile();
      expect(placement(ctl, 'Cpu')).toEqual({ [big]: 3 });
      expect(placement(ctl, 'Gpu')).toEqual({ [gpu1]: 2, [gpu2]: 2 });
      expect(ctl.status().workers.find((w) => w.workerId === small)!.replicas).toBe(0);
      expect(ctl.status().workers.find((w) => w.workerId === gpu1)!.used).toEqual({ cpus: 0, gpus: 1, memory: 512 << 20 });
    });

    it('refuses a deployment that fits on no worker, with the numbers', () => {
      const { ctl, addWorker } = rig();
      addWorker(4, { gpus: 0 });
      let err: unknown;
      try { ctl.deploy(appSpec('big', [{ name: 'Llm', resources: { cpus: 2, gpus: 1 } }])); } catch (e) { err = e; }
      expect(err).toBeInstanceOf(InsufficientResourcesError);
      expect((err as Error).message).toBe('deployment "Llm" of "big" fits on no worker: needs cpus=2 gpus=1 memory=0; free: w1: cpus 4/4, gpus 0/0, memory 0/0');
      expect(ctl.appSpecs()).toHaveLength(0);
    });

    it('reports the numbers when only some replicas fit, and places the rest when a worker joins', async () => {
      const { ctl, ops, addWorker } = rig();
      addWorker(4);
      ctl.deploy(appSpec('a', [{ name: 'M', numReplicas: 3, resources: { cpus: 2 } }]));
      await ctl.reconcile();
      expect(ops.starts).toHaveLength(2);
      const status = ctl.deploymentStatus('a', 'M')!;
      expect(status.status).toBe('UPDATING');
      expect(status.message).toBe('cannot place a replica: needs cpus=2 gpus=0 memory=0; free: w1: cpus 0/4, gpus 0/0, memory 0/0');
      expect(ctl.status().applications[0]!.deployments[0]).toMatchObject({ name: 'M', numReplicas: 3, running: 2, status: 'UPDATING' });
      const w2 = addWorker(2);
      await ctl.reconcile();
      expect(placement(ctl, 'M')[w2]).toBe(1);
      expect(ctl.deploymentStatus('a', 'M')).toMatchObject({ status: 'HEALTHY', message: '' });
    });

    it('waits for workers when none has joined', async () => {
      const { ctl, ops, addWorker } = rig();
      ctl.deploy(appSpec('a', [{ name: 'M' }]));
      await ctl.reconcile();
      expect(ops.starts).toHaveLength(0);
      expect(ctl.deploymentStatus('a', 'M')!.message).toContain('no worker has joined the cluster');
      addWorker(1);
      await ctl.reconcile();
      expect(ctl.isReady('a')).toBe(true);
    });

    it('refuses a route prefix another app serves, and an ingress that is not a deployment', () => {
      const { ctl, addWorker } = rig();
      addWorker(4);
      ctl.deploy(appSpec('a', [{ name: 'M' }], { routePrefix: '/x' }));
      expect(() => ctl.deploy(appSpec('b', [{ name: 'N' }], { routePrefix: '/x' }))).toThrow(DeployError);
      expect(() => ctl.deploy(appSpec('b', [{ name: 'N' }], { routePrefix: '/x' }))).toThrow('route prefix "/x" is already served by application "a"');
      expect(() => ctl.deploy(appSpec('c', [{ name: 'N' }], { ingress: 'Nope' }))).toThrow('ingress deployment "Nope" is not among the deployments of "c"');
      // The same app may redeploy at its own prefix.
      expect(() => ctl.deploy(appSpec('a', [{ name: 'M' }], { routePrefix: '/x' }))).not.toThrow();
    });
  });

  describe('worker death', () => {
    it('declares a worker dead after workerTimeoutMs without heartbeat, and re-places its replicas', async () => {
      const { ctl, ops, clock, addWorker } = rig({ workerTimeoutMs: 3000 });
      const w1 = addWorker(4);
      const w2 = addWorker(4);
      ctl.deploy(appSpec('a', [{ name: 'M', numReplicas: 4 }]));
      await ctl.reconcile();
      expect(placement(ctl, 'M')).toEqual({ [w1]: 2, [w2]: 2 });
      const onW1 = ctl.status().replicas.filter((r) => r.workerId === w1).map((r) => r.replicaId);

      // w2 heartbeats, w1 stays silent; exactly at the timeout nobody is dead yet.
      for (let t = 0; t < 3000; t += 500) { clock.advance(500); ctl.heartbeat(w2); }
      expect(ctl.checkWorkers()).toEqual([]);
      clock.advance(1);
      expect(ctl.checkWorkers()).toEqual([w1]);
      expect(ctl.worker(w1)).toBeUndefined();
      expect(ctl.aliveWorkers().map((w) => w.workerId)).toEqual([w2]);
      // Its replicas left the route table at once, before any replacement runs.
      expect(ops.routed('a/M').some((id) => onW1.includes(id))).toBe(false);
      expect(ops.routed('a/M')).toHaveLength(2);

      const w3 = addWorker(4);
      await ctl.reconcile();
      const now = placement(ctl, 'M');
      expect(now[w1]).toBeUndefined();
      expect((now[w2] ?? 0) + (now[w3] ?? 0)).toBe(4);
      expect(now[w3]).toBe(2); // spread: the new worker takes the re-placed replicas
      expect(ops.routed('a/M')).toHaveLength(4);
      expect(ops.routes['a/M']!.replicas.every((r) => r.workerId !== w1)).toBe(true);
      // Nothing was stopped on the dead worker: its replicas were lost, not drained.
      expect(ops.stops).toHaveLength(0);
    });

    it('declares nobody dead for a silence the head itself caused (it was stalled), and still times out after', () => {
      const { ctl, clock, addWorker } = rig({ workerTimeoutMs: 3000 });
      const w1 = addWorker(1);
      const w2 = addWorker(1);
      clock.advance(8000); // the head was stopped (SIGSTOP) for 8 s: no heartbeat was read
      ctl.headStalled(8000);
      expect(ctl.checkWorkers()).toEqual([]);
      expect(ctl.aliveWorkers()).toHaveLength(2);
      // After the stall the clocks run again: w2 heartbeats, w1 stays silent past the timeout.
      for (let t = 0; t < 3000; t += 500) { clock.advance(500); ctl.heartbeat(w2); }
      clock.advance(1);
      expect(ctl.checkWorkers()).toEqual([w1]);
    });

    it('keeps a worker that heartbeats alive', () => {
      const { ctl, clock, addWorker } = rig({ workerTimeoutMs: 3000 });
      const w1 = addWorker(1);
      for (let i = 0; i < 20; i++) { clock.advance(2000); ctl.heartbeat(w1); expect(ctl.checkWorkers()).toEqual([]); }
    });

    it('re-places the replicas of a worker declared dead by workerDead()', async () => {
      const { ctl, ops, addWorker } = rig();
      const w1 = addWorker(2);
      const w2 = addWorker(2);
      ctl.deploy(appSpec('a', [{ name: 'M', numReplicas: 2 }]));
      await ctl.reconcile();
      ctl.workerDead(w1, 'connection closed');
      ctl.workerDead(w1, 'again'); // idempotent
      expect(ops.routes['a/M']!.replicas.map((r) => r.workerId)).toEqual([w2]);
      await ctl.reconcile();
      expect(placement(ctl, 'M')).toEqual({ [w2]: 2 });
      expect(ctl.isReady('a')).toBe(true);
      ctl.heartbeat(w1); // a late heartbeat from the dead worker does not bring it back
      expect(ctl.aliveWorkers().map((w) => w.workerId)).toEqual([w2]);
    });

    it('ignores a start that completes on a worker that died meanwhile', async () => {
      const { ctl, ops, addWorker } = rig();
      ops.autoStart = false;
      const w1 = addWorker(1);
      ctl.deploy(appSpec('a', [{ name: 'M' }]));
      const done = ctl.reconcile();
      await flush();
      expect(ops.starts).toHaveLength(1);
      ctl.workerDead(w1, 'gone');
      ops.starts[0]!.resolve();
      await done;
      expect(ctl.status().replicas).toHaveLength(0);
      expect(ops.routed('a/M')).toEqual([]);
    });

    it('re-places at once, without backoff, a replica whose start failed because its worker died', async () => {
      const { ctl, ops, addWorker } = rig();
      ops.autoStart = false;
      const w1 = addWorker(1);
      const w2 = addWorker(1);
      ctl.deploy(appSpec('a', [{ name: 'M' }]));
      const pass = ctl.reconcile();
      await flush();
      const first = ops.starts[0]!;
      ctl.workerDead(first.workerId, 'connection closed');
      first.reject(new PeerGoneError(`connection to ${first.workerId} closed`));
      await flush();
      expect(ctl.deploymentStatus('a', 'M')).toMatchObject({ failures: 0, retryAt: 0 });
      // The pass goes on at once (same clock time) and starts the replacement on the surviving worker.
      expect(ops.starts).toHaveLength(2);
      expect(ops.starts[1]!.workerId).toBe(first.workerId === w1 ? w2 : w1);
      ops.starts[1]!.resolve();
      await pass;
      expect(ctl.isReady('a')).toBe(true);
    });
  });

  describe('scaling', () => {
    it('scales up and down without restarting the replicas it keeps', async () => {
      const { ctl, ops, clock, addWorker } = rig();
      addWorker(8);
      ctl.deploy(appSpec('a', [{ name: 'M', numReplicas: 2 }]));
      await ctl.reconcile();
      const first = ops.starts.map((s) => s.replicaId);
      clock.advance(10);
      ctl.deploy(appSpec('a', [{ name: 'M', numReplicas: 5 }]));
      await ctl.reconcile();
      expect(ops.starts).toHaveLength(5);
      expect(ops.stops).toHaveLength(0);
      expect(ops.routed('a/M')).toHaveLength(5);
      ctl.deploy(appSpec('a', [{ name: 'M', numReplicas: 1 }]));
      await ctl.reconcile();
      expect(ops.stops).toHaveLength(4);
      // Newest go first: one of the two oldest remains.
      const left = ops.routed('a/M');
      expect(left).toHaveLength(1);
      expect(first).toContain(left[0]);
      expect(ctl.status().replicas).toHaveLength(1);
      expect(ops.stops.every((s) => s.timeoutMs === 20_000)).toBe(true);
      expect(ctl.isReady('a')).toBe(true);
    });

    it('scales to zero and back', async () => {
      const { ctl, ops, addWorker } = rig();
      addWorker(2);
      ctl.deploy(appSpec('a', [{ name: 'M', numReplicas: 2 }]));
      await ctl.reconcile();
      ctl.deploy(appSpec('a', [{ name: 'M', numReplicas: 0 }]));
      await ctl.reconcile();
      expect(ops.routes['a/M']!.replicas).toEqual([]);
      expect(ctl.status().replicas).toHaveLength(0);
      ctl.deploy(appSpec('a', [{ name: 'M', numReplicas: 2 }]));
      await ctl.reconcile();
      expect(ops.routed('a/M')).toHaveLength(2);
    });
  });

  describe('rolling update', () => {
    it('stops old replicas only after the new version runs at full count', async () => {
      const { ctl, ops, addWorker } = rig();
      addWorker(8);
      ctl.deploy(appSpec('a', [{ name: 'M', numReplicas: 2, methods: ['v1'] }]));
      await ctl.reconcile();
      const old = ops.routed('a/M');
      expect(old).toHaveLength(2);
      const publishedBefore = ops.published.length;

      ops.autoStart = false;
      ctl.deploy(appSpec('a', [{ name: 'M', numReplicas: 2, methods: ['v1', 'v2'], rollout: { maxSurge: '100%' } }]));
      const done = ctl.reconcile();
      await flush();
      const fresh = ops.starts.slice(2);
      expect(fresh).toHaveLength(2);
      expect(ops.stops).toHaveLength(0);
      expect(ops.routed('a/M')).toEqual(old);
      expect(ctl.isReady('a')).toBe(false);

      fresh[0]!.resolve();
      await flush();
      expect(ops.stops).toHaveLength(0);
      expect(ops.routed('a/M')).toEqual([...old, fresh[0]!.replicaId].sort());

      fresh[1]!.resolve();
      await done;
      await ctl.reconcile();
      expect(ops.stoppedIds().sort()).toEqual([...old].sort());
      expect(ops.routed('a/M')).toEqual(fresh.map((s) => s.replicaId).sort());
      expect(ctl.isReady('a')).toBe(true);
      expect(ctl.deploymentStatus('a', 'M')!.status).toBe('HEALTHY');
      // Throughout, callers always had at least the full count of replicas to go to.
      for (const p of ops.published.slice(publishedBefore)) expect(p.table['a/M']!.replicas.length).toBeGreaterThanOrEqual(2);
    });

    it('makes progress in a full cluster, one replica at a time, never leaving the deployment without a replica', async () => {
      const { ctl, ops, addWorker } = rig();
      addWorker(2);
      ctl.deploy(appSpec('a', [{ name: 'M', numReplicas: 2, methods: ['v1'] }]));
      await ctl.reconcile();
      const old = ops.routed('a/M');
      const publishedBefore = ops.published.length;
      ctl.deploy(appSpec('a', [{ name: 'M', numReplicas: 2, methods: ['v2'] }]));
      for (let i = 0; i < 10 && !ctl.isReady('a'); i++) await ctl.reconcile();
      expect(ctl.isReady('a')).toBe(true);
      expect(ops.stoppedIds().sort()).toEqual([...old].sort());
      expect(ops.routed('a/M').some((id) => old.includes(id))).toBe(false);
      for (const p of ops.published.slice(publishedBefore)) expect(p.table['a/M']!.replicas.length).toBeGreaterThanOrEqual(1);
    });

    it('changes userConfig by reconfiguring running replicas, without a restart', async () => {
      const { ctl, ops, addWorker } = rig();
      addWorker(4);
      ctl.deploy(appSpec('a', [{ name: 'M', numReplicas: 2, userConfig: { threshold: 1 } }]));
      await ctl.reconcile();
      ctl.deploy(appSpec('a', [{ name: 'M', numReplicas: 2, userConfig: { threshold: 2 } }]));
      await ctl.reconcile();
      expect(ops.starts).toHaveLength(2);
      expect(ops.stops).toHaveLength(0);
      expect(ops.reconfigures.map((r) => r.userConfig)).toEqual([{ threshold: 2 }, { threshold: 2 }]);
      // The same userConfig again reconfigures nothing.
      ctl.deploy(appSpec('a', [{ name: 'M', numReplicas: 2, userConfig: { threshold: 2 } }]));
      expect(ops.reconfigures).toHaveLength(2);
    });
  });

  describe('failed starts', () => {
    it('backs off exponentially, retries, and recovers', async () => {
      const { ctl, ops, clock, addWorker } = rig();
      addWorker(2);
      let failures = 2;
      ops.failStart = () => (failures-- > 0 ? new Error('CUDA out of memory') : undefined);
      ctl.deploy(appSpec('a', [{ name: 'M' }]));
      await ctl.reconcile();
      expect(ops.starts).toHaveLength(1);
      let st = ctl.deploymentStatus('a', 'M')!;
      expect(st.status).toBe('UNHEALTHY');
      expect(st.failures).toBe(1);
      expect(st.message).toBe('replica failed to start (1 in a row, retry in 500 ms): CUDA out of memory');
      expect(ctl.status().replicas).toHaveLength(0);
      expect(ops.routed('a/M')).toEqual([]);

      clock.advance(499);
      await ctl.reconcile();
      expect(ops.starts).toHaveLength(1);
      clock.advance(1);
      await ctl.reconcile();
      expect(ops.starts).toHaveLength(2);
      st = ctl.deploymentStatus('a', 'M')!;
      expect(st.message).toContain('2 in a row, retry in 1000 ms');

      clock.advance(999);
      await ctl.reconcile();
      expect(ops.starts).toHaveLength(2);
      clock.advance(1);
      await ctl.reconcile();
      expect(ops.starts).toHaveLength(3);
      expect(ctl.isReady('a')).toBe(true);
      expect(ctl.deploymentStatus('a', 'M')).toMatchObject({ status: 'HEALTHY', failures: 0, message: '' });
    });

    it('caps the backoff at maxBackoffMs', async () => {
      const { ctl, ops, clock, addWorker } = rig({ maxBackoffMs: 2000 });
      addWorker(1);
      ops.failStart = () => new Error('nope');
      ctl.deploy(appSpec('a', [{ name: 'M' }]));
      for (let i = 0; i < 8; i++) { await ctl.reconcile(); clock.advance(2000); }
      expect(ops.starts).toHaveLength(8);
      expect(ctl.deploymentStatus('a', 'M')!.message).toContain('retry in 2000 ms');
    });
  });

  describe('health checks', () => {
    it('checks every healthCheckPeriodMs and replaces a replica that fails', async () => {
      const { ctl, ops, clock, addWorker } = rig();
      addWorker(4);
      ctl.deploy(appSpec('a', [{ name: 'M', numReplicas: 2, healthCheckPeriodMs: 1000, healthCheckTimeoutMs: 250 }]));
      await ctl.reconcile();
      const [sick, well] = ops.routed('a/M') as [string, string];
      clock.advance(999);
      await ctl.reconcile();
      expect(ops.healthChecks).toHaveLength(0);
      clock.advance(1);
      await ctl.reconcile();
      expect(ops.healthChecks.map((h) => [h.replicaId, h.timeoutMs]).sort()).toEqual([[sick, 250], [well, 250]].sort());
      expect(ops.stops).toHaveLength(0);

      ops.unhealthy.add(sick);
      ops.autoStart = false;
      clock.advance(1000);
      const pass = ctl.reconcile();
      await flush();
      expect(ops.stoppedIds()).toEqual([sick]);
      expect(ops.routed('a/M')).toEqual([well]);
      expect(ctl.deploymentStatus('a', 'M')).toMatchObject({ status: 'UPDATING', message: `replica ${sick} failed its health check: replica ${sick} is wedged` });
      ops.starts.at(-1)!.resolve();
      await pass;
      const now = ops.routed('a/M');
      expect(now).toHaveLength(2);
      expect(now).toContain(well);
      expect(now).not.toContain(sick);
      expect(ops.starts).toHaveLength(3);
      expect(ctl.deploymentStatus('a', 'M')!.status).toBe('HEALTHY');
    });
  });

  describe('deleteApp', () => {
    it('stops every replica of the app and removes it from the route table', async () => {
      const { ctl, ops, addWorker } = rig();
      addWorker(8);
      ctl.deploy(appSpec('a', [{ name: 'Api', numReplicas: 2 }, { name: 'Model', numReplicas: 3 }]));
      ctl.deploy(appSpec('b', [{ name: 'Other' }]));
      await ctl.reconcile();
      const ofA = [...ops.routed('a/Api'), ...ops.routed('a/Model')];
      ctl.deleteApp('a');
      await ctl.reconcile();
      expect(ops.stoppedIds().sort()).toEqual(ofA.sort());
      expect(Object.keys(ops.routes)).toEqual(['b/Other']);
      expect(ctl.status().replicas.map((r) => r.app)).toEqual(['b']);
      expect(ctl.status().applications.map((a) => a.name)).toEqual(['b']);
      expect(() => ctl.deleteApp('a')).toThrow(NotFoundError);
    });

    it('stops a replica that was still starting', async () => {
      const { ctl, ops, addWorker } = rig();
      ops.autoStart = false;
      addWorker(1);
      ctl.deploy(appSpec('a', [{ name: 'M' }]));
      const first = ctl.reconcile();
      await flush();
      ctl.deleteApp('a');
      await ctl.reconcile(); // merged into the running pass
      ops.starts[0]!.resolve();
      await first;
      await ctl.reconcile();
      expect(ops.stoppedIds()).toEqual([ops.starts[0]!.replicaId]);
      expect(ctl.status().replicas).toHaveLength(0);
      expect(ops.routes).toEqual({});
    });
  });

  describe('route table', () => {
    it('lists only RUNNING replicas: not STARTING, not DRAINING', async () => {
      const { ctl, ops, addWorker } = rig();
      ops.autoStart = false;
      ops.autoStop = false;
      addWorker(4);
      ctl.deploy(appSpec('a', [{ name: 'M', numReplicas: 2 }]));
      const pass = ctl.reconcile();
      await flush();
      expect(ctl.status().replicas.map((r) => r.state)).toEqual(['STARTING', 'STARTING']);
      expect(ops.routes['a/M']!.replicas).toEqual([]);
      expect(ctl.currentRoutes().table['a/M']!.replicas).toEqual([]);
      ops.starts[0]!.resolve();
      await flush();
      expect(ops.routed('a/M')).toEqual([ops.starts[0]!.replicaId]);
      ops.starts[1]!.resolve();
      await pass;
      expect(ops.routed('a/M')).toHaveLength(2);

      ctl.deploy(appSpec('a', [{ name: 'M', numReplicas: 1 }]));
      const down = ctl.reconcile();
      await flush();
      expect(ops.stops).toHaveLength(1);
      expect(ctl.status().replicas.find((r) => r.replicaId === ops.stops[0]!.replicaId)!.state).toBe('DRAINING');
      expect(ops.routed('a/M')).not.toContain(ops.stops[0]!.replicaId);
      expect(ops.routed('a/M')).toHaveLength(1);
      ops.stops[0]!.resolve();
      await down;
    });

    it('publishes a new, higher version only when the table changes', async () => {
      const { ctl, ops, addWorker } = rig();
      addWorker(4);
      ctl.deploy(appSpec('a', [{ name: 'M', numReplicas: 2 }]));
      await ctl.reconcile();
      const versions = ops.published.map((p) => p.version);
      expect(versions).toEqual([...versions].sort((x, y) => x - y));
      expect(new Set(versions).size).toBe(versions.length);
      const n = ops.published.length;
      ctl.publishRoutes();
      await ctl.reconcile();
      expect(ops.published).toHaveLength(n);
      expect(ctl.currentRoutes().version).toBe(versions.at(-1));
    });
  });
});
