/**
 * The controller feeds each heartbeat's replica counters to the traffic series and shows traffic, SLO and cost
 * figures in status; a changed `slo` is not a new version (no replica restarts).
 */
import { describe, expect, it } from 'vitest';
import { latencyBucket } from '@shoal/core';
import { appSpec, flush, rig } from './fake-cluster.ts';

/** A sparse histogram: `fast` answers at 1 ms, `slow` at 500 ms. */
function hist(fast: number, slow: number): number[] {
  const h: number[] = [];
  if (fast > 0) h.push(latencyBucket(1), fast);
  if (slow > 0) h.push(latencyBucket(500), slow);
  return h;
}

describe('Controller: SLOs, traffic and cost', () => {
  it('shows figures from heartbeats, priced, and keeps the version when only the slo changes', async () => {
    const { ctl, clock, addWorker } = rig({ prices: { coreHour: 1, deviceHour: 0 } });
    const w1 = addWorker(4);
    ctl.deploy(appSpec('app', [{ name: 'Api', numReplicas: 1, resources: { cpus: 2 }, slo: { latency: { p99: 100 }, availability: 0.99 } }]));
    await ctl.reconcile();
    const id = ctl.status().replicas[0]!.replicaId;
    const version = ctl.status().applications[0]!.deployments[0]!.version;
    expect(ctl.status().applications[0]!.deployments[0]!.traffic).toBeUndefined();
    // Twelve heartbeats 5 s apart: 10 requests each, one slow and one failed.
    for (let i = 1; i <= 12; i++) {
      clock.advance(5000);
      ctl.heartbeat(w1, { replicas: [{ replicaId: id, ongoing: 0, queued: 0, o: { n: 10 * i, e: i, h: hist(9 * i, i) }, b: 1000 * i }] });
    }
    const d = ctl.status().applications[0]!.deployments[0]!;
    // The series began with the first heartbeat (at 5 s), which counts all it reported.
    expect(d.traffic).toMatchObject({ windowMs: 55_000, errorRate: 0.1 });
    expect(d.traffic!.rps).toBeCloseTo(120 / 55, 9);
    // Burning at 10, but over a minute of data: no window is covered yet, so nothing pages.
    expect(d.slo!.objectives.map((o) => [o.name, o.attainment['5m'], o.alerting])).toEqual([['p99', 0.9, false], ['availability', 0.9, false]]);
    expect(d.slo!.objectives[0]!.burn['5m']).toBeCloseTo(10 / 1, 9);
    expect(d.slo!.objectives[0]!.coveredMs['5m']).toBe(55_000);
    // 60 s of one replica of 2 cores, 12 s of it busy, at 1 per core-hour, for 120 requests.
    expect(d.cost!.requests).toBe(120);
    expect(d.cost!.allocatedCoreHours).toBeCloseTo((2 * 60) / 3600, 12);
    expect(d.cost!.idleShare).toBeCloseTo(0.8, 12);
    expect(d.cost!.costPer1kRequests).toBeCloseTo(((2 * 60) / 3600 / 120) * 1000, 12);
    // A new objective only: same version, same replica, the figures go on.
    ctl.deploy(appSpec('app', [{ name: 'Api', numReplicas: 1, resources: { cpus: 2 }, slo: { availability: 0.9 } }]));
    await ctl.reconcile();
    await flush();
    const after = ctl.status().applications[0]!.deployments[0]!;
    expect(after.version).toBe(version);
    expect(ctl.status().replicas.map((r) => r.replicaId)).toEqual([id]);
    expect(after.slo!.objectives.map((o) => o.name)).toEqual(['availability']);
    expect(after.slo!.objectives[0]!.burn['5m']).toBeCloseTo(1, 9);
    expect(after.cost!.requests).toBe(120);
  });
});
