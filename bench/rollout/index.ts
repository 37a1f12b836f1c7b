/**
 * bench/rollout: shipping a new version under load, against real CLI processes. Each scenario gets a fresh cluster
 * (`shoal start --workers 2`), deploys bench/rollout/app.ts (deployment "Model", 2 replicas, a 10 ms model) with
 * `shoal deploy --export ...`, and runs closed client loops (bench/chaos/loadgen.mjs, its own process, one
 * keep-alive connection per loop) of GET /?x=1 with `x-shoal-timeout-ms: 5000`. Scenarios:
 *
 *   rolling   16 loops, 12 s; at 4 s `shoal deploy --export rollingV2` (maxSurge 1, maxUnavailable 0)
 *   canary    16 loops, 12 s; at 4 s a canary (25%, then 50%; judged after 200 requests) of a version that
 *             fails every request: rolled back automatically. Verdict: the rollback decision's time; complete:
 *             the first /api/status (polled every 50 ms) with no replica of the canary version left
 *   rollback  16 loops, 8 s; v2 fully rolled out, then at 3 s `shoal rollback Model`: back to v1
 *   shadow    4 loops, 6 s rounds alternating between two apps on the same workers: v1 alone (shadow off) and
 *             v1 with a near copy as a 100% shadow (shadow on), after a 3 s warm-up of each; p99 compared round by
 *             round, the median of the ratios kept
 *
 * Reported per scenario: requests, failed, p50/p99/max latency (client side), and the scenario's own timings.
 *
 *   pnpm bench rollout [--only rolling,canary,rollback,shadow] [--rounds 6] [--keep-logs]
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { machine, median, printGoals, printTable, round, writeResult, type Goal, type Row } from '../lib.ts';
import { ChaosCluster, sleep, type HeadProcess, type Status } from '../chaos/cluster.ts';
import { runLoad, StatusRecorder, type LoadSummary } from '../chaos/load.ts';
import { ProcessTracker } from '../chaos/procs.ts';

const { values } = parseArgs({ options: { only: { type: 'string', default: 'rolling,canary,rollback,shadow' }, rounds: { type: 'string', default: '6' }, 'keep-logs': { type: 'boolean', default: false } } });
const REPO = resolve(import.meta.dirname, '../..');
const APP = join(REPO, 'bench/rollout/app.ts');
const only = new Set(values.only.split(','));
const token = randomBytes(16).toString('hex');
const env: NodeJS.ProcessEnv = { ...process.env, SHOAL_TOKEN: token, SHOAL_WORKER_TIMEOUT_MS: '3000', SHOAL_HEARTBEAT_MS: '250', SHOAL_LOG_LEVEL: 'warn' };
delete env.SHOAL_ADDRESS;
const work = mkdtempSync(join(tmpdir(), 'shoal-rollout-'));
const tracker = new ProcessTracker(REPO);
process.once('exit', () => { tracker.killAllSync(); if (!values['keep-logs']) rmSync(work, { recursive: true, force: true }); });
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => { tracker.killAllSync(); process.exit(130); });

type Dep = Status['applications'][number]['deployments'][number];
const model = (s: Status | undefined): Dep | undefined => s?.applications.find((a) => a.name === 'default')?.deployments.find((d) => d.name === 'Model');

async function withCluster<T>(name: string, fn: (c: ChaosCluster, head: HeadProcess) => Promise<T>): Promise<T> {
  const dataDir = mkdtempSync(join(work, `${name}-data-`));
  const c = await ChaosCluster.create({ repo: REPO, tracker, env, token, logDir: work, name, refused: new Set() }, dataDir);
  try {
    const head = await c.startHead(2);
    if (await c.waitStatus((s) => s.workers.filter((w) => w.state === 'ALIVE').length >= 2, 30_000) === undefined) throw new Error(`workers did not join; log:\n${c.logTail(head)}`);
    return await fn(c, head);
  } finally {
    await tracker.killAll();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

async function deploy(c: ChaosCluster, exportName: string): Promise<void> {
  await c.deploy(APP, ['--export', exportName]);
}

function loadRow(scenario: string, l: LoadSummary, extra: Row = {}): Row {
  return { scenario, requests: l.requests, failed: l.failed, p50_ms: l.p50Ms, p99_ms: l.p99Ms, max_ms: l.maxMs, ...extra, failures: Object.entries(l.failures).map(([k, n]) => `${k} x${n}`).join('; ') };
}

const loadCfg = (c: ChaosCluster, loops: number, seconds: number) => ({ url: `${c.httpUrl}/?x=1`, loops, seconds, deadlineMs: 5000, clientTimeoutMs: 6000 });

async function rolling(): Promise<Row> {
  return withCluster('rolling', async (c) => {
    await deploy(c, 'rollingV1');
    const rec = new StatusRecorder(c, tracker);
    let at = 0;
    const running = runLoad(tracker, loadCfg(c, 16, 12), (t0) => { at = t0 + 4000; });
    await rec.until(() => at > 0 && Date.now() >= at, 20_000);
    const t = Date.now();
    await deploy(c, 'rollingV2');
    const l = await running;
    const done = rec.first(t, (s) => (model(s)?.decisions ?? []).some((d) => d.action === 'done'));
    await rec.stop();
    return loadRow('rolling update (maxSurge 1)', l, { rollout_ms: done === undefined ? null : done - t });
  });
}

async function canary(): Promise<{ row: Row; rollbackMs: number | null }> {
  return withCluster('canary', async (c) => {
    await deploy(c, 'canaryV1');
    const rec = new StatusRecorder(c, tracker);
    let at = 0;
    const running = runLoad(tracker, loadCfg(c, 16, 12), (t0) => { at = t0 + 4000; });
    await rec.until(() => at > 0 && Date.now() >= at, 20_000);
    const t = Date.now();
    await deploy(c, 'canaryFaulty');
    const l = await running;
    await sleep(200);
    await rec.stop();
    const last = model(rec.samples.at(-1)?.s);
    const verdict = (last?.decisions ?? []).find((d) => d.action === 'rollback');
    const canaryVersion = verdict?.from;
    const gone = verdict === undefined ? undefined : rec.first(verdict.atMs, (s) => model(s) !== undefined && !s.replicas.some((r) => r.deployment === 'Model' && r.version === canaryVersion));
    const rollbackMs = verdict === undefined || gone === undefined ? null : gone - verdict.atMs;
    return {
      row: loadRow('canary of a failing version, auto rollback', l, { verdict_after_ms: verdict === undefined ? null : verdict.atMs - t, rollback_ms: rollbackMs, canary_errors_seen_by_head: verdict?.numbers?.canaryErrors ?? null, verdict: verdict?.reason ?? 'no rollback' }),
      rollbackMs,
    };
  });
}

async function rollback(): Promise<Row> {
  return withCluster('rollback', async (c) => {
    await deploy(c, 'rollingV1');
    await deploy(c, 'rollingV2');
    await c.waitStatus((s) => (model(s)?.decisions ?? []).some((d) => d.action === 'done'), 30_000);
    const previous = model(await c.status())?.versions.find((v) => !v.current)?.id;
    if (previous === undefined) throw new Error('no previous version to roll back to');
    const rec = new StatusRecorder(c, tracker);
    let at = 0;
    const running = runLoad(tracker, loadCfg(c, 16, 8), (t0) => { at = t0 + 3000; });
    await rec.until(() => at > 0 && Date.now() >= at, 20_000);
    const t = Date.now();
    const r = await c.cli(['rollback', 'Model', '--address', c.address]);
    if (r.code !== 0) throw new Error(`shoal rollback exited ${r.code}: ${r.out}`);
    const l = await running;
    await rec.stop();
    // Back: the previous version current, at its count, and nothing else left (the other version's replicas gone).
    const back = rec.first(t, (s) => { const d = model(s); return d !== undefined && d.version === previous && d.rollout === undefined && s.replicas.filter((x) => x.deployment === 'Model' && x.version === previous && x.state === 'RUNNING').length === 2 && s.replicas.filter((x) => x.deployment === 'Model').length === 2; });
    return loadRow('shoal rollback after a full rollout', l, { rollback_ms: back === undefined ? null : back - t, note: 'from the shoal rollback command (a CLI process) to v1 alone at full count' });
  });
}

async function shadow(rounds: number): Promise<{ rows: Row[]; addedP99: number | null; compared: number }> {
  return withCluster('shadow', async (c) => {
    // Two applications on the same workers: /off serves v1 alone, /on serves v1 with a near copy as a 100% shadow.
    // Rounds alternate between them (off, on, then on, off), so drift on a shared machine cancels out.
    const app = (s: Status | undefined, name: string): Dep | undefined => s?.applications.find((a) => a.name === name)?.deployments[0];
    await c.deploy(APP, ['--export', 'shadowV1', '--name', 'off', '--route-prefix', '/off']);
    await c.deploy(APP, ['--export', 'shadowV1', '--name', 'on', '--route-prefix', '/on']);
    await c.deploy(APP, ['--export', 'shadowNear', '--name', 'on', '--route-prefix', '/on']);
    if (await c.waitStatus((s) => app(s, 'on')?.rollout?.phase === 'shadow' && s.replicas.filter((r) => r.app === 'on' && r.state === 'RUNNING').length === 4, 30_000) === undefined) throw new Error('the shadow phase did not start');
    const cfg = (path: string, seconds: number) => ({ ...loadCfg(c, 4, seconds), url: `${c.httpUrl}/${path}/?x=1` });
    await runLoad(tracker, cfg('off', 3), () => undefined);
    await runLoad(tracker, cfg('on', 3), () => undefined);
    const before = Object.values(app(await c.status(), 'on')?.shadow ?? {})[0];
    const off: LoadSummary[] = [];
    const on: LoadSummary[] = [];
    for (let i = 0; i < rounds; i++) {
      for (const which of i % 2 === 0 ? ['off', 'on'] : ['on', 'off']) (which === 'off' ? off : on).push(await runLoad(tracker, cfg(which, 6), () => undefined));
    }
    await sleep(600); // the last heartbeat's comparisons
    const after = Object.values(app(await c.status(), 'on')?.shadow ?? {})[0];
    const compared = (after?.compared ?? 0) - (before?.compared ?? 0);
    const dropped = (after?.dropped ?? 0) - (before?.dropped ?? 0);
    const ratios = off.map((o, i) => (on[i]!.p99Ms ?? 0) / (o.p99Ms ?? 1));
    const addedP99 = ratios.length === 0 ? null : (median(ratios) - 1) * 100;
    const sum = (xs: LoadSummary[], f: (l: LoadSummary) => number | null): number => xs.reduce((acc, l) => acc + (f(l) ?? 0), 0);
    const merged = (xs: LoadSummary[]): LoadSummary => ({ ...xs[0]!, requests: sum(xs, (l) => l.requests), failed: sum(xs, (l) => l.failed), p50Ms: median(xs.map((l) => l.p50Ms ?? 0)), p99Ms: median(xs.map((l) => l.p99Ms ?? 0)), maxMs: Math.max(...xs.map((l) => l.maxMs ?? 0)), failures: {} });
    return {
      rows: [
        loadRow(`shadow off (v1 alone), 4 loops, ${rounds} x 6 s`, merged(off), { p99_per_round: off.map((l) => l.p99Ms).join(' / ') }),
        loadRow(`shadow on (100% to a near copy), 4 loops, ${rounds} x 6 s`, merged(on), {
          p99_per_round: on.map((l) => l.p99Ms).join(' / '), compared, mirror_dropped: dropped, added_p99_pct: addedP99 === null ? null : round(addedP99, 1),
          agreement: after?.agreement ?? null, mean_abs_diff: after?.meanAbsDiff ?? null, max_abs_diff: after?.maxAbsDiff ?? null,
        }),
      ],
      addedP99, compared,
    };
  });
}

const rows: Row[] = [];
const goals: Goal[] = [];
if (only.has('rolling')) {
  const r = await rolling();
  rows.push(r);
  goals.push({ goal: 'failed requests during a rolling update under load', value: Number(r.failed), target: '0', unit: 'requests', met: r.failed === 0 });
}
if (only.has('canary')) {
  const { row, rollbackMs } = await canary();
  rows.push(row);
  goals.push({ goal: 'failed requests during an automatic canary rollback under load', value: Number(row.failed), target: '0', unit: 'requests', met: row.failed === 0 && rollbackMs !== null });
  goals.push({ goal: 'rollback complete after the verdict', value: rollbackMs ?? -1, target: '< 5000', unit: 'ms', met: rollbackMs !== null && rollbackMs < 5000 });
}
if (only.has('rollback')) rows.push(await rollback());
if (only.has('shadow')) {
  const s = await shadow(Number(values.rounds));
  rows.push(...s.rows);
  goals.push({ goal: 'p99 added by shadowing 100% of requests', value: s.addedP99 === null ? -1 : round(s.addedP99, 2), target: '< 5', unit: '%', met: s.addedP99 !== null && s.addedP99 < 5 && s.compared > 0 });
}
printTable(rows, ['scenario', 'requests', 'failed', 'p50_ms', 'p99_ms', 'max_ms', 'rollout_ms', 'verdict_after_ms', 'rollback_ms', 'added_p99_pct', 'compared', 'mirror_dropped']);
printGoals(goals);
const file = writeResult('rollout', rows, goals, { machine: machine(), note: 'model: a 10 ms asynchronous wait (no CPU); client latencies from bench/chaos/loadgen.mjs in its own process' });
process.stdout.write(`wrote ${file}\n`);
