/**
 * A remote worker may start before its head (pods start in any order): `shoal worker` keeps trying to reach the
 * head until it comes, and joins it; a refusal that retrying cannot change (a wrong token) ends it at once, and
 * SHOAL_CONNECT_TIMEOUT_MS bounds the wait. Real processes: `shoal worker` and `shoal start`.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { freePort, waitFor } from './helpers.ts';
import { clusterStatus, ShoalProcesses } from './fixtures/cli-process.ts';

const TOKEN = 'worker-first-connect-token-0123';

const cli = new ShoalProcesses({ SHOAL_TOKEN: TOKEN, SHOAL_LOG_FORMAT: 'json', SHOAL_HEARTBEAT_MS: '200' });
afterEach(() => cli.stopAll());

async function workersOf(port: number): Promise<Array<{ workerId: string; pid?: number }>> {
  return (await clusterStatus<{ workers: Array<{ workerId: string; pid?: number }> }>(port, TOKEN))?.workers ?? [];
}

describe('a worker\'s first connection to the head', () => {
  it('a worker started before its head keeps trying, and joins the head once it listens', async () => {
    const port = await freePort();
    const worker = cli.start(['worker', '--address', `ws://127.0.0.1:${port}`]);
    await waitFor('the worker to report that the head is not up yet', () => worker.out().includes('cannot reach the head yet; retrying'));
    expect(worker.child.exitCode).toBeNull();
    const dir = cli.tempDir('shoal-first-connect-');
    const head = cli.start(['start', '--workers', '0', '--port', String(port), '--http-port', '0', '--data-dir', dir], { SHOAL_LOG_LEVEL: 'warn' });
    await waitFor('the head to start', () => head.out().includes('shoal head running'));
    await waitFor('the worker to join the head', async () => (await workersOf(port)).some((w) => w.pid === worker.child.pid), 30_000);
    // The head lists the worker once it accepted the hello; the worker logs once it has the welcome.
    await waitFor('the worker to log that it joined', () => worker.out().includes('"msg":"joined head"'));
    expect(worker.child.exitCode).toBeNull();
  });

  it('a worker with a wrong token exits non-zero at once, naming the token', async () => {
    const port = await freePort();
    const dir = cli.tempDir('shoal-first-connect-');
    const head = cli.start(['start', '--workers', '0', '--port', String(port), '--http-port', '0', '--data-dir', dir], { SHOAL_LOG_LEVEL: 'warn' });
    await waitFor('the head to start', () => head.out().includes('shoal head running'));
    const worker = cli.start(['worker', '--address', `ws://127.0.0.1:${port}`], { SHOAL_TOKEN: 'not-the-cluster-token-at-all' });
    expect(await worker.exited).toBe(1);
    expect(worker.out()).toMatch(/shoal: .*answered the upgrade with HTTP 401: wrong or missing cluster token/);
    expect(worker.out()).not.toContain('retrying');
  });

  it('with SHOAL_CONNECT_TIMEOUT_MS, a worker whose head never comes exits non-zero naming the address and the bound', async () => {
    const port = await freePort();
    const worker = cli.start(['worker', '--address', `ws://127.0.0.1:${port}`], { SHOAL_CONNECT_TIMEOUT_MS: '1000' });
    expect(await worker.exited).toBe(1);
    expect(worker.out()).toContain(`shoal: could not reach the head at ws://127.0.0.1:${port} within connectTimeoutMs=1000 (SHOAL_CONNECT_TIMEOUT_MS`);
    expect(worker.out()).toContain('ECONNREFUSED');
  });

  it('rejects a SHOAL_CONNECT_TIMEOUT_MS that is not a non-negative integer, naming it', async () => {
    const worker = cli.start(['worker', '--address', 'ws://127.0.0.1:9'], { SHOAL_CONNECT_TIMEOUT_MS: 'soon' });
    expect(await worker.exited).toBe(1);
    expect(worker.out()).toContain('env SHOAL_CONNECT_TIMEOUT_MS');
  });
});
