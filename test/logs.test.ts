/**
 * Integration: `shoal logs` against a real head with two real worker processes. A replica logs every request
 * with the user logger; the lines come back from both workers with the request's X-Request-ID, its trace id and
 * the deployment, merged by time; --follow prints lines logged after it started and ends cleanly on Ctrl-C; a
 * worker that joins during a follow is followed too.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { resolve } from 'node:path';
import { createLogger, type AppSpec } from '@shoal/core';
import type { Head } from '@shoal/head';
import { deployFixture, startCluster, waitFor } from './helpers.ts';

const BIN = resolve(import.meta.dirname, '../packages/cli/bin/shoal.mjs');
const MODULE = resolve(import.meta.dirname, 'fixtures/logs-app.ts');

let head: Head;
let spec: AppSpec;

beforeAll(async () => {
  head = await startCluster({ workers: 2 });
  spec = await deployFixture(head, { module: MODULE, name: 'logs' });
});
afterAll(async () => {
  await head?.stop();
});

interface Record { level: string; time: string; component: string; msg: string; worker?: string; requestId?: string; traceId?: string; app?: string; deployment?: string; replica?: string; say?: string }

function shoal(args: string[]): { child: ChildProcessWithoutNullStreams; stdout: () => string; stderr: () => string; exit: Promise<number | null> } {
  const child = spawn(process.execPath, [BIN, ...args, '--address', head.clusterAddress], { env: { ...process.env, SHOAL_TOKEN: head.token, SHOAL_LOG_LEVEL: 'warn' }, stdio: 'pipe' });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  const exit = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return { child, stdout: () => stdout, stderr: () => stderr, exit };
}

const records = (text: string): Record[] => text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record);

/** Sends `say` with X-Request-ID `id`; answers the pid of the replica's process. */
async function ask(id: string, say = id): Promise<number> {
  const res = await fetch(`${head.httpAddress}/?say=${encodeURIComponent(say)}`, { headers: { 'x-request-id': id, connection: 'close' } });
  expect(res.status).toBe(200);
  expect(res.headers.get('x-request-id')).toBe(id);
  return (await res.json() as { pid: number }).pid;
}

/** Requests, each with its own id, until both replicas (one per worker) have answered some. */
async function askBoth(prefix: string): Promise<string[]> {
  const pids = new Set<number>();
  const ids: string[] = [];
  for (let i = 0; pids.size < 2; i++) {
    if (i >= 200) throw new Error(`200 requests reached only ${pids.size} replica process(es)`);
    const id = `${prefix}-${i}`;
    ids.push(id);
    pids.add(await ask(id));
  }
  return ids;
}

describe('shoal logs', () => {
  it('prints the replicas\' lines from both workers with the request id, trace id and deployment, sorted by time', async () => {
    const replicas = head.controller.status().replicas.filter((r) => r.deployment === 'Echo');
    const workers = replicas.map((r) => r.workerId);
    expect(new Set(workers).size).toBe(2);
    const ids = await askBoth('req');

    const json = shoal(['logs', '--deployment', `${spec.name}/Echo`, '--json']);
    expect(await json.exit, json.stderr()).toBe(0);
    const recs = records(json.stdout());
    const answered = recs.filter((r) => r.msg === 'echo answered');
    // Every request's line, once, with its id; and nothing from outside the deployment.
    expect(answered.map((r) => r.requestId).sort()).toEqual([...ids].sort());
    expect(recs.every((r) => r.deployment === 'Echo' && r.app === 'logs')).toBe(true);
    expect(new Set(answered.map((r) => r.worker))).toEqual(new Set(workers));
    for (const r of answered) {
      expect(r).toMatchObject({ level: 'info', component: 'replica', app: 'logs', deployment: 'Echo', say: r.requestId });
      expect(r.traceId).toMatch(/^[0-9a-f]{32}$/);
      expect(replicas.find((x) => x.replicaId === r.replica)?.workerId).toBe(r.worker);
    }
    const times = recs.map((r) => Date.parse(r.time));
    expect(times).toEqual([...times].sort((a, b) => a - b));
    // The constructor's line is the deployment's too (init runs in the replica's context).
    expect(recs.filter((r) => r.msg === 'echo replica constructed').length).toBeGreaterThanOrEqual(2);

    // Readable by default: time, level, worker, component, message, then the fields.
    const text = shoal(['logs', '--deployment', 'Echo', '--level', 'info']);
    expect(await text.exit, text.stderr()).toBe(0);
    expect(text.stdout()).toMatch(new RegExp(`^\\S+Z INFO  w\\S+ replica echo answered requestId=${ids[0]} traceId=[0-9a-f]{32} .*say=${ids[0]}$`, 'm'));

    // --level keeps that level and above; the head's own lines (this process's: the head runs in it) are there
    // without a filter, as worker "head".
    createLogger('test-head').info('a line of the head process', { marker: 'head-marker' });
    await ask('warn-1', 'warn');
    const warned = shoal(['logs', '--deployment', 'Echo', '--level', 'warn', '--json']);
    expect(await warned.exit, warned.stderr()).toBe(0);
    expect(records(warned.stdout()).map((r) => [r.level, r.msg, r.requestId])).toEqual([['warn', 'echo was asked to warn', 'warn-1']]);
    const all = shoal(['logs', '--json', '--limit', '10000']);
    expect(await all.exit, all.stderr()).toBe(0);
    expect(records(all.stdout()).filter((r) => r.worker === 'head').map((r) => r.msg)).toContain('a line of the head process');
  });

  it('refuses bad flags with the flag named', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['--level', 'loud'], /^shoal: invalid option --level: must be one of debug, info, warn, error.*loud/],
      [['--since', 'yesterday'], /^shoal: invalid option --since: must be a duration back from now .*yesterday/],
      [['--limit', '0'], /^shoal: invalid option --limit: must be an integer from 1 to 10000/],
      [['--deployment', 'a/b/c'], /^shoal: invalid option --deployment: must be APP\/DEPLOYMENT or DEPLOYMENT/],
      [['--frob'], /^shoal: Unknown option '--frob'/],
    ];
    for (const [args, error] of cases) {
      const r = shoal(['logs', ...args]);
      expect(await r.exit).toBe(1);
      expect(r.stderr().trim()).toMatch(error);
    }
    const res = await fetch(`${head.clusterAddress.replace('ws://', 'http://')}/api/logs?level=loud`, { headers: { authorization: `Bearer ${head.token}` } });
    expect(res.status).toBe(400);
    expect((await res.json() as { error: string }).error).toMatch(/logs\.level: must be one of debug, info, warn, error/);
    expect((await fetch(`${head.clusterAddress.replace('ws://', 'http://')}/api/logs`)).status).toBe(401);
  });

  it('--follow prints lines logged after it started, from both workers, and ends on Ctrl-C with code 0', async () => {
    const follow = shoal(['logs', '--follow', '--deployment', 'Echo', '--json', '--since', new Date().toISOString()]);
    await waitFor('the follow to open', () => head.logs.followCount === 1, 20_000);
    // Until one line has come (every worker's subscription answers within a second, so this is quick) ...
    let first: string | undefined;
    for (let i = 0; first === undefined; i++) {
      if (i >= 100) throw new Error(`no followed line after 100 requests:\n${follow.stdout()}${follow.stderr()}`);
      await ask(`first-${i}`);
      await new Promise((r) => setTimeout(r, 100));
      first = records(follow.stdout()).find((r) => r.requestId?.startsWith('first-'))?.requestId;
    }
    // ... then every later request's line, from both workers.
    const ids = await askBoth('late');
    await waitFor('every late line', () => ids.every((id) => records(follow.stdout()).some((r) => r.requestId === id && r.msg === 'echo answered')), 20_000);
    const late = records(follow.stdout()).filter((r) => r.requestId?.startsWith('late-') && r.msg === 'echo answered');
    expect(late).toHaveLength(ids.length);
    expect(new Set(late.map((r) => r.worker)).size).toBe(2);
    follow.child.kill('SIGINT');
    expect(await follow.exit).toBe(0);
    expect(follow.stderr()).toBe('');
    await waitFor('the head to close the follow', () => head.logs.followCount === 0, 10_000);
  });

  it('follows a worker that joins during the follow', async () => {
    const follow = shoal(['logs', '--follow', '--json', '--since', new Date().toISOString()]);
    await waitFor('the follow to open', () => head.logs.followCount === 1, 20_000);
    const before = new Set(head.controller.aliveWorkers().map((w) => w.workerId));
    const victim = head.localWorkerPids()[0]!;
    process.kill(victim, 'SIGKILL');
    let joined: string | undefined;
    await waitFor('a new worker to join', () => {
      joined = head.controller.aliveWorkers().map((w) => w.workerId).find((id) => !before.has(id));
      return joined !== undefined;
    }, 30_000);
    // Its lines from before the head subscribed (the backlog since the follow began) and after (pushed).
    await waitFor('the new worker\'s "joined head" and "ingress serving"', () => {
      const msgs = records(follow.stdout()).filter((r) => r.worker === joined).map((r) => r.msg);
      return msgs.includes('joined head') && msgs.includes('ingress serving');
    }, 20_000);
    follow.child.kill('SIGINT');
    expect(await follow.exit).toBe(0);
  });
});
