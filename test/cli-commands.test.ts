/**
 * The shoal commands a multi-process deployment uses, as real CLI processes: `shoal start` with remote
 * `shoal worker`s, `shoal run --address` (and SHOAL_ADDRESS in place of --address), the default 127.0.0.1 bind,
 * and `shoal serve --load none|all`.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { buildTinyModel } from '@shoal/onnx';
import { FIXTURE_APP, isAlive, waitFor } from './helpers.ts';

const BIN = resolve(import.meta.dirname, '../packages/cli/bin/shoal.mjs');
const TOKEN = 'cli-commands-token-0123456789';
const auth = { authorization: `Bearer ${TOKEN}` };

interface Proc { child: ChildProcessWithoutNullStreams; out: () => string }
const started: Proc[] = [];

function shoal(args: string[], env: Record<string, string> = {}): Proc {
  // No SHOAL_ADDRESS or SHOAL_TOKEN from the outside: each test says which it gives.
  const { SHOAL_ADDRESS: _a, SHOAL_TOKEN: _t, ...base } = process.env;
  const child = spawn(process.execPath, [BIN, ...args], { env: { ...base, SHOAL_LOG_LEVEL: 'warn', ...env }, stdio: 'pipe' });
  let out = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { out += d.toString(); });
  const p = { child, out: () => out };
  started.push(p);
  return p;
}

async function exitOf(child: ChildProcessWithoutNullStreams): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  return new Promise((r) => child.once('exit', (code) => r(code)));
}

/** A `shoal start|run|serve` head's printed addresses, once it printed them. */
async function headOf(p: Proc, what: RegExp = /http:\s+http:\/\/\S+/): Promise<{ cluster: string; control: string; http: string }> {
  await waitFor(`${p.child.spawnargs.slice(2, 4).join(' ')} to start`, () => what.test(p.out()) || p.child.exitCode !== null, 60_000);
  const cluster = /cluster:\s+(ws:\/\/\S+)/.exec(p.out())?.[1];
  const http = /http:\s+(http:\/\/\S+)/.exec(p.out())?.[1];
  if (cluster === undefined || http === undefined || p.child.exitCode !== null) throw new Error(`did not start:\n${p.out()}`);
  return { cluster, control: cluster.replace(/^ws/, 'http'), http };
}

interface Status { workers: Array<{ pid: number; dataAddress: string }>; applications: Array<{ name: string; deployments: Array<{ name: string; status: string }> }> }
async function statusOf(control: string): Promise<Status> {
  return (await fetch(`${control}/api/status`, { headers: auth })).json() as Promise<Status>;
}

/** Whether a TCP connection to host:port is accepted. */
function reachable(host: string, port: number): Promise<boolean> {
  return new Promise((r) => {
    const s = connect({ host, port });
    s.once('connect', () => { s.destroy(); r(true); });
    s.once('error', () => r(false));
  });
}

const portOf = (url: string): number => Number(new URL(url).port);
/** An IPv4 address of this machine other than loopback (undefined on a machine with none). */
const outside = Object.values(networkInterfaces()).flat().find((a) => a !== undefined && !a.internal && a.family === 'IPv4')?.address;

afterAll(async () => {
  for (const p of started) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGTERM');
  await Promise.all(started.map((p) => exitOf(p.child)));
});

describe('shoal start, worker and run --address', () => {
  it('two shoal workers join a shoal start head (by --address and by SHOAL_ADDRESS); run --address and SHOAL_ADDRESS deploy onto them', async () => {
    const head = shoal(['start', '--port', '0', '--http-port', '0', '--workers', '0', '--token', TOKEN]);
    const { cluster, control, http } = await headOf(head);
    const byFlag = shoal(['worker', '--address', cluster], { SHOAL_TOKEN: TOKEN });
    const byEnv = shoal(['worker'], { SHOAL_ADDRESS: cluster, SHOAL_TOKEN: TOKEN });
    await waitFor('both workers to join', async () => (await statusOf(control)).workers.length === 2 || byFlag.child.exitCode !== null || byEnv.child.exitCode !== null);
    const workers = (await statusOf(control)).workers;
    expect(workers.map((w) => w.pid).sort()).toEqual([byFlag.child.pid, byEnv.child.pid].sort());

    const run = shoal(['run', FIXTURE_APP, '--address', cluster, '--token', TOKEN]);
    expect(await exitOf(run.child)).toBe(0);
    expect(run.out()).toContain(`deployed "default" to ${cluster}`);
    const runEnv = shoal(['run', FIXTURE_APP, '--export', 'fn', '--name', 'adder', '--route-prefix', '/add'], { SHOAL_ADDRESS: cluster, SHOAL_TOKEN: TOKEN });
    expect(await exitOf(runEnv.child)).toBe(0);
    expect(runEnv.out()).toContain(`deployed "adder" to ${cluster}`);
    // run --address returned: the head it deployed to serves on, on the workers that joined it.
    expect(head.child.exitCode).toBeNull();
    const st = await statusOf(control);
    expect(Object.fromEntries(st.applications.map((a) => [a.name, a.deployments.map((d) => d.status)]))).toEqual({ default: ['HEALTHY', 'HEALTHY'], adder: ['HEALTHY'] });
    const res = await fetch(`${http}/incr?by=3`);
    const body = await res.json() as { n: number; pid: number };
    expect(body.n).toBe(3);
    expect(workers.map((w) => w.pid)).toContain(body.pid);

    // The default bind: the control port, the HTTP port and each worker's data port answer on 127.0.0.1 only.
    const ports = [portOf(control), portOf(http), ...workers.map((w) => portOf(w.dataAddress))];
    expect(workers.map((w) => new URL(w.dataAddress).hostname)).toEqual(['127.0.0.1', '127.0.0.1']);
    for (const port of ports) expect(await reachable('127.0.0.1', port)).toBe(true);
    if (outside !== undefined) for (const port of ports) expect([outside, port, await reachable(outside, port)]).toEqual([outside, port, false]);

    const down = shoal(['shutdown'], { SHOAL_ADDRESS: cluster, SHOAL_TOKEN: TOKEN });
    expect(await exitOf(down.child)).toBe(0);
    expect(await exitOf(head.child)).toBe(0);
    byFlag.child.kill('SIGTERM');
    byEnv.child.kill('SIGTERM');
    await Promise.all([exitOf(byFlag.child), exitOf(byEnv.child)]);
  });

  it('without an address anywhere, worker and status name --address and SHOAL_ADDRESS', async () => {
    const worker = shoal(['worker'], { SHOAL_TOKEN: TOKEN });
    expect(await exitOf(worker.child)).toBe(1);
    expect(worker.out()).toMatch(/--address.*SHOAL_ADDRESS/);
    const status = shoal(['status'], { SHOAL_TOKEN: TOKEN });
    expect(await exitOf(status.child)).toBe(1);
    expect(status.out()).toMatch(/--address.*SHOAL_ADDRESS/);
  });

  it.runIf(outside !== undefined)(`--host and --http-host 0.0.0.0 make the ports reachable on ${outside ?? '(no non-loopback address on this machine)'}`, async () => {
    const head = shoal(['start', '--host', '0.0.0.0', '--port', '0', '--http-host', '0.0.0.0', '--http-port', '0', '--workers', '0', '--token', TOKEN]);
    const { control, http } = await headOf(head);
    for (const port of [portOf(control), portOf(http)]) {
      const res = await fetch(`http://${outside}:${port}/-/healthz`);
      expect([port, res.status]).toEqual([port, 200]);
    }
    head.child.kill('SIGTERM');
    expect(await exitOf(head.child)).toBe(0);
  });
});

describe('shoal serve --load', () => {
  let root: string;
  afterAll(() => { if (root !== undefined) rmSync(root, { recursive: true, force: true }); });

  it('--load none serves the repository with nothing loaded until a load call; --load all loads it at start; another value is refused', async () => {
    root = mkdtempSync(join(tmpdir(), 'shoal-serve-load-'));
    mkdirSync(join(root, 'm/1'), { recursive: true });
    writeFileSync(join(root, 'm/1/model.onnx'), buildTinyModel());
    writeFileSync(join(root, 'm/config.json'), JSON.stringify({ threads: { sessions: 1, intraOp: 1 }, resources: { cpus: 0.5 } }));
    const args = (load: string): string[] => ['serve', root, '--load', load, '--port', '0', '--http-port', '0', '--workers', '1', '--token', TOKEN];

    const bad = shoal(args('some'));
    expect(await exitOf(bad.child)).toBe(1);
    expect(bad.out()).toMatch(/--load.*must be "all" or "none"/);

    const none = shoal(args('none'));
    const all = shoal(args('all'));
    const [n, a] = await Promise.all([headOf(none, /served: /), headOf(all, /served: /)]);
    expect(none.out()).toMatch(/models ready: none\b/);
    expect(all.out()).toMatch(/models ready: m\b/);

    const ready = async (http: string): Promise<number> => (await fetch(`${http}/v2/models/m/ready`)).status;
    const index = async (http: string): Promise<unknown> => (await fetch(`${http}/v2/repository/index`, { method: 'POST' })).json();
    expect(await ready(a.http)).toBe(200);
    expect(await ready(n.http)).toBe(404);
    expect(await index(n.http)).toEqual([{ name: 'm', state: 'UNAVAILABLE', reason: 'not loaded' }]);
    expect(await index(a.http)).toEqual([expect.objectContaining({ name: 'm', state: 'READY' })]);

    const load = await fetch(`${n.http}/v2/repository/models/m/load`, { method: 'POST', headers: auth });
    expect(load.status).toBe(200);
    await waitFor('m to be ready after its load', async () => (await ready(n.http)) === 200);
    expect(await index(n.http)).toEqual([expect.objectContaining({ name: 'm', state: 'READY' })]);

    for (const p of [none, all]) p.child.kill('SIGINT');
    const pids = (await Promise.all([statusOf(n.control), statusOf(a.control)].map((s) => s.catch(() => ({ workers: [] }))))).flatMap((s) => s.workers.map((w) => w.pid));
    await Promise.all([exitOf(none.child), exitOf(all.child)]);
    await waitFor('the serve workers to exit', () => pids.every((p) => !isAlive(p)), 10_000);
  });
});
