/**
 * The file store's lock on a restarted container: a lock left by a dead head that this process cannot tell from a
 * live one by its pid alone (its own pid, a pid reused by another process, a pid in another container's pid
 * namespace) is taken over, and a lock held by a live head, here or in "another container", is still refused.
 * Real holder processes and a real `shoal start`.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { readFileSync, readlinkSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { createInterface } from 'node:readline';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from '@shoal/core';
import { FileStateStore, LOCK_FILE, StoreLockedError } from '../src/state/index.ts';
import { rejection } from '../../core/test/rejection.ts';

const HEAD_DIR = join(dirname(fileURLToPath(import.meta.url)), '..');
const CHILD = join(HEAD_DIR, 'test', 'file-lock-child.ts');
const BIN = join(HEAD_DIR, '..', 'cli', 'bin', 'shoal.mjs');
const procfs = (() => { try { readlinkSync('/proc/self/ns/pid'); return true; } catch { return false; } })();

function capturingLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const at = (level: string) => (msg: string, fields?: Record<string, unknown>): void => { lines.push(`${level} ${msg} ${JSON.stringify(fields ?? {})}`); };
  const logger = { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), child: () => logger };
  return logger;
}

function startTicks(pid: number): number {
  const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(text.slice(text.lastIndexOf(')') + 2).split(' ')[19]);
}

const children: ChildProcess[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) process.kill(c.pid!, 'SIGKILL');
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function freshDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'shoal-lock-'));
  dirs.push(d);
  return d;
}

/** A lock as a head elsewhere wrote it; `fields` override the defaults of a head in this process's namespace. */
async function writeLock(dir: string, fields: Record<string, unknown>): Promise<void> {
  await writeFile(join(dir, LOCK_FILE), JSON.stringify({ token: 'the-dead-head', host: hostname(), pid: process.pid, sinceMs: Date.now() - 60_000, ...fields }));
}

/** A live process unrelated to any lock, and its pid. */
async function bystander(): Promise<number> {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 60000)'], { stdio: 'ignore' });
  children.push(child);
  await new Promise((r) => child.once('spawn', r));
  return child.pid!;
}

/** A head process holding a file store on `dir` (refreshing its lock); resolves once it holds it. */
async function holder(dir: string): Promise<ChildProcess> {
  const proc = spawn(process.execPath, ['--import', 'tsx', CHILD, 'hold', dir], { cwd: HEAD_DIR, stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(proc);
  await new Promise<void>((resolve, reject) => {
    createInterface({ input: proc.stdout! }).once('line', () => resolve());
    proc.once('exit', (code) => reject(new Error(`holder exited (${code}) before holding the lock`)));
  });
  return proc;
}

async function takesOver(dir: string, reason: RegExp): Promise<void> {
  const logger = capturingLogger();
  const store = new FileStateStore(dir, { logger });
  await store.open();
  const took = logger.lines.find((l) => l.startsWith('warn took over a stale state store lock'));
  expect(took, logger.lines.join('\n')).toMatch(reason);
  expect(JSON.parse(await readFile(join(dir, LOCK_FILE), 'utf8'))).toMatchObject({ pid: process.pid, host: hostname() });
  await store.close();
}

describe.skipIf(!procfs)('file store lock after a container restart', () => {
  it('takes over a lock naming this process\'s own pid with a token it does not hold (a new container, the same pid)', async () => {
    const dir = await freshDir();
    await writeLock(dir, { pid: process.pid, startTicks: 1 });
    await takesOver(dir, /names this process's pid \d+, which has not taken it/);
  });

  it('takes over a lock whose pid now belongs to another live process (another start time)', async () => {
    const dir = await freshDir();
    const pid = await bystander();
    await writeLock(dir, { pid, startTicks: startTicks(pid) + 1000 });
    await takesOver(dir, new RegExp(`pid ${pid} is another process now`));
  });

  it('still refuses a lock naming a live process with the holder\'s start time', async () => {
    const dir = await freshDir();
    const pid = await bystander();
    await writeLock(dir, { pid, startTicks: startTicks(pid) });
    const err = await rejection(new FileStateStore(dir, { logger: capturingLogger() }).open());
    expect(err).toBeInstanceOf(StoreLockedError);
    expect((err as Error).message).toContain(`pid=${pid}`);
  });

  it('takes over a lock from another container (another pid namespace, another pod hostname) that nobody refreshes', async () => {
    const dir = await freshDir();
    // pid 1 of another container: in this namespace pid 1 is alive (init), which must not matter.
    await writeLock(dir, { host: 'shoal-head-7d9f8-abcde', pid: 1, pidNs: 'pid:[4026599999]', refreshMs: 50 });
    await takesOver(dir, /has not refreshed it for \d+ ms \(it refreshes every 50 ms\)/);
  });

  it('takes over a lock of another boot (before a reboot, or a machine of the same host name) that nobody refreshes', async () => {
    const dir = await freshDir();
    await writeLock(dir, { pid: process.pid, bootId: '00000000-0000-0000-0000-000000000000', refreshMs: 50 });
    await takesOver(dir, /has not refreshed it for \d+ ms/);
  });

  it('refuses a lock held by a live head, here and as seen from another container', async () => {
    const dir = await freshDir();
    const proc = await holder(dir);
    const err = await rejection(new FileStateStore(dir, { logger: capturingLogger() }).open());
    expect(err).toBeInstanceOf(StoreLockedError);
    expect((err as Error).message).toContain(`pid=${proc.pid}`);
    // The same live holder as a head in another container would see it: its pid means nothing there, its refreshes do.
    const lock = JSON.parse(await readFile(join(dir, LOCK_FILE), 'utf8')) as Record<string, unknown>;
    expect(lock.refreshMs).toBe(1000);
    await writeFile(join(dir, 'relabelled'), JSON.stringify({ ...lock, host: 'another-pod', pidNs: 'pid:[4026599999]' }));
    await rename(join(dir, 'relabelled'), join(dir, LOCK_FILE));
    const logger = capturingLogger();
    const watched = await rejection(new FileStateStore(dir, { logger }).open());
    expect(watched).toBeInstanceOf(StoreLockedError);
    expect((watched as Error).message).toContain('it refreshes the lock: that head is alive');
    expect(logger.lines.some((l) => l.startsWith('warn took over'))).toBe(false);
  });

  it('a `shoal start` on a data directory with a dead head\'s lock from another container starts, and says it took over', async () => {
    const dir = await freshDir();
    await writeLock(dir, { host: 'shoal-head-old-pod', pid: 1, pidNs: 'pid:[4026599999]', refreshMs: 50 });
    const child = spawn(process.execPath, [BIN, 'start', '--workers', '0', '--port', '0', '--http-port', '0', '--data-dir', dir], {
      env: { ...process.env, SHOAL_TOKEN: 'file-lock-takeover-token', SHOAL_LOG_LEVEL: 'warn', SHOAL_LOG_FORMAT: 'json' }, stdio: 'pipe',
    });
    children.push(child);
    let out = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { out += d.toString(); });
    await new Promise<void>((resolve, reject) => {
      const t = setInterval(() => { if (out.includes('shoal head running')) { clearInterval(t); resolve(); } }, 50);
      child.once('exit', (code) => { clearInterval(t); reject(new Error(`shoal start exited ${code}:\n${out}`)); });
    });
    expect(out).toContain('took over a stale state store lock: its holder in another container or on another host has not refreshed it');
    expect(JSON.parse(await readFile(join(dir, LOCK_FILE), 'utf8'))).toMatchObject({ pid: child.pid, host: hostname() });
  });
});
