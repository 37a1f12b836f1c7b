/**
 * The head's state store. One suite runs against both stores ("the Redis store behaves as the file store"); then
 * what only one of them has: stale lock files and a crash mid-write for the file store, a holder that is killed or
 * stalls past its lease TTL for the Redis store.
 *
 * The Redis half starts its own redis-server (Debian's) on a free port and kills only that process. Without
 * redis-server it is skipped with a logged reason, unless SHOAL_REQUIRE_REDIS=1 (CI sets it).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { CancelledError, IllegalStateError, InvalidOptionError, env, type Logger } from '@shoal/core';
import {
  FileStateStore, LOCK_FILE, RedisStateStore, STATE_FILE, StateStoreError, StoreCorruptError, StoreIoError, StoreLeaseLostError,
  StoreLockedError, specHash, type StateStore, type StateStoreOptions,
} from '../src/state/index.ts';
import { redisServerAvailable, startRedisServer, type RedisServer } from './redis-server.ts';
import { appSpec, meta, workers } from './state-store-fixtures.ts';
import { rejection } from '../../core/test/rejection.ts';

const HEAD_DIR = join(dirname(fileURLToPath(import.meta.url)), '..');
const CHILD = join(HEAD_DIR, 'test', 'state-store-child.ts');
// Read here rather than through core's env module, which this change does not edit (it belongs beside
// env.requirePromtool there).
const REQUIRE_REDIS = env.requireRedis();

function capturingLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const at = (level: string) => (msg: string, fields?: Record<string, unknown>): void => { lines.push(`${level} ${msg} ${JSON.stringify(fields ?? {})}`); };
  const logger = { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), child: () => logger };
  return logger;
}

/** Whether `p` is still pending after `ms`. */
async function pendingAfter(p: Promise<unknown>, ms: number): Promise<boolean> {
  let settled = false;
  p.then(() => { settled = true; }, () => { settled = true; });
  await new Promise((r) => setTimeout(r, ms));
  return !settled;
}

/** A dead pid: a process that has already exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
  const pid = child.pid!;
  await new Promise((r) => child.once('exit', r));
  return pid;
}

/** The children a test spawned; each is SIGKILLed by its pid after the test if still alive. */
const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) process.kill(c.pid!, 'SIGKILL');
});

interface Child {
  proc: ChildProcess;
  /** The next stdout event matching `key`. */
  next(key: string): Promise<Record<string, unknown>>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function startChild(args: string[]): Child {
  const proc = spawn(process.execPath, ['--import', 'tsx', CHILD, ...args], { cwd: HEAD_DIR, stdio: ['pipe', 'pipe', 'inherit'] });
  children.push(proc);
  const events: Record<string, unknown>[] = [];
  const waiters: Array<{ key: string; resolve: (e: Record<string, unknown>) => void }> = [];
  createInterface({ input: proc.stdout! }).on('line', (line) => {
    const event = JSON.parse(line) as Record<string, unknown>;
    const i = waiters.findIndex((w) => w.key in event);
    if (i >= 0) waiters.splice(i, 1)[0]!.resolve(event);
    else events.push(event);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  return {
    proc,
    exited,
    next: (key) => {
      const i = events.findIndex((e) => key in e);
      if (i >= 0) return Promise.resolve(events.splice(i, 1)[0]!);
      return new Promise((resolve, reject) => {
        waiters.push({ key, resolve });
        void exited.then((x) => reject(new Error(`child exited (${x.code ?? x.signal}) before printing "${key}"`)));
      });
    },
  };
}

/** One store location, fresh per test; `make` opens new stores on it. */
interface Harness {
  make(opts?: StateStoreOptions): StateStore;
  /** What a lease lost to time or an operator looks like: the lease is gone, so another head can take it. */
  breakLease(): Promise<void>;
  /** Writes unreadable state; returns what the error must name. */
  corrupt(kind: 'json' | 'schema'): Promise<string>;
}

/** The tests both stores must pass. */
function sharedSuite(fresh: () => Promise<Harness>): void {
  let h: Harness;
  const open: StateStore[] = [];
  const make = (opts: StateStoreOptions = {}): StateStore => {
    const s = h.make(opts);
    open.push(s);
    return s;
  };
  beforeEach(async () => { h = await fresh(); });
  afterEach(async () => { for (const s of open.splice(0)) await s.close(); });

  it('round-trips applications and workers; deleteApp removes one', async () => {
    const store = make();
    await store.open();
    expect(await store.load()).toEqual({ apps: {}, workers: [] });
    await store.putApp(appSpec('a'), meta('va'));
    await store.putApp(appSpec('b', 3), meta('vb', 1_700_000_000_500));
    await store.putWorkers(workers(3));
    const state = await store.load();
    expect(Object.keys(state.apps).sort()).toEqual(['a', 'b']);
    expect(state.apps.b!.spec).toEqual(appSpec('b', 3));
    expect(state.apps.b!.meta).toEqual(meta('vb', 1_700_000_000_500));
    const b = appSpec('b', 3);
    // Each version keeps its spec and module, so a head restarted on the store can roll back to it.
    expect(state.apps.b!.history).toEqual({ Model: [{ versionId: 'vb', specHash: specHash(b.deployments[0]!), atMs: 1_700_000_000_500, spec: b.deployments[0], code: { modulePath: b.modulePath, exportName: b.exportName } }] });
    expect(state.workers).toEqual(workers(3));
    expect(await store.deleteApp('a')).toBe(true);
    expect(await store.deleteApp('a')).toBe(false);
    expect(Object.keys((await store.load()).apps)).toEqual(['b']);
    // load() hands out a copy: changing it changes nothing stored.
    (await store.load()).workers.length = 0;
    expect((await store.load()).workers).toHaveLength(3);
  });

  it('keeps one history entry per change of version id or spec, the newest N', async () => {
    const store = make({ historyLimit: 3 });
    await store.open();
    await store.putApp(appSpec('a', 1), meta('v1', 1000));
    await store.putApp(appSpec('a', 1), meta('v1', 2000)); // the same deployment again: no entry
    await store.putApp(appSpec('a', 2), meta('v1', 3000)); // a scale change: same version id, new spec hash
    await store.putApp(appSpec('a', 2, '/srv/v2.ts'), meta('v2', 4000));
    await store.putApp(appSpec('a', 2, '/srv/v3.ts'), meta('v3', 5000));
    const history = (await store.load()).apps.a!.history.Model!;
    expect(history.map((v) => [v.versionId, v.atMs])).toEqual([['v1', 3000], ['v2', 4000], ['v3', 5000]]);
    expect(history[0]!.specHash).toBe(specHash(appSpec('a', 2).deployments[0]!));
    await store.deleteApp('a');
    await store.putApp(appSpec('a', 1), meta('v1', 6000));
    expect((await store.load()).apps.a!.history.Model).toHaveLength(1);
  });

  it('keeps its state across close and a new open', async () => {
    const first = make();
    await first.open();
    await first.putApp(appSpec('a'), meta('va'));
    await first.putWorkers(workers(2));
    const before = await first.load();
    await first.close();
    const second = make();
    await second.open();
    expect(await second.load()).toEqual(before);
  });

  it('refuses a second open while the first holds the lease, naming the holder', async () => {
    const first = make();
    await first.open();
    const err = await rejection(make().open());
    expect(err).toBeInstanceOf(StoreLockedError);
    expect(err).toBeInstanceOf(StateStoreError);
    const locked = err as StoreLockedError;
    expect(locked.code).toBe('ERR_STORE_LOCKED');
    expect(locked.holder).toMatchObject({ host: hostname(), pid: process.pid });
    expect(locked.message).toContain(`host=${hostname()} pid=${process.pid} since=${new Date(locked.holder.sinceMs).toISOString()}`);
    // After the holder closes, an open succeeds.
    await first.close();
    await make().open();
  });

  it('lets a standby take the lease when the holder closes', async () => {
    const first = make({ standbyPollMs: 20 });
    await first.open();
    await first.putApp(appSpec('a'), meta('va'));
    const standby = make({ standbyPollMs: 20 });
    const opened = standby.open({ standby: true });
    expect(await pendingAfter(opened, 200)).toBe(true);
    await first.close();
    await opened;
    expect(Object.keys((await standby.load()).apps)).toEqual(['a']);
  });

  it('ends a standby wait on abort or close', async () => {
    const first = make();
    await first.open();
    const ac = new AbortController();
    const aborted = make({ standbyPollMs: 20 }).open({ standby: true, signal: ac.signal });
    setTimeout(() => ac.abort(), 50);
    expect(await rejection(aborted)).toBeInstanceOf(CancelledError);
    const waiting = make({ standbyPollMs: 20 });
    const closedWait = waiting.open({ standby: true });
    await new Promise((r) => setTimeout(r, 50));
    await waiting.close();
    expect(await rejection(closedWait)).toBeInstanceOf(CancelledError);
  });

  it('fails a write made after the lease was lost, leaving the new holder\'s state', async () => {
    const lostCalls: StoreLeaseLostError[] = [];
    const old = make();
    await old.open({ onLeaseLost: (err) => lostCalls.push(err) });
    await old.putApp(appSpec('a'), meta('va'));
    await h.breakLease();
    const next = make();
    await next.open();
    await next.putApp(appSpec('b'), meta('vb'));
    const err = await rejection(old.putWorkers(workers(5, 'zombie')));
    expect(err).toBeInstanceOf(StoreLeaseLostError);
    expect((err as StoreLeaseLostError).code).toBe('ERR_STORE_LEASE_LOST');
    expect((err as StoreLeaseLostError).message).toContain(`pid=${process.pid}`);
    expect(lostCalls).toHaveLength(1);
    // Every later write fails the same way, without touching the store.
    expect(await rejection(old.putApp(appSpec('c'), meta('vc')))).toBeInstanceOf(StoreLeaseLostError);
    await next.close();
    const after = make();
    await after.open();
    const state = await after.load();
    expect(Object.keys(state.apps).sort()).toEqual(['a', 'b']);
    expect(state.workers).toEqual([]);
  });

  it('applies concurrent writes one at a time, in call order', async () => {
    const store = make();
    await store.open();
    const writes: Promise<unknown>[] = [];
    for (let i = 1; i <= 20; i++) {
      writes.push(store.putWorkers(workers(i)));
      writes.push(store.putApp(appSpec(`app${i % 4}`, i), meta(`v${i}`)));
      if (i % 5 === 0) writes.push(store.deleteApp(`app${(i + 1) % 4}`));
    }
    await Promise.all(writes);
    const expected = await store.load();
    expect(expected.workers).toHaveLength(20);
    // In call order: app0 is last put at i=20 (after its delete at 15); app1's put at 17 is deleted at 20.
    expect(Object.keys(expected.apps).sort()).toEqual(['app0', 'app2', 'app3']);
    expect(expected.apps.app0!.spec.deployments[0]!.options.numReplicas).toBe(20);
    await store.close();
    const again = make();
    await again.open();
    expect(await again.load()).toEqual(expected);
  });

  it('refuses unreadable state, naming where and what, and never starts empty over it', async () => {
    for (const kind of ['json', 'schema'] as const) {
      const where = await h.corrupt(kind);
      const err = await rejection(make().open());
      expect(err).toBeInstanceOf(StoreCorruptError);
      expect((err as StoreCorruptError).code).toBe('ERR_STORE_CORRUPT');
      expect((err as Error).message).toContain(where);
      expect((err as Error).message).toMatch(kind === 'json' ? /not JSON/ : /schema version 1/);
      // The failed open gave the lease back: the next one fails on the data again, not on the lease.
      expect(await rejection(make().open())).toBeInstanceOf(StoreCorruptError);
    }
  });

  it('names the bad argument of a write, and the state of a store used out of turn', async () => {
    const store = make();
    expect(await rejection(store.load())).toBeInstanceOf(IllegalStateError);
    expect(((await rejection(store.putWorkers([]))) as Error).message).toContain('is idle');
    await store.open();
    expect(((await rejection(store.open())) as Error).message).toContain('is open');
    const noVersion = await rejection(store.putApp(appSpec('a'), { deployedAtMs: 1, versions: {} }));
    expect(noVersion).toBeInstanceOf(InvalidOptionError);
    expect((noVersion as Error).message).toContain('meta.versions.Model');
    const badPid = await rejection(store.putWorkers([{ ...workers(1)[0]!, pid: -1 }]));
    expect((badPid as Error).message).toContain('workers[0].pid');
    expect(await store.load()).toEqual({ apps: {}, workers: [] });
    await store.close();
    expect(((await rejection(store.putWorkers([]))) as Error).message).toContain('is closed');
  });
}

describe('FileStateStore', () => {
  let dir: string;
  const dirs: string[] = [];
  afterAll(async () => { for (const d of dirs) await rm(d, { recursive: true, force: true }); });
  const freshDir = async (): Promise<string> => {
    dir = await mkdtemp(join(tmpdir(), 'shoal-state-'));
    dirs.push(dir);
    return dir;
  };

  sharedSuite(async () => {
    const d = await freshDir();
    return {
      make: (opts) => new FileStateStore(d, { logger: capturingLogger(), ...opts }),
      breakLease: () => rm(join(d, LOCK_FILE)),
      corrupt: async (kind) => {
        await writeFile(join(d, STATE_FILE), kind === 'json' ? '{"schemaVersion": 1, "apps": {' : JSON.stringify({ schemaVersion: 2, apps: {}, workers: [] }));
        return join(d, STATE_FILE);
      },
    };
  });

  it('takes over a lock whose holder on this host is dead, and logs it', async () => {
    await freshDir();
    const pid = await deadPid();
    await writeFile(join(dir, LOCK_FILE), JSON.stringify({ token: 'dead', host: hostname(), pid, sinceMs: Date.now() - 60_000 }));
    const logger = capturingLogger();
    const store = new FileStateStore(dir, { logger });
    await store.open();
    expect(logger.lines.some((l) => l.startsWith('warn took over a stale state store lock') && l.includes(`pid=${pid}`))).toBe(true);
    expect(JSON.parse(await readFile(join(dir, LOCK_FILE), 'utf8'))).toMatchObject({ pid: process.pid, host: hostname() });
    await store.close();
    expect(await readdir(dir)).not.toContain(LOCK_FILE);
  });

  it('never takes over a lock from another host, and says how to clear it', async () => {
    await freshDir();
    await writeFile(join(dir, LOCK_FILE), JSON.stringify({ token: 't', host: 'elsewhere.invalid', pid: 1, sinceMs: 0 }));
    const err = await rejection(new FileStateStore(dir, { logger: capturingLogger() }).open());
    expect(err).toBeInstanceOf(StoreLockedError);
    expect((err as Error).message).toContain('host=elsewhere.invalid pid=1 since=1970-01-01T00:00:00.000Z');
    expect((err as Error).message).toContain(`delete ${join(dir, LOCK_FILE)}`);
  });

  it('refuses a lock file it cannot read as a lock', async () => {
    await freshDir();
    await writeFile(join(dir, LOCK_FILE), 'garbage');
    const err = await rejection(new FileStateStore(dir, { logger: capturingLogger() }).open());
    expect(err).toBeInstanceOf(StoreCorruptError);
    expect((err as Error).message).toContain(join(dir, LOCK_FILE));
  });

  it('loads the old state after a crash between the temp write and the rename', async () => {
    await freshDir();
    const child = startChild(['file-crash', dir]);
    const { ready } = await child.next('ready');
    expect(await child.exited).toEqual({ code: null, signal: 'SIGKILL' });
    // The crash left the new state in a temp file, the old one in state.json and the dead child's lock.
    const left = await readdir(dir);
    expect(left.filter((n) => n.endsWith('.tmp'))).toHaveLength(1);
    expect(JSON.parse(await readFile(join(dir, LOCK_FILE), 'utf8'))).toMatchObject({ pid: ready });
    const logger = capturingLogger();
    const store = new FileStateStore(dir, { logger });
    await store.open();
    expect(Object.keys((await store.load()).apps)).toEqual(['old']);
    expect((await readdir(dir)).filter((n) => n.endsWith('.tmp'))).toEqual([]);
    expect(logger.lines.some((l) => l.includes('took over a stale state store lock'))).toBe(true);
    await store.close();
  });
});

const haveRedis = redisServerAvailable();
if (!haveRedis && !REQUIRE_REDIS) {
  console.warn('state-store.test: skipping the RedisStateStore half: redis-server is not on PATH (Debian: apt-get install -y redis-server; set SHOAL_REQUIRE_REDIS=1 to fail instead)');
}

describe.skipIf(!haveRedis && !REQUIRE_REDIS)('RedisStateStore: the Redis store behaves as the file store', () => {
  let server: RedisServer;
  let admin: Redis;
  let prefixes = 0;
  beforeAll(async () => {
    if (!haveRedis) throw new Error('SHOAL_REQUIRE_REDIS=1 but redis-server is not on PATH: install it (Debian: apt-get install -y redis-server)');
    server = await startRedisServer();
    admin = new Redis(server.url);
  });
  afterAll(async () => {
    await admin?.quit();
    await server?.stop();
  });
  const freshPrefix = (): string => `t${++prefixes}:`;

  sharedSuite(async () => {
    const prefix = freshPrefix();
    return {
      // A TTL far longer than the tests, so the lease is lost only when a test breaks it, and the fenced write
      // (not a renewal) is what finds it gone.
      make: (opts) => new RedisStateStore({ url: server.url, prefix, leaseTtlMs: 30_000, logger: capturingLogger(), ...opts }),
      breakLease: async () => { await admin.del(`${prefix}lease`); },
      corrupt: async (kind) => {
        if (kind === 'json') {
          await admin.set(`${prefix}schema`, '1');
          await admin.hset(`${prefix}apps`, 'a', '{"spec": ');
          return `key ${prefix}apps field a`;
        }
        await admin.del(`${prefix}apps`);
        await admin.set(`${prefix}schema`, '2');
        return `key ${prefix}schema`;
      },
    };
  });

  it('lets a standby take over within the TTL once the holder process is SIGKILLed', async () => {
    const prefix = freshPrefix();
    const ttl = 1500;
    const holder = startChild(['redis-hold', server.url, prefix, String(ttl)]);
    const { ready } = await holder.next('ready');
    const logger = capturingLogger();
    const standby = new RedisStateStore({ url: server.url, prefix, leaseTtlMs: ttl, standbyPollMs: 50, logger });
    const opened = standby.open({ standby: true });
    // The holder renews, so its lease outlives its TTL while it lives.
    expect(await pendingAfter(opened, 2 * ttl)).toBe(true);
    expect(logger.lines.some((l) => l.includes('waiting as standby') && l.includes(`pid=${ready}`))).toBe(true);
    const killedAt = performance.now();
    process.kill(ready as number, 'SIGKILL');
    await opened;
    expect(performance.now() - killedAt).toBeLessThan(ttl + 500);
    expect(Object.keys((await standby.load()).apps)).toEqual(['held']);
    await standby.close();
  });

  it('fences a holder that stalled past its TTL: after it resumes, its writes fail and the new head\'s state stands', async () => {
    const prefix = freshPrefix();
    const ttl = 1000;
    const holder = startChild(['redis-hold', server.url, prefix, String(ttl)]);
    const { ready } = await holder.next('ready');
    process.kill(ready as number, 'SIGSTOP');
    try {
      const next = new RedisStateStore({ url: server.url, prefix, leaseTtlMs: ttl, standbyPollMs: 50, logger: capturingLogger() });
      await next.open({ standby: true });
      await next.putWorkers(workers(2, 'new'));
      process.kill(ready as number, 'SIGCONT');
      holder.proc.stdin!.write('write\n');
      expect(await holder.next('write')).toEqual({ write: 'ERR_STORE_LEASE_LOST' });
      expect(await holder.next('leaseLost')).toEqual({ leaseLost: 'ERR_STORE_LEASE_LOST' });
      expect((await next.load()).workers).toEqual(workers(2, 'new'));
      await next.close();
      const check = new RedisStateStore({ url: server.url, prefix, logger: capturingLogger() });
      await check.open({ standby: true });
      expect((await check.load()).workers).toEqual(workers(2, 'new'));
      await check.close();
    } finally {
      process.kill(ready as number, 'SIGCONT');
    }
  });

  it('marks the lease lost when a renewal finds another holder, and tells the head', async () => {
    const prefix = freshPrefix();
    const lost: StoreLeaseLostError[] = [];
    const store = new RedisStateStore({ url: server.url, prefix, leaseTtlMs: 600, renewEveryMs: 50, logger: capturingLogger() });
    await store.open({ onLeaseLost: (err) => lost.push(err) });
    await admin.set(`${prefix}lease`, JSON.stringify({ token: 'other', host: 'other-host', pid: 42, sinceMs: 0 }));
    await new Promise((r) => setTimeout(r, 200));
    expect(lost).toHaveLength(1);
    expect(lost[0]!.message).toContain('held by host=other-host pid=42');
    expect(await rejection(store.putWorkers([]))).toBeInstanceOf(StoreLeaseLostError);
    await store.close();
    // Closing a store that lost its lease leaves the new holder's lease alone.
    expect(await admin.get(`${prefix}lease`)).toContain('other-host');
  });

  it('fails open with ERR_STORE_IO when Redis cannot be reached', async () => {
    const { port } = await startRedisServer().then(async (s) => { await s.stop(); return s; });
    const err = await rejection(new RedisStateStore({ url: `redis://127.0.0.1:${port}`, logger: capturingLogger(), commandTimeoutMs: 500 }).open());
    expect(err).toBeInstanceOf(StoreIoError);
    expect((err as StoreIoError).code).toBe('ERR_STORE_IO');
    expect((err as Error).message).toContain(`127.0.0.1:${port}`);
  });

  it('names the option at fault', () => {
    expect(() => new RedisStateStore({ url: 'http://x' })).toThrow(/redisStateStore\.url/);
    expect(() => new RedisStateStore({ url: 'redis://x', leaseTtlMs: 1000, renewEveryMs: 1000 })).toThrow(/redisStateStore\.renewEveryMs: must be less than leaseTtlMs \(1000\)/);
  });
});
