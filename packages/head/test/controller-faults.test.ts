/**
 * The controller under faults, on a FakeClock and a FakeCluster: workers that disconnect and come back, or do not;
 * a restarted head that adopts what its workers run; starts that hang or fail; warm spares; and autoscaling driven
 * by heartbeat loads.
 */
import { describe, expect, it } from 'vitest';
import { PeerGoneError, ReplicaUnavailableError } from '@shoal/core';
import type { RunningReplica, WorkerResources } from '@shoal/protocol';
import type { AutoscalingDecision } from '../src/autoscaling-policy.ts';
import type { Controller } from '../src/controller.ts';
import { appSpec, flush, placement, rig, type DeploymentDef } from './fake-cluster.ts';

function resources(cpus: number): WorkerResources {
  return { cpus, memory: 0, gpus: 0, devices: [] };
}

interface JoinOpts {
  cpus?: number;
  pid?: number;
  local?: boolean;
  spare?: boolean;
  previousWorkerId?: string;
  replicas?: RunningReplica[];
}

/** A worker joining (or rejoining) as the head would add it from its hello. */
function join(ctl: Controller, name: string, o: JoinOpts = {}): string {
  return ctl.addWorker({
    name, resources: resources(o.cpus ?? 4), dataAddress: `ws://${name}:7000`, pid: o.pid,
    ...(o.local !== undefined ? { local: o.local } : {}),
    ...(o.spare !== undefined ? { spare: o.spare } : {}),
    ...(o.previousWorkerId !== undefined ? { previousWorkerId: o.previousWorkerId } : {}),
    ...(o.replicas !== undefined ? { replicas: o.replicas } : {}),
  }).workerId;
}

/** What a worker reports in its hello for the replicas the controller has on it now. */
function runningOn(ctl: Controller, workerId: string): RunningReplica[] {
  return ctl.status().replicas.filter((r) => r.workerId === workerId).map((r) => ({
    replicaId: r.replicaId, app: r.app, deployment: r.deployment, version: ctl.versionsOf(r.app)[r.deployment]!, state: r.state,
  }));
}

function replicaIds(ctl: Controller, deployment: string, state = 'RUNNING'): string[] {
  return ctl.status().replicas.filter((r) => r.deployment === deployment && r.state === state).map((r) => r.replicaId).sort();
}

function count(ctl: Controller, app: string, deployment: string): number {
  return ctl.status().replicas.filter((r) => r.app === app && r.deployment === deployment && (r.state === 'RUNNING' || r.state === 'STARTING')).length;
}

describe('Controller under faults', () => {
  describe('a worker whose connection closed', () => {
    it('keeps its replicas out of the route table and does not re-place them within workerTimeoutMs', async () => {
      const { ctl, ops, clock } = rig({ workerTimeoutMs: 3000 });
      const w1 = join(ctl, 'host-1');
      const w2 = join(ctl, 'host-2');
      ctl.deploy(appSpec('a', [{ name: 'M', numReplicas: 4 }]));
      await ctl.reconcile();
      expect(placement(ctl, 'M')).toEqual({ [w1]: 2, [w2]: 2 });
      const onW1 = runningOn(ctl, w1).map((r) => r.replicaId);

      ctl.workerDisconnected(w1, 'connection closed (code 1006)');
      expect(ctl.worker(w1)!.state).toBe('DISCONNECTED');
      expect(ops.routed('a/M')).toHaveLength(2);
      expect(ops.routed('a/M').some((id) => onW1.includes(id))).toBe(false);
      expect(ops.routes['a/M']!.replicas.every((r) => r.workerId === w2)).toBe(true);
      // Within the timeout: nothing started in their place, nothing dropped.
      for (let t = 0; t < 3000; t += 500) {
        clock.advance(500);
        ctl.heartbeat(w2);
        await Promise.all(ctl.pass());
        expect(ctl.checkWorkers()).toEqual([]);
      }
      expect(ops.starts).toHaveLength(4);
      expect(ops.dropped).toEqual([]);
      expect(ops.stops).toEqual([]);
      // A heartbeat that somehow arrives for it changes nothing: it is back only by reconnecting.
      expect(ctl.heartbeat(w1, { replicas: [] })).toBe(false);
      expect(ctl.worker(w1)!.state).toBe('DISCONNECTED');
      // A second close report is no new disconnection: the grace period does not restart.
      ctl.workerDisconnected(w1, 'again');
      clock.advance(1);
      expect(ctl.checkWorkers()).toEqual([w1]);
    });

    it('gets its replicas back, with no new start, when it reconnects within workerTimeoutMs', async () => {
      const { ctl, ops, clock } = rig({ workerTimeoutMs: 3000 });
      const w1 = join(ctl, 'host-1');
      const w2 = join(ctl, 'host-2');
      ctl.deploy(appSpec('a', [{ name: 'M', numReplicas: 4 }]));
      await ctl.reconcile();
      const before = replicaIds(ctl, 'M');
      const report = runningOn(ctl, w1);
      ctl.workerDisconnected(w1, 'connection closed');
      clock.advance(2500);
      ctl.heartbeat(w2);
      await Promise.all(ctl.pass());

      const back = join(ctl, 'host-1', { previousWorkerId: w1, replicas: report });
      expect(back).toBe(w1);
      expect(ctl.worker(w1)!.state).toBe('ALIVE');
      expect(ops.routed('a/M')).toEqual(before);
      await ctl.reconcile();
      expect(ops.starts).toHaveLength(4);
      expect(ops.stops).toEqual([]);
      expect(ops.dropped).toEqual([]);
      expect(replicaIds(ctl, 'M')).toEqual(before);
      // Alive again: its heartbeats count, and the grace period is over.
      clock.advance(1000);
      ctl.heartbeat(w1);
      ctl.heartbeat(w2);
      expect(ctl.checkWorkers()).toEqual([]);
    });

    it('a reconnecting worker that no longer runs some of its replicas gets only those started again', async () => {
      const { ctl, ops } = rig();
      const w1 = join(ctl, 'host-1');
      join(ctl, 'host-2');
      ctl.deploy(appSpec('a', [{ name: 'M', numReplicas: 4 }]));
      await ctl.reconcile();
      const report = runningOn(ctl, w1);
      ctl.workerDisconnected(w1, 'connection closed');
      join(ctl, 'host-1', { previousWorkerId: w1, replicas: report.slice(0, 1) });
      expect(ops.routed('a/M')).toHaveLength(3);
      expect(ops.routed('a/M')).not.toContain(report[1]!.replicaId);
      await ctl.reconcile();
      expect(ops.starts).toHaveLength(5);
      expect(count(ctl, 'a', 'M')).toBe(4);
    });

    it('is dead once workerTimeoutMs passes without it: ops.dropWorker is called and its replicas are placed elsewhere', async () => {
      const { ctl, ops, clock } = rig({ workerTimeoutMs: 3000 });
      const w1 = join(ctl, 'host-1');
      const w2 = join(ctl, 'host-2', { cpus: 8 });
      ctl.deploy(appSpec('a', [{ name: 'M', numReplicas: 4 }]));
      await ctl.reconcile();
      ctl.workerDisconnected(w1, 'connection closed');
      clock.advance(3000);
      ctl.heartbeat(w2);
      expect(ctl.checkWorkers()).toEqual([]); // exactly at the timeout: not yet
      clock.advance(1);
      expect(ctl.checkWorkers()).toEqual([w1]);
      expect(ops.dropped).toHaveLength(1);
      expect(ops.dropped[0]!.workerId).toBe(w1);
      expect(ops.dropped[0]!.reason).toContain('disconnected and not back within workerTimeoutMs 3000');
      expect(ctl.worker(w1)).toBeUndefined();
      await ctl.reconcile();
      expect(placement(ctl, 'M')).toEqual({ [w2]: 4 });
      expect(ops.starts).toHaveLength(6);
      expect(ops.routed('a/M')).toHaveLength(4);
    });

    it('a local worker whose process exited (dead = true) is dead at once', async () => {
      const { ctl, ops } = rig();
      const w1 = join(ctl, 'host-1', { local: true, pid: 501 });
      const w2 = join(ctl, 'host-2', { local: true, pid: 502 });
      ctl.deploy(appSpec('a', [{ name: 'M', numReplicas: 2 }]));
      await ctl.reconcile();
      ctl.workerDisconnected(w1, 'its process exited', true);
      expect(ctl.worker(w1)).toBeUndefined();
      expect(ops.dropped.map((d) => d.workerId)).toEqual([w1]);
      await ctl.reconcile();
      expect(placement(ctl, 'M')).toEqual({ [w2]: 2 });
    });

    it('does not health-check, nor replace, the replicas of a DISCONNECTED worker during the grace period', async () => {
      const { ctl, ops, clock } = rig({ workerTimeoutMs: 3000 });
      const disconnected = new Set<string>();
      const check = ops.checkHealth.bind(ops);
      // As the head answers for a worker without a connection (every call is still recorded in ops.healthChecks).
      ops.checkHealth = (w, r, t) => {
        const answer = check(w, r, t);
        return disconnected.has(w) ? Promise.reject(new ReplicaUnavailableError(`worker ${w} is not connected (health check of replica ${r})`)) : answer;
      };
      const w1 = join(ctl, 'host-1');
      const w2 = join(ctl, 'host-2');
      ctl.deploy(appSpec('a', [{ name: 'M', numReplicas: 2, healthCheckPeriodMs: 1000 }]));
      await ctl.reconcile();
      const report = runningOn(ctl, w1);
      ctl.workerDisconnected(w1, 'connection closed');
      disconnected.add(w1);
      clock.advance(1500);
      ctl.heartbeat(w2);
      await ctl.reconcile();
      expect(ops.healthChecks.filter((h) => h.workerId === w1)).toEqual([]);
      expect(ops.starts).toHaveLength(2);
      disconnected.delete(w1);
      join(ctl, 'host-1', { previousWorkerId: w1, replicas: report });
      await ctl.reconcile();
      expect(ops.stops).toEqual([]);
      expect(placement(ctl, 'M')).toEqual({ [w1]: 1, [w2]: 1 });
    });

    it('a start cut off by its worker disconnecting is no failed start: no backoff, no `unavailable`', async () => {
      const { ctl, ops } = rig();
      ops.autoStart = false;
      join(ctl, 'host-1');
      join(ctl, 'host-2');
      ctl.deploy(appSpec('a', [{ name: 'M' }]));
      const work = ctl.pass();
      const start = ops.starts[0]!;
      ctl.workerDisconnected(start.workerId, 'connection closed (code 1006)');
      start.reject(new PeerGoneError(`connection to worker ${start.workerId} closed (code 1006) with 1 requests pending`));
      await Promise.all(work);
      expect(ctl.deploymentStatus('a', 'M')).toMatchObject({ failures: 0, retryAt: 0 });
      expect(ops.routes['a/M']!.unavailable).toBeUndefined();
    });

    it('workerByPid finds a DISCONNECTED worker (its exit may be seen after its socket closed), not a dead one', () => {
      const { ctl, clock } = rig({ workerTimeoutMs: 3000 });
      const w1 = join(ctl, 'host-1', { pid: 4242 });
      expect(ctl.workerByPid(4242)?.workerId).toBe(w1);
      ctl.workerDisconnected(w1, 'socket closed');
      expect(ctl.workerByPid(4242)).toMatchObject({ workerId: w1, state: 'DISCONNECTED' });
      expect(ctl.workerByPid(9999)).toBeUndefined();
      ctl.workerDead(ctl.workerByPid(4242)!.workerId, 'its process exited');
      expect(ctl.workerByPid(4242)).toBeUndefined();
      clock.advance(10_000);
      expect(ctl.checkWorkers()).toEqual([]);
    });
  });

  describe('a worker rejoining after its replicas were replaced elsewhere', () => {
    it('stops the extras, newest first, so no deployment ends with more replicas than numReplicas', async () => {
      const { ctl, ops, clock } = rig({ workerTimeoutMs: 3000 });
      const w1 = join(ctl, 'host-1');
      const w2 = join(ctl, 'host-2', { cpus: 8 });
      ctl.deploy(appSpec('a', [{ name: 'M', numReplicas: 2 }, { name: 'N', numReplicas: 3 }]));
      await ctl.reconcile();
      const report = runningOn(ctl, w1);
      expect(report.length).toBeGreaterThan(0);
      // Cut off past the timeout: declared dead, its replicas started again on w2.
      ctl.workerDisconnected(w1, 'connection closed');
      clock.advance(3001);
      ctl.heartbeat(w2);
      ctl.checkWorkers();
      await ctl.reconcile();
      expect(placement(ctl, 'M')).toEqual({ [w2]: 2 });
      expect(placement(ctl, 'N')).toEqual({ [w2]: 3 });
      const replacements = [...replicaIds(ctl, 'M'), ...replicaIds(ctl, 'N')].sort();
      const startsBefore = ops.starts.length;

      // The link comes back: the worker rejoins under its id with the replicas it kept running.
      clock.advance(5000);
      expect(join(ctl, 'host-1', { previousWorkerId: w1, replicas: report })).toBe(w1);
      expect(count(ctl, 'a', 'M') + count(ctl, 'a', 'N')).toBe(5 + report.length);
      await ctl.reconcile();
      // Adopted last, so newest: the rejoined copies go, the replacements that served all along stay.
      expect(ops.stoppedIds().sort()).toEqual(report.map((r) => r.replicaId).sort());
      expect(ops.stops.every((s) => s.workerId === w1)).toBe(true);
      expect(ops.starts).toHaveLength(startsBefore);
      expect(count(ctl, 'a', 'M')).toBe(2);
      expect(count(ctl, 'a', 'N')).toBe(3);
      expect([...ops.routed('a/M'), ...ops.routed('a/N')].sort()).toEqual(replacements);
    });

    it('keeps the replacement, which served all along, over the copy that comes back with its worker', async () => {
      const { ctl, ops, clock } = rig({ workerTimeoutMs: 3000 });
      const w1 = join(ctl, 'host-1', { cpus: 1 });
      const w2 = join(ctl, 'host-2', { cpus: 8 });
      ctl.deploy(appSpec('a', [{ name: 'M', numReplicas: 1 }]));
      await ctl.reconcile();
      const [old] = runningOn(ctl, placement(ctl, 'M')[w1] === 1 ? w1 : w2);
      expect(old).toBeDefined();
      const oldWorker = ctl.status().replicas.find((r) => r.replicaId === old!.replicaId)!.workerId;
      const other = oldWorker === w1 ? w2 : w1;
      // Its worker is lost; the replacement starts on the other one, later.
      ctl.workerDisconnected(oldWorker, 'cut');
      clock.advance(3001);
      ctl.heartbeat(other);
      ctl.checkWorkers();
      await ctl.reconcile();
      const replacement = replicaIds(ctl, 'M')[0]!;
      expect(replacement).not.toBe(old!.replicaId);
      clock.advance(100);
      join(ctl, oldWorker === w1 ? 'host-1' : 'host-2', { cpus: oldWorker === w1 ? 1 : 8, previousWorkerId: oldWorker, replicas: [old!] });
      await ctl.reconcile();
      expect(ops.stoppedIds()).toEqual([old!.replicaId]);
      expect(replicaIds(ctl, 'M')).toEqual([replacement]);
    });

    it('a reported replica the controller has on another worker is stopped on the reporter, not adopted', async () => {
      const { ctl, ops } = rig();
      const w1 = join(ctl, 'host-1');
      ctl.deploy(appSpec('a', [{ name: 'M', numReplicas: 1 }]));
      await ctl.reconcile();
      const report = runningOn(ctl, w1);
      ctl.workerDisconnected(w1, 'closed');
      // A different process (another name) claims the id and the replica.
      const w9 = join(ctl, 'other-host', { previousWorkerId: w1, replicas: report });
      expect(w9).not.toBe(w1);
      // The stop goes once the caller has registered the reporter's connection (after this turn).
      await new Promise((r) => setImmediate(r));
      expect(ops.stops.map((s) => [s.workerId, s.replicaId])).toEqual([[w9, report[0]!.replicaId]]);
      expect(ctl.status().replicas.find((r) => r.replicaId === report[0]!.replicaId)!.workerId).toBe(w1);
      expect(ctl.status().replicas).toHaveLength(1);
    });
  });

  describe('recovery after a head restart (beginRecovery / endRecovery)', () => {
    function recoveringRig() {
      const r = rig();
      r.ctl.beginRecovery();
      // The store's desired state comes back before any worker.
      r.ctl.deploy(appSpec('a', [{ name: 'M', numReplicas: 2 }, { name: 'N', numReplicas: 1 }], { routePrefix: '/a' }));
      return r;
    }

    function reported(ctl: Controller, deployment: 'M' | 'N', replicaId: string, state: RunningReplica['state'] = 'RUNNING'): RunningReplica {
      return { replicaId, app: 'a', deployment, version: ctl.versionsOf('a')[deployment]!, state };
    }

    it('starts nothing and publishes no routes while recovering; adopted replicas count; endRecovery starts only what is missing', async () => {
      const { ctl, ops } = recoveringRig();
      expect(ctl.isRecovering).toBe(true);
      expect(ctl.pass()).toEqual([]);
      const w1 = join(ctl, 'host-1', { replicas: [reported(ctl, 'M', 'a.M.old1'), reported(ctl, 'M', 'a.M.old2', 'STARTING')] });
      join(ctl, 'host-2', { replicas: [{ replicaId: 'gone.X.old3', app: 'gone', deployment: 'X', version: 'v0', state: 'RUNNING' }] });
      expect(ctl.pass()).toEqual([]);
      await ctl.reconcile();
      expect(ops.starts).toEqual([]);
      expect(ops.stops).toEqual([]); // not even the unknown app's replica yet
      expect(ops.published).toEqual([]);

      ctl.endRecovery();
      expect(ctl.isRecovering).toBe(false);
      // Replicas of applications the store no longer has are stopped.
      expect(ops.stoppedIds()).toEqual(['gone.X.old3']);
      expect(ops.published).toHaveLength(1);
      expect(ops.routed('a/M')).toEqual(['a.M.old1']); // the STARTING one is not routed yet
      await ctl.reconcile();
      // M has its two (one still starting): only N's one replica is started.
      expect(ops.starts.map((s) => s.deployment)).toEqual(['N']);
      expect(count(ctl, 'a', 'M')).toBe(2);
      // The adopted start finishes: the worker says so and it is routed.
      ctl.replicaStateReported(w1, 'a.M.old2', 'RUNNING');
      expect(ops.routed('a/M')).toEqual(['a.M.old1', 'a.M.old2']);
      expect(ctl.isReady('a')).toBe(true);
      // New replica ids never repeat adopted ones.
      expect(ops.starts[0]!.replicaId).toMatch(/^a\.N\./);
      expect(['a.M.old1', 'a.M.old2']).not.toContain(ops.starts[0]!.replicaId);
    });

    it('an adopted replica that was still starting and fails is started again after recovery', async () => {
      const { ctl, ops } = recoveringRig();
      const w1 = join(ctl, 'host-1', { replicas: [reported(ctl, 'M', 'a.M.old1'), reported(ctl, 'M', 'a.M.old2', 'STARTING'), reported(ctl, 'N', 'a.N.old3')] });
      ctl.endRecovery();
      await ctl.reconcile();
      expect(ops.starts).toEqual([]);
      ctl.replicaStateReported(w1, 'a.M.old2', 'FAILED');
      await ctl.reconcile();
      expect(ops.starts.map((s) => s.deployment)).toEqual(['M']);
      expect(count(ctl, 'a', 'M')).toBe(2);
    });

    it('more adopted replicas than wanted: the extras are stopped once recovery ends, never during it', async () => {
      const { ctl, ops } = recoveringRig();
      join(ctl, 'host-1', { cpus: 8, replicas: ['x1', 'x2', 'x3'].map((id) => reported(ctl, 'M', `a.M.${id}`)) });
      await ctl.reconcile();
      expect(ops.stops).toEqual([]);
      ctl.endRecovery();
      await ctl.reconcile();
      expect(ops.stops).toHaveLength(1);
      expect(count(ctl, 'a', 'M')).toBe(2);
    });

    it('a worker that disconnects during recovery is dead at once: nothing waits for it to come back', () => {
      const { ctl, ops } = recoveringRig();
      const w1 = join(ctl, 'host-1', { replicas: [reported(ctl, 'M', 'a.M.old1')] });
      ctl.workerDisconnected(w1, 'connection closed');
      expect(ctl.worker(w1)).toBeUndefined();
      expect(ops.dropped.map((d) => d.workerId)).toEqual([w1]);
      expect(ctl.status().replicas).toEqual([]);
      expect(ops.published).toEqual([]);
    });

    it('endRecovery twice, or without beginRecovery, does nothing more', async () => {
      const { ctl, ops } = recoveringRig();
      ctl.endRecovery();
      const published = ops.published.length;
      ctl.endRecovery();
      expect(ops.published).toHaveLength(published);
      expect(ctl.isRecovering).toBe(false);
    });
  });

  describe('one hung operation never holds back another', () => {
    it("a start of app A that never settles does not stop app B's replicas from starting and running in the next pass()", async () => {
      const { ctl, ops } = rig();
      join(ctl, 'host-1', { cpus: 8 });
      ops.autoStart = false;
      ctl.deploy(appSpec('a', [{ name: 'Slow' }]));
      const first = ctl.pass();
      expect(first).toHaveLength(1);
      expect(ops.starts.map((s) => s.deployment)).toEqual(['Slow']); // decided synchronously, before any await

      ctl.deploy(appSpec('b', [{ name: 'Fast', numReplicas: 2 }]));
      const second = ctl.pass();
      // The pass returned at once with B's two starts; A's start is in flight, counted, not repeated.
      expect(second).toHaveLength(2);
      expect(ops.starts.map((s) => s.deployment)).toEqual(['Slow', 'Fast', 'Fast']);
      for (const s of ops.starts.slice(1)) s.resolve();
      await Promise.all(second);
      expect(ops.routed('b/Fast')).toHaveLength(2);
      expect(ctl.isReady('b')).toBe(true);
      expect(ops.routed('a/Slow')).toEqual([]);
      expect(ctl.isReady('a')).toBe(false);
      // Later passes neither wait for A nor start it again.
      await Promise.all(ctl.pass());
      expect(ops.starts).toHaveLength(3);
      expect(ctl.status().replicas.find((r) => r.deployment === 'Slow')!.state).toBe('STARTING');
    });

    it('a stop that never settles does not hold back starts of other deployments', async () => {
      const { ctl, ops } = rig();
      join(ctl, 'host-1', { cpus: 8 });
      ctl.deploy(appSpec('a', [{ name: 'Old', numReplicas: 2 }]));
      await ctl.reconcile();
      ops.autoStop = false;
      ctl.deploy(appSpec('a', [{ name: 'Old', numReplicas: 1 }]));
      ctl.deploy(appSpec('b', [{ name: 'New' }]));
      const work = ctl.pass();
      expect(ops.stops).toHaveLength(1);
      expect(ops.starts.at(-1)!.deployment).toBe('New');
      await flush();
      expect(ops.routed('b/New')).toHaveLength(1);
      expect(ops.routed('a/Old')).toHaveLength(1); // the draining one left the table at once
      expect(work).toHaveLength(2);
    });
  });

  describe('a deployment whose starts fail', () => {
    it('gets `unavailable` with the error in its route entry while no replica runs, cleared once one runs', async () => {
      const { ctl, ops, clock } = rig();
      join(ctl, 'host-1');
      let failing = true;
      ops.failStart = () => (failing ? new Error('constructor threw: no weights at /models/x') : undefined);
      ctl.deploy(appSpec('a', [{ name: 'M' }]));
      await Promise.all(ctl.pass());
      await flush();
      expect(ops.routes['a/M']!.replicas).toEqual([]);
      expect(ops.routes['a/M']!.unavailable).toContain('constructor threw: no weights at /models/x');
      expect(ctl.status().applications[0]!.deployments[0]!.lastError).toContain('no weights');
      // Still failing after the backoff: still unavailable.
      clock.advance(500);
      await Promise.all(ctl.pass());
      await flush();
      expect(ops.starts).toHaveLength(2);
      expect(ops.routes['a/M']!.unavailable).toContain('no weights');

      failing = false;
      clock.advance(1000);
      await Promise.all(ctl.pass());
      await flush();
      expect(ops.routed('a/M')).toHaveLength(1);
      expect(ops.routes['a/M']!.unavailable).toBeUndefined();
      expect(ctl.deploymentStatus('a', 'M')).toMatchObject({ failures: 0, status: 'HEALTHY' });
    });

    it('is not marked unavailable while one of its replicas runs, even as others fail to start', async () => {
      const { ctl, ops } = rig();
      join(ctl, 'host-1', { cpus: 8 });
      let n = 0;
      ops.failStart = () => (n++ === 0 ? undefined : new Error('second replica: CUDA out of memory'));
      ctl.deploy(appSpec('a', [{ name: 'M', numReplicas: 2 }]));
      await Promise.all(ctl.pass());
      await flush();
      expect(ctl.deploymentStatus('a', 'M')!.failures).toBe(1);
      expect(ops.routed('a/M')).toHaveLength(1);
      expect(ops.routes['a/M']!.unavailable).toBeUndefined();
    });
  });

  describe('warm spares', () => {
    it('get no replica while a regular worker has room, and one when none has', async () => {
      const { ctl } = rig();
      const reg = join(ctl, 'host-1', { cpus: 2, local: true, pid: 11 });
      const spare = join(ctl, 'host-2', { cpus: 8, local: true, pid: 12, spare: true });
      ctl.deploy(appSpec('a', [{ name: 'M', numReplicas: 2 }]));
      await ctl.reconcile();
      // The spare has more room, but the regular worker still has enough.
      expect(placement(ctl, 'M')).toEqual({ [reg]: 2 });
      ctl.deploy(appSpec('b', [{ name: 'N' }]));
      await ctl.reconcile();
      expect(placement(ctl, 'N')).toEqual({ [spare]: 1 });
      expect(ctl.worker(spare)!.spare).toBe(true);
    });

    it('one is promoted when a regular local worker dies, and takes its replicas', async () => {
      const { ctl, ops } = rig();
      const reg = join(ctl, 'host-1', { cpus: 2, local: true, pid: 11 });
      const spare = join(ctl, 'host-2', { cpus: 2, local: true, pid: 12, spare: true });
      ctl.deploy(appSpec('a', [{ name: 'M', numReplicas: 2 }]));
      await ctl.reconcile();
      expect(placement(ctl, 'M')).toEqual({ [reg]: 2 });
      ctl.workerDisconnected(reg, 'its process exited', true);
      expect(ctl.worker(spare)!.spare).toBe(false);
      expect(ops.dropped.map((d) => d.workerId)).toEqual([reg]);
      await ctl.reconcile();
      expect(placement(ctl, 'M')).toEqual({ [spare]: 2 });
    });

    it('is not promoted for a spare that dies, nor for a remote (non-local) worker', () => {
      const { ctl } = rig();
      const remote = join(ctl, 'remote-1', { pid: 10 });
      const spare1 = join(ctl, 'host-1', { local: true, spare: true, pid: 11 });
      const spare2 = join(ctl, 'host-2', { local: true, spare: true, pid: 12 });
      ctl.workerDead(spare1, 'its process exited');
      ctl.workerDead(remote, 'no heartbeat');
      expect(ctl.worker(spare2)!.spare).toBe(true);
      expect(ctl.promoteSpare()).toBe(true);
      expect(ctl.worker(spare2)!.spare).toBe(false);
      expect(ctl.promoteSpare()).toBe(false);
    });

    it('a regular local worker declared dead after a disconnection promotes a spare too', () => {
      const { ctl, clock } = rig({ workerTimeoutMs: 1000 });
      const reg = join(ctl, 'host-1', { local: true, pid: 11 });
      const spare = join(ctl, 'host-2', { local: true, spare: true, pid: 12 });
      ctl.workerDisconnected(reg, 'socket closed');
      expect(ctl.worker(spare)!.spare).toBe(true); // it may come back
      clock.advance(1001);
      ctl.heartbeat(spare);
      expect(ctl.checkWorkers()).toEqual([reg]);
      expect(ctl.worker(spare)!.spare).toBe(false);
    });
  });

  describe('autoscaling driven by heartbeats', () => {
    const AUTOSCALING = {
      minReplicas: 0, maxReplicas: 4, initialReplicas: 1, targetOngoingRequests: 2,
      upscaleDelayMs: 1000, downscaleDelayMs: 4000, downscaleToZeroDelayMs: 6000, metricsIntervalMs: 100, lookBackPeriodMs: 500,
    };

    function autoscaled(extra: Partial<DeploymentDef> = {}) {
      const decisions: Array<{ key: string; at: number; d: AutoscalingDecision }> = [];
      const r = rig({ onAutoscale: (key, d) => decisions.push({ key, at: r.clock.monoNow(), d }) });
      const w = join(r.ctl, 'host-1', { cpus: 16 });
      r.ctl.deploy(appSpec('a', [{ name: 'M', autoscaling: AUTOSCALING, ...extra }]));
      /** Advances `ms` in metrics intervals, each with a heartbeat of `load` per running replica plus `waiting`, and a pass. */
      const run = async (ms: number, load: (replicaId: string) => number, waiting = 0): Promise<void> => {
        for (let t = 0; t < ms; t += 100) {
          r.clock.advance(100);
          const replicas = r.ctl.status().replicas.filter((x) => x.workerId === w).map((x) => ({ replicaId: x.replicaId, ongoing: load(x.replicaId), queued: 0 }));
          r.ctl.heartbeat(w, { replicas, ...(waiting > 0 ? { waiting: { 'a/M': waiting } } : {}) });
          await Promise.all(r.ctl.pass());
          await flush();
        }
      };
      const target = (): number => r.ctl.status().applications[0]!.deployments[0]!.numReplicas;
      return { ...r, w, decisions, run, target };
    }

    it('scales up after upscaleDelayMs, down after downscaleDelayMs, to zero after downscaleToZeroDelayMs, telling onAutoscale each time', async () => {
      const { ctl, ops, clock, decisions, run, target } = autoscaled();
      await ctl.reconcile();
      expect(ops.starts).toHaveLength(1);
      expect(target()).toBe(1);

      // 8 ongoing on one replica, target 2 each: 4 wanted, taken once wanted for the upscale delay.
      const loadStart = clock.monoNow();
      await run(900, () => 8);
      expect(target()).toBe(1);
      expect(ops.starts).toHaveLength(1);
      await run(300, () => 8);
      expect(decisions).toHaveLength(1);
      expect(decisions[0]).toMatchObject({ key: 'a/M', d: { from: 1, to: 4, reason: 'upscale', targetOngoingRequests: 2, running: 1 } });
      expect(decisions[0]!.d.wantedForMs).toBeGreaterThanOrEqual(1000);
      expect(decisions[0]!.at - loadStart).toBeLessThanOrEqual(1000 + 2 * 100);
      expect(target()).toBe(4);
      expect(ops.starts).toHaveLength(4);
      expect(ops.routed('a/M')).toHaveLength(4);

      // Idle: down to one after the downscale delay (the window forgets the load first).
      const idleStart = clock.monoNow();
      await run(3500, () => 0);
      expect(target()).toBe(4);
      await run(1500, () => 0);
      expect(decisions).toHaveLength(2);
      expect(decisions[1]!.d).toMatchObject({ from: 4, to: 1, reason: 'downscale' });
      expect(decisions[1]!.d.wantedForMs).toBeGreaterThanOrEqual(4000);
      expect(decisions[1]!.at - idleStart).toBeGreaterThanOrEqual(4000);
      expect(decisions[1]!.at - idleStart).toBeLessThanOrEqual(4000 + AUTOSCALING.lookBackPeriodMs + 200);
      expect(ops.stops).toHaveLength(3);
      expect(ops.routed('a/M')).toHaveLength(1);

      // Still idle: zero once wanted for the to-zero delay, from the first sample at one replica.
      const oneAt = decisions[1]!.at;
      await run(oneAt + 6000 - clock.monoNow(), () => 0);
      expect(target()).toBe(1);
      await run(500, () => 0);
      expect(decisions).toHaveLength(3);
      expect(decisions[2]!.d).toMatchObject({ from: 1, to: 0, reason: 'downscale-to-zero' });
      expect(decisions[2]!.d.wantedForMs).toBeGreaterThanOrEqual(6000);
      expect(decisions[2]!.at - oneAt).toBeGreaterThanOrEqual(6000);
      expect(decisions[2]!.at - oneAt).toBeLessThanOrEqual(6000 + 200);
      expect(target()).toBe(0);
      expect(ops.stops).toHaveLength(4);
      expect(ops.routes['a/M']!.replicas).toEqual([]);
      expect(ctl.status().replicas).toEqual([]);
    });

    it('counts requests waiting in routers as load: with no ongoing on the replica, waiting requests scale it up', async () => {
      const { ctl, decisions, run, target } = autoscaled();
      await ctl.reconcile();
      await run(1200, () => 0, 6); // 6 waiting / 2 per replica = 3
      expect(target()).toBe(3);
      expect(decisions[0]!.d).toMatchObject({ from: 1, to: 3, reason: 'upscale' });
    });

    it("counts the head's own router waiting (localWaiting) as load", async () => {
      const decisions: AutoscalingDecision[] = [];
      const waiting: Record<string, number> = {};
      const { ctl, clock } = rig({ onAutoscale: (_k, d) => decisions.push(d), localWaiting: () => waiting });
      const w = join(ctl, 'host-1', { cpus: 8 });
      ctl.deploy(appSpec('a', [{ name: 'M', autoscaling: { ...AUTOSCALING, initialReplicas: 0 } }]));
      await ctl.reconcile();
      expect(ctl.status().replicas).toEqual([]);
      waiting['a/M'] = 1;
      ctl.heartbeat(w, { replicas: [] });
      clock.advance(1);
      await ctl.reconcile();
      expect(decisions.map((d) => d.reason)).toEqual(['scale-from-zero']);
      expect(ctl.status().replicas).toHaveLength(1);
    });

    it('heartbeat() returns true when requests wait for a deployment at target 0, and the next pass scales from zero without delay', async () => {
      const { ctl, ops, w, decisions } = autoscaled({ autoscaling: { ...AUTOSCALING, initialReplicas: 0 } });
      await ctl.reconcile();
      expect(ops.starts).toEqual([]);
      expect(ctl.heartbeat(w, { replicas: [] })).toBe(false);
      expect(ctl.heartbeat(w, { replicas: [], waiting: { 'other/App': 3 } })).toBe(false);
      expect(ctl.heartbeat(w, { replicas: [], waiting: { 'a/M': 3 } })).toBe(true);
      // No clock advance at all: the pass that follows samples and decides on the spot.
      const work = ctl.pass();
      expect(decisions).toHaveLength(1);
      expect(decisions[0]!.d).toMatchObject({ from: 0, to: 2, reason: 'scale-from-zero', wantedForMs: 0 }); // ceil(3 / 2)
      expect(ops.starts).toHaveLength(2);
      await Promise.all(work);
      expect(ops.routed('a/M')).toHaveLength(2);
      // At a target above zero the same heartbeat is ordinary load.
      expect(ctl.heartbeat(w, { replicas: [], waiting: { 'a/M': 3 } })).toBe(false);
    });

    it('a heartbeat from a worker that is not alive is ignored and reports no demand', async () => {
      const { ctl, w } = autoscaled({ autoscaling: { ...AUTOSCALING, initialReplicas: 0 } });
      await ctl.reconcile();
      ctl.workerDisconnected(w, 'closed');
      expect(ctl.heartbeat(w, { replicas: [], waiting: { 'a/M': 3 } })).toBe(false);
    });

    it('scale-down stops the idle replicas and keeps the busy one', async () => {
      // target 10 per replica: 4 ongoing in all wants one replica, from three.
      const { ctl, ops, decisions, run, target } = autoscaled({ autoscaling: { ...AUTOSCALING, initialReplicas: 3, targetOngoingRequests: 10 } });
      await ctl.reconcile();
      const ids = replicaIds(ctl, 'M');
      expect(ids).toHaveLength(3);
      const busy = ids[0]!;
      const some = ids[1]!;
      await run(5000, (id) => (id === busy ? 3 : id === some ? 1 : 0));
      expect(decisions.map((d) => d.d.reason)).toEqual(['downscale']);
      expect(target()).toBe(1);
      expect(ops.stoppedIds().sort()).toEqual(ids.filter((id) => id !== busy).sort());
      expect(replicaIds(ctl, 'M')).toEqual([busy]);
    });
  });

  describe('scale-down picks its victims', () => {
    it('an idle replica before a busy one, whatever their age', async () => {
      const { ctl, ops, clock } = rig();
      const w = join(ctl, 'host-1', { cpus: 8 });
      const ids: string[] = [];
      for (let n = 1; n <= 3; n++) {
        ctl.deploy(appSpec('a', [{ name: 'M', numReplicas: n }]));
        await ctl.reconcile();
        ids.push(ops.starts.at(-1)!.replicaId);
        clock.advance(1000);
      }
      const [oldest, middle, newest] = ids as [string, string, string];
      // The newest is the busiest, the oldest idle: age alone would stop the newest.
      ctl.heartbeat(w, { replicas: [{ replicaId: oldest, ongoing: 0, queued: 0 }, { replicaId: middle, ongoing: 1, queued: 1 }, { replicaId: newest, ongoing: 4, queued: 2 }] });
      ctl.deploy(appSpec('a', [{ name: 'M', numReplicas: 2 }]));
      await ctl.reconcile();
      expect(ops.stoppedIds()).toEqual([oldest]);
      ctl.deploy(appSpec('a', [{ name: 'M', numReplicas: 1 }]));
      await ctl.reconcile();
      expect(ops.stoppedIds()).toEqual([oldest, middle]);
      expect(replicaIds(ctl, 'M')).toEqual([newest]);
    });

    it('a STARTING replica before any RUNNING one, even an idle one', async () => {
      const { ctl, ops, clock } = rig();
      const w = join(ctl, 'host-1', { cpus: 8 });
      ctl.deploy(appSpec('a', [{ name: 'M', numReplicas: 2 }]));
      await ctl.reconcile();
      const running = replicaIds(ctl, 'M');
      ops.autoStart = false;
      clock.advance(1000);
      ctl.deploy(appSpec('a', [{ name: 'M', numReplicas: 3 }]));
      ctl.pass();
      const starting = ops.starts.at(-1)!.replicaId;
      ctl.heartbeat(w, { replicas: running.map((replicaId, i) => ({ replicaId, ongoing: i, queued: 0 })) });
      clock.advance(1000);
      ctl.deploy(appSpec('a', [{ name: 'M', numReplicas: 2 }]));
      ctl.pass();
      expect(ops.stoppedIds()).toEqual([starting]);
      await flush();
      expect(replicaIds(ctl, 'M')).toEqual(running);
    });
  });

  describe('autoscaled deployments across changes and restarts', () => {
    const AUTOSCALING = {
      minReplicas: 1, maxReplicas: 8, initialReplicas: 1, targetOngoingRequests: 1,
      upscaleDelayMs: 0, downscaleDelayMs: 60_000, metricsIntervalMs: 100, lookBackPeriodMs: 100,
    };

    async function scaledTo4(): Promise<ReturnType<typeof rig> & { w: string }> {
      const r = rig();
      const w = join(r.ctl, 'host-1', { cpus: 16 });
      r.ctl.deploy(appSpec('a', [{ name: 'M', autoscaling: AUTOSCALING }]));
      await r.ctl.reconcile();
      for (let i = 0; i < 5; i++) {
        r.clock.advance(100);
        const replicas = r.ctl.status().replicas.map((x) => ({ replicaId: x.replicaId, ongoing: 4 / Math.max(1, r.ctl.status().replicas.length), queued: 0 }));
        r.ctl.heartbeat(w, { replicas, waiting: { 'a/M': 0 } });
        await r.ctl.reconcile();
      }
      expect(count(r.ctl, 'a', 'M')).toBe(4);
      return { ...r, w };
    }

    it('a change of the autoscaling options alone replaces no replica and keeps the count reached, within the new bounds', async () => {
      const { ctl, ops } = await scaledTo4();
      const startsBefore = ops.starts.length;
      ctl.deploy(appSpec('a', [{ name: 'M', autoscaling: { ...AUTOSCALING, maxReplicas: 3 } }]));
      await ctl.reconcile();
      // Same version: nothing rolls; the target is brought down to the new maximum, so one replica goes.
      expect(ops.starts.length).toBe(startsBefore);
      expect(ctl.status().applications[0]!.deployments[0]!.numReplicas).toBe(3);
      expect(count(ctl, 'a', 'M')).toBe(3);
    });

    it('a restarted head starts from the count its workers still run, not initialReplicas', async () => {
      const first = await scaledTo4();
      const report = runningOn(first.ctl, first.w);
      const { ctl, ops } = rig();
      ctl.beginRecovery();
      ctl.deploy(appSpec('a', [{ name: 'M', autoscaling: AUTOSCALING }]));
      join(ctl, 'host-1', { cpus: 16, previousWorkerId: first.w, replicas: report });
      ctl.endRecovery();
      await ctl.reconcile();
      expect(ops.stops).toHaveLength(0);
      expect(ops.starts).toHaveLength(0);
      expect(ctl.status().applications[0]!.deployments[0]!.numReplicas).toBe(4);
      expect(count(ctl, 'a', 'M')).toBe(4);
    });
  });

  it('stops an adopted replica that stays STARTING past startTimeoutMs (the head that timed its start is gone)', async () => {
    const { ctl, ops, clock } = rig({ startTimeoutMs: 10_000 });
    ctl.beginRecovery();
    ctl.deploy(appSpec('a', [{ name: 'M', numReplicas: 1 }]));
    const version = ctl.versionsOf('a').M!;
    join(ctl, 'host-1', { previousWorkerId: 'w1', replicas: [{ replicaId: 'a.M.old1', app: 'a', deployment: 'M', version, state: 'STARTING' }] });
    ctl.endRecovery();
    await Promise.all(ctl.pass());
    expect(ops.stops).toHaveLength(0);
    expect(ops.starts).toHaveLength(0);
    clock.advance(10_001);
    await ctl.reconcile();
    expect(ops.stoppedIds()).toEqual(['a.M.old1']);
    // And a fresh one takes its place.
    expect(ops.starts).toHaveLength(1);
  });
});

