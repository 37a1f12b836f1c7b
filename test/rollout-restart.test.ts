/**
 * A head killed mid-canary comes back on its data directory still in the canary (the stable version serving, the
 * canary at its step), not promoting a half-judged version; `shoal rollback` then returns to the stable version,
 * and `shoal status` shows the versions and the decisions. Real processes, real SIGKILL, the real CLI.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { resolve } from 'node:path';
import { freePort, waitFor } from './helpers.ts';
import { clusterStatus, ShoalProcesses } from './fixtures/cli-process.ts';

const MODULE = resolve(import.meta.dirname, 'fixtures/rollout-app.ts');
const TOKEN = 'rollout-restart-token-0123456789';
const cli = new ShoalProcesses({ SHOAL_TOKEN: TOKEN, SHOAL_LOG_LEVEL: 'warn', SHOAL_HEARTBEAT_MS: '200', SHOAL_WORKER_TIMEOUT_MS: '1500' });

interface Dep { version: string; versions: Array<{ id: string; running: number; current: boolean }>; rollout?: { phase: string; from: string; to: string; percent: number }; decisions: Array<{ action: string }> }

async function deploymentOf(port: number): Promise<Dep | undefined> {
  const st = await clusterStatus<{ applications: Array<{ name: string; deployments: Dep[] }> }>(port, TOKEN);
  return st?.applications.find((a) => a.name === 'r')?.deployments[0];
}

afterAll(() => cli.stopAll());

describe('a rollout across a head restart', () => {
  it('resumes the canary after SIGKILL of the head, then shoal rollback returns to the stable version', { timeout: 120_000 }, async () => {
    const port = await freePort();
    const httpPort = await freePort();
    const dataDir = cli.tempDir('shoal-rollout-');
    const args = ['start', '--port', String(port), '--http-port', String(httpPort), '--workers', '2', '--data-dir', dataDir];
    const address = ['--address', `ws://127.0.0.1:${port}`];
    let head = cli.start(args);
    await waitFor('the head', async () => (await fetch(`http://127.0.0.1:${port}/api/healthz`).then((r) => r.ok, () => false)), 30_000);
    const d1 = cli.start(['deploy', MODULE, '--export', 'canaryV1', '--name', 'r', ...address]);
    expect(await d1.exited, d1.out()).toBe(0);
    const d2 = cli.start(['deploy', MODULE, '--export', 'canaryV2', '--name', 'r', ...address]);
    expect(await d2.exited, d2.out()).toBe(0);
    const before = (await deploymentOf(port))!;
    expect(before.rollout).toMatchObject({ phase: 'canary', percent: 25 });

    head.child.kill('SIGKILL');
    await head.exited;
    head = cli.start(args);
    await waitFor('the new head to resume the canary', async () => (await deploymentOf(port))?.rollout?.phase === 'canary', 30_000);
    const after = (await deploymentOf(port))!;
    expect(after.rollout).toMatchObject({ phase: 'canary', from: before.rollout!.from, to: before.rollout!.to, percent: 25 });
    expect(after.versions.map((v) => v.id)).toEqual(before.versions.map((v) => v.id));

    const status = cli.start(['status', ...address]);
    expect(await status.exited).toBe(0);
    expect(status.out()).toContain('VERSIONS');
    expect(status.out()).toMatch(/ROLLOUTS\n {2}r\/Model: canary/);

    const rb = cli.start(['rollback', 'Model', ...address]);
    expect(await rb.exited, rb.out()).toBe(0);
    expect(rb.out()).toContain(`rolling back from ${before.rollout!.to} to ${before.rollout!.from}`);
    await waitFor('the stable version alone', async () => {
      const d = await deploymentOf(port);
      return d !== undefined && d.rollout === undefined && d.version === before.rollout!.from && d.versions.find((v) => v.current)!.running === 2 && d.versions.every((v) => v.current || v.running === 0);
    }, 30_000);
    const body = await (await fetch(`http://127.0.0.1:${httpPort}/?x=3`)).json() as { version: string };
    expect(body.version).toBe('v1');
    const none = cli.start(['promote', 'r/Model', ...address]);
    expect(await none.exited).toBe(1);
    expect(none.out()).toContain('no shadow, canary or experiment to promote');

    const stop = cli.start(['shutdown', ...address]);
    expect(await stop.exited).toBe(0);
    await head.exited;
  });
});
