/** The shoal command as a user runs it: a child process, real workers, signals. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FIXTURE_APP, isAlive, startCluster, waitFor } from './helpers.ts';
import { startShoal, type ShoalProcess } from './fixtures/cli-process.ts';

const TOKEN = 'cli-test-token-0123456789';

const shoal = (args: string[], env: Record<string, string> = {}): ShoalProcess => startShoal(args, { env: { SHOAL_LOG_LEVEL: 'warn', ...env } });

async function startRun(): Promise<ShoalProcess & { http: string; cluster: string; pids: number[] }> {
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
    expect(await status.exited).toBe(0);
    expect(status.out()).toMatch(/Counter\s+HEALTHY\s+2\/2/);
    expect(status.out()).toMatch(/RUNNING/);

    run.child.kill('SIGINT');
    await run.exited;
    await waitFor('workers to exit', () => run.pids.every((p) => !isAlive(p)), 10_000);
  });

  it('shutdown stops a head; a wrong token is refused with a clear error', async () => {
    const run = await startRun();
    const wrong = shoal(['shutdown', '--address', run.cluster, '--token', 'wrong']);
    expect(await wrong.exited).toBe(1);
    expect(wrong.out()).toMatch(/401: wrong cluster token/);
    expect(run.child.exitCode).toBeNull();
    const ok = shoal(['shutdown', '--address', run.cluster], { SHOAL_TOKEN: TOKEN });
    expect(await ok.exited).toBe(0);
    await run.exited;
    await waitFor('workers to exit', () => run.pids.every((p) => !isAlive(p)), 10_000);
  });

  it('deploy sends another application to a running head', async () => {
    const run = await startRun();
    try {
      const dep = shoal(['deploy', FIXTURE_APP, '--export', 'fn', '--name', 'adder', '--route-prefix', '/add', '--address', run.cluster, '--token', TOKEN]);
      expect(await dep.exited).toBe(0);
      expect(dep.out()).toMatch(/deployed "adder"/);
      const bad = shoal(['deploy', FIXTURE_APP, '--export', 'nope', '--address', run.cluster, '--token', TOKEN]);
      expect(await bad.exited).toBe(1);
      expect(bad.out()).toMatch(/has no export "nope"/);
    } finally {
      run.child.kill('SIGTERM');
      await run.exited;
    }
  });

  it('explains a missing file, a bad flag and an unknown command', async () => {
    const missing = shoal(['run', 'no/such/app.ts']);
    expect(await missing.exited).toBe(1);
    expect(missing.out()).toMatch(/no such file/);
    const badFlag = shoal(['run', FIXTURE_APP, '--workers', 'two']);
    expect(await badFlag.exited).toBe(1);
    expect(badFlag.out()).toMatch(/--workers.*integer/);
    const unknown = shoal(['frobnicate']);
    expect(await unknown.exited).toBe(2);
    expect(unknown.out()).toMatch(/unknown command "frobnicate"/);
  });
});

/**
 * Runs the command to its end, stderr apart from stdout. One still running after `limitMs` (a head that started
 * where it should have refused) is stopped with SIGTERM, so that it and its workers do not outlive the test.
 */
async function shoalToEnd(args: string[], env: Record<string, string> = {}, limitMs = 30_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = shoal(args, env);
  let stopped = '';
  const timer = setTimeout(() => { stopped = `[still running after ${limitMs} ms: stopped]\n`; p.child.kill('SIGTERM'); }, limitMs);
  const code = await p.exited;
  clearTimeout(timer);
  return { code, stdout: p.stdout(), stderr: p.stderr() + stopped };
}

describe('shoal CLI: busy ports', () => {
  let busy: Server;
  let port: number;
  beforeAll(async () => {
    busy = createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()));
    port = (busy.address() as AddressInfo).port;
  });
  afterAll(() => { busy.close(); });

  it('every busy port is exit code 1 and one line on stderr naming the flag to change', async () => {
    const p = String(port);
    const cases: Array<[string[], string]> = [
      [['start', '--port', p, '--http-port', '0', '--workers', '0', '--token', TOKEN], '--port'],
      [['run', FIXTURE_APP, '--port', p, '--http-port', '0', '--workers', '1', '--token', TOKEN], '--port'],
      [['start', '--port', '0', '--http-port', p, '--workers', '2', '--token', TOKEN], '--http-port'],
      [['start', '--port', '0', '--http-port', p, '--workers', '0', '--token', TOKEN], '--http-port'],
      [['worker', '--address', 'ws://127.0.0.1:1', '--data-port', p], '--data-port'],
      [['worker', '--address', 'ws://127.0.0.1:1', '--http-port', p], '--http-port'],
    ];
    const results = await Promise.all(cases.map(([args]) => shoalToEnd(args, { SHOAL_TOKEN: TOKEN }, 20_000)));
    results.forEach((r, i) => {
      const [args, flag] = cases[i]!;
      const lines = r.stderr.split('\n').filter((l) => l !== '');
      expect({ args, code: r.code, lines }).toEqual({ args, code: 1, lines: [expect.stringContaining(`invalid option ${flag}: 127.0.0.1:${port} is already in use; choose another with ${flag}`)] });
    });
  });
});

describe('shoal CLI: --token-file', () => {
  it('reads the token from a file for control commands, and names the flag when the file is missing or empty', async () => {
    const head = await startCluster({ workers: 0, token: TOKEN });
    try {
      const dir = mkdtempSync(join(tmpdir(), 'shoal-cli-token-'));
      const good = join(dir, 'token');
      writeFileSync(good, `  ${TOKEN}\n`, { mode: 0o600 });
      const ok = await shoalToEnd(['status', '--address', head.clusterAddress, '--token-file', good, '--json']);
      expect(ok.code).toBe(0);
      expect(JSON.parse(ok.stdout)).toMatchObject({ cluster: head.clusterAddress });
      expect(ok.stderr).toBe('');

      const open = join(dir, 'open-token');
      writeFileSync(open, TOKEN);
      chmodSync(open, 0o644);
      const warned = await shoalToEnd(['status', '--address', head.clusterAddress, '--token-file', open]);
      expect(warned.code).toBe(0);
      expect(warned.stderr).toMatch(/warning: --token-file .* is readable by every user \(mode 644\); chmod 600 it/);

      const empty = join(dir, 'empty');
      writeFileSync(empty, '\n', { mode: 0o600 });
      const missing = await shoalToEnd(['status', '--address', head.clusterAddress, '--token-file', join(dir, 'nope')]);
      expect([missing.code, missing.stderr.trim()]).toEqual([1, `shoal: invalid option --token-file: cannot read ${join(dir, 'nope')} (no such file)`]);
      const blank = await shoalToEnd(['shutdown', '--address', head.clusterAddress, '--token-file', empty]);
      expect([blank.code, blank.stderr.trim()]).toEqual([1, `shoal: invalid option --token-file: ${empty} is empty`]);
      const both = await shoalToEnd(['status', '--address', head.clusterAddress, '--token-file', good, '--token', TOKEN]);
      expect([both.code, both.stderr.trim()]).toEqual([1, 'shoal: invalid option --token-file: cannot be combined with --token (give one)']);
      const none = await shoalToEnd(['status', '--address', head.clusterAddress], { SHOAL_TOKEN: '' });
      expect(none.code).toBe(1);
      expect(none.stderr).toMatch(/--token-file: is required .* or set SHOAL_TOKEN/);
    } finally {
      await head.stop();
    }
  });
});
