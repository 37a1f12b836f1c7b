/**
 * Faults with real processes (issue 10, item 9), each counting failures: every request's outcome is recorded by a
 * load generator in its own process (test/fixtures/faults-load.ts: keep-alive loops, one client retry only when the
 * connection died before any response byte, counted apart) and the counts are asserted.
 *
 * - SIGKILL the worker with the most replicas under load: nothing fails, the replicas are placed again, a new
 *   local worker process takes the dead one's place.
 * - SIGSTOP a worker for twice the worker timeout under load: it is declared dead while stopped (killed and
 *   replaced), nothing fails, no request waits past its deadline, and no replica is left hosted twice.
 * - A replica whose init() never resolves does not hold back another application, nor the re-placement of a dead
 *   worker's replicas.
 * - A constructor that always throws: 503 at once with its error, and `shoal run --max-start-failures` gives up.
 * - Two heads on one data directory: the second refuses, naming the holder; a standby takes over when it dies.
 *
 * Bounds on time are generous (a loaded two-core CI machine meets them); what is asserted exactly is counts.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { Head } from '@shoal/head';
import { loadAppSpec } from '../packages/cli/src/main.ts';
import { deployFixture, isAlive, startCluster, waitFor } from './helpers.ts';
import { BROKEN_MESSAGE } from './fixtures/faults-app.ts';
import {
  Pids, controlGet, controlUrl, freePort, metric, scrape, settled, sleep, startLoad, stats, status, type Status, type Summary,
} from './fixtures/faults-harness.ts';

const FAULTS_APP = resolve(import.meta.dirname, 'fixtures/faults-app.ts');
const BIN = resolve(import.meta.dirname, '../packages/cli/bin/shoal.mjs');
const TOKEN = 'faults-test-token-0123456789abcdef';
/** startCluster's (test/helpers.ts) liveness settings, and the same for the CLI heads started here. */
const HEARTBEAT_MS = 200;
const WORKER_TIMEOUT_MS = 1500;
const DEADLINE_MS = 5000;
const CLIENT_TIMEOUT_MS = 8000;
const LOOPS = 8;

// Local workers inherit this process's environment: their replica state changes are not what these tests read.
process.env.SHOAL_LOG_LEVEL ??= 'warn';

const pids = new Pids();
afterAll(() => pids.killAll());

/** The failures of a run, as one comparable value: the counts and a few examples to read when it is not empty. */
function failuresOf(s: Summary): { failed: number; failures: Record<string, number>; examples: Summary['examples'] } {
  return { failed: s.requests - s.ok, failures: s.failures, examples: Object.keys(s.failures).length > 0 ? s.examples : [] };
}

function report(name: string, numbers: Record<string, unknown>): void {
  process.stdout.write(`[faults] ${name} ${JSON.stringify(numbers)}\n`);
}

/** The ALIVE worker hosting the most replicas (the lowest id among equals). */
function busiest(s: Status): { workerId: string; pid: number; replicas: number } {
  const w = s.workers.filter((x) => x.state === 'ALIVE' && x.pid !== undefined).sort((a, b) => b.replicas - a.replicas || a.workerId.localeCompare(b.workerId))[0]!;
  return { workerId: w.workerId, pid: w.pid!, replicas: w.replicas };
}

/** Polls the control API until `cond` holds; every status seen has its worker pids recorded for cleanup. */
async function until(head: Head, what: string, cond: (s: Status) => boolean, timeoutMs = 30_000): Promise<Status> {
  let last: Status | undefined;
  await waitFor(what, async () => {
    last = await status(head);
    pids.seen(last);
    return last !== undefined && cond(last);
  }, timeoutMs);
  return last!;
}

/** HTTP requests each worker's ingress has answered, by worker id. */
async function ingressCounts(head: Head): Promise<Map<string, number>> {
  const st = await stats(head);
  return new Map((st?.workers ?? []).map((w) => [w.workerId, w.traffic?.ingressRequests ?? 0]));
}

/** Every replica the workers report hosting, by id: how many workers host it. */
async function hostedCounts(head: Head): Promise<Map<string, number>> {
  const st = await stats(head);
  const out = new Map<string, number>();
  for (const w of st?.workers ?? []) for (const r of w.replicas) out.set(r.replicaId, (out.get(r.replicaId) ?? 0) + 1);
  return out;
}

describe('worker faults under load', () => {
  let head: Head | undefined;
  afterEach(async () => { pids.killChildren(); await head?.stop(); head = undefined; });

  /** Three local workers, the faults app (Api x2 -> Model x3) at full count. */
  async function cluster(): Promise<{ head: Head; before: Status }> {
    const h = await startCluster({ workers: 3 });
    head = h;
    await deployFixture(h, { module: FAULTS_APP });
    const before = await until(h, 'the faults app at full count on 3 workers', (s) => settled(s, 3));
    return { head: h, before };
  }

  it('SIGKILL the worker with the most replicas: 0 failed requests, replicas placed again, a new worker process', async () => {
    const { head: h, before } = await cluster();
    const victim = busiest(before);
    expect(victim.replicas).toBeGreaterThanOrEqual(2);
    const pidsBefore = new Set(before.workers.map((w) => w.pid!));
    const load = await startLoad(pids, { url: `${h.httpAddress}/?text=hello`, loops: LOOPS, deadlineMs: DEADLINE_MS, clientTimeoutMs: CLIENT_TIMEOUT_MS });
    await sleep(1500);

    const killedAt = Date.now();
    process.kill(victim.pid, 'SIGKILL');
    let goneAt: number | undefined;
    const after = await until(h, 'full count again on the survivors and a replacement worker', (s) => {
      if (goneAt === undefined && !s.workers.some((w) => w.pid === victim.pid)) goneAt = Date.now();
      return settled(s, 3) && !s.workers.some((w) => w.pid === victim.pid) && s.workers.some((w) => !pidsBefore.has(w.pid!));
    });
    const replacedAt = Date.now();
    // The load goes on for a while with the replacement serving the shared port too.
    await sleep(1500);
    const summary = await load.stop();
    report('sigkill', { requests: summary.requests, failed: summary.requests - summary.ok, clientRetries: summary.clientRetries, retriedOk: summary.retriedOk, maxMs: summary.maxMs, p99Ms: summary.p99Ms, detectedMs: goneAt! - killedAt, fullCountMs: replacedAt - killedAt });

    expect(failuresOf(summary)).toEqual({ failed: 0, failures: {}, examples: [] });
    expect(summary.requests).toBeGreaterThan(200);
    expect(isAlive(victim.pid)).toBe(false);
    // Back at full count: every replica RUNNING on the two survivors or the new worker, none on the dead one.
    const survivors = before.workers.filter((w) => w.pid !== victim.pid).map((w) => w.workerId);
    const fresh = after.workers.filter((w) => !pidsBefore.has(w.pid!));
    expect(fresh).toHaveLength(1);
    expect(new Set(after.workers.map((w) => w.workerId))).toEqual(new Set([...survivors, fresh[0]!.workerId]));
    expect(after.replicas.map((r) => r.workerId).filter((id) => id === victim.workerId)).toEqual([]);
    expect(after.replicas).toHaveLength(5);
    const hosted = await hostedCounts(h);
    expect(new Set(hosted.keys())).toEqual(new Set(after.replicas.map((r) => r.replicaId)));
    for (const [id, n] of hosted) expect([id, n]).toEqual([id, 1]);
  });

  it('SIGSTOP a worker for twice the timeout: declared dead while stopped, 0 failed, none past its deadline, no duplicates', async () => {
    const { head: h, before } = await cluster();
    const pidsBefore = new Set(before.workers.map((w) => w.pid!));
    const lostBefore = metric(await scrape(h), 'shoal_workers_lost_total');
    const load = await startLoad(pids, { url: `${h.httpAddress}/?text=hello`, loops: LOOPS, deadlineMs: DEADLINE_MS, clientTimeoutMs: CLIENT_TIMEOUT_MS });
    // The kernel spreads the loops' connections over the workers as it likes: stop one that holds some of them (the
    // busiest such), so that requests stuck in the stopped process itself are part of what is counted.
    const ingressBefore = await ingressCounts(h);
    await sleep(1500);
    const ingress = await ingressCounts(h);
    const serving = before.workers.filter((w) => (ingress.get(w.workerId) ?? 0) > (ingressBefore.get(w.workerId) ?? 0));
    expect(serving.length).toBeGreaterThan(0);
    const victim = busiest({ ...before, workers: serving });

    const stoppedAt = Date.now();
    process.kill(victim.pid, 'SIGSTOP');
    let goneAt: number | undefined;
    while (Date.now() - stoppedAt < 2 * WORKER_TIMEOUT_MS) {
      const s = await status(h);
      pids.seen(s);
      if (goneAt === undefined && s !== undefined && !s.workers.some((w) => w.pid === victim.pid)) goneAt = Date.now();
      await sleep(50);
    }
    // Resumed: a worker the head killed is gone and resumes nothing; one it had not would rejoin here.
    let resumed = true;
    try { process.kill(victim.pid, 'SIGCONT'); } catch { resumed = false; }
    const after = await until(h, 'full count again without the stopped worker', (s) => settled(s, 3) && !s.workers.some((w) => w.pid === victim.pid) && s.workers.some((w) => !pidsBefore.has(w.pid!)));
    await sleep(1500);
    const summary = await load.stop();
    const last = (await status(h))!;
    const hosted = await hostedCounts(h);
    const lostAfter = metric(await scrape(h), 'shoal_workers_lost_total');
    report('sigstop', { requests: summary.requests, failed: summary.requests - summary.ok, clientRetries: summary.clientRetries, retriedOk: summary.retriedOk, maxMs: summary.maxMs, p99Ms: summary.p99Ms, overDeadline: summary.overDeadline, declaredDeadMs: goneAt === undefined ? null : goneAt - stoppedAt, resumedAlive: resumed && isAlive(victim.pid) });

    // Declared dead while still stopped: gone from the status before SIGCONT, its process killed, a new one in its place.
    expect(goneAt).toBeDefined();
    expect(goneAt! - stoppedAt).toBeLessThan(2 * WORKER_TIMEOUT_MS);
    expect(isAlive(victim.pid)).toBe(false);
    expect(lostAfter - lostBefore).toBe(1);
    expect(after.workers.filter((w) => !pidsBefore.has(w.pid!))).toHaveLength(1);
    // Counted: nothing failed, nothing waited past its deadline.
    expect(failuresOf(summary)).toEqual({ failed: 0, failures: {}, examples: [] });
    expect(summary.overDeadline).toBe(0);
    expect(summary.maxMs).toBeLessThanOrEqual(DEADLINE_MS);
    // The loops connected to the stopped worker saw their connections reset once it was killed, and retried once.
    expect(summary.clientRetries).toBeGreaterThanOrEqual(1);
    expect(summary.retriedOk).toBe(summary.clientRetries);
    // No duplicates: each deployment at exactly numReplicas, and each replica hosted by exactly one worker.
    expect(settled(last, 3)).toBe(true);
    for (const a of last.applications) for (const d of a.deployments) expect(last.replicas.filter((r) => r.app === a.name && r.deployment === d.name)).toHaveLength(d.numReplicas);
    expect(new Set(hosted.keys())).toEqual(new Set(last.replicas.map((r) => r.replicaId)));
    for (const [id, n] of hosted) expect([id, n]).toEqual([id, 1]);
  });
});

describe('replica start faults', () => {
  let head: Head | undefined;
  afterEach(async () => { pids.killChildren(); await head?.stop(); head = undefined; });

  /** A control API POST; the client gives up after 30 s (a deploy that never returns fails the test, not its timeout). */
  async function post(h: Head, path: string, body: unknown): Promise<{ status: number; json: Record<string, unknown>; ms: number }> {
    const t0 = performance.now();
    const res = await fetch(`${controlUrl(h.clusterAddress)}${path}`, { method: 'POST', headers: { authorization: `Bearer ${h.token}`, 'content-type': 'application/json' }, body: JSON.stringify(body), signal: AbortSignal.timeout(30_000) });
    return { status: res.status, json: await res.json() as Record<string, unknown>, ms: performance.now() - t0 };
  }

  it('a replica whose init() never resolves holds back neither another application nor a dead worker\'s replicas', async () => {
    const h = await startCluster({ workers: 2 });
    head = h;
    const hung = await loadAppSpec(FAULTS_APP, { exportName: 'hung', name: 'hung', routePrefix: '/hung' });
    // Not waited for: it never becomes ready.
    expect((await post(h, '/api/apps', hung)).status).toBe(200);
    await until(h, 'the hung replica to be STARTING', (s) => s.replicas.some((r) => r.app === 'hung' && r.state === 'STARTING'));

    const good = await loadAppSpec(FAULTS_APP, { name: 'good', routePrefix: '/' });
    const deployed = await post(h, '/api/apps?wait=20000', good);
    expect(deployed.status, JSON.stringify(deployed.json)).toBe(200);
    const codes: number[] = [];
    for (let i = 0; i < 20; i++) codes.push((await fetch(`${h.httpAddress}/?text=hi`, { headers: { 'x-shoal-timeout-ms': String(DEADLINE_MS) } })).status);
    expect(codes).toEqual(Array(20).fill(200));

    // A worker that does not host the hung replica dies: the good app's replicas are placed again meanwhile.
    const s = (await status(h))!;
    const hungWorker = s.replicas.find((r) => r.app === 'hung')!.workerId;
    const victim = s.workers.find((w) => w.workerId !== hungWorker && w.replicas > 0);
    expect(victim?.pid).toBeDefined();
    process.kill(victim!.pid!, 'SIGKILL');
    const goodFull = (x: Status): boolean => x.applications.find((a) => a.name === 'good')!.deployments.every((d) => d.running === d.numReplicas)
      && x.replicas.filter((r) => r.app === 'good').every((r) => r.state === 'RUNNING' && r.workerId !== victim!.workerId);
    const after = await until(h, 'the good app at full count again, away from the dead worker', (x) => !x.workers.some((w) => w.pid === victim!.pid) && goodFull(x));
    expect((await fetch(`${h.httpAddress}/?text=hi`, { headers: { 'x-shoal-timeout-ms': String(DEADLINE_MS) } })).status).toBe(200);

    const hungDep = after.applications.find((a) => a.name === 'hung')!.deployments[0]!;
    expect(hungDep.status).toBe('UPDATING');
    expect(hungDep.running).toBe(0);
    expect(after.replicas.filter((r) => r.app === 'hung').map((r) => [r.workerId, r.state])).toEqual([[hungWorker, 'STARTING']]);
    report('hung-init', { goodDeployMs: Math.round(deployed.ms) });
    // The hung app goes, so that stopping the cluster does not wait on it.
    await fetch(`${controlUrl(h.clusterAddress)}/api/apps/hung`, { method: 'DELETE', headers: { authorization: `Bearer ${h.token}` } });
  });

  it('a constructor that always throws: 503 at once with its error; shoal run --max-start-failures 2 exits 1 naming it', async () => {
    const h = await startCluster({ workers: 1 });
    head = h;
    const broken = await loadAppSpec(FAULTS_APP, { exportName: 'broken', name: 'broken', routePrefix: '/broken' });
    expect((await post(h, '/api/apps', broken)).status).toBe(200);
    const failing = await until(h, 'a failed start of Broken', (s) => (s.applications.find((a) => a.name === 'broken')?.deployments[0]?.failures ?? 0) >= 1);
    expect(failing.applications.find((a) => a.name === 'broken')!.deployments[0]!.lastError).toContain(BROKEN_MESSAGE);

    // Ten at once, each allowed 20 s by its deadline; the client gives up after 5 s (status 0) so that a wait shows as a count.
    const timeoutMs = 20_000;
    const answers = await Promise.all(Array.from({ length: 10 }, async () => {
      const t0 = performance.now();
      try {
        const res = await fetch(`${h.httpAddress}/broken/predict`, { headers: { 'x-shoal-timeout-ms': String(timeoutMs) }, signal: AbortSignal.timeout(5000) });
        const body = await res.json() as { error?: string };
        return { status: res.status, ms: performance.now() - t0, error: body.error ?? '' };
      } catch (err) {
        return { status: 0, ms: performance.now() - t0, error: (err as Error).message };
      }
    }));
    const maxMs = Math.max(...answers.map((a) => a.ms));
    report('broken-503', { answers: answers.length, maxMs: Math.round(maxMs) });
    expect(answers.map((a) => a.status)).toEqual(Array(10).fill(503));
    for (const a of answers) expect(a.error).toContain(BROKEN_MESSAGE);
    // "At once": a small fraction of the 20 s the request was allowed (not a wait for a replica that never comes).
    expect(maxMs).toBeLessThan(2000);

    // The CLI gives up after two failed starts in a row, with one line that names the deployment and the error.
    const dir = mkdtempSync(join(tmpdir(), 'shoal-faults-run-'));
    try {
      const run = cli(['run', FAULTS_APP, '--export', 'broken', '--name', 'broken', '--max-start-failures', '2', '--workers', '1', '--port', '0', '--http-port', '0', '--data-dir', dir], 'info');
      const code = await exitOf(run.child, 45_000);
      const lines = run.out().split('\n').filter((l) => l.includes(BROKEN_MESSAGE) && !l.startsWith('{'));
      report('broken-run', { code, lines });
      expect(code, run.out()).toBe(1);
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^shoal: .*deployment "Broken".*failed to start 2 times in a row/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);
});

/** A `shoal` CLI process; every worker it logs spawning is recorded for cleanup (SHOAL_LOG_LEVEL info logs it). */
function cli(args: string[], logLevel = 'warn'): { child: ChildProcessWithoutNullStreams; out: () => string } {
  const child = spawn(process.execPath, [BIN, ...args], {
    env: { ...process.env, SHOAL_TOKEN: TOKEN, SHOAL_LOG_LEVEL: logLevel, SHOAL_HEARTBEAT_MS: String(HEARTBEAT_MS), SHOAL_WORKER_TIMEOUT_MS: String(WORKER_TIMEOUT_MS) },
    stdio: 'pipe',
  });
  pids.child(child);
  let out = '';
  const take = (d: Buffer): void => {
    const text = d.toString();
    out += text;
    for (const m of text.matchAll(/"pid":(\d+)[^\n]*"msg":"spawned local worker"/g)) pids.add(Number(m[1]));
  };
  child.stdout.on('data', take);
  child.stderr.on('data', take);
  return { child, out: () => out };
}

function exitOf(child: ChildProcessWithoutNullStreams, timeoutMs: number): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((r, reject) => {
    const t = setTimeout(() => reject(new Error(`pid ${child.pid} did not exit within ${timeoutMs} ms`)), timeoutMs);
    child.once('exit', (code) => { clearTimeout(t); r(code); });
  });
}

describe('two heads on one data directory', () => {
  it('the second refuses naming the holder; a standby waits and takes over when the first is SIGKILLed', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'shoal-faults-heads-'));
    const [p1, h1, p2, h2, p3, h3] = await Promise.all(Array.from({ length: 6 }, () => freePort()));
    const statusAt = (port: number): Promise<Status | undefined> => controlGet<Status>(`http://127.0.0.1:${port}`, TOKEN, '/api/status', 1000);
    try {
      const first = cli(['start', '--workers', '1', '--port', String(p1), '--http-port', String(h1), '--data-dir', dir], 'info');
      await waitFor('the first head and its worker', async () => { const s = await statusAt(p1!); pids.seen(s); return s?.workers.length === 1; }, 30_000);
      const dep = cli(['deploy', FAULTS_APP, '--export', 'small', '--address', `ws://127.0.0.1:${p1}`]);
      expect(await exitOf(dep.child, 60_000), dep.out()).toBe(0);
      expect((await fetch(`http://127.0.0.1:${h1}/?text=hi`)).status).toBe(200);

      // A second head on the same directory refuses, in one line naming the holder.
      const second = cli(['start', '--workers', '1', '--port', String(p2), '--http-port', String(h2), '--data-dir', dir]);
      expect(await exitOf(second.child, 30_000), second.out()).toBe(1);
      const refusal = second.out().split('\n').filter((l) => l.trim() !== '');
      report('second-head', { refusal });
      expect(refusal).toHaveLength(1);
      expect(refusal[0]).toContain(`pid=${first.child.pid}`);
      expect(refusal[0]).toMatch(/^shoal: state store lock .*held by another head.*--standby.*--data-dir/);
      expect(await statusAt(p2!)).toBeUndefined();

      // A standby waits without serving anything.
      const standby = cli(['start', '--workers', '1', '--standby', '--port', String(p3), '--http-port', String(h3), '--data-dir', dir], 'info');
      await sleep(3000);
      expect(standby.child.exitCode).toBeNull();
      expect(await statusAt(p3!)).toBeUndefined();
      pids.seen(await statusAt(p1!));

      const killedAt = Date.now();
      first.child.kill('SIGKILL');
      await exitOf(first.child, 10_000);
      let tookOver: Status | undefined;
      await waitFor('the standby to answer with the application', async () => { tookOver = await statusAt(p3!); pids.seen(tookOver); return tookOver?.applications.some((a) => a.name === 'default') === true; }, 30_000);
      const answeredMs = Date.now() - killedAt;
      // It serves the application with workers of its own (the old head's worker knows only the old address).
      await waitFor('the standby to serve the application', async () => {
        pids.seen(await statusAt(p3!));
        return fetch(`http://127.0.0.1:${h3}/?text=hi`, { signal: AbortSignal.timeout(2000) }).then((r) => r.status === 200, () => false);
      }, 30_000);
      report('standby', { answeredMs, servingMs: Date.now() - killedAt });
      expect(standby.child.exitCode).toBeNull();

      standby.child.kill('SIGTERM');
      expect(await exitOf(standby.child, 30_000), standby.out().slice(-2000)).toBe(0);
    } finally {
      pids.killAll();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
