/**
 * Workers lost, with a real head (in this process), real worker processes and real signals, where
 * packages/head/test/controller.test.ts runs the heartbeat timeout against FakeCluster (issue 17):
 *
 * - SIGSTOP a remote worker (one the head did not spawn, so it cannot kill it) past workerTimeoutMs under a
 *   closed-loop load: it is declared dead while stopped, its replicas are placed again on the other worker, no
 *   request fails. SIGCONT: the worker finds its connection cut, rejoins under its old id reporting the replicas
 *   it still runs; the head adopts them and stops what is beyond each deployment's count (so far always the adopted
 *   ones: newest and idle, they go first; the report's `adoptedKept` says), so that every replica a worker hosts
 *   is one the head lists, each deployment at exactly its count, none hosted twice, and no request failed.
 * - SIGKILL the only local worker: the head spawns another (a new pid), which joins, and every replica is placed
 *   again on it; requests are answered by the new process.
 *
 * faults.test.ts covers SIGSTOP and SIGKILL of local workers among three (the head kills a stopped local one, so
 * SIGCONT resumes nothing there); local-workers.test.ts that exactly one replacement process is spawned.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { ClusterStatus, Head } from '@shoal/head';
import { localWorkerCommand } from '../packages/cli/src/main.ts';
import { deployFixture, isAlive, startCluster, waitFor } from './helpers.ts';
import { closedLoop } from './fixtures/closed-loop.ts';
import { metric, scrape, stats } from './fixtures/faults-harness.ts';
import type { Answer } from './fixtures/controller-app.ts';

const APP = resolve(import.meta.dirname, 'fixtures/controller-app.ts');
/** startCluster's (test/helpers.ts) worker timeout; the remote worker gets it from the head's welcome. */
const WORKER_TIMEOUT_MS = 1500;

// Workers inherit this process's environment: their replica state changes are not what these tests read.
process.env.SHOAL_LOG_LEVEL ??= 'warn';

type PairAnswer = { front: Answer; model: Answer };

const children: ChildProcess[] = [];
/** Ends the worker processes started here (SIGCONT first: one may be stopped). */
function killChildren(): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) { c.kill('SIGCONT'); c.kill('SIGKILL'); }
}
afterAll(killChildren);

let head: Head | undefined;
afterEach(async () => { killChildren(); await head?.stop(); head = undefined; });

/** A worker process the head did not spawn (`shoal worker --address`), with the token on stdin. */
function remoteWorker(h: Head): ChildProcess {
  const { command, args } = localWorkerCommand();
  const child = spawn(command, [...args, '--address', h.clusterAddress, '--cpus', '4', '--token-file', '-'], { stdio: ['pipe', 'inherit', 'inherit'] });
  children.push(child);
  child.stdin!.end(`${h.token}\n`);
  return child;
}

/** Replica ids per worker id, as the worker processes themselves report them (GET /api/stats). */
async function hostedByWorker(h: Head, workers: number): Promise<Map<string, string[]>> {
  const st = await stats(h);
  expect(st?.workers.length, 'workers answering /api/stats').toBe(workers);
  return new Map(st!.workers.map((w) => [w.workerId, w.replicas.map((r) => r.replicaId).sort()]));
}

/** Replica ids per worker id the head lists (workers listing none left out). */
function listedByWorker(s: ClusterStatus): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const r of s.replicas) out.set(r.workerId, [...(out.get(r.workerId) ?? []), r.replicaId].sort());
  return out;
}

/** hostedByWorker, polled until it matches what the head lists (a stop may still be on its way), or 5 s passed. */
async function hostedOnceSettled(h: Head, workers: number): Promise<{ hosted: Map<string, string[]>; listed: Map<string, string[]> }> {
  let hosted = new Map<string, string[]>();
  let listed = new Map<string, string[]>();
  const key = (m: Map<string, string[]>): string => JSON.stringify([...m].filter(([, ids]) => ids.length > 0).sort());
  await waitFor('what the workers host to match what the head lists', async () => {
    hosted = await hostedByWorker(h, workers);
    listed = listedByWorker(h.controller.status());
    return key(hosted) === key(listed);
  }, 5000).catch(() => undefined);
  return { hosted, listed };
}

/** Each deployment of `app` at exactly `n` RUNNING replicas, all on ALIVE workers, nothing else of it listed. */
function atCount(s: ClusterStatus, app: string, n: number): boolean {
  const alive = new Set(s.workers.filter((w) => w.state === 'ALIVE').map((w) => w.workerId));
  const mine = s.replicas.filter((r) => r.app === app);
  const deployments = s.applications.find((a) => a.name === app)?.deployments ?? [];
  return deployments.length > 0 && deployments.every((d) => mine.filter((r) => r.deployment === d.name && r.state === 'RUNNING').length === n)
    && mine.every((r) => r.state === 'RUNNING' && alive.has(r.workerId));
}

function report(name: string, numbers: Record<string, unknown>): void {
  process.stdout.write(`[real-worker-loss] ${name} ${JSON.stringify(numbers)}\n`);
}

describe('a worker lost', () => {
  it('SIGSTOP a remote worker past the timeout: cut off, replicas placed again, 0 failed; SIGCONT: it rejoins, no replica left unlisted or twice', async () => {
    const h = await startCluster({ workers: 1 });
    head = h;
    const remote = remoteWorker(h);
    await waitFor('the remote worker to join', () => h.controller.aliveWorkers().some((w) => w.pid === remote.pid), 20_000);
    await deployFixture(h, { module: APP, exportName: 'pair', name: 'pair', routePrefix: '/' });
    const before = h.controller.status();
    const victim = before.workers.find((w) => w.pid === remote.pid)!;
    const local = before.workers.find((w) => w.pid !== remote.pid)!;
    // Spread by deployment: one Front and one Model on each worker.
    expect(before.replicas.filter((r) => r.workerId === victim.workerId).map((r) => r.deployment).sort()).toEqual(['Front', 'Model']);
    const victimReplicas = before.replicas.filter((r) => r.workerId === victim.workerId).map((r) => r.replicaId);
    // A silence is a timeout whichever check notices it first: the controller's heartbeat timeout or the
    // connection's liveness timeout.
    const lostBefore = metric(await scrape(h), 'shoal_workers_lost_total', { reason: 'timeout' });
    const dataInBefore = (await stats(h))!.workers.find((w) => w.workerId === victim.workerId)!.traffic!.dataIn;

    const load = closedLoop<PairAnswer>(`${h.httpAddress}/?text=hello`, { loops: 6 });
    await waitFor('the load to be answered', () => load.ok >= 100, 10_000);
    // The remote worker takes part of it (the local worker's routers send it Front and Model requests).
    const dataIn = (await stats(h))!.workers.find((w) => w.workerId === victim.workerId)!.traffic!.dataIn;
    expect(dataIn.http + dataIn.call).toBeGreaterThan(dataInBefore.http + dataInBefore.call);

    const stoppedAt = Date.now();
    process.kill(remote.pid!, 'SIGSTOP');
    let whileStopped: ClusterStatus | undefined;
    let routesWhileStopped: ReturnType<Head['controller']['currentRoutes']>['table'] = {};
    try {
      await waitFor('the stopped worker to be declared dead and its replicas placed on the other', () => {
        const s = h.controller.status();
        if (s.workers.some((w) => w.workerId === victim.workerId) || !atCount(s, 'pair', 2)) return false;
        whileStopped = s;
        routesWhileStopped = h.controller.currentRoutes().table;
        return true;
      }, 4 * WORKER_TIMEOUT_MS);
    } finally {
      process.kill(remote.pid!, 'SIGCONT');
    }
    const deadMs = Date.now() - stoppedAt;
    const okAtResume = load.ok;

    // Resumed: the process is alive (the head cannot kill a worker it did not spawn) and rejoins under its old id.
    await waitFor('the resumed worker to rejoin', () => h.controller.aliveWorkers().some((w) => w.pid === remote.pid), 10_000);
    await waitFor('each deployment at exactly 2 again', () => atCount(h.controller.status(), 'pair', 2), 10_000);
    await waitFor('the load to go on after the rejoin', () => load.ok >= okAtResume + 100, 10_000);
    const summary = await load.stop();
    const { hosted, listed } = await hostedOnceSettled(h, 2);
    const after = h.controller.status();
    const text = await scrape(h);
    const lostAfter = metric(text, 'shoal_workers_lost_total', { reason: 'timeout' });
    const lostBy = Object.fromEntries(['timeout', 'disconnected', 'exited', 'other'].map((reason) => [reason, metric(text, 'shoal_workers_lost_total', { reason })]));
    const rejoined = after.workers.find((w) => w.pid === remote.pid)!;
    const adoptedKept = after.replicas.filter((r) => victimReplicas.includes(r.replicaId)).map((r) => r.replicaId);
    report('sigstop', { deadMs, lostBy, requests: summary.requests, failures: summary.failures, rejoinedAs: rejoined.workerId, adoptedKept, hosted: Object.fromEntries(hosted) });

    // Cut off while stopped: gone from the head's workers, counted as lost, its replicas on the local worker
    // and out of the route table.
    expect(whileStopped!.replicas.every((r) => r.workerId === local.workerId)).toBe(true);
    expect(Object.values(routesWhileStopped).flatMap((e) => e.replicas).filter((r) => r.workerId === victim.workerId)).toEqual([]);
    expect(lostAfter - lostBefore).toBe(1);
    // Nothing failed across the stop, the re-placement, the rejoin and the stops that followed it.
    expect({ failures: summary.failures, examples: summary.examples }).toEqual({ failures: {}, examples: [] });
    // Back: the same process, under its old worker id, ALIVE.
    expect(isAlive(remote.pid!)).toBe(true);
    expect([rejoined.workerId, rejoined.state]).toEqual([victim.workerId, 'ALIVE']);
    // What every worker hosts is exactly what the head lists for it: no stale replica serves unlisted, none twice.
    expect(new Map([...hosted].filter(([, ids]) => ids.length > 0))).toEqual(listed);
    expect(after.replicas).toHaveLength(4);
    expect(new Set(after.replicas.map((r) => r.replicaId)).size).toBe(4);
  }, 60_000);

  it('SIGKILL the only local worker: a new process (new pid) joins and every replica is placed again on it', async () => {
    const h = await startCluster({ workers: 1 });
    head = h;
    await deployFixture(h, { module: APP, exportName: 'pair', name: 'solo', routePrefix: '/' });
    const [victimPid] = h.localWorkerPids();
    const before = h.controller.status();
    expect(before.workers.map((w) => w.pid)).toEqual([victimPid]);
    const oldWorker = before.workers[0]!.workerId;
    const oldIds = before.replicas.map((r) => r.replicaId);
    expect(oldIds).toHaveLength(4);
    const lostBefore = metric(await scrape(h), 'shoal_workers_lost_total', { reason: 'exited' });

    process.kill(victimPid!, 'SIGKILL');
    await waitFor('a new worker process with every replica RUNNING on it', () => {
      const s = h.controller.status();
      return s.workers.length === 1 && s.workers[0]!.pid !== victimPid && atCount(s, 'solo', 2);
    }, 20_000);
    const after = h.controller.status();
    const fresh = after.workers[0]!;
    // Answered by the new process, both deployments.
    const answers: PairAnswer[] = [];
    for (let i = 0; i < 10; i++) {
      const res = await fetch(`${h.httpAddress}/?text=hi`, { signal: AbortSignal.timeout(5000) });
      expect(res.status).toBe(200);
      answers.push(await res.json() as PairAnswer);
    }
    const { hosted } = await hostedOnceSettled(h, 1);
    const lostAfter = metric(await scrape(h), 'shoal_workers_lost_total', { reason: 'exited' });
    report('sigkill', { victimPid, freshPid: fresh.pid, oldWorker, freshWorker: fresh.workerId });

    expect(isAlive(victimPid!)).toBe(false);
    expect(h.localWorkerPids()).toEqual([fresh.pid]);
    expect(fresh.workerId).not.toBe(oldWorker);
    expect(lostAfter - lostBefore).toBe(1);
    // Placed again: new replica ids, all on the new worker, and that process hosts exactly them.
    expect(after.replicas.filter((r) => oldIds.includes(r.replicaId))).toEqual([]);
    expect(after.replicas.every((r) => r.workerId === fresh.workerId)).toBe(true);
    expect(hosted).toEqual(new Map([[fresh.workerId, after.replicas.map((r) => r.replicaId).sort()]]));
    expect(new Set(answers.flatMap((a) => [a.front.pid, a.model.pid]))).toEqual(new Set([fresh.pid]));
  }, 60_000);
});
