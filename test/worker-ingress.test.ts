/**
 * HTTP served where the replica lives: every worker runs the ingress (the local ones share the head's public port),
 * so the head is off the data path. Real processes, real signals.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Head } from '@shoal/head';
import type { WorkerStats } from '@shoal/protocol';
import { localWorkerCommand } from '../packages/cli/src/main.ts';
import { FIXTURE_APP, deployFixture, freePort, isAlive, startCluster, waitFor } from './helpers.ts';

const BIN = resolve(import.meta.dirname, '../packages/cli/bin/shoal.mjs');
const TOKEN = 'ingress-test-token-0123456789';
const started: ChildProcess[] = [];

afterAll(() => {
  for (const c of started) if (c.exitCode === null && c.signalCode === null) { c.kill('SIGCONT'); c.kill('SIGKILL'); }
});

/** Runs `count` requests back to back on 8 loops; counts answers by status (0: no answer at all). */
async function hammer(url: string, count: number): Promise<Record<number, number>> {
  const byStatus: Record<number, number> = {};
  let next = 0;
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (next < count) {
      next++;
      const status = await fetch(url, { signal: AbortSignal.timeout(5000) }).then(async (r) => { await r.arrayBuffer(); return r.status; }, () => 0);
      byStatus[status] = (byStatus[status] ?? 0) + 1;
    }
  }));
  return byStatus;
}

describe('worker ingress', () => {
  it('answers while the head process is stopped (SIGSTOP), and after it resumes, with the same replicas', async () => {
    const child = spawn(process.execPath, [BIN, 'run', FIXTURE_APP, '--port', '0', '--http-port', '0', '--workers', '2', '--token', TOKEN], {
      env: { ...process.env, SHOAL_LOG_LEVEL: 'warn', SHOAL_WORKER_TIMEOUT_MS: '1500', SHOAL_HEARTBEAT_MS: '200' }, stdio: 'pipe',
    });
    started.push(child);
    let out = '';
    child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
    await waitFor('shoal run to report ready', () => /ready: http:\/\/\S+/.test(out) || child.exitCode !== null, 40_000);
    const http = /ready: (http:\/\/[\d.:]+)/.exec(out)![1]!;
    const control = /cluster:\s+ws:\/\/([\d.:]+)/.exec(out)![1]!;
    const status = async (): Promise<{ workers: Array<{ pid: number; state: string }>; replicas: Array<{ replicaId: string; state: string }> }> =>
      await (await fetch(`http://${control}/api/status`, { headers: { authorization: `Bearer ${TOKEN}` } })).json() as never;
    const before = await status();
    expect(before.workers.map((w) => w.state)).toEqual(['ALIVE', 'ALIVE']);
    expect(await hammer(`${http}/incr`, 40)).toEqual({ 200: 40 });

    process.kill(child.pid!, 'SIGSTOP');
    try {
      // Longer than the worker timeout (1.5 s): the head could not even read a heartbeat.
      const end = Date.now() + 3000;
      const during: Record<number, number> = {};
      while (Date.now() < end) for (const [k, v] of Object.entries(await hammer(`${http}/incr`, 40))) during[Number(k)] = (during[Number(k)] ?? 0) + v;
      expect(Object.keys(during)).toEqual(['200']);
      expect(during[200]).toBeGreaterThan(40);
      expect((await fetch(`${http}/-/ready`)).status).toBe(200);
    } finally {
      process.kill(child.pid!, 'SIGCONT');
    }
    // Resumed: the head blames its own stall, not the workers; nothing is replaced and service goes on.
    await new Promise((r) => setTimeout(r, 1500));
    expect(await hammer(`${http}/incr`, 40)).toEqual({ 200: 40 });
    const after = await status();
    expect(after.workers.map((w) => [w.pid, w.state])).toEqual(before.workers.map((w) => [w.pid, 'ALIVE']));
    expect(after.replicas.map((r) => r.replicaId).sort()).toEqual(before.replicas.map((r) => r.replicaId).sort());
    child.kill('SIGINT');
    await new Promise((r) => child.once('exit', r));
    await waitFor('workers to exit', () => before.workers.every((w) => !isAlive(w.pid)), 10_000);
  });

  describe('hops', () => {
    let head: Head;
    afterAll(async () => { await head?.stop(); });

    const traffic = async (): Promise<Map<string, NonNullable<WorkerStats['traffic']>>> =>
      new Map((await head.stats()).workers.map((w) => [w.workerId, w.traffic!]));

    it('a request whose replica is on another worker crosses exactly one data-plane hop; a local one none', async () => {
      head = await startCluster({ workers: 1 });
      await deployFixture(head);
      const local = head.controller.aliveWorkers()[0]!.workerId;
      // A second worker with an HTTP port of its own (as behind an outside load balancer); it hosts no replica.
      const port = await freePort();
      const { command, args } = localWorkerCommand();
      const remote = spawn(command, [...args, '--address', head.clusterAddress, '--http-port', String(port)], { env: { ...process.env, SHOAL_TOKEN: head.token, SHOAL_LOG_LEVEL: 'warn' }, stdio: 'ignore' });
      started.push(remote);
      await waitFor('the second worker to join', () => head.controller.aliveWorkers().length === 2);
      const other = head.controller.aliveWorkers().find((w) => w.workerId !== local)!.workerId;
      await waitFor('its ingress to listen', async () => fetch(`http://127.0.0.1:${port}/-/healthz`).then((r) => r.ok, () => false));
      expect(head.controller.status().replicas.every((r) => r.workerId === local)).toBe(true);

      const t0 = await traffic();
      // Through the shared port: the local worker's ingress, Front and Counter all in one process.
      expect(await hammer(`${head.httpAddress}/incr`, 50)).toEqual({ 200: 50 });
      const t1 = await traffic();
      expect(t1.get(local)!.ingressRequests - t0.get(local)!.ingressRequests).toBe(50);
      expect(t1.get(local)!.dataIn).toEqual(t0.get(local)!.dataIn);
      expect(t1.get(other)!.dataIn).toEqual({ call: 0, http: 0 });

      // Through the other worker's port: one hop to Front, whose call to Counter stays in process.
      expect(await hammer(`http://127.0.0.1:${port}/incr`, 50)).toEqual({ 200: 50 });
      const t2 = await traffic();
      expect(t2.get(other)!.ingressRequests).toBe(50);
      expect(t2.get(local)!.dataIn.http - t1.get(local)!.dataIn.http).toBe(50);
      expect(t2.get(local)!.dataIn.call - t1.get(local)!.dataIn.call).toBe(0);
      expect(t2.get(other)!.dataIn).toEqual({ call: 0, http: 0 });
      // The head's router carried none of it.
      expect(Object.values(head.router.stats()).every((s) => s.inflight === 0)).toBe(true);
    });
  });
});
