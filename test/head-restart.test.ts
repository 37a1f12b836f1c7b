/**
 * A head that dies or restarts does not take the service down: its local workers keep serving the public port from
 * their last route table, rejoin the next head on the same data directory, and that head adopts their replicas
 * (the same processes, the same replica ids) instead of starting new ones. Real processes, real SIGKILL, counted
 * failures.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { env } from '@shoal/core';
import { FIXTURE_APP, freePort, isAlive, waitFor } from './helpers.ts';
import { redisServerAvailable, startRedisServer } from '../packages/head/test/redis-server.ts';
import { clusterStatus, ShoalProcesses, type ShoalProcess } from './fixtures/cli-process.ts';

const TOKEN = 'head-restart-token-0123456789';
const cli = new ShoalProcesses({ SHOAL_TOKEN: TOKEN, SHOAL_LOG_LEVEL: 'warn', SHOAL_HEARTBEAT_MS: '200', SHOAL_WORKER_TIMEOUT_MS: '1500' });

interface Status {
  applications: Array<{ deployments: Array<{ name: string; running: number; numReplicas: number }> }>;
  replicas: Array<{ replicaId: string; state: string; workerId: string }>;
  workers: Array<{ workerId: string; pid?: number; state: string }>;
}

const status = (port: number): Promise<Status | undefined> => clusterStatus<Status>(port, TOKEN);

/** Client loops of GET requests; counts answers that are not 200. */
function load(httpPort: number, loops: number): { stop: () => Promise<{ ok: number; failed: number; errors: string[] }> } {
  let running = true;
  const counts = { ok: 0, failed: 0, errors: [] as string[] };
  const loop = async (): Promise<void> => {
    while (running) {
      try {
        const res = await fetch(`http://127.0.0.1:${httpPort}/incr?by=1`, { headers: { 'x-shoal-timeout-ms': '5000' }, signal: AbortSignal.timeout(6000) });
        await res.arrayBuffer();
        if (res.status === 200) counts.ok++; else { counts.failed++; counts.errors.push(`HTTP ${res.status}`); }
      } catch (err) {
        counts.failed++;
        counts.errors.push((err as Error).message);
      }
    }
  };
  const all = Array.from({ length: loops }, () => loop());
  return { stop: async () => { running = false; await Promise.all(all); return counts; } };
}

/** Starts a head with 2 local workers, deploys the fixture app, and returns its worker pids and replica ids. */
async function startDeployed(args: string[], port: number): Promise<{ head: ShoalProcess; pids: number[]; replicaIds: string[] }> {
  const head = cli.start(args);
  await waitFor('the head and its workers', async () => ((await status(port))?.workers.length ?? 0) === 2, 30_000);
  const dep = cli.start(['deploy', FIXTURE_APP, '--address', `ws://127.0.0.1:${port}`]);
  expect(await dep.exited, dep.out()).toBe(0);
  const before = (await status(port))!;
  const pids = before.workers.map((w) => w.pid!).sort();
  for (const pid of pids) cli.adopt(pid);
  return { head, pids, replicaIds: before.replicas.map((r) => r.replicaId).sort() };
}

afterAll(() => cli.stopAll());

describe('head restart', () => {
  it('SIGKILL the head under load, start it again: 0 failed requests, the same replica processes are adopted', async () => {
    const port = await freePort();
    const httpPort = await freePort();
    const dataDir = mkdtempSync(join(tmpdir(), 'shoal-restart-'));
    const args = ['start', '--workers', '2', '--port', String(port), '--http-port', String(httpPort), '--data-dir', dataDir];
    try {
      const { head: head1, pids, replicaIds } = await startDeployed(args, port);
      expect(replicaIds.length).toBeGreaterThanOrEqual(2);

      const traffic = load(httpPort, 8);
      await new Promise((r) => setTimeout(r, 1000));
      head1.child.kill('SIGKILL');
      await head1.exited;
      // No head: the workers keep serving (counted by the load loops).
      await new Promise((r) => setTimeout(r, 1500));
      expect(pids.every(isAlive)).toBe(true);

      const head2 = cli.start(args);
      await waitFor('the new head to adopt every replica', async () => {
        const s = await status(port);
        return s !== undefined && s.replicas.filter((r) => r.state === 'RUNNING').map((r) => r.replicaId).sort().join() === replicaIds.join();
      }, 15_000);
      await new Promise((r) => setTimeout(r, 1000));
      const after = (await status(port))!;
      expect(after.workers.map((w) => w.pid!).sort()).toEqual(pids);
      expect(after.replicas.map((r) => r.replicaId).sort()).toEqual(replicaIds);

      // A planned restart: the head goes, the workers stay.
      const stopOnly = cli.start(['shutdown', '--keep-workers', '--address', `ws://127.0.0.1:${port}`]);
      expect(await stopOnly.exited).toBe(0);
      expect(await head2.exited).toBe(0);
      await new Promise((r) => setTimeout(r, 500));
      const head3 = cli.start(args);
      await waitFor('the third head to adopt every replica', async () => {
        const s = await status(port);
        return s !== undefined && s.replicas.filter((r) => r.state === 'RUNNING').map((r) => r.replicaId).sort().join() === replicaIds.join() && s.workers.length === 2;
      }, 15_000);
      await new Promise((r) => setTimeout(r, 500));
      const counts = await traffic.stop();
      expect(counts.ok).toBeGreaterThan(100);
      expect({ failed: counts.failed, errors: [...new Set(counts.errors)].slice(0, 5) }).toEqual({ failed: 0, errors: [] });
      expect((await status(port))!.workers.map((w) => w.pid!).sort()).toEqual(pids);

      // SIGTERM: drains and exits 0, taking the workers with it.
      head3.child.kill('SIGTERM');
      expect(await head3.exited, head3.out()).toBe(0);
      await waitFor('workers to exit', () => pids.every((p) => !isAlive(p)), 20_000);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 120_000);

  const redisMissing = !redisServerAvailable();
  it.skipIf(redisMissing && !env.requireRedis())('with the Redis store: a second head is refused while the first holds it; after a SIGKILL the next head adopts the workers', async () => {
    if (redisMissing) throw new Error('SHOAL_REQUIRE_REDIS=1 but redis-server is not installed');
    const redis = await startRedisServer();
    const port = await freePort();
    const httpPort = await freePort();
    const args = ['start', '--workers', '2', '--port', String(port), '--http-port', String(httpPort), '--store', redis.url, '--store-prefix', 'restart-test:'];
    try {
      const { head: head1, pids, replicaIds } = await startDeployed(args, port);

      // Two heads on one store never split: the second refuses, naming the first.
      const second = cli.start(['start', '--workers', '0', '--port', String(await freePort()), '--http-port', String(await freePort()), '--store', redis.url, '--store-prefix', 'restart-test:']);
      expect(await second.exited).toBe(1);
      expect(second.out()).toMatch(new RegExp(`held by another head: .*pid=${head1.child.pid}.*--standby`));

      const traffic = load(httpPort, 4);
      head1.child.kill('SIGKILL');
      await head1.exited;
      await new Promise((r) => setTimeout(r, 500));
      // The lease of a SIGKILLed head expires (10 s TTL); the next head waits for it as a standby.
      const head2 = cli.start([...args, '--standby']);
      await waitFor('the new head to adopt every replica', async () => {
        const s = await status(port);
        return s !== undefined && s.replicas.filter((r) => r.state === 'RUNNING').map((r) => r.replicaId).sort().join() === replicaIds.join();
      }, 30_000);
      const counts = await traffic.stop();
      expect({ failed: counts.failed, errors: [...new Set(counts.errors)].slice(0, 5) }).toEqual({ failed: 0, errors: [] });
      expect(counts.ok).toBeGreaterThan(50);
      expect((await status(port))!.workers.map((w) => w.pid!).sort()).toEqual(pids);
      head2.child.kill('SIGTERM');
      expect(await head2.exited).toBe(0);
      await waitFor('workers to exit', () => pids.every((p) => !isAlive(p)), 20_000);
    } finally {
      await redis.stop();
    }
  }, 120_000);
});
