/**
 * Deploy progress as a user sees it: `shoal deploy` in a pseudo-terminal (util-linux `script`) draws replicas ready
 * of wanted and the model load a replica reports; with stdout a pipe it prints its one summary line and no escape
 * codes, and so does `shoal run`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { resolve } from 'node:path';
import { waitFor } from './helpers.ts';

const BIN = resolve(import.meta.dirname, '../packages/cli/bin/shoal.mjs');
const FIXTURE = resolve(import.meta.dirname, 'fixtures/apps.ts');
const LOADER = resolve(import.meta.dirname, 'fixtures/load-progress-app.ts');
const TOKEN = 'progress-test-token-0123456789';
const ENV = { ...process.env, SHOAL_LOG_LEVEL: 'warn', SHOAL_HEARTBEAT_MS: '100' };

function shoal(args: string[]): { child: ChildProcessWithoutNullStreams; stdout: () => string; all: () => string } {
  const child = spawn(process.execPath, [BIN, ...args], { env: ENV, stdio: 'pipe' });
  let stdout = '';
  let all = '';
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); all += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { all += d.toString(); });
  return { child, stdout: () => stdout, all: () => all };
}

async function exitOf(child: ChildProcessWithoutNullStreams): Promise<number | null> {
  if (child.exitCode !== null) return child.exitCode;
  return new Promise((r) => child.once('exit', (code) => r(code)));
}

const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
const hasScript = spawnSync('script', ['--version'], { stdio: 'ignore' }).error === undefined;

let run: ReturnType<typeof shoal>;
let cluster: string;

beforeAll(async () => {
  // A one-replica application, so the two loaders deployed below find room on the two workers' CPUs.
  run = shoal(['run', FIXTURE, '--export', 'fn', '--port', '0', '--http-port', '0', '--workers', '2', '--token', TOKEN]);
  await waitFor('shoal run to report ready', () => /ready: http:\/\/\S+/.test(run.stdout()) || run.child.exitCode !== null, 40_000);
  const found = /cluster:\s+(ws:\/\/[\d.:]+)/.exec(run.stdout())?.[1];
  if (found === undefined) throw new Error(`shoal run did not start:\n${run.all()}`);
  cluster = found;
});
afterAll(async () => {
  if (run !== undefined && run.child.exitCode === null) { run.child.kill('SIGTERM'); await exitOf(run.child); }
});

describe('deploy progress', () => {
  it('shoal run with stdout a pipe prints no progress and no escape codes', () => {
    expect(run.stdout()).not.toContain('\x1b');
    expect(run.stdout()).not.toMatch(/deploying "/);
  });

  it('shoal deploy in a terminal shows replicas ready of wanted and the bytes of the model loaded', async (ctx) => {
    if (!hasScript) ctx.skip();
    const cmd = [process.execPath, BIN, 'deploy', LOADER, '--name', 'loader', '--route-prefix', '/loader', '--address', cluster, '--token', TOKEN].map(quote).join(' ');
    // script gives the command a pseudo-terminal and copies what it writes there to its own stdout.
    // A terminal of 160 columns (a pseudo-terminal starts unsized; the renderer would take 80).
    const child = spawn('script', ['-qfec', `stty cols 160; ${cmd}`, '/dev/null'], { env: ENV, stdio: 'pipe' }) as ChildProcessWithoutNullStreams;
    let out = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { out += d.toString(); });
    expect(await exitOf(child)).toBe(0);
    expect(out).toMatch(/deploying "loader": 0 of 1 deployments ready/);
    expect(out).toMatch(/SlowLoader\s+0\/1 ready/);
    expect(out).toMatch(/replica \w+ starting on w\d+\s+loading model \[[#-]{20}\] \d+%\s+[\d.]+ (B|KiB|MiB) of 512\.0 MiB/);
    // The frame is redrawn in place, and ends ready, above the summary line printed as always.
    expect(out).toContain('\x1b[');
    expect(out).toMatch(/SlowLoader\s+1\/1 ready/);
    expect(out).toMatch(/deployed "loader": http:\/\/[\d.:]+\/loader\r?\n$/);
    const res = await fetch(`${/deployed "loader": (http:\/\/[\d.:]+)/.exec(out)![1]}/loader`);
    expect(await res.json()).toEqual({ loaded: true });
  });

  /** Runs shoal in a 160-column pseudo-terminal; its exit code and everything it drew. */
  async function inTerminal(args: string[]): Promise<{ code: number | null; out: string }> {
    const cmd = [process.execPath, BIN, ...args].map(quote).join(' ');
    const child = spawn('script', ['-qfec', `stty cols 160; ${cmd}`, '/dev/null'], { env: ENV, stdio: 'pipe' }) as ChildProcessWithoutNullStreams;
    let out = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { out += d.toString(); });
    return { code: await exitOf(child), out };
  }

  it('a new version deployed over the first shows the rollout, and shoal rollback follows it to the end in a terminal', async (ctx) => {
    if (!hasScript) ctx.skip();
    const common = ['--name', 'loader', '--route-prefix', '/loader', '--address', cluster, '--token', TOKEN];
    const deploy = await inTerminal(['deploy', LOADER, '--export', 'v2', ...common]);
    expect(deploy.code, deploy.out).toBe(0);
    expect(deploy.out).toMatch(/SlowLoader\s+0\/1 ready\s+rolling \w{8} -> \w{8} at \d+%/);
    expect(deploy.out).toMatch(/loading model \[[#-]{20}\]/);
    const back = await inTerminal(['rollback', 'loader/SlowLoader', '--address', cluster, '--token', TOKEN]);
    expect(back.code, back.out).toBe(0);
    expect(back.out).toMatch(/loader\/SlowLoader: rolling back from \w+ to \w+/);
    expect(back.out).toMatch(/rolling back "loader": 0 of 1 deployments ready/);
    // It returned once the rollback had played out: the previous version running at the count, nothing starting.
    expect(back.out).toMatch(/rolling back "loader": 1 of 1 deployments ready[^\n]*\r?\n\s+SlowLoader\s+1\/1 ready\r?\n$/);
  });

  it('shoal deploy with stdout a pipe prints its one summary line, no escape codes', async () => {
    const dep = shoal(['deploy', LOADER, '--name', 'loader2', '--route-prefix', '/loader2', '--address', cluster, '--token', TOKEN]);
    expect(await exitOf(dep.child)).toBe(0);
    expect(dep.stdout()).toMatch(/^deployed "loader2": http:\/\/[\d.:]+\/loader2\n$/);
    expect(dep.all()).not.toContain('\x1b');
  });
});
