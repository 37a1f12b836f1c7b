/**
 * Rollouts on real head and worker processes, under load from 16 client loops: a rolling update, a canary of a
 * faulty version rolled back automatically, a shadow of a near-identical version, an A/B experiment with
 * outcomes reported over the control API, and `rollback`. Every request is counted; none may fail.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { compileRollout, type AppSpec, type RolloutOptions } from '@shoal/core';
import type { Head } from '@shoal/head';
import { loadAppSpec } from '../packages/cli/src/main.ts';
import { startCluster, waitFor } from './helpers.ts';
import { resolve } from 'node:path';

const MODULE = resolve(import.meta.dirname, 'fixtures/rollout-app.ts');

let head: Head | undefined;
afterEach(async () => { await head?.stop(); head = undefined; });

async function spec(exportName: string, rollout: RolloutOptions = {}, numReplicas = 2): Promise<AppSpec> {
  const s = await loadAppSpec(MODULE, { exportName, name: 'r', routePrefix: '/' });
  const d = s.deployments[0]!;
  return { ...s, deployments: [{ ...d, options: { ...d.options, numReplicas, rollout: compileRollout(rollout, 'rollout') } }] };
}

interface Load { stop(): Promise<{ ok: number; failed: number; errors: string[]; versions: Map<string, number>; last: string[] }> }

/** `loops` clients sending GET /?x=i back to back; counts answers by version, and every failure. */
function load(base: string, loops = 16): Load {
  let running = true;
  let ok = 0;
  let failed = 0;
  const errors: string[] = [];
  const versions = new Map<string, number>();
  const last: string[] = [];
  const loop = async (id: number): Promise<void> => {
    for (let i = id; running; i += loops) {
      try {
        const res = await fetch(`${base}/?x=${i}`);
        const body = await res.json() as { version?: string };
        if (res.status !== 200) { failed++; if (errors.length < 5) errors.push(`${res.status} ${JSON.stringify(body)}`); continue; }
        ok++;
        versions.set(body.version!, (versions.get(body.version!) ?? 0) + 1);
        last.push(body.version!);
        if (last.length > 200) last.shift();
      } catch (err) {
        failed++;
        if (errors.length < 5) errors.push(String(err));
      }
    }
  };
  const all = Array.from({ length: loops }, (_, i) => loop(i));
  return { stop: async () => { running = false; await Promise.all(all); return { ok, failed, errors, versions, last }; } };
}

function deploymentStatus(h: Head) {
  return h.controller.status().applications.find((a) => a.name === 'r')!.deployments[0]!;
}

describe('rollouts under load', () => {
  it('a rolling update (maxSurge 1) fails no request, and afterwards every answer is the new version', { timeout: 60_000 }, async () => {
    head = await startCluster();
    await head.deploy(await spec('v1', { maxSurge: 1 }));
    await head.waitReady('r', 30_000);
    const l = load(head.httpAddress);
    await new Promise((r) => setTimeout(r, 500));
    await head.deploy(await spec('v2', { maxSurge: 1 }));
    await waitFor('the rollout to finish', () => deploymentStatus(head!).decisions.some((d) => d.action === 'done'), 30_000);
    await new Promise((r) => setTimeout(r, 500));
    const r = await l.stop();
    expect(r.errors).toEqual([]);
    expect(r.failed).toBe(0);
    expect(r.ok).toBeGreaterThan(100);
    expect(r.versions.get('v1')).toBeGreaterThan(0);
    expect(r.versions.get('v2')).toBeGreaterThan(0);
    expect(new Set(r.last.slice(-50))).toEqual(new Set(['v2']));
    const st = deploymentStatus(head);
    expect(st.versions.map((v) => v.running)).toEqual([0, 2]);
  });

  it('a new version that never becomes ready stops the rollout; the old one serves throughout', { timeout: 60_000 }, async () => {
    head = await startCluster();
    await head.deploy(await spec('v1', { maxSurge: 1, maxFailures: 2 }));
    await head.waitReady('r', 30_000);
    const l = load(head.httpAddress, 4);
    await head.deploy(await spec('broken', { maxSurge: 1, maxFailures: 2 }));
    await waitFor('the rollout to fail', () => deploymentStatus(head!).decisions.some((d) => d.action === 'failed'), 30_000);
    const r = await l.stop();
    expect(r.failed).toBe(0);
    expect([...r.versions.keys()]).toEqual(['v1']);
    const failed = deploymentStatus(head).decisions.find((d) => d.action === 'failed')!;
    expect(failed.reason).toContain('weights failed to load');
    expect(head.controller.appSpec('r')!.exportName).toBe('v1');
  });

  it('a faulty canary is rolled back automatically; callers see none of its errors', { timeout: 60_000 }, async () => {
    head = await startCluster();
    const rollout: RolloutOptions = { canary: { steps: [25, 50], stepIntervalMs: 60_000, minRequests: 100 } };
    await head.deploy(await spec('v1', rollout));
    await head.waitReady('r', 30_000);
    const l = load(head.httpAddress);
    await new Promise((r) => setTimeout(r, 300));
    await head.deploy(await spec('faulty', rollout));
    await waitFor('the automatic rollback', () => deploymentStatus(head!).decisions.some((d) => d.action === 'rollback'), 30_000);
    await waitFor('the canary replicas to be gone', () => head!.controller.status().replicas.filter((x) => x.deployment === 'Model').length === 2, 10_000);
    await new Promise((r) => setTimeout(r, 300));
    const r = await l.stop();
    expect({ failed: r.failed, ok: r.ok, errors: r.errors, retries: head.router.retries }).toMatchObject({ failed: 0, errors: [] });
    expect(r.versions.get('faulty') ?? 0).toBeGreaterThan(0); // the canary did take traffic
    expect(new Set(r.last.slice(-50))).toEqual(new Set(['v1']));
    const rb = deploymentStatus(head).decisions.find((d) => d.action === 'rollback')!;
    expect(rb.reason).toMatch(/canary error rate/);
    expect(rb.numbers!.canaryErrors).toBeGreaterThan(0);
    expect(deploymentStatus(head).status).toBe('HEALTHY');
    expect(deploymentStatus(head).version).toBe(rb.to);
  });

  it('a shadow of a near version reports its agreement and differences, then rolls out; callers only see live answers', { timeout: 60_000 }, async () => {
    head = await startCluster();
    const rollout: RolloutOptions = { shadow: { percent: 100, minComparisons: 200, maxMeanAbsDiff: 0.01 }, maxSurge: 2 };
    await head.deploy(await spec('v1', rollout));
    await head.waitReady('r', 30_000);
    const l = load(head.httpAddress, 8);
    await head.deploy(await spec('near', rollout));
    await waitFor('the shadow phase to pass', () => deploymentStatus(head!).decisions.some((d) => d.action === 'shadow passed'), 30_000).catch((err: unknown) => { throw new Error(`${String(err)}: ${JSON.stringify(deploymentStatus(head!))}`); });
    const during = await l.stop();
    expect(during.failed).toBe(0);
    const st = deploymentStatus(head);
    const sh = Object.values(st.shadow!)[0]!;
    expect(sh.compared).toBeGreaterThanOrEqual(200);
    // Every answer's `version` label differs ('v1' vs 'near'): no pair agrees, while the numbers are 0.001 apart.
    expect(sh.agreement).toBe(0);
    expect(sh.meanAbsDiff).toBeCloseTo(0.001, 6); // y is the only number
    expect(sh.maxAbsDiff).toBeCloseTo(0.001, 6);
    await waitFor('the rollout to finish', () => deploymentStatus(head!).decisions.some((d) => d.action === 'done'), 30_000);
  });

  it('an A/B experiment splits by user id, stays sticky, and detects a known effect from reported outcomes', { timeout: 60_000 }, async () => {
    head = await startCluster();
    const rollout: RolloutOptions = { experiment: { name: 'ab1', header: 'x-user-id', percent: 50, metric: 'conversion', stats: { mode: 'fixed', horizon: 400, minSamples: 100 } } };
    await head.deploy(await spec('v1', rollout));
    await head.waitReady('r', 30_000);
    await head.deploy(await spec('v2', rollout));
    await head.waitReady('r', 30_000);
    await waitFor('the split', () => deploymentStatus(head!).rollout?.phase === 'experiment' && head!.router.replicaCount('r/Model') === 3, 10_000);
    const token = (head as unknown as { token: string }).token;
    const control = head.clusterAddress.replace(/^ws/, 'http');
    const seen = new Map<string, string>();
    const outcomes: Array<{ requestId: string; value: boolean }> = [];
    let rng = 7;
    const rand = (): number => { rng = (rng * 1103515245 + 12345) % 2 ** 31; return rng / 2 ** 31; };
    for (let i = 0; i < 1000; i++) {
      const user = `u${i % 500}`;
      const res = await fetch(`${head.httpAddress}/?x=${i}`, { headers: { 'x-user-id': user } });
      const body = await res.json() as { version: string };
      const variant = res.headers.get('x-shoal-variant')!;
      const requestId = res.headers.get('x-request-id')!;
      expect(variant === 'A' ? 'v1' : 'v2').toBe(body.version);
      if (seen.has(user)) expect(seen.get(user)).toBe(variant); else seen.set(user, variant);
      // B converts at 30%, A at 10%.
      outcomes.push({ requestId, value: rand() < (variant === 'B' ? 0.3 : 0.1) });
    }
    await waitFor('the assignments to reach the head', async () => {
      const r = await fetch(`${control}/api/experiments/ab1`, { headers: { authorization: `Bearer ${token}` } });
      const rep = await r.json() as { variants: Array<{ assigned: number }> };
      return rep.variants.reduce((s, v) => s + v.assigned, 0) === 1000;
    }, 10_000);
    const post = await fetch(`${control}/api/experiments/ab1/outcomes`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ outcomes }) });
    expect(await post.json()).toMatchObject({ ok: true, counted: 1000, errors: [] });
    const again = await fetch(`${control}/api/experiments/ab1/outcomes`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(outcomes[0]) });
    expect(again.status).toBe(409);
    const unknown = await fetch(`${control}/api/experiments/ab1/outcomes`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ requestId: 'nope', value: true }) });
    expect(unknown.status).toBe(404);
    const report = await (await fetch(`${control}/api/experiments/ab1`, { headers: { authorization: `Bearer ${token}` } })).json() as { comparisons: Array<{ verdict: string; pValue: number | null }> };
    expect(report.comparisons[0]!.verdict).toBe('significant');
  });

  it('rollback returns a fully rolled-out deployment to its previous version within seconds', { timeout: 60_000 }, async () => {
    head = await startCluster();
    await head.deploy(await spec('v1', { maxSurge: '100%' }));
    await head.waitReady('r', 30_000);
    await head.deploy(await spec('v2', { maxSurge: '100%' }));
    await waitFor('v2 everywhere', () => deploymentStatus(head!).decisions.some((d) => d.action === 'done'), 30_000);
    const l = load(head.httpAddress, 8);
    const r = await head.rollback('r', 'Model');
    expect(r.to).toBe(deploymentStatus(head).versions.find((v) => v.current)!.id);
    await waitFor('v1 everywhere', () => deploymentStatus(head!).versions.find((v) => v.current)!.running === 2 && head!.controller.status().replicas.length === 2, 10_000);
    await new Promise((res) => setTimeout(res, 300));
    const res = await l.stop();
    expect(res.failed).toBe(0);
    expect(new Set(res.last.slice(-50))).toEqual(new Set(['v1']));
    await expect(head.rollback('r', 'Nope')).rejects.toThrow(/no deployment "Nope"/);
  });
});
