import { describe, expect, it } from 'vitest';
import { LatencyHistogram } from '@shoal/core';
import type { ShadowCounts } from '@shoal/protocol';
import type { RolloutDecision } from '../src/rollout.ts';
import { appSpec, flush, rig, type DeploymentDef } from './fake-cluster.ts';

/** Heartbeat outcome counts for a replica: `n` answers, `e` of them errors, every one taking `ms`. */
function outcomes(n: number, e: number, ms: number): { n: number; e: number; h: number[] } {
  const h = new LatencyHistogram();
  for (let i = 0; i < n; i++) h.record(ms, i < e);
  return { n: h.requests, e: h.errors, h: h.sparse() };
}

function shadow(x: Partial<ShadowCounts>): ShadowCounts {
  return { mirrored: 0, dropped: 0, compared: 0, agreed: 0, shadowErrors: 0, numbers: 0, sumAbsDiff: 0, maxAbsDiff: 0, ...x };
}

function setup(dep: Omit<DeploymentDef, 'name' | 'methods'>) {
  const decisions: RolloutDecision[] = [];
  const experiments: Array<{ name: string; variants: unknown }> = [];
  const r = rig({ onRollout: (d) => decisions.push(d), onExperimentStart: (name, _cfg, variants) => experiments.push({ name, variants }) });
  const w = r.addWorker(16);
  const v1 = (extra: Partial<DeploymentDef> = {}) => appSpec('a', [{ name: 'M', numReplicas: 2, methods: ['v1'], ...dep, ...extra }]);
  const v2 = (extra: Partial<DeploymentDef> = {}) => appSpec('a', [{ name: 'M', numReplicas: 2, methods: ['v1', 'v2'], ...dep, ...extra }]);
  const versionOf = (replicaId: string) => r.ctl.status().replicas.find((x) => x.replicaId === replicaId);
  const byVersion = () => {
    const st = r.ctl.status().applications[0]!.deployments[0]!;
    return { current: st.version, versions: st.versions };
  };
  /** Reports each replica of `version` with the given outcome counts. */
  const report = (version: string, o: { n: number; e: number; h: number[] }, extra: { shadow?: Record<string, ShadowCounts> } = {}) => {
    const mine = r.ctl.status().replicas.filter((x) => x.state === 'RUNNING' && x.version === version);
    r.ctl.heartbeat(w, { replicas: mine.map(({ replicaId }) => ({ replicaId, ongoing: 0, queued: 0, o })), ...extra });
  };
  return { ...r, w, v1, v2, decisions, experiments, versionOf, byVersion, report };
}

describe('Controller rollouts', () => {
  it('a rolling update with maxSurge 1 never has fewer than the count serving, and never more than count + 1', async () => {
    const s = setup({ numReplicas: 3, rollout: { maxSurge: 1, maxUnavailable: 0 } });
    s.ctl.deploy(s.v1());
    await s.ctl.reconcile();
    expect(s.ops.routed('a/M')).toHaveLength(3);
    s.ops.autoStart = false;
    s.ctl.deploy(s.v2());
    let resolved = 0;
    for (let guard = 0; guard < 40 && resolved < 3; guard++) {
      s.ctl.pass();
      await flush();
      const live = s.ctl.status().replicas.filter((r) => r.state === 'RUNNING' || r.state === 'STARTING');
      expect(live.length).toBeLessThanOrEqual(4);
      expect(s.ops.routed('a/M').length).toBeGreaterThanOrEqual(3);
      const pending = s.ops.starts.slice(3 + resolved);
      expect(pending.length).toBeLessThanOrEqual(1); // maxSurge 1: one new replica at a time
      if (pending.length === 1) { pending[0]!.resolve(); resolved++; }
      await flush();
    }
    for (let i = 0; i < 3; i++) { s.ctl.pass(); await flush(); }
    const versions = s.byVersion();
    expect(versions.versions.map((v) => v.running)).toEqual([0, 3]);
    expect(s.ctl.isReady('a')).toBe(true);
    expect(s.decisions.map((d) => d.action)).toEqual(['start', 'done']);
  });

  it('a new version that fails to start stops the rollout: the old one keeps serving and is current again', async () => {
    const s = setup({ rollout: { maxSurge: 1, maxFailures: 2 } });
    s.ctl.deploy(s.v1());
    await s.ctl.reconcile();
    const old = s.ops.routed('a/M');
    const oldVersion = s.byVersion().current;
    s.ops.failStart = () => new Error('model file is corrupt');
    s.ctl.deploy(s.v2());
    for (let i = 0; i < 4; i++) { s.clock.advance(60_000); await s.ctl.reconcile(); }
    expect(s.ops.routed('a/M')).toEqual(old);
    expect(s.byVersion().current).toBe(oldVersion);
    const failed = s.decisions.find((d) => d.action === 'failed')!;
    expect(failed.reason).toContain('model file is corrupt');
    expect(failed.reason).toContain('maxFailures 2');
    expect(s.ctl.appSpec('a')!.deployments[0]!.methods).toEqual(['v1']);
    expect(s.ops.starts.length).toBe(2 + 2);
  });

  it('userConfig, count and batching changes apply in place: no new version, no restart', async () => {
    const s = setup({});
    s.ctl.deploy(s.v1({ userConfig: { t: 1 } }));
    await s.ctl.reconcile();
    const before = s.byVersion().current;
    s.ctl.deploy(s.v1({ userConfig: { t: 2, batch: { predict: { maxBatchSize: 8 } } }, numReplicas: 3, rollout: { maxSurge: 2 } }));
    await s.ctl.reconcile();
    expect(s.byVersion().current).toBe(before);
    expect(s.byVersion().versions).toHaveLength(1);
    expect(s.ops.stops).toHaveLength(0);
    expect(s.ops.reconfigures).toHaveLength(2);
    expect(s.ops.routed('a/M')).toHaveLength(3);
  });

  describe('canary', () => {
    const canary = { rollout: { canary: { steps: [10, 50], stepIntervalMs: 1000, minRequests: 100, maxErrorRateIncrease: 0.01, maxP99Increase: 0.5 } } };

    it('splits traffic by weight, steps up on good numbers, then promotes', async () => {
      const s = setup(canary);
      s.ctl.deploy(s.v1());
      await s.ctl.reconcile();
      s.ctl.deploy(s.v2());
      await s.ctl.reconcile();
      const st = s.ctl.status().applications[0]!.deployments[0]!;
      expect(st.rollout!.phase).toBe('canary');
      const entry = s.ops.routes['a/M']!;
      expect(entry.traffic!.weights).toEqual([{ version: st.rollout!.from, percent: 90 }, { version: st.rollout!.to, percent: 10 }]);
      expect(entry.replicas).toHaveLength(3); // 2 stable + 1 canary
      expect(new Set(entry.replicas.map((r) => r.version))).toEqual(new Set([st.rollout!.from, st.rollout!.to]));
      expect(s.ctl.isReady('a')).toBe(true);

      s.report(st.rollout!.from, outcomes(1000, 2, 10));
      s.report(st.rollout!.to, outcomes(150, 0, 11));
      s.clock.advance(1000);
      await s.ctl.reconcile();
      expect(s.ops.routes['a/M']!.traffic!.weights[1]!.percent).toBe(50);
      expect(s.decisions.at(-1)!.action).toBe('step');

      s.report(st.rollout!.from, outcomes(2000, 4, 10));
      s.report(st.rollout!.to, outcomes(400, 1, 10));
      s.clock.advance(1000);
      for (let i = 0; i < 4; i++) await s.ctl.reconcile();
      expect(s.decisions.map((d) => d.action)).toEqual(['start', 'step', 'promote', 'done']);
      expect(s.ops.routes['a/M']!.traffic).toBeUndefined();
      expect(s.byVersion().versions.map((v) => v.running)).toEqual([0, 2]);
    });

    it('rolls back on a worse error rate once minRequests are in, with the numbers in the decision', async () => {
      const s = setup(canary);
      s.ctl.deploy(s.v1());
      await s.ctl.reconcile();
      const stableReplicas = s.ops.routed('a/M');
      const stableVersion = s.byVersion().current;
      s.ctl.deploy(s.v2());
      await s.ctl.reconcile();
      const to = s.byVersion().current;
      s.report(stableVersion, outcomes(1000, 1, 10));
      s.report(to, outcomes(50, 25, 10));
      await s.ctl.reconcile();
      expect(s.decisions.map((d) => d.action)).toEqual(['start']); // 50 < minRequests: no verdict yet
      s.report(to, outcomes(120, 60, 10));
      await s.ctl.reconcile();
      const rb = s.decisions.at(-1)!;
      expect(rb.action).toBe('rollback');
      expect(rb.reason).toMatch(/canary error rate 50\.00%/);
      expect(rb.numbers).toMatchObject({ canaryRequests: 120, canaryErrors: 60 });
      expect(s.ops.routed('a/M')).toEqual(stableReplicas);
      expect(s.ops.routes['a/M']!.traffic).toBeUndefined();
      expect(s.byVersion().current).toBe(stableVersion);
      const st = s.ctl.status().applications[0]!.deployments[0]!;
      expect(st.decisions.at(-1)!.action).toBe('rollback');
    });

    it('rolls back on a p99 worse than the margin', async () => {
      const s = setup(canary);
      s.ctl.deploy(s.v1());
      await s.ctl.reconcile();
      const stableVersion = s.byVersion().current;
      s.ctl.deploy(s.v2());
      await s.ctl.reconcile();
      s.report(stableVersion, outcomes(1000, 0, 10));
      s.report(s.byVersion().current, outcomes(200, 0, 40));
      await s.ctl.reconcile();
      expect(s.decisions.at(-1)!.action).toBe('rollback');
      expect(s.decisions.at(-1)!.reason).toContain('p99');
    });

    it('shoal rollback during a canary returns to the stable version at once; promote skips to a rolling update', async () => {
      const s = setup(canary);
      s.ctl.deploy(s.v1());
      await s.ctl.reconcile();
      const stable = s.byVersion().current;
      s.ctl.deploy(s.v2());
      await s.ctl.reconcile();
      const r = s.ctl.rollback('a', 'M');
      expect(r.to).toBe(stable);
      expect(s.ops.routes['a/M']!.traffic).toBeUndefined();
      await s.ctl.reconcile();
      expect(s.byVersion().versions.find((v) => v.id === stable)!.running).toBe(2);
      expect(s.ctl.status().replicas.filter((x) => x.state === 'RUNNING')).toHaveLength(2);

      s.ctl.deploy(s.v2());
      await s.ctl.reconcile();
      s.ctl.promote('a', 'M');
      await s.ctl.reconcile();
      await s.ctl.reconcile();
      expect(s.byVersion().versions.find((v) => v.current)!.running).toBe(2);
      expect(() => s.ctl.promote('a', 'M')).toThrow(/no shadow, canary or experiment/);
    });
  });

  it('rollback with no rollout in progress rolls the previous version out again; none before it is a clear error', async () => {
    const s = setup({ rollout: { maxSurge: '100%' } });
    s.ctl.deploy(s.v1());
    await s.ctl.reconcile();
    expect(() => s.ctl.rollback('a', 'M')).toThrow(/no earlier version/);
    const first = s.byVersion().current;
    s.ctl.deploy(s.v2());
    await s.ctl.reconcile();
    await s.ctl.reconcile();
    expect(s.byVersion().versions.map((v) => v.running)).toEqual([0, 2]);
    const r = s.ctl.rollback('a', 'M');
    expect(r.to).toBe(first);
    expect(s.ctl.appSpec('a')!.deployments[0]!.methods).toEqual(['v1']);
    await s.ctl.reconcile();
    await s.ctl.reconcile();
    expect(s.byVersion().current).toBe(first);
    expect(s.byVersion().versions.find((v) => v.id === first)!.running).toBe(2);
    expect(() => s.ctl.rollback('a', 'X')).toThrow(/no deployment "X"/);
  });

  describe('shadow', () => {
    it('mirrors to the new version, then moves on when the comparison passes', async () => {
      const s = setup({ rollout: { shadow: { percent: 100, minComparisons: 50, maxMeanAbsDiff: 0.01 }, maxSurge: '100%' } });
      s.ctl.deploy(s.v1());
      await s.ctl.reconcile();
      const stable = s.byVersion().current;
      s.ctl.deploy(s.v2());
      await s.ctl.reconcile();
      const to = s.byVersion().current;
      const entry = s.ops.routes['a/M']!;
      expect(entry.traffic).toEqual({ weights: [{ version: stable, percent: 100 }], shadow: { version: to, percent: 100 } });
      s.ctl.heartbeat(s.w, { replicas: [], shadow: { [`a/M@${to}`]: shadow({ mirrored: 60, compared: 60, agreed: 60, numbers: 600, sumAbsDiff: 0.6, maxAbsDiff: 0.004 }) } });
      await s.ctl.reconcile();
      await s.ctl.reconcile();
      expect(s.decisions.map((d) => d.action)).toEqual(['start', 'shadow passed', 'done']);
      const st = s.ctl.status().applications[0]!.deployments[0]!;
      expect(st.shadow![to]).toMatchObject({ compared: 60, agreement: 1, meanAbsDiff: 0.001, maxAbsDiff: 0.004 });
    });

    it('rolls back when the shadow disagrees', async () => {
      const s = setup({ rollout: { shadow: { minComparisons: 10, minAgreement: 0.99 } } });
      s.ctl.deploy(s.v1());
      await s.ctl.reconcile();
      s.ctl.deploy(s.v2());
      await s.ctl.reconcile();
      const to = s.byVersion().current;
      s.ctl.heartbeat(s.w, { replicas: [], shadow: { [`a/M@${to}`]: shadow({ mirrored: 20, compared: 20, agreed: 15 }) } });
      await s.ctl.reconcile();
      expect(s.decisions.at(-1)!.action).toBe('rollback');
      expect(s.decisions.at(-1)!.reason).toContain('agrees with live on 75.00%');
    });
  });

  it('an experiment splits by a sticky header and opens the experiment, until promoted', async () => {
    const s = setup({ rollout: { experiment: { name: 'exp1', header: 'X-User', percent: 30 } } });
    s.ctl.deploy(s.v1());
    await s.ctl.reconcile();
    const stable = s.byVersion().current;
    s.ctl.deploy(s.v2());
    await s.ctl.reconcile();
    const to = s.byVersion().current;
    expect(s.ops.routes['a/M']!.traffic).toEqual({ weights: [{ version: stable, percent: 70 }, { version: to, percent: 30 }], sticky: { header: 'x-user', experiment: 'exp1' } });
    expect(s.experiments).toEqual([{ name: 'exp1', variants: [{ name: 'A', version: stable, percent: 70 }, { name: 'B', version: to, percent: 30 }] }]);
    s.clock.advance(3_600_000);
    s.ctl.heartbeat(s.w);
    await s.ctl.reconcile();
    expect(s.ctl.status().applications[0]!.deployments[0]!.rollout!.phase).toBe('experiment');
    s.ctl.promote('a', 'M');
    await s.ctl.reconcile();
    await s.ctl.reconcile();
    expect(s.byVersion().versions.map((v) => v.running)).toEqual([0, 2]);
  });
});
