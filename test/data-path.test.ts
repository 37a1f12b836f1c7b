/**
 * Handle calls between deployments: in process when the replica is local (the argument object itself arrives, so no
 * message carried it, and no data connection exists), and worker to worker over the data connection, which goes on
 * with the head stopped.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { deployFixture, isAlive, startCluster, waitFor } from './helpers.ts';

const APP = resolve(import.meta.dirname, 'fixtures/data-path-app.ts');

interface Answer { frontPid: number; backPid: number; sameObject: boolean; tag: string }

/** Established TCP connections accepted on `port` of this machine (Linux /proc/net/tcp): data connections to a worker. */
function connectionsTo(port: number): number {
  const rows = readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1).map((l) => l.trim().split(/\s+/));
  return rows.filter((r) => r.length > 3 && parseInt(r[1]!.split(':')[1]!, 16) === port && r[3] === '01').length;
}

async function ask(http: string, tag: string): Promise<Answer> {
  const res = await fetch(`${http}/?tag=${tag}`);
  expect(res.status).toBe(200);
  return res.json() as Promise<Answer>;
}

describe('handle calls on the data path', () => {
  it('a local replica is called in process: the same object reaches it, in the same pid, and no data connection is opened', async () => {
    const head = await startCluster({ workers: 1 });
    try {
      await deployFixture(head, { module: APP, exportName: 'together', name: 'together' });
      const [worker] = head.controller.status().workers;
      for (let i = 0; i < 5; i++) {
        expect(await ask(head.httpAddress, `t${i}`)).toEqual({ frontPid: worker!.pid, backPid: worker!.pid, sameObject: true, tag: `t${i}` });
      }
      // Nothing dialled the worker's data server, not even the worker itself.
      expect(connectionsTo(Number(new URL(worker!.dataAddress).port))).toBe(0);
    } finally {
      await head.stop();
    }
  });

  it('a replica on another worker is reached worker to worker, and still is with the head stopped', async () => {
    const head = await startCluster({ workers: 2 });
    let pids: number[] = [];
    try {
      await deployFixture(head, { module: APP, exportName: 'split', name: 'split' });
      const st = head.controller.status();
      pids = st.workers.map((w) => w.pid!);
      const workerOf = Object.fromEntries(st.replicas.map((r) => [r.deployment, r.workerId]));
      expect(workerOf.Front).not.toBe(workerOf.Back);
      const pidOf = (workerId: string | undefined): number | undefined => st.workers.find((w) => w.workerId === workerId)?.pid;
      const want = { frontPid: pidOf(workerOf.Front), backPid: pidOf(workerOf.Back), sameObject: false };
      expect(await ask(head.httpAddress, 'before')).toEqual({ ...want, tag: 'before' });
      // Front's worker holds a data connection to Back's (the count the local test finds at 0).
      const backData = Number(new URL(st.workers.find((w) => w.workerId === workerOf.Back)!.dataAddress).port);
      expect(connectionsTo(backData)).toBeGreaterThanOrEqual(1);

      const http = head.httpAddress;
      const control = head.clusterAddress.replace(/^ws/, 'http');
      await head.stop({ keepWorkers: true });
      await expect(fetch(`${control}/-/healthz`)).rejects.toThrow();
      expect(pids.every(isAlive)).toBe(true);
      // The workers hold the public socket and the route table; the call crosses between them with no head at all.
      for (let i = 0; i < 5; i++) expect(await ask(http, `after${i}`)).toEqual({ ...want, tag: `after${i}` });
    } finally {
      await head.stop().catch(() => undefined);
      for (const p of pids) if (isAlive(p)) process.kill(p, 'SIGTERM');
      await waitFor('the kept workers to exit', () => pids.every((p) => !isAlive(p)), 10_000);
    }
  });
});
