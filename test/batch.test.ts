/**
 * `shoal batch` as a user runs it: a child process against a real cluster (a head and two worker processes),
 * calling a batched deployment's replicas straight over the workers' data servers. Interrupted with SIGINT part
 * way, then run again: the output holds every line's answer exactly once, in input order, and the deployment's
 * batch metrics show the lines were batched. And one of the two workers SIGKILLed mid-run: the calls it held are
 * made again elsewhere, and the run ends with every line answered once, no error lines.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Head } from '@shoal/head';
import { deployFixture, startCluster, waitFor } from './helpers.ts';
import { checkpointPathFor, readCheckpoint } from '../packages/cli/src/batch/checkpoint.ts';

const BIN = resolve(import.meta.dirname, '../packages/cli/bin/shoal.mjs');
const APP = resolve(import.meta.dirname, 'fixtures/batch-app.ts');

let head: Head;
let dir: string;
let tokenFile: string;

beforeAll(async () => {
  head = await startCluster({ workers: 2 });
  await deployFixture(head, { module: APP, name: 'bt', routePrefix: '/bt' });
  dir = mkdtempSync(join(tmpdir(), 'shoal-batch-it-'));
  tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, `${head.token}\n`, { mode: 0o600 });
});

afterAll(async () => {
  await head?.stop();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

function shoalBatch(args: string[]): { child: ChildProcessWithoutNullStreams; err: () => string; exit: Promise<number | null> } {
  const child = spawn(process.execPath, [BIN, 'batch', ...args, '--address', head.clusterAddress, '--token-file', tokenFile], { env: { ...process.env, SHOAL_LOG_LEVEL: 'warn' }, stdio: 'pipe' });
  let err = '';
  child.stdout.on('data', (d: Buffer) => { err += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
  const exit = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return { child, err: () => err, exit };
}

async function batchSizes(): Promise<{ items: number; batches: number; largest: number }> {
  const text = await (await fetch(`${head.clusterAddress.replace('ws', 'http')}/-/metrics`)).text();
  let items = 0;
  let batches = 0;
  let largest = 0;
  for (const line of text.split('\n')) {
    const m = /^shoal_batch_batches_total\{(.*)\} (\S+)$/.exec(line);
    if (m === null || !m[1]!.includes('app="bt"') || !m[1]!.includes('method="predict"')) continue;
    const size = Number(/size="(\d+)"/.exec(m[1]!)?.[1]);
    const n = Number(m[2]);
    batches += n;
    items += n * size;
    if (n > 0 && size > largest) largest = size;
  }
  return { items, batches, largest };
}

describe('shoal batch', () => {
  it('runs a file through a batched deployment, survives SIGINT, resumes, and answers every line once in order', async () => {
    const n = 4000;
    const bad = 1234;
    const lines = Array.from({ length: n }, (_, i) => (i + 1 === bad ? '{"x": oops' : JSON.stringify({ x: i })));
    const input = join(dir, 'in.jsonl');
    writeFileSync(input, `${lines.join('\n')}\n`);
    const output = join(dir, 'out.jsonl');
    const before = await batchSizes();

    const first = shoalBatch(['bt/Scorer', '--method', 'predict', '--input', input, '--output', output, '--checkpoint-ms', '50']);
    let cpLine = 0;
    await waitFor('a checkpoint past line 800', async () => {
      if (first.child.exitCode !== null) throw new Error(`shoal batch ended before it was interrupted (exit ${first.child.exitCode}):\n${first.err()}`);
      cpLine = (await readCheckpoint(checkpointPathFor(output)).catch(() => undefined))?.line ?? 0;
      return cpLine > 800;
    }, 60_000);
    first.child.kill('SIGINT');
    expect(await first.exit).toBe(130);
    expect(first.err()).toMatch(/interrupted after line \d+/);
    const cp = (await readCheckpoint(checkpointPathFor(output)))!;
    expect(cp.line).toBeGreaterThanOrEqual(cpLine);
    expect(cp.line).toBeLessThan(n);
    // The final checkpoint written on SIGINT covers exactly what is in the file.
    expect(statSync(output).size).toBe(cp.outputBytes);

    const second = shoalBatch(['bt/Scorer', '--method', 'predict', '--input', input, '--output', output]);
    // One line failed (the bad JSON one): exit 1.
    expect(await second.exit, second.err()).toBe(1);
    expect(second.err()).toMatch(new RegExp(`done: ${n - 1} lines answered, 1 failed \\(resumed after line ${cp.line}\\)`));
    expect(existsSync(checkpointPathFor(output))).toBe(false);

    const rows = readFileSync(output, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { line: number; output?: unknown; error?: { code: string; message: string } });
    expect(rows.length).toBe(n);
    for (let i = 0; i < n; i++) {
      const row = rows[i]!;
      if (i + 1 === bad) {
        expect(row.line).toBe(bad);
        expect(row.error?.code).toBe('ERR_BAD_JSON');
        expect(row.error?.message).toContain(`line ${bad} is not JSON`);
      } else {
        expect(row).toEqual({ line: i + 1, output: { y: i * 2 } });
      }
    }

    expect(second.err()).toMatch(new RegExp(`bt/Scorer\\.predict resuming after line ${cp.line} \\(byte \\d+ of \\d+\\), 64 calls in flight`));
    // Straight to the workers' data servers: they took every line as a call from another process.
    const stats = await head.stats();
    expect(stats.workers.reduce((sum, w) => sum + (w.traffic?.dataIn.call ?? 0), 0)).toBeGreaterThanOrEqual(n - 1);

    // The lines went through the replicas' batch queues in batches, not one by one.
    const after = await batchSizes();
    const items = after.items - before.items;
    const batches = after.batches - before.batches;
    expect(items).toBeGreaterThanOrEqual(n - 1);
    expect(items / batches).toBeGreaterThan(4);
    expect(after.largest).toBe(16);
  });

  it('passes {"args": [...]} as several arguments to a listed method', async () => {
    const input = join(dir, 'pairs.jsonl');
    writeFileSync(input, '{"args": [2, 3]}\n{"args": [10, -4]}\n');
    const output = join(dir, 'pairs.out.jsonl');
    const run = shoalBatch(['Scorer', '--method', 'pair', '--input', input, '--output', output, '--quiet']);
    expect(await run.exit, run.err()).toBe(0);
    expect(readFileSync(output, 'utf8')).toBe('{"line":1,"output":5}\n{"line":2,"output":6}\n');
  });

  it('waits out overload: more calls in flight than the deployment queues are sent again, not written off', async () => {
    await deployFixture(head, { module: APP, exportName: 'tiny', name: 'bt2', routePrefix: '/bt2' });
    const n = 400;
    const input = join(dir, 'tiny.jsonl');
    writeFileSync(input, Array.from({ length: n }, (_, i) => `${i}\n`).join(''));
    const output = join(dir, 'tiny.out.jsonl');
    const run = shoalBatch(['Tiny', '--input', input, '--output', output, '--concurrency', '200', '--quiet']);
    expect(await run.exit, run.err()).toBe(0);
    // It did meet the bound: 200 in flight against 2 running and 4 queued.
    expect(run.err()).toMatch(/done: 400 lines answered, 0 failed; [1-9]\d* calls sent again after overload refusals/);
    const rows = readFileSync(output, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { line: number; output: number });
    expect(rows).toEqual(Array.from({ length: n }, (_, i) => ({ line: i + 1, output: i + 1 })));
  });

  it('GET /api/routes answers the route table with the workers\' data addresses and the methods, with the token only', async () => {
    const url = `${head.clusterAddress.replace('ws', 'http')}/api/routes`;
    expect((await fetch(url)).status).toBe(401);
    const view = await (await fetch(url, { headers: { authorization: `Bearer ${head.token}` } })).json() as { version: number; table: Record<string, { maxOngoingRequests: number; replicas: Array<{ workerId: string; dataAddress: string }> }>; deployments: Record<string, { methods: string[] }> };
    expect(view.version).toBeGreaterThan(0);
    const entry = view.table['bt/Scorer']!;
    expect(entry.maxOngoingRequests).toBe(32);
    expect(entry.replicas).toHaveLength(2);
    for (const r of entry.replicas) expect(r.dataAddress).toMatch(/^ws:\/\/127\.0\.0\.1:\d+$/);
    expect(view.deployments['bt/Scorer']!.methods).toEqual(['pair']);
  });

  it('refuses an unknown deployment or method before anything runs, leaving no file behind', async () => {
    const input = join(dir, 'few.jsonl');
    writeFileSync(input, '1\n2\n3\n');
    const output = join(dir, 'few.out.jsonl');
    const dep = shoalBatch(['bt/Nope', '--input', input, '--output', output]);
    expect(await dep.exit).toBe(2);
    expect(dep.err()).toMatch(/no deployment "bt\/Nope" on the cluster \(it has: .*bt\/Scorer/);
    const method = shoalBatch(['bt/Scorer', '--method', 'nosuch', '--input', input, '--output', output]);
    expect(await method.exit).toBe(2);
    expect(method.err()).toMatch(/has no method "nosuch" \(it has: .*predict/);
    expect(existsSync(output)).toBe(false);
    expect(existsSync(checkpointPathFor(output))).toBe(false);
    const usage = shoalBatch(['bt/Scorer', '--input', input]);
    expect(await usage.exit).toBe(2);
    expect(usage.err()).toMatch(/--output/);
  });

  it('wakes a deployment scaled to zero: the run tells the head its lines wait, a replica starts, every line is answered', async () => {
    await deployFixture(head, { module: APP, exportName: 'sleeper', name: 'zero', routePrefix: '/zero' });
    const running = async (): Promise<number> => (await head.stats()).workers.flatMap((w) => w.replicas).filter((r) => r.deployment === 'Sleeper' && r.state === 'RUNNING').length;
    expect(await running()).toBe(0);
    const n = 200;
    const input = join(dir, 'zero-in.jsonl');
    writeFileSync(input, `${Array.from({ length: n }, (_, i) => String(i)).join('\n')}\n`);
    const output = join(dir, 'zero-out.jsonl');
    const run = shoalBatch(['zero/Sleeper', '--input', input, '--output', output, '--quiet']);
    expect(await run.exit, run.err()).toBe(0);
    const rows = readFileSync(output, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { line: number; output?: number });
    expect(rows, run.err()).toEqual(Array.from({ length: n }, (_, i) => ({ line: i + 1, output: i * 3 })));
    expect(await running()).toBe(1);
    // A bad report is refused with what was wrong.
    const post = (body: unknown): Promise<Response> => fetch(`${head.clusterAddress.replace('ws', 'http')}/api/demand`, { method: 'POST', headers: { authorization: `Bearer ${head.token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const unknown = await post({ deployment: 'zero/Nope', waiting: 1 });
    expect(unknown.status).toBe(404);
    expect((await unknown.json() as { error: string }).error).toContain('no deployment "zero/Nope"');
    const badCount = await post({ deployment: 'zero/Sleeper', waiting: 0 });
    expect(badCount.status).toBe(400);
    expect((await badCount.json() as { error: string }).error).toContain('demand.waiting must be an integer');
    expect((await fetch(`${head.clusterAddress.replace('ws', 'http')}/api/demand`, { method: 'POST', body: '{}' })).status).toBe(401);
  });

  // Last: it kills a worker of the cluster the other tests share.
  it('survives SIGKILL of a worker mid-run: the calls it held are made again, every line answered once, no error lines', async () => {
    const n = 6000;
    const input = join(dir, 'kill.jsonl');
    writeFileSync(input, Array.from({ length: n }, (_, i) => `${JSON.stringify({ x: i })}\n`).join(''));
    const output = join(dir, 'kill.out.jsonl');
    const api = async (path: string): Promise<unknown> => (await fetch(`${head.clusterAddress.replace('ws', 'http')}${path}`, { headers: { authorization: `Bearer ${head.token}` } })).json();
    const routes = await api('/api/routes') as { table: Record<string, { replicas: Array<{ workerId: string }> }> };
    const victimId = routes.table['bt/Scorer']!.replicas[0]!.workerId;
    const status = await api('/api/status') as { workers: Array<{ workerId: string; pid?: number; state: string }> };
    expect(status.workers.filter((w) => w.state === 'ALIVE')).toHaveLength(2);
    const victim = status.workers.find((w) => w.workerId === victimId)!;
    expect(victim.pid).toBeTypeOf('number');

    const run = shoalBatch(['bt/Scorer', '--method', 'predict', '--input', input, '--output', output, '--checkpoint-ms', '50', '--quiet']);
    await waitFor('a checkpoint past line 1000', async () => {
      if (run.child.exitCode !== null) throw new Error(`shoal batch ended before the worker was killed (exit ${run.child.exitCode}):\n${run.err()}`);
      return ((await readCheckpoint(checkpointPathFor(output)).catch(() => undefined))?.line ?? 0) > 1000;
    }, 60_000);
    process.kill(victim.pid!, 'SIGKILL');
    expect(await run.exit, run.err()).toBe(0);
    // The kill did catch calls in flight on that worker (64 in flight over two replicas), and they were made again.
    expect(run.err()).toMatch(new RegExp(`done: ${n} lines answered, 0 failed; [1-9]\\d* calls made again after transient failures`));
    const rows = readFileSync(output, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as unknown);
    expect(rows).toEqual(Array.from({ length: n }, (_, i) => ({ line: i + 1, output: { y: i * 2 } })));
    expect(existsSync(checkpointPathFor(output))).toBe(false);
  });
});
