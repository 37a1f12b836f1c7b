/** The shoal command as a user runs it: a child process, real workers, signals. */
import { describe, expect, it } from 'vitest';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { resolve } from 'node:path';
import { FIXTURE_APP, isAlive, waitFor } from './helpers.ts';

const BIN = resolve(import.meta.dirname, '../packages/cli/bin/shoal.mjs');
const TOKEN = 'cli-test-token-0123456789';

function shoal(args: string[], env: Record<string, string> = {}): { child: ChildProcessWithoutNullStreams; out: () => string } {
  const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, SHOAL_LOG_LEVEL: 'warn', ...env }, stdio: 'pipe' });
  let out = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { out += d.toString(); });
  return { child, out: () => out };
}

async function exitOf(child: ChildProcessWithoutNullStreams): Promise<number | null> {
  if (child.exitCode !== null) return child.exitCode;
  return new Promise((r) => child.once('exit', (code) => r(code)));
}

async function startRun(): Promise<{ child: ChildProcessWithoutNullStreams; out: () => string; http: string; cluster: string; pids: number[] }> {
  const run = shoal(['run', FIXTURE_APP, '--port', '0', '--http-port', '0', '--workers', '2', '--token', TOKEN]);
  await waitFor('shoal run to report ready', () => /ready: http:\/\/\S+/.test(run.out()) || run.child.exitCode !== null, 40_000);
  const http = /ready: (http:\/\/[\d.:]+)/.exec(run.out())?.[1];
  const cluster = /cluster:\s+(ws:\/\/[\d.:]+)/.exec(run.out())?.[1];
  if (http === undefined || cluster === undefined) throw new Error(`shoal run did not start:\n${run.out()}`);
  const st = await fetch(`${cluster.replace('ws', 'http')}/api/status`, { headers: { authorization: `Bearer ${TOKEN}` } });
  const pids = (await st.json() as { workers: Array<{ pid: number }> }).workers.map((w) => w.pid);
  return { ...run, http, cluster, pids };
}

describe('shoal CLI', () => {
  it('run serves the app, and Ctrl-C (SIGINT) leaves no process behind', async () => {
    const run = await startRun();
    expect(run.pids).toHaveLength(2);
    const res = await fetch(`${run.http}/incr?by=5`);
    expect(await res.json()).toMatchObject({ n: 5 });

    const status = shoal(['status', '--address', run.cluster, '--token', TOKEN]);
    expect(await exitOf(status.child)).toBe(0);
    expect(status.out()).toMatch(/Counter\s+HEALTHY\s+2\/2/);
    expect(status.out()).toMatch(/RUNNING/);

    run.child.kill('SIGINT');
    await exitOf(run.child);
    await waitFor('workers to exit', () => run.pids.every((p) => !isAlive(p)), 10_000);
  });

  it('workers of a SIGKILLed head exit on their own', async () => {
    const run = await startRun();
    run.child.kill('SIGKILL');
    await exitOf(run.child);
    await waitFor('orphaned workers to exit', () => run.pids.every((p) => !isAlive(p)), 15_000);
  });

  it('shutdown stops a head; a wrong token is refused with a clear error', async () => {
    const run = await startRun();
    const wrong = shoal(['shutdown', '--address', run.cluster, '--token', 'wrong']);
    expect(await exitOf(wrong.child)).toBe(1);
    expect(wrong.out()).toMatch(/401: wrong cluster token/);
    expect(run.child.exitCode).toBeNull();
    const ok = shoal(['shutdown', '--address', run.cluster], { SHOAL_TOKEN: TOKEN });
    expect(await exitOf(ok.child)).toBe(0);
    await exitOf(run.child);
    await waitFor('workers to exit', () => run.pids.every((p) => !isAlive(p)), 10_000);
  });

  it('deploy sends another application to a running head', async () => {
    const run = await startRun();
    try {
      const dep = shoal(['deploy', FIXTURE_APP, '--export', 'fn', '--name', 'adder', '--route-prefix', '/add', '--address', run.cluster, '--token', TOKEN]);
      expect(await exitOf(dep.child)).toBe(0);
      expect(dep.out()).toMatch(/deployed "adder"/);
      const bad = shoal(['deploy', FIXTURE_APP, '--export', 'nope', '--address', run.cluster, '--token', TOKEN]);
      expect(await exitOf(bad.child)).toBe(1);
      expect(bad.out()).toMatch(/has no export "nope"/);
    } finally {
      run.child.kill('SIGTERM');
      await exitOf(run.child);
    }
  });

  it('explains a missing file, a bad flag and an unknown command', async () => {
    const missing = shoal(['run', 'no/such/app.ts']);
    expect(await exitOf(missing.child)).toBe(1);
    expect(missing.out()).toMatch(/no such file/);
    const badFlag = shoal(['run', FIXTURE_APP, '--workers', 'two']);
    expect(await exitOf(badFlag.child)).toBe(1);
    expect(badFlag.out()).toMatch(/--workers.*integer/);
    const unknown = shoal(['frobnicate']);
    expect(await exitOf(unknown.child)).toBe(2);
    expect(unknown.out()).toMatch(/unknown command "frobnicate"/);
  });
});
