/**
 * A remote worker may start before its head (pods start in any order): `shoal worker` keeps trying to reach the
 * head until it comes, and joins it; a refusal that retrying cannot change (a wrong token) ends it at once, and
 * SHOAL_CONNECT_TIMEOUT_MS bounds the wait. Real processes: `shoal worker` and `shoal start`.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { freePort, waitFor } from './helpers.ts';

const BIN = resolve(import.meta.dirname, '../packages/cli/bin/shoal.mjs');
const TOKEN = 'worker-first-connect-token-0123';

const children: ChildProcessWithoutNullStreams[] = [];
const dirs: string[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) process.kill(c.pid!, 'SIGKILL');
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function shoal(args: string[], env: Record<string, string> = {}): { child: ChildProcessWithoutNullStreams; out: () => string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, SHOAL_TOKEN: TOKEN, SHOAL_LOG_FORMAT: 'json', SHOAL_HEARTBEAT_MS: '200', ...env }, stdio: 'pipe' });
  children.push(child);
  let out = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return { child, out: () => out, exited };
}

async function workersOf(port: number): Promise<Array<{ workerId: string; pid?: number }>> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/api/status`, { headers: { authorization: `Bearer ${TOKEN}` } });
    return res.ok ? ((await res.json()) as { workers: Array<{ workerId: string; pid?: number }> }).workers : [];
  } catch {
    return [];
  }
}

describe('a worker\'s first connection to the head', () => {
  it('a worker started before its head keeps trying, and joins the head once it listens', async () => {
    const port = await freePort();
    const worker = shoal(['worker', '--address', `ws://127.0.0.1:${port}`]);
    await waitFor('the worker to report that the head is not up yet', () => worker.out().includes('cannot reach the head yet; retrying'));
    expect(worker.child.exitCode).toBeNull();
    const dir = mkdtempSync(join(tmpdir(), 'shoal-first-connect-'));
    dirs.push(dir);
    const head = shoal(['start', '--workers', '0', '--port', String(port), '--http-port', '0', '--data-dir', dir], { SHOAL_LOG_LEVEL: 'warn' });
    await waitFor('the head to start', () => head.out().includes('shoal head running'));
    await waitFor('the worker to join the head', async () => (await workersOf(port)).some((w) => w.pid === worker.child.pid), 30_000);
    // The head lists the worker once it accepted the hello; the worker logs once it has the welcome.
    await waitFor('the worker to log that it joined', () => worker.out().includes('"msg":"joined head"'));
    expect(worker.child.exitCode).toBeNull();
  });

  it('a worker with a wrong token exits non-zero at once, naming the token', async () => {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'shoal-first-connect-'));
    dirs.push(dir);
    const head = shoal(['start', '--workers', '0', '--port', String(port), '--http-port', '0', '--data-dir', dir], { SHOAL_LOG_LEVEL: 'warn' });
    await waitFor('the head to start', () => head.out().includes('shoal head running'));
    const worker = shoal(['worker', '--address', `ws://127.0.0.1:${port}`], { SHOAL_TOKEN: 'not-the-cluster-token-at-all' });
    expect(await worker.exited).toBe(1);
    expect(worker.out()).toMatch(/shoal: .*answered the upgrade with HTTP 401: wrong or missing cluster token/);
    expect(worker.out()).not.toContain('retrying');
  });

  it('with SHOAL_CONNECT_TIMEOUT_MS, a worker whose head never comes exits non-zero naming the address and the bound', async () => {
    const port = await freePort();
    const worker = shoal(['worker', '--address', `ws://127.0.0.1:${port}`], { SHOAL_CONNECT_TIMEOUT_MS: '1000' });
    expect(await worker.exited).toBe(1);
    expect(worker.out()).toContain(`shoal: could not reach the head at ws://127.0.0.1:${port} within connectTimeoutMs=1000 (SHOAL_CONNECT_TIMEOUT_MS`);
    expect(worker.out()).toContain('ECONNREFUSED');
  });

  it('rejects a SHOAL_CONNECT_TIMEOUT_MS that is not a non-negative integer, naming it', async () => {
    const worker = shoal(['worker', '--address', 'ws://127.0.0.1:9'], { SHOAL_CONNECT_TIMEOUT_MS: 'soon' });
    expect(await worker.exited).toBe(1);
    expect(worker.out()).toContain('env SHOAL_CONNECT_TIMEOUT_MS');
  });
});
