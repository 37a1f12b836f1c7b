/**
 * The controller's replacement paths with a real head (in this process) and two real worker processes, where
 * packages/head/test/controller.test.ts runs them against FakeCluster (issue 17):
 *
 * - a replica whose checkHealth() starts throwing is replaced: a new replica id, the old one stopped on its worker,
 *   the other replica left alone, no request failed (the worker's `health` handler and Replica.checkHealth);
 * - a replica whose checkHealth() never settles is replaced too, by the replica's own healthCheckTimeoutMs;
 * - a constructor that throws for its first three attempts is retried with growing backoff (the controller's
 *   500, 1000, 2000 ms, in its status; the attempts the fixture recorded come further apart each time), and the
 *   application becomes ready at the fourth;
 * - a rolling update to a new version made by an option change (same code) under a closed-loop load: no failed
 *   request, every replica ends on the new version with a new id, and the workers no longer host the old ones.
 *
 * test/hostile.test.ts covers a checkHealth() that throws a null-prototype object (its description); rollout.test.ts
 * the rolling update between two exports under 16 loops; faults.test.ts a constructor that always throws.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger, type AppSpec, type Logger } from '@shoal/core';
import type { ClusterStatus, Head } from '@shoal/head';
import { loadAppSpec } from '../packages/cli/src/main.ts';
import { deployFixture, startCluster, waitFor } from './helpers.ts';
import { closedLoop } from './fixtures/closed-loop.ts';
import { stats } from './fixtures/faults-harness.ts';
import { FLAKY_MESSAGE, HEALTH_TIMEOUT_MS, SICK_MESSAGE, flakyDir, type Answer } from './fixtures/controller-app.ts';

const APP = resolve(import.meta.dirname, 'fixtures/controller-app.ts');

// Local workers inherit this process's environment: their replica state changes are not what these tests read.
process.env.SHOAL_LOG_LEVEL ??= 'warn';

let head: Head;
/** What the head logged at warn and above: the message and its fields. */
const headLog: Array<{ msg: string; fields: Record<string, unknown> }> = [];

function recording(): Logger {
  const at = (msg: string, fields?: Record<string, unknown>): void => { headLog.push({ msg, fields: fields ?? {} }); };
  return { ...silentLogger, warn: at, error: at, child: () => recording() };
}

beforeAll(async () => {
  head = await startCluster({ workers: 2, logger: recording() });
});
afterAll(async () => { await head?.stop(); });

function replicasOf(app: string, deployment?: string): Array<{ replicaId: string; workerId: string; state: string; version: string }> {
  return head.controller.status().replicas.filter((r) => r.app === app && (deployment === undefined || r.deployment === deployment));
}

/** The replica ids of `app` the worker processes themselves say they host (GET /api/stats, every worker answering). */
async function hostedBy(app: string): Promise<string[]> {
  const st = await stats(head);
  expect(st?.workers.length, 'workers answering /api/stats').toBe(2);
  return st!.workers.flatMap((w) => w.replicas).filter((r) => r.app === app).map((r) => r.replicaId).sort();
}

/**
 * What the workers host once a stop the head asked for has reached them: polled until it equals `expected` (or
 * 5 s passed), then returned for the test to compare.
 */
async function hostedOnceSettled(app: string, expected: readonly string[]): Promise<string[]> {
  let hosted: string[] = [];
  const want = JSON.stringify([...expected].sort());
  await waitFor(`the workers to host exactly ${want}`, async () => JSON.stringify(hosted = await hostedBy(app)) === want, 5000).catch(() => undefined);
  return hosted;
}

async function get<T>(url: string): Promise<T> {
  const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
  expect(res.status, await res.clone().text()).toBe(200);
  return await res.json() as T;
}

function report(name: string, numbers: Record<string, unknown>): void {
  process.stdout.write(`[real-controller] ${name} ${JSON.stringify(numbers)}\n`);
}

describe('health checks of real replicas', () => {
  /**
   * Deploys `health` as `name`, flips the health of whichever replica answers GET /<flip>, and waits for the
   * controller to replace that replica, all under a closed-loop load. Returns the head's reason for it.
   */
  async function flipAndReplace(name: string, flip: 'sick' | 'hang'): Promise<string> {
    await deployFixture(head, { module: APP, exportName: 'health', name, routePrefix: `/${name}` });
    const before = replicasOf(name);
    expect(before.map((r) => r.state)).toEqual(['RUNNING', 'RUNNING']);
    expect(await hostedBy(name)).toEqual(before.map((r) => r.replicaId).sort());
    const load = closedLoop<Answer>(`${head.httpAddress}/${name}/`, { loops: 4 });
    await waitFor('the load to be answered', () => load.ok >= 20, 10_000);

    const flipped = await get<Answer & { mode: string }>(`${head.httpAddress}/${name}/${flip}`);
    expect(flipped.mode).toBe(flip);
    const victim = flipped.replicaId;
    const other = before.find((r) => r.replicaId !== victim)!.replicaId;
    expect(before.map((r) => r.replicaId)).toContain(victim);

    await waitFor(`replica ${victim} to be replaced`, () => {
      const now = replicasOf(name);
      return now.length === 2 && now.every((r) => r.state === 'RUNNING') && !now.some((r) => r.replicaId === victim);
    }, 15_000);
    const afterIds = replicasOf(name).map((r) => r.replicaId);
    const fresh = afterIds.filter((id) => id !== other);
    // Let the new replica take a share of the load before the counts are read.
    const okAtReplace = load.ok;
    await waitFor('the load to go on after the replacement', () => load.ok >= okAtReplace + 40, 10_000);
    const summary = await load.stop();
    const hosted = await hostedOnceSettled(name, afterIds);
    const replaced = headLog.filter((l) => l.msg === 'health check failed; replacing replica' && l.fields.replica === victim);
    const why = replaced[0];
    report(flip, { victim, fresh, requests: summary.requests, failures: summary.failures, why: why?.fields.error });

    // Only the unhealthy replica was replaced; the other kept its id. The new one has an id never used before.
    expect(afterIds).toContain(other);
    expect(fresh).toHaveLength(1);
    expect(before.map((r) => r.replicaId)).not.toContain(fresh[0]);
    // Stopped on its worker, not just out of the head's records: the workers host exactly the head's two.
    expect(hosted).toEqual([...afterIds].sort());
    // Nothing failed, and the new replica answers.
    expect({ failures: summary.failures, examples: summary.examples }).toEqual({ failures: {}, examples: [] });
    expect(summary.answers.some((a) => a.replicaId === fresh[0])).toBe(true);
    expect(summary.answers.slice(-20).some((a) => a.replicaId === victim)).toBe(false);
    // Replaced once: a check still in flight when the first failed does not stop it again.
    expect(replaced.map((l) => l.fields.replica)).toEqual([victim]);
    await head.deleteApp(name);
    return String(why!.fields.error);
  }

  it('a replica whose checkHealth() starts throwing is replaced: new id, old one stopped, the other untouched, 0 failed', async () => {
    const why = await flipAndReplace('health-throw', 'sick');
    expect(why).toContain(SICK_MESSAGE);
  }, 40_000);

  it('a replica whose checkHealth() never settles is replaced by its healthCheckTimeoutMs, 0 failed', async () => {
    const why = await flipAndReplace('health-hang', 'hang');
    // The replica's own timeout (Replica.checkHealth) ended the check, not the head's wait for the worker's answer.
    expect(why).toMatch(new RegExp(`^health check of health-hang\\.Health\\.\\S+ took over ${HEALTH_TIMEOUT_MS} ms$`));
  }, 40_000);
});

describe('start retries', () => {
  it('a constructor that throws 3 times is retried with growing backoff; the app is ready at the 4th attempt', async () => {
    const name = `flaky-${randomBytes(3).toString('hex')}`;
    const dir = flakyDir(name);
    mkdirSync(dir, { recursive: true });
    try {
      writeFileSync(join(dir, 'throws'), '3');
      const spec = await loadAppSpec(APP, { exportName: 'flaky', name, routePrefix: `/${name}` });
      await head.deploy(spec);
      // Every distinct (failures, message) the deployment's status shows, in order.
      const seen: Array<{ failures: number; message: string; lastError: string | undefined }> = [];
      await waitFor('the flaky app to be ready', () => {
        const d = head.controller.status().applications.find((a) => a.name === name)?.deployments[0];
        const last = seen.at(-1);
        if (d !== undefined && d.failures > 0 && (last === undefined || last.failures !== d.failures || last.message !== d.message)) seen.push({ failures: d.failures, message: d.message, lastError: d.lastError });
        return head.controller.isReady(name);
      }, 20_000);
      const attempts = readFileSync(join(dir, 'attempts'), 'utf8').split('\n').filter((l) => l !== '').map((l) => l.split(' ').map(Number) as [number, number]);
      const gaps = attempts.slice(1).map(([t], i) => t - attempts[i]![0]);
      const final = head.controller.status().applications.find((a) => a.name === name)!.deployments[0]!;
      report('flaky', { attempts: attempts.length, gaps, seen: seen.map((s) => s.message) });

      // Three failures in a row, each with its error and the backoff the controller chose (doubling).
      expect(seen.map((s) => s.failures)).toEqual([1, 2, 3]);
      expect(seen.map((s) => /retry in (\d+) ms/.exec(s.message)?.[1])).toEqual(['500', '1000', '2000']);
      seen.forEach((s, i) => expect(s.lastError).toContain(`${FLAKY_MESSAGE} (attempt ${i + 1}, 3 fail)`));
      // Exactly four constructions (one replica, no start while a backoff runs), each further from the last.
      expect(attempts).toHaveLength(4);
      expect(gaps[1]!).toBeGreaterThan(gaps[0]!);
      expect(gaps[2]!).toBeGreaterThan(gaps[1]!);
      // Ready at the fourth: healthy, the failures cleared, and it answers from the replica that started.
      expect([final.status, final.failures, final.lastError, final.running]).toEqual(['HEALTHY', 0, undefined, 1]);
      const [replica] = replicasOf(name);
      expect((await get<Answer>(`${head.httpAddress}/${name}/`)).replicaId).toBe(replica!.replicaId);
      await head.deleteApp(name);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 40_000);
});

describe('rolling update of real replicas', () => {
  it('an option change makes a new version: under load, 0 failed, every replica ends on it with a new id, the old ones stopped', async () => {
    const name = 'roll';
    const v1 = await deployFixture(head, { module: APP, exportName: 'echo', name, routePrefix: `/${name}` });
    const v1Version = head.controller.versionsOf(name).Echo!;
    const v1Ids = replicasOf(name).map((r) => r.replicaId).sort();
    expect(v1Ids).toHaveLength(2);
    const load = closedLoop<Answer>(`${head.httpAddress}/${name}/`, { loops: 4 });
    await waitFor('the load to be answered', () => load.ok >= 40, 10_000);

    // Same code, another maxOngoingRequests: a new version (userConfig or numReplicas alone would not be).
    const d = v1.deployments[0]!;
    const v2: AppSpec = { ...v1, deployments: [{ ...d, options: { ...d.options, maxOngoingRequests: d.options.maxOngoingRequests + 1 } }] };
    await head.deploy(v2);
    const v2Version = head.controller.versionsOf(name).Echo!;
    expect(v2Version).not.toBe(v1Version);
    const status = (): ClusterStatus['applications'][number]['deployments'][number] => head.controller.status().applications.find((a) => a.name === name)!.deployments[0]!;
    await waitFor('the rolling update to finish', () => status().decisions.some((x) => x.action === 'done' && x.to === v2Version), 20_000);
    const okAtDone = load.ok;
    await waitFor('the load to go on after the rollout', () => load.ok >= okAtDone + 40, 10_000);
    const summary = await load.stop();
    const after = replicasOf(name);
    const hosted = await hostedOnceSettled(name, after.map((r) => r.replicaId));
    report('rolling', { v1: v1Version, v2: v2Version, requests: summary.requests, failures: summary.failures, decisions: status().decisions.map((x) => x.action) });

    expect({ failures: summary.failures, examples: summary.examples }).toEqual({ failures: {}, examples: [] });
    expect(status().decisions.filter((x) => x.to === v2Version).map((x) => x.action)).toEqual(['start', 'done']);
    // Every replica on v2, none of v1's left: in the head's records, in what the workers host, and in the answers.
    expect(after.map((r) => [r.state, r.version])).toEqual([['RUNNING', v2Version], ['RUNNING', v2Version]]);
    const v2Ids = after.map((r) => r.replicaId).sort();
    expect(v2Ids.filter((id) => v1Ids.includes(id))).toEqual([]);
    expect(hosted).toEqual(v2Ids);
    expect(status().versions.map((v) => [v.id, v.running])).toEqual([[v1Version, 0], [v2Version, 2]]);
    // Both versions served during the load; the last answers are all from v2's replicas.
    expect(summary.answers.some((a) => v1Ids.includes(a.replicaId))).toBe(true);
    expect(summary.answers.some((a) => v2Ids.includes(a.replicaId))).toBe(true);
    expect(summary.answers.slice(-30).filter((a) => !v2Ids.includes(a.replicaId))).toEqual([]);
    await head.deleteApp(name);
  }, 40_000);
});
