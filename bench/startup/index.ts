/**
 * bench/startup: how long a worker process takes from spawn to joined (its hello accepted by a real head), run
 * from compiled JavaScript (what `shoal` runs since issue 14) against the TypeScript sources through tsx (what
 * it ran before: `node --import tsx packages/worker/src/main.ts`, every @shoal/* package resolved to its src/).
 * tsx keeps a transform cache on disk, so it is timed both warm (the usual case on one machine) and cold
 * (TSX_DISABLE_CACHE=1: a fresh container, or the first start after an upgrade). Also the CLI itself: from spawn
 * to `shoal --help` printed, compiled against the old bin (tsx registered, then src/main.ts imported).
 *
 * And the worker as it was before issue 14 (`--before COMMIT`, default b3c134a): that commit's tree, extracted
 * with git archive into a temporary directory sharing this checkout's node_modules and native build, run as it
 * then ran (tsx on the sources; it also loaded ioredis, nats and usearch at import and probed the CUDA addon in a
 * child process at every start). `--before none` leaves it out.
 *
 * Modes run interleaved, round by round, after one untimed warm-up each, so a slow patch of the host hits them
 * all alike. Reported: median and p90 of each mode, and compiled's speed-up against each other mode.
 *
 *   pnpm bench startup [--rounds 10] [--before b3c134a|none]
 */
import { execFileSync, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { silentLogger } from '@shoal/core';
import { Head } from '@shoal/head';
import { median, percentile, printGoals, printTable, round, writeResult, type Goal, type Row } from '../lib.ts';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '10' }, before: { type: 'string', default: 'b3c134a' } } });
const ROUNDS = Number(values.rounds);
const REPO = resolve(import.meta.dirname, '../..');
const TSX = createRequire(join(REPO, 'packages/worker/package.json')).resolve('tsx/esm');
const TSX_URL = `file://${TSX}`;

interface Mode { name: string; args: string[]; env?: Record<string, string> }
/** The tree of `commit`, runnable with this checkout's installed dependencies (see the header). */
function beforeTree(commit: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-startup-before-'));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  execFileSync('bash', ['-c', `git -C ${JSON.stringify(REPO)} archive ${commit} | tar -x -C ${JSON.stringify(dir)}`]);
  symlinkSync(join(REPO, 'node_modules'), join(dir, 'node_modules'));
  for (const p of readdirSync(join(dir, 'packages'))) {
    const nm = join(REPO, 'packages', p, 'node_modules');
    if (existsSync(nm)) cpSync(nm, join(dir, 'packages', p, 'node_modules'), { recursive: true, verbatimSymlinks: true });
  }
  mkdirSync(join(dir, 'packages/native/build'), { recursive: true });
  cpSync(join(REPO, 'packages/native/build/Release'), join(dir, 'packages/native/build/Release'), { recursive: true, filter: (f) => !f.endsWith('.probe-ok') });
  return dir;
}
const BEFORE = values.before === 'none' ? undefined : values.before;

const workerModes: Mode[] = [
  { name: 'compiled', args: [join(REPO, 'packages/worker/dist/main.js')] },
  { name: 'tsx, warm cache', args: ['--conditions=source', '--import', TSX_URL, join(REPO, 'packages/worker/src/main.ts')] },
  { name: 'tsx, cold cache', args: ['--conditions=source', '--import', TSX_URL, join(REPO, 'packages/worker/src/main.ts')], env: { TSX_DISABLE_CACHE: '1' } },
  ...(BEFORE === undefined ? [] : [{ name: `before (${BEFORE}, tsx, warm cache)`, args: ['--import', TSX_URL, join(beforeTree(BEFORE), 'packages/worker/src/main.ts')] }]),
];
const cliModes: Mode[] = [
  { name: 'compiled', args: [join(REPO, 'packages/cli/bin/shoal.mjs'), '--help'] },
  { name: 'tsx, warm cache', args: ['--conditions=source', join(import.meta.dirname, 'tsx-bin.mjs'), '--help'] },
  { name: 'tsx, cold cache', args: ['--conditions=source', join(import.meta.dirname, 'tsx-bin.mjs'), '--help'], env: { TSX_DISABLE_CACHE: '1' } },
];

const head = new Head({ port: 0, httpPort: 0, workers: 0, logger: silentLogger, heartbeatMs: 200, workerTimeoutMs: 2000 });
await head.start();
const alive = (): number => head.controller.aliveWorkers().length;

async function until(cond: () => boolean, what: string, timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** Spawn to joined, in ms; then the worker is stopped (SIGTERM) and gone from the head before the next one. */
async function workerStart(mode: Mode): Promise<number> {
  const before = alive();
  const t0 = performance.now();
  const child = spawn(process.execPath, [...mode.args, '--address', head.clusterAddress, '--token-file', '-'], {
    env: { ...process.env, SHOAL_LOG_LEVEL: 'warn', ...mode.env }, stdio: ['pipe', 'ignore', 'inherit'],
  });
  child.stdin.end(`${head.token}\n`);
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  let failed = false;
  child.once('exit', () => { failed = true; });
  await until(() => alive() > before || failed, `a ${mode.name} worker to join`);
  const ms = performance.now() - t0;
  if (failed && alive() <= before) throw new Error(`the ${mode.name} worker exited before joining`);
  child.kill('SIGTERM');
  await exited;
  await until(() => alive() === before, 'the stopped worker to leave the head');
  return ms;
}

/** Spawn to exit of `shoal --help`, in ms. */
function cliStart(mode: Mode): Promise<number> {
  return new Promise((resolveMs, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, mode.args, { env: { ...process.env, ...mode.env }, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.once('exit', (code) => {
      const ms = performance.now() - t0;
      if (code !== 0 || !out.includes('shoal')) reject(new Error(`${mode.name}: shoal --help exited ${code}: ${out.slice(0, 200)}`));
      else resolveMs(ms);
    });
  });
}

async function measure(modes: Mode[], once: (m: Mode) => Promise<number>): Promise<Map<string, number[]>> {
  const times = new Map(modes.map((m) => [m.name, [] as number[]]));
  for (const m of modes) await once(m); // warm-up: the page cache, and tsx's disk cache for the warm mode
  for (let r = 0; r < ROUNDS; r++) for (const m of modes) times.get(m.name)!.push(await once(m));
  return times;
}

const rows: Row[] = [];
const medians: Record<string, Record<string, number>> = { worker: {}, cli: {} };
for (const [what, modes, once] of [['worker', workerModes, workerStart], ['cli', cliModes, cliStart]] as const) {
  const times = await measure(modes, once);
  const compiled = median(times.get('compiled')!);
  for (const m of modes) {
    const xs = [...times.get(m.name)!].sort((a, b) => a - b);
    const med = median(xs);
    medians[what]![m.name] = med;
    rows.push({
      process: what === 'worker' ? 'worker (spawn to joined)' : 'CLI (shoal --help)', mode: m.name,
      'p50 ms': round(med), 'p90 ms': round(percentile(xs, 90)), 'compiled speed-up': m.name === 'compiled' ? '-' : `${round(med / compiled, 2)}x`,
    });
  }
}
await head.stop();

printTable(rows);
const speedup = medians.worker!['tsx, warm cache']! / medians.worker!.compiled!;
const goals: Goal[] = [
  { goal: 'worker start-up from compiled JavaScript against the same sources through tsx (warm cache), p50', value: round(speedup, 2), target: '>= 2', unit: 'x', met: speedup >= 2 },
];
if (BEFORE !== undefined) {
  const vsBefore = medians.worker![`before (${BEFORE}, tsx, warm cache)`]! / medians.worker!.compiled!;
  goals.push({ goal: `worker start-up from compiled JavaScript against the worker before issue 14 (${BEFORE}, through tsx, warm cache), p50`, value: round(vsBefore, 2), target: '>= 2', unit: 'x', met: vsBefore >= 2 });
}
printGoals(goals);
writeResult('startup', rows, goals, { rounds: ROUNDS, before: BEFORE ?? null });
