/**
 * SIGTERM to a head whose workers are all remote (--workers 0: what a Kubernetes head pod is sent on every upgrade
 * or reschedule) stops only the head: the worker serves on, and a new head on the same store gets it back with its
 * replicas. --on-sigterm chooses otherwise, and is checked. Real processes: `shoal start`, `shoal worker`, `shoal deploy`.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FIXTURE_APP, freePort, isAlive, waitFor } from './helpers.ts';
import { clusterStatus, ShoalProcesses } from './fixtures/cli-process.ts';

const TOKEN = 'head-sigterm-token-0123456789';
const cli = new ShoalProcesses({ SHOAL_TOKEN: TOKEN, SHOAL_LOG_LEVEL: 'warn', SHOAL_HEARTBEAT_MS: '200', SHOAL_WORKER_TIMEOUT_MS: '1500' });
afterAll(() => cli.stopAll());

interface Status {
  replicas: Array<{ replicaId: string; state: string; workerId: string }>;
  workers: Array<{ workerId: string; pid?: number; state: string }>;
}

const status = (port: number): Promise<Status | undefined> => clusterStatus<Status>(port, TOKEN);

async function incr(httpPort: number): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${httpPort}/incr?by=1`, { headers: { 'x-shoal-timeout-ms': '5000' }, signal: AbortSignal.timeout(6000) });
  await res.arrayBuffer();
  return res.status;
}

const running = (s: Status | undefined): string => (s?.replicas ?? []).filter((r) => r.state === 'RUNNING').map((r) => r.replicaId).sort().join();

describe('SIGTERM to a head', () => {
  it('with --workers 0: only the head stops; the remote worker serves on and rejoins the next head with its replicas', async () => {
    const [port, headHttp, workerHttp] = [await freePort(), await freePort(), await freePort()];
    const dir = cli.tempDir('shoal-sigterm-');
    const args = ['start', '--workers', '0', '--port', String(port), '--http-port', String(headHttp), '--data-dir', dir];
    const head1 = cli.start(args);
    const worker = cli.start(['worker', '--address', `ws://127.0.0.1:${port}`, '--http-port', String(workerHttp), '--cpus', '8']);
    await waitFor('the worker to join', async () => (await status(port))?.workers.length === 1, 30_000);
    const dep = cli.start(['deploy', FIXTURE_APP, '--address', `ws://127.0.0.1:${port}`]);
    expect(await dep.exited, dep.out()).toBe(0);
    const before = (await status(port))!;
    const replicaIds = running(before);
    expect(replicaIds.split(',').length).toBeGreaterThanOrEqual(3);
    expect(await incr(workerHttp)).toBe(200);

    head1.child.kill('SIGTERM');
    expect(await head1.exited, head1.out()).toBe(0);
    expect(head1.out()).toContain('stopping the head; its workers keep serving');
    // The store still lists the worker, so the next head waits for it rather than placing its replicas afresh.
    const stored = JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8')) as { workers: unknown[] };
    expect(stored.workers).toHaveLength(1);
    // No head: the worker serves from its last route table.
    for (let i = 0; i < 5; i++) expect(await incr(workerHttp)).toBe(200);
    expect(isAlive(worker.child.pid!)).toBe(true);

    const head2 = cli.start(args);
    await waitFor('the next head to get the worker and its replicas back', async () => running(await status(port)) === replicaIds, 30_000);
    const after = (await status(port))!;
    expect(after.workers.map((w) => w.pid)).toEqual([worker.child.pid]);
    expect(await incr(workerHttp)).toBe(200);
    expect(worker.out()).not.toContain('head stopping');

    // --on-sigterm stop: the full stop, as with local workers.
    head2.child.kill('SIGKILL');
    await head2.exited;
    const head3 = cli.start([...args, '--on-sigterm', 'stop']);
    await waitFor('the third head to get the worker back', async () => running(await status(port)) === replicaIds, 30_000);
    head3.child.kill('SIGTERM');
    expect(await head3.exited, head3.out()).toBe(0);
    expect(head3.out()).toContain('stopping head and local workers (draining)');
    worker.child.kill('SIGTERM');
    expect(await worker.exited).toBe(0);
  }, 120_000);

  it('rejects a bad --on-sigterm, and keep-workers for a head whose state is a temporary directory, naming the flag', async () => {
    const bad = cli.start(['start', '--workers', '0', '--port', String(await freePort()), '--http-port', '0', '--on-sigterm', 'linger']);
    expect(await bad.exited).toBe(1);
    expect(bad.out()).toContain('--on-sigterm: must be keep-workers or stop');
    const temp = cli.start(['start', '--workers', '0', '--port', '0', '--http-port', '0', '--on-sigterm', 'keep-workers']);
    expect(await temp.exited).toBe(1);
    expect(temp.out()).toContain('--on-sigterm: keep-workers needs a state store a next head can open (--data-dir or --store)');
  });
});
