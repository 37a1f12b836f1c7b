/**
 * bench/chaos: faults under load, as an operator meets them, against real CLI processes. Each scenario gets a fresh
 * cluster (`shoal start --workers 3 --port P --http-port H --data-dir DIR`, with SHOAL_TOKEN,
 * SHOAL_WORKER_TIMEOUT_MS and SHOAL_HEARTBEAT_MS set), deploys examples/hello/app.ts with `shoal deploy`, and runs
 * 16 closed client loops (loadgen.mjs, its own process: node:http keep-alive, one connection per loop) for 12 s of
 * GET /?text=... with `x-shoal-timeout-ms: 5000` and a 6 s client timeout. The client retries once only a request
 * whose connection was reset before any response byte arrived (Envoy's retry_on: reset); those retries are counted
 * apart. The fault comes at 4 s:
 *
 *   a  SIGKILL worker   the local worker hosting the most replicas
 *   b  SIGSTOP worker   the same, stopped for 8 s, then SIGCONT
 *   c  SIGKILL head     and the same `shoal start` command 1 s later (the workers should keep serving and rejoin)
 *   d  head restart     `shoal shutdown --keep-workers`, then the same `shoal start` command
 *   e  cold start       test/fixtures/chaos-zero.ts (hello with its model at minReplicas 0) on a head with
 *                       --warm-spares 1; once the model has 0 replicas, one request is timed
 *
 * Reported per scenario: requests, failed (non-2xx after the one allowed retry, or no answer), client retries,
 * requests over 2 s, max latency, requests over the 5 s deadline; detection (worker faults: fault to /api/status
 * no longer showing the worker ALIVE or its replicas RUNNING; head faults: fault to the new head answering
 * /api/status), re-placement (fault to every deployment at full RUNNING count without the faulty worker),
 * adoption (head faults: the new head's start to every previous replica, by id, RUNNING in the same worker PID),
 * and for e the request's latency and the replica's start (the request to the first status showing it RUNNING).
 * Flags the CLI does not know yet (--data-dir, --keep-workers, --warm-spares) are dropped or the scenario is
 * reported "not available", and the JSON says which.
 *
 *   pnpm bench chaos [--only a,b,c,d,e] [--seconds 12] [--fault-at 4] [--loops 16] [--keep-logs]
 *                    [--out FILE (instead of bench/results/chaos.json)]
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { machine, printGoals, printTable, writeResult, type Goal, type Row } from '../lib.ts';
import { atFullCount, ChaosCluster, FlagRefusedError, sleep, type HeadProcess, type Status } from './cluster.ts';
import { runLoad, StatusRecorder, type LoadConfig, type LoadSummary } from './load.ts';
import { isRunning, ProcessTracker } from './procs.ts';

const { values } = parseArgs({
  options: {
    only: { type: 'string', default: 'a,b,c,d,e' }, seconds: { type: 'string', default: '12' }, 'fault-at': { type: 'string', default: '4' },
    loops: { type: 'string', default: '16' }, 'keep-logs': { type: 'boolean', default: false }, out: { type: 'string' },
  },
});
const REPO = resolve(import.meta.dirname, '../..');
const HELLO = join(REPO, 'examples/hello/app.ts');
const ZERO = join(REPO, 'test/fixtures/chaos-zero.ts');
const WORKERS = 3;
const WORKER_TIMEOUT_MS = 3000;
const HEARTBEAT_MS = 500;
const DEADLINE_MS = 5000;
const STOP_MS = 8000;
const HEAD_RESTART_DELAY_MS = 1000;
const ADOPTION_GOAL_MS = 2000;
const COLD_START_GOAL_MS = 1500;
const faultAtMs = Number(values['fault-at']) * 1000;
const load: Omit<LoadConfig, 'url'> = { loops: Number(values.loops), seconds: Number(values.seconds), deadlineMs: DEADLINE_MS, clientTimeoutMs: 6000 };
const only = new Set(values.only.split(','));

const token = randomBytes(16).toString('hex');
const env: NodeJS.ProcessEnv = {
  ...process.env, SHOAL_TOKEN: token, SHOAL_WORKER_TIMEOUT_MS: String(WORKER_TIMEOUT_MS), SHOAL_HEARTBEAT_MS: String(HEARTBEAT_MS), SHOAL_LOG_LEVEL: 'warn',
};
delete env.SHOAL_ADDRESS;
const work = mkdtempSync(join(tmpdir(), 'shoal-chaos-'));
const tracker = new ProcessTracker(REPO);
const refused = new Set<string>();

process.once('exit', () => { tracker.killAllSync(); if (!values['keep-logs']) rmSync(work, { recursive: true, force: true }); });
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => { tracker.killAllSync(); process.exit(130); });

/** A scenario's outcome: one table row (null: not measured or never reached) plus what the JSON keeps besides. */
interface Outcome {
  requests: number | null;
  failed: number | null;
  retries: number | null;
  over_2s: number | null;
  max_ms: number | null;
  over_deadline: number | null;
  detect_ms: number | null;
  replaced_ms: number | null;
  adopted_ms: number | null;
  cold_start_ms: number | null;
  replica_start_ms: number | null;
  note: string;
  failures: string;
  detail: Record<string, unknown>;
}

function outcome(partial: Partial<Outcome>): Outcome {
  return {
    requests: null, failed: null, retries: null, over_2s: null, max_ms: null, over_deadline: null, detect_ms: null,
    replaced_ms: null, adopted_ms: null, cold_start_ms: null, replica_start_ms: null, note: '', failures: '', detail: {}, ...partial,
  };
}

function fromLoad(l: LoadSummary): Partial<Outcome> {
  return {
    requests: l.requests, failed: l.failed, retries: l.clientRetries, over_2s: l.over2s, max_ms: l.maxMs, over_deadline: l.overDeadline,
    failures: Object.entries(l.failures).map(([k, n]) => `${k} x${n}`).join('; '),
  };
}

const since = (t: number | undefined, from: number | undefined): number | null => (t === undefined || from === undefined ? null : t - from);

/** A fresh data directory and cluster; every process it started is killed afterwards, even on failure. */
async function withCluster(name: string, fn: (c: ChaosCluster) => Promise<Outcome>): Promise<Outcome> {
  const dataDir = mkdtempSync(join(work, `${name}-data-`));
  const cluster = await ChaosCluster.create({ repo: REPO, tracker, env, token, logDir: work, name, refused }, dataDir);
  try {
    return await fn(cluster);
  } finally {
    const left = await tracker.killAll();
    if (left.length > 0) process.stderr.write(`bench/chaos: processes still running after cleanup: ${left.join(', ')}\n`);
    rmSync(dataDir, { recursive: true, force: true });
  }
}

const aliveWorkers = (s: Status): number => s.workers.filter((w) => w.state === 'ALIVE').length;

/** A head with 3 local workers and the hello app at full count, answering on the public port. */
async function helloCluster(c: ChaosCluster): Promise<{ head: HeadProcess; before: Status }> {
  const head = await c.startHead(WORKERS);
  if (await c.waitStatus((s) => aliveWorkers(s) >= WORKERS, 30_000) === undefined) throw new Error(`${WORKERS} workers did not join within 30 s; log:\n${c.logTail(head)}`);
  await c.deploy(HELLO);
  const before = await c.waitStatus(atFullCount, 30_000);
  if (before === undefined) throw new Error(`hello did not reach its full replica count within 30 s; log:\n${c.logTail(head)}`);
  for (const w of before.workers) tracker.remember(w.pid);
  const res = await fetch(`${c.httpUrl}/?text=what+a+great+day`, { signal: AbortSignal.timeout(5000) });
  if (res.status !== 200) throw new Error(`hello answered ${res.status}: ${await res.text()}`);
  await res.arrayBuffer().catch(() => undefined);
  return { head, before };
}

/** Every deployment of `before` has its numReplicas RUNNING on ALIVE workers other than `workerId`. */
function fullWithout(before: Status, s: Status, workerId: string): boolean {
  const alive = new Set(s.workers.filter((w) => w.state === 'ALIVE' && w.workerId !== workerId).map((w) => w.workerId));
  return before.applications.every((a) => a.deployments.every((d) =>
    s.replicas.filter((r) => r.app === a.name && r.deployment === d.name && r.state === 'RUNNING' && alive.has(r.workerId)).length >= d.numReplicas));
}

/** Runs the load with `fault` called at faultAtMs; resolves with the load's summary once both are done. */
async function underLoad(c: ChaosCluster, fault: () => Promise<void>): Promise<LoadSummary> {
  let faulted: Promise<void> | undefined;
  let failure: { error: unknown } | undefined;
  let timer: NodeJS.Timeout | undefined;
  const summary = await runLoad(tracker, { ...load, url: `${c.httpUrl}/?text=what+a+great+and+happy+day` }, (t0) => {
    timer = setTimeout(() => {
      // Kept from rejecting, so that a failed fault is no unhandled rejection while the load still runs.
      faulted = fault().catch((error: unknown) => { failure = { error }; });
    }, Math.max(0, t0 + faultAtMs - Date.now()));
  });
  clearTimeout(timer);
  if (faulted === undefined) throw new Error(`the load ended before the fault was due at ${faultAtMs} ms`);
  await faulted;
  if (failure !== undefined) throw failure.error;
  return summary;
}

async function workerFault(name: string, signal: 'SIGKILL' | 'SIGSTOP'): Promise<Outcome> {
  return withCluster(name, async (c) => {
    const { before } = await helloCluster(c);
    const perWorker = new Map<string, number>();
    for (const r of before.replicas) if (r.state === 'RUNNING') perWorker.set(r.workerId, (perWorker.get(r.workerId) ?? 0) + 1);
    // Ties go to the worker of the first such replica in the status (the sort is stable).
    const [targetId, replicas] = [...perWorker.entries()].sort((x, y) => y[1] - x[1])[0]!;
    const pid = before.workers.find((w) => w.workerId === targetId)?.pid;
    if (pid === undefined) throw new Error(`/api/status gives no pid for worker ${targetId}`);
    const rec = new StatusRecorder(c, tracker);
    let faultAt: number | undefined;
    let resume: NodeJS.Timeout | undefined;
    const l = await underLoad(c, async () => {
      faultAt = Date.now();
      process.kill(pid, signal);
      if (signal === 'SIGSTOP') resume = setTimeout(() => { try { process.kill(pid, 'SIGCONT'); } catch { /* the head killed it */ } }, STOP_MS);
    });
    const gone = (s: Status): boolean => s.workers.find((w) => w.workerId === targetId)?.state !== 'ALIVE'
      || !s.replicas.some((r) => r.workerId === targetId && r.state === 'RUNNING');
    // Re-placement may land after the load ends; give it a little longer.
    await rec.until(() => { const d = rec.first(faultAt!, gone); return d !== undefined && rec.first(d, (s) => fullWithout(before, s, targetId)) !== undefined; }, 3000);
    await rec.stop();
    clearTimeout(resume);
    const detected = rec.first(faultAt!, gone);
    const replaced = detected === undefined ? undefined : rec.first(detected, (s) => fullWithout(before, s, targetId));
    const last = rec.samples.at(-1)?.s;
    return outcome({
      ...fromLoad(l), detect_ms: since(detected, faultAt), replaced_ms: since(replaced, faultAt),
      note: `${signal} ${targetId} (pid ${pid}, ${replicas} of ${before.replicas.length} replicas)${detected === undefined ? '; never detected' : ''}${detected !== undefined && replaced === undefined ? '; never re-placed' : ''}`,
      detail: { load: l, target: { workerId: targetId, pid, replicas }, lastStatus: last === undefined ? null : summarize(last) },
    });
  });
}

/** The parts of a status worth keeping in the JSON. */
function summarize(s: Status): Record<string, unknown> {
  return {
    deployments: s.applications.flatMap((a) => a.deployments.map((d) => `${a.name}/${d.name} ${d.running}/${d.numReplicas} ${d.status}`)),
    workers: s.workers.map((w) => `${w.workerId} pid ${w.pid ?? '?'} ${w.state}`),
    replicas: s.replicas.map((r) => `${r.replicaId} ${r.deployment} ${r.state} on ${r.workerId}`),
  };
}

async function headFault(name: string, kind: 'kill' | 'restart'): Promise<Outcome> {
  return withCluster(name, async (c) => {
    const { head, before } = await helloCluster(c);
    const pidOf = new Map(before.workers.map((w) => [w.workerId, w.pid]));
    const placed = before.replicas.filter((r) => r.state === 'RUNNING').map((r) => ({ replicaId: r.replicaId, pid: pidOf.get(r.workerId) }));
    const rec = new StatusRecorder(c, tracker);
    let faultAt: number | undefined;
    let oldGoneAt: number | undefined;
    let next: HeadProcess | undefined;
    const notes: string[] = [];
    void head.exited.then(() => { oldGoneAt = Date.now(); });
    const l = await underLoad(c, async () => {
      faultAt = Date.now();
      if (kind === 'kill') {
        head.child.kill('SIGKILL');
        await head.exited;
        await sleep(Math.max(0, faultAt + HEAD_RESTART_DELAY_MS - Date.now()));
      } else {
        let r = await c.cli(['shutdown', '--keep-workers', '--address', c.address], 15_000);
        if (r.refused === '--keep-workers') {
          refused.add('--keep-workers');
          notes.push('shutdown refused --keep-workers: plain shutdown (stops the workers)');
          r = await c.cli(['shutdown', '--address', c.address], 15_000);
        }
        if (r.code !== 0) notes.push(`shutdown exited ${r.code}: ${r.out.split('\n').at(-1)}`);
        const exit = await Promise.race([head.exited, sleep(15_000).then(() => undefined)]);
        if (exit === undefined) { notes.push('the old head did not exit within 15 s: SIGKILL'); head.child.kill('SIGKILL'); await head.exited; }
        else if (exit.code !== 0) notes.push(`the old head exited ${exit.code ?? exit.signal}`);
      }
      try {
        next = await c.startHead(WORKERS);
      } catch (err) {
        notes.push(`the new head did not start: ${(err as Error).message.split('\n').slice(0, 3).join(' | ')}`);
      }
    });
    const adopted = (s: Status): boolean => placed.every((p) => s.replicas.some((r) => r.replicaId === p.replicaId && r.state === 'RUNNING'
      && s.workers.find((w) => w.workerId === r.workerId)?.pid === p.pid));
    if (next !== undefined) await rec.until(() => rec.first(next!.startedAt, adopted) !== undefined, 3000);
    await rec.stop();
    const answered = oldGoneAt === undefined ? undefined : rec.first(oldGoneAt, () => true);
    const adoptedAt = next === undefined ? undefined : rec.first(next.startedAt, adopted);
    const last = rec.samples.at(-1)?.s;
    if (next !== undefined && (next.child.exitCode !== null || next.child.signalCode !== null)) {
      notes.push(`the new head exited ${next.child.exitCode ?? next.child.signalCode} after it first answered: ${c.logTail(next, 3).split('\n').join(' | ')}`);
    }
    if (next !== undefined && adoptedAt === undefined) {
      const alivePids = [...new Set(placed.map((p) => p.pid))].filter((p) => p !== undefined && isRunning(p));
      notes.push(`never adopted (previous worker pids still running: ${alivePids.length} of ${new Set(placed.map((p) => p.pid)).size}; new head lists ${last?.replicas.length ?? 0} replicas, ${last?.applications.length ?? 0} apps)`);
    }
    // adopted_ms includes the new head's own boot (a Node process with tsx); this splits the two.
    const bootMs = since(answered, next?.startedAt);
    if (adoptedAt !== undefined) notes.push(`the new head answered ${bootMs} ms after its start, and showed every replica adopted ${since(adoptedAt, answered)} ms later`);
    return outcome({
      ...fromLoad(l), detect_ms: since(answered, faultAt), adopted_ms: since(adoptedAt, next?.startedAt), note: notes.join('; '),
      detail: {
        load: l, previous: placed, newHeadStartedAfterFaultMs: since(next?.startedAt, faultAt), newHeadAnsweredAfterStartMs: bootMs,
        adoptedAfterFirstAnswerMs: since(adoptedAt, answered), lastStatus: last === undefined ? null : summarize(last),
      },
    });
  });
}

async function coldStart(name: string): Promise<Outcome> {
  return withCluster(name, async (c) => {
    const notes: string[] = [];
    let head: HeadProcess;
    let warmSpare = true;
    try {
      head = await c.startHead(WORKERS, ['--warm-spares', '1']);
    } catch (err) {
      if (!(err instanceof FlagRefusedError)) throw err;
      // Measured all the same, so that autoscaling can be judged before warm spares land; the goal stays unmet.
      warmSpare = false;
      notes.push(`without a warm spare: ${err.message}`);
      head = await c.startHead(WORKERS);
    }
    if (await c.waitStatus((s) => aliveWorkers(s) >= WORKERS, 30_000) === undefined) throw new Error(`${WORKERS} workers did not join within 30 s; log:\n${c.logTail(head)}`);
    const d = await c.cli(['deploy', ZERO, '--address', c.address, '--wait', '15000']);
    if (d.code !== 0) {
      const s = await c.status();
      if (s === undefined || s.applications.length === 0) return outcome({ note: [...notes, `not available: shoal deploy ${ZERO.slice(REPO.length + 1)} failed: ${d.out.split('\n').at(-1)}`].join('; ') });
      notes.push(`deploy's wait for ready failed (${d.out.split('\n').at(-1)}), the application is deployed`);
    }
    const s0 = await c.status();
    const app = s0?.applications[0];
    const model = app?.deployments.find((x) => x.name !== app.ingress)?.name;
    if (model === undefined) return outcome({ note: [...notes, 'not available: no model deployment in /api/status'].join('; ') });
    const zero = (s: Status): boolean => !s.replicas.some((r) => r.deployment === model && (r.state === 'RUNNING' || r.state === 'STARTING'))
      && s.replicas.some((r) => r.deployment === app!.ingress && r.state === 'RUNNING');
    const idle = await c.waitStatus(zero, 15_000);
    if (idle === undefined) return outcome({ note: [...notes, `not available: ${model} never reached 0 replicas within 15 s`].join('; '), detail: { warmSpare, lastStatus: await c.status().then((s) => (s === undefined ? null : summarize(s))) } });
    for (const w of idle.workers) tracker.remember(w.pid);
    const rec = new StatusRecorder(c, tracker, 20);
    const sentAt = Date.now();
    const t0 = performance.now();
    let status = 0;
    let error: string | undefined;
    try {
      const res = await fetch(`${c.httpUrl}/?text=what+a+great+day`, { headers: { 'x-shoal-timeout-ms': String(DEADLINE_MS) }, signal: AbortSignal.timeout(6000) });
      status = res.status;
      if (!res.ok) error = (await res.text()).slice(0, 200); else await res.arrayBuffer();
    } catch (err) {
      error = (err as Error).message;
    }
    const ms = Math.round(performance.now() - t0);
    await rec.until(() => rec.first(sentAt, (s) => s.replicas.some((r) => r.deployment === model && r.state === 'RUNNING')) !== undefined, 2000);
    await rec.stop();
    const running = rec.first(sentAt, (s) => s.replicas.some((r) => r.deployment === model && r.state === 'RUNNING'));
    const ok = status >= 200 && status < 300;
    return outcome({
      requests: 1, failed: ok ? 0 : 1, retries: 0, over_2s: ms > 2000 ? 1 : 0, max_ms: ms, over_deadline: ms > DEADLINE_MS ? 1 : 0,
      cold_start_ms: ok ? ms : null, replica_start_ms: since(running, sentAt), note: notes.join('; '), failures: ok ? '' : `HTTP ${status} ${error ?? ''}`.trim(),
      detail: { status, error: error ?? null, warmSpare, workersAtZero: idle.workers.length },
    });
  });
}

const SCENARIOS: Array<{ key: string; name: string; run: () => Promise<Outcome> }> = [
  { key: 'a', name: 'SIGKILL worker', run: () => workerFault('a-sigkill-worker', 'SIGKILL') },
  { key: 'b', name: 'SIGSTOP worker 8 s', run: () => workerFault('b-sigstop-worker', 'SIGSTOP') },
  { key: 'c', name: 'SIGKILL head, restart', run: () => headFault('c-sigkill-head', 'kill') },
  { key: 'd', name: 'graceful head restart', run: () => headFault('d-head-restart', 'restart') },
  { key: 'e', name: 'cold start from zero', run: () => coldStart('e-cold-start') },
];

process.stdout.write(`bench/chaos on ${machine()}: ${WORKERS} local workers, ${load.loops} loops x ${load.seconds} s, fault at ${faultAtMs / 1000} s, `
  + `SHOAL_WORKER_TIMEOUT_MS=${WORKER_TIMEOUT_MS} SHOAL_HEARTBEAT_MS=${HEARTBEAT_MS}, client: node:http keep-alive, retry once on reset before any response byte\n`);
const results: Array<{ scenario: string; key: string; o: Outcome }> = [];
let harnessFailed = false;
for (const sc of SCENARIOS.filter((x) => only.has(x.key))) {
  const t = Date.now();
  let o: Outcome;
  try {
    o = await sc.run();
  } catch (err) {
    harnessFailed = true;
    o = outcome({ note: `harness error: ${(err as Error).message.split('\n')[0]}` });
    process.stderr.write(`bench/chaos ${sc.key} (${sc.name}): ${(err as Error).message}\n`);
  }
  results.push({ scenario: sc.name, key: sc.key, o });
  process.stdout.write(`  ${sc.key} ${sc.name}: ${((Date.now() - t) / 1000).toFixed(1)} s${o.note ? ` (${o.note})` : ''}\n`);
}

const rows: Row[] = results.map(({ scenario, o }) => {
  const { detail: _d, ...cells } = o;
  return { scenario, ...cells };
});
const COLUMNS = ['scenario', 'requests', 'failed', 'retries', 'over_2s', 'max_ms', 'over_deadline', 'detect_ms', 'replaced_ms', 'adopted_ms', 'cold_start_ms', 'replica_start_ms'];
process.stdout.write('\n');
printTable(rows.map((r) => Object.fromEntries(COLUMNS.map((k) => [k, r[k] ?? '-']))), COLUMNS);
for (const { key, scenario, o } of results) if (o.failures) process.stdout.write(`  ${key} ${scenario} failures: ${o.failures}\n`);
process.stdout.write('\n');

/** A goal, plus why it could not be measured when it could not. */
type ChaosGoal = Goal & { note?: string };
const goals: ChaosGoal[] = [];
const get = (key: string): Outcome | undefined => results.find((r) => r.key === key)?.o;
const measured = (v: number | null | undefined, why: string): { value: number; note?: string } => (v === null || v === undefined ? { value: NaN, note: why } : { value: v });
for (const key of ['a', 'b', 'c', 'd']) {
  const o = get(key);
  if (o === undefined) continue;
  const v = measured(o.failed, o.note || 'not measured');
  goals.push({ goal: `failed requests, ${SCENARIOS.find((s) => s.key === key)!.name}`, ...v, target: '0', unit: 'requests', met: v.value === 0 });
}
const faults = ['a', 'b', 'c', 'd'].map(get).filter((o): o is Outcome => o !== undefined);
if (faults.length > 0) {
  const over = faults.some((o) => o.over_deadline === null) ? NaN : faults.reduce((s, o) => s + o.over_deadline!, 0);
  goals.push({ goal: 'requests over their 5 s deadline, all fault scenarios', value: over, target: '0', unit: 'requests', met: over === 0, ...(Number.isNaN(over) ? { note: 'a scenario did not run its load' } : {}) });
}
const b = get('b');
if (b !== undefined) {
  const v = measured(b.detect_ms, 'never detected within the run');
  goals.push({ goal: `SIGSTOP detected within the worker timeout (SHOAL_WORKER_TIMEOUT_MS=${WORKER_TIMEOUT_MS})`, ...v, target: `<= ${WORKER_TIMEOUT_MS}`, unit: 'ms', met: v.value <= WORKER_TIMEOUT_MS });
}
for (const key of ['c', 'd']) {
  const o = get(key);
  if (o === undefined) continue;
  const v = measured(o.adopted_ms, o.note || 'never adopted');
  goals.push({ goal: `adoption after the head's restart (same replica ids in the same worker pids), ${SCENARIOS.find((s) => s.key === key)!.name}`, ...v, target: `<= ${ADOPTION_GOAL_MS}`, unit: 'ms', met: v.value <= ADOPTION_GOAL_MS });
}
const e = get('e');
if (e !== undefined) {
  const v = measured(e.cold_start_ms, [e.note, e.failures].filter(Boolean).join('; ') || 'not measured');
  const spare = (e.detail as { warmSpare?: boolean }).warmSpare === true;
  goals.push({ goal: 'cold start of hello from zero with a warm spare (one request)', ...v, target: `< ${COLD_START_GOAL_MS}`, unit: 'ms', met: spare && v.value < COLD_START_GOAL_MS, ...(!spare && v.note === undefined ? { note: e.note } : {}) });
}
printGoals(goals);
for (const g of goals) if (g.note) process.stdout.write(`  ${g.goal}: ${g.note}\n`);

const file = writeResult('chaos', rows, goals, {
  settings: { workers: WORKERS, loops: load.loops, seconds: load.seconds, faultAtMs, deadlineMs: DEADLINE_MS, clientTimeoutMs: load.clientTimeoutMs, workerTimeoutMs: WORKER_TIMEOUT_MS, heartbeatMs: HEARTBEAT_MS, stopMs: STOP_MS, headRestartDelayMs: HEAD_RESTART_DELAY_MS, client: 'node:http Agent keepAlive, maxSockets 1 per loop; retry once on ECONNRESET/EPIPE before any response byte; a loop pauses 50 ms after a request that got no answer' },
  flagsRefused: [...refused],
  scenarios: Object.fromEntries(results.map(({ key, o }) => [key, o.detail])),
}, values.out === undefined ? undefined : resolve(values.out));
process.stdout.write(`wrote ${file}${values['keep-logs'] ? `; logs in ${work}` : ''}\n`);
process.exitCode = harnessFailed ? 1 : 0;
