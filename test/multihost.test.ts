/**
 * Multi-host (issue 10): two workers, each in its own network namespace joined to the root namespace by a veth pair
 * with its own /30, and a head in the root namespace with no local workers (so it serves HTTP itself, on
 * 127.0.0.1). Under load through the head's ingress, the link of one worker is cut for longer than the worker
 * timeout; its replicas must be placed again on the other worker, no request may wait past its deadline (plus
 * slack), GETs must not fail (shoal retries them as idempotent), and when the link returns the worker must rejoin
 * cleanly: ALIVE again, with every deployment at exactly its numReplicas, in the head's status and in what the
 * workers report they host.
 *
 * Needs root and `ip` (iproute2) with network namespaces; otherwise it is skipped with the reason, unless
 * SHOAL_REQUIRE_NETNS=1 (CI runs as root), where it fails instead. Traffic goes only to loopback and to the
 * namespaces made here. The workers in the namespaces reach each other through the root namespace, so the test
 * turns on net.ipv4.ip_forward for its duration and puts back the value it found.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { env } from '@shoal/core';
import type { ClusterStatus } from '@shoal/head';
import type { WorkerStats } from '@shoal/protocol';
import { freePort, isAlive, waitFor } from './helpers.ts';

const REPO = resolve(import.meta.dirname, '..');
const BIN = resolve(REPO, 'packages/cli/bin/shoal.mjs');
const HELLO = resolve(REPO, 'examples/hello/app.ts');
const REQUIRE_NETNS = env.requireNetns();
const WORKER_TIMEOUT_MS = 1500;
const HEARTBEAT_MS = 250;
const DEADLINE_MS = 3000;
const SLACK_MS = 500;
const CUT_MS = 5000;
const REJOIN_MS = 10_000;
const IP_FORWARD = '/proc/sys/net/ipv4/ip_forward';

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Why this machine cannot run the test, or undefined when it can (a namespace is made and removed to be sure). */
function unavailable(): string | undefined {
  if (process.platform !== 'linux') return `needs Linux network namespaces (platform ${process.platform})`;
  if (process.getuid?.() !== 0) return `needs root for ip netns (uid ${process.getuid?.()})`;
  try { ip('-V'); } catch { return 'needs `ip` (iproute2) on PATH'; }
  const probe = `shoal-probe-${randomBytes(3).toString('hex')}`;
  try { ip('netns', 'add', probe); } catch (err) { return `\`ip netns add\` failed: ${String((err as { stderr?: string }).stderr ?? err).trim()}`; }
  try { ip('netns', 'del', probe); } catch { /* made and gone with the probe */ }
  return undefined;
}

const reason = unavailable();
if (reason !== undefined && !REQUIRE_NETNS) process.stderr.write(`multihost.test.ts skipped: ${reason} (SHOAL_REQUIRE_NETNS=1 makes this a failure)\n`);

type Status = ClusterStatus & { cluster: string; http: string };

interface Host { ns: string; rootIf: string; nsIf: string; rootIp: string; nsIp: string }

/** Everything made here, so that afterAll undoes it even after a failure halfway. */
const made = { namespaces: [] as string[], links: [] as string[], children: [] as ChildProcess[], ipForward: undefined as string | undefined };
const logs = new Map<string, string>();

function startProcess(name: string, command: string, args: string[], env: NodeJS.ProcessEnv): ChildProcess {
  const child = spawn(command, args, { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
  made.children.push(child);
  logs.set(name, '');
  const keep = (d: Buffer): void => { logs.set(name, (logs.get(name)! + d.toString()).slice(-20_000)); };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  return child;
}

/** waitFor, with the tail of every process's output in the error. */
async function waitOrExplain(what: string, cond: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  try { await waitFor(what, cond, timeoutMs); } catch (err) { throw new Error(`${(err as Error).message}\n${logTails()}`); }
}

function logTails(): string {
  return [...logs].map(([name, text]) => `--- ${name}\n${text.trimEnd().split('\n').slice(-15).join('\n')}`).join('\n');
}

/** A namespace joined to the root one by a veth pair: 10.213.O.(4i+1) in root, 10.213.O.(4i+2) inside. */
function makeHost(suffix: string, octet: number, i: number): Host {
  const h: Host = { ns: `shoal-mh-${suffix}-${i}`, rootIf: `shm${suffix}${i}r`, nsIf: `shm${suffix}${i}n`, rootIp: `10.213.${octet}.${4 * i + 1}`, nsIp: `10.213.${octet}.${4 * i + 2}` };
  ip('netns', 'add', h.ns);
  made.namespaces.push(h.ns);
  ip('link', 'add', h.rootIf, 'type', 'veth', 'peer', 'name', h.nsIf);
  made.links.push(h.rootIf);
  ip('link', 'set', h.nsIf, 'netns', h.ns);
  ip('addr', 'add', `${h.rootIp}/30`, 'dev', h.rootIf);
  ip('link', 'set', h.rootIf, 'up');
  const inNs = (...args: string[]): string => ip('netns', 'exec', h.ns, 'ip', ...args);
  inNs('link', 'set', 'lo', 'up');
  inNs('addr', 'add', `${h.nsIp}/30`, 'dev', h.nsIf);
  inNs('link', 'set', h.nsIf, 'up');
  inNs('route', 'add', 'default', 'via', h.rootIp);
  return h;
}

/** A third octet no address of this machine uses yet. */
function freeOctet(): number {
  const used = ip('-4', '-o', 'addr', 'show');
  for (;;) {
    const o = 1 + Math.floor(Math.random() * 254);
    if (!used.includes(`10.213.${o}.`)) return o;
  }
}

afterAll(async () => {
  for (const c of made.children) if (c.exitCode === null && c.signalCode === null) { c.kill('SIGCONT'); c.kill('SIGKILL'); }
  await waitFor('every process this test started to exit', () => made.children.every((c) => c.pid === undefined || !isAlive(c.pid) || c.exitCode !== null || c.signalCode !== null), 10_000).catch(() => undefined);
  for (const link of made.links) { try { ip('link', 'del', link); } catch { /* went with its namespace */ } }
  for (const ns of made.namespaces) { try { ip('netns', 'del', ns); } catch (err) { process.stderr.write(`multihost: could not delete netns ${ns}: ${String(err)}\n`); } }
  if (made.ipForward !== undefined) writeFileSync(IP_FORWARD, made.ipForward);
});

describe.skipIf(reason !== undefined && !REQUIRE_NETNS)('multi-host: workers in their own network namespaces', () => {
  it('a worker cut off past the timeout is replaced without late or failed requests, then rejoins without duplicates', async () => {
    if (reason !== undefined) throw new Error(`SHOAL_REQUIRE_NETNS=1 but this machine cannot run it: ${reason}`);
    const suffix = randomBytes(2).toString('hex');
    const octet = freeOctet();
    const hosts = [makeHost(suffix, octet, 0), makeHost(suffix, octet, 1)];
    made.ipForward = readFileSync(IP_FORWARD, 'utf8').trim();
    writeFileSync(IP_FORWARD, '1');

    const token = randomBytes(16).toString('hex');
    const env: NodeJS.ProcessEnv = { ...process.env, SHOAL_TOKEN: token, SHOAL_WORKER_TIMEOUT_MS: String(WORKER_TIMEOUT_MS), SHOAL_HEARTBEAT_MS: String(HEARTBEAT_MS), SHOAL_LOG_LEVEL: 'warn' };
    delete env.SHOAL_ADDRESS;
    // The cluster endpoint on every address, so that each worker reaches it on its own veth (10.213.O.1 or .5)
    // whichever link is cut; the public HTTP port on loopback only.
    const port = await freePort('0.0.0.0');
    const httpPort = await freePort('127.0.0.1');
    const head = startProcess('head', process.execPath, [BIN, 'start', '--workers', '0', '--host', '0.0.0.0', '--port', String(port), '--http-host', '127.0.0.1', '--http-port', String(httpPort)], env);
    const control = `http://127.0.0.1:${port}`;
    const status = async (): Promise<Status | undefined> => {
      try {
        const res = await fetch(`${control}/api/status`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(2000) });
        return res.ok ? await res.json() as Status : undefined;
      } catch { return undefined; }
    };
    await waitOrExplain('the head to answer /api/status', async () => {
      if (head.exitCode !== null) throw new Error(`the head exited ${head.exitCode}`);
      return await status() !== undefined;
    }, 30_000);

    // --cpus 4: each worker must be able to hold all three replicas of hello (1 CPU each) on its own.
    const workers = hosts.map((h, i) => startProcess(`worker ${i} (${h.ns})`, 'ip', ['netns', 'exec', h.ns, process.execPath, BIN, 'worker', '--address', `ws://${h.rootIp}:${port}`,
      '--host', h.nsIp, '--http-port', '18081', '--http-host', h.nsIp, '--cpus', '4'], env));
    const pids = workers.map((w) => w.pid!);
    await waitOrExplain('both workers to join', async () => (await status())?.workers.filter((w) => w.state === 'ALIVE').length === 2, 30_000);

    const deployed = startProcess('deploy', process.execPath, [BIN, 'deploy', HELLO, '--address', `ws://127.0.0.1:${port}`], env);
    const deployCode = await new Promise<number | null>((r) => deployed.once('exit', r));
    expect(deployCode, `shoal deploy failed:\n${logTails()}`).toBe(0);
    const full = (s: Status): boolean => s.applications.every((a) => a.deployments.every((d) => d.running === d.numReplicas));
    await waitOrExplain('hello at its full replica count', async () => { const s = await status(); return s !== undefined && s.applications.length === 1 && full(s); }, 30_000);
    const before = (await status())!;
    expect(before.applications[0]!.deployments.map((d) => [d.name, d.numReplicas])).toEqual([['Api', 1], ['SentimentModel', 2]]);

    // Cut the worker that hosts the most replicas (the second on a tie), so that most of the app must move.
    const hostedBy = (s: Status, workerId: string): number => s.replicas.filter((r) => r.workerId === workerId && r.state === 'RUNNING').length;
    const ids = pids.map((pid) => before.workers.find((w) => w.pid === pid)!.workerId);
    const victim = hostedBy(before, ids[0]!) > hostedBy(before, ids[1]!) ? 0 : 1;
    const [victimId, otherId] = [ids[victim]!, ids[1 - victim]!];
    const victimPid = pids[victim]!;
    const victimLink = hosts[victim]!.rootIf;
    const victimReplicas = before.replicas.filter((r) => r.workerId === victimId).map((r) => r.replicaId);

    // Load through the head's own ingress: 8 loops, each request with a 3 s deadline; the client waits up to 5 s.
    const url = `http://127.0.0.1:${httpPort}/?text=what+a+great+and+happy+day`;
    const lat: number[] = [];
    const failures: Record<string, number> = {};
    let stopLoad = false;
    const loops = Array.from({ length: 8 }, async () => {
      while (!stopLoad) {
        const t0 = performance.now();
        let kind: string | undefined;
        try {
          const res = await fetch(url, { headers: { 'x-shoal-timeout-ms': String(DEADLINE_MS) }, signal: AbortSignal.timeout(DEADLINE_MS + 2000) });
          const body = await res.text();
          if (!res.ok) kind = `HTTP ${res.status} ${(/"code":"(\w+)"/.exec(body)?.[1]) ?? ''}`.trim();
        } catch (err) {
          kind = (err as Error).name === 'TimeoutError' ? 'client timeout' : `${(err as Error).message} ${((err as Error).cause as { code?: string } | undefined)?.code ?? ''}`.trim();
        }
        lat.push(performance.now() - t0);
        if (kind !== undefined) failures[kind] = (failures[kind] ?? 0) + 1;
      }
    });

    const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
    let replacedMs: number | undefined;
    let rejoinedMs: number | undefined;
    let settled: Status | undefined;
    let stats: WorkerStats[] | undefined;
    let statsError: string | undefined;
    try {
      await sleep(1000);
      const cutAt = Date.now();
      ip('link', 'set', victimLink, 'down');
      const placedElsewhere = (s: Status): boolean => s.applications.every((a) => a.deployments.every((d) =>
        s.replicas.filter((r) => r.app === a.name && r.deployment === d.name && r.state === 'RUNNING' && r.workerId === otherId).length === d.numReplicas));
      while (Date.now() - cutAt < CUT_MS) {
        const s = await status();
        if (replacedMs === undefined && s !== undefined && placedElsewhere(s)) replacedMs = Date.now() - cutAt;
        await sleep(100);
      }
      ip('link', 'set', victimLink, 'up');
      const upAt = Date.now();
      while (Date.now() - upAt < REJOIN_MS) {
        const s = await status();
        if (s?.workers.some((w) => w.pid === victimPid && w.state === 'ALIVE')) { rejoinedMs = Date.now() - upAt; break; }
        await sleep(100);
      }
      // Let reconcile act on the returned worker (stop what it still hosts, or adopt it and stop the extras).
      await sleep(2000);
      settled = await status();
      try {
        const res = await fetch(`${control}/api/stats`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(5000) });
        if (res.ok) stats = (await res.json() as { workers: WorkerStats[] }).workers; else statsError = `HTTP ${res.status}: ${await res.text()}`;
      } catch (err) {
        statsError = (err as Error).name === 'TimeoutError' ? 'GET /api/stats did not answer within 5 s' : (err as Error).message;
      }
    } finally {
      stopLoad = true;
      await Promise.all(loops);
    }

    const late = lat.filter((ms) => ms > DEADLINE_MS + SLACK_MS).length;
    const failed = Object.values(failures).reduce((s, n) => s + n, 0);
    const counts = (settled?.applications ?? []).flatMap((a) => a.deployments.map((d) => {
      const inStatus = settled!.replicas.filter((r) => r.app === a.name && r.deployment === d.name && r.state === 'RUNNING').length;
      const hosted = stats?.flatMap((w) => w.replicas).filter((r) => r.app === a.name && r.deployment === d.name && (r.state === 'RUNNING' || r.state === 'STARTING')).length;
      return { deployment: d.name, numReplicas: d.numReplicas, inStatus, hosted: hosted ?? null };
    }));
    const summary = {
      requests: lat.length, failed, failures, late, maxMs: Math.round(Math.max(0, ...lat)), replacedMs: replacedMs ?? null, rejoinedMs: rejoinedMs ?? null,
      victim: { workerId: victimId, pid: victimPid, replicas: victimReplicas }, counts, statsError: statsError ?? null,
      workersAfter: settled?.workers.map((w) => `${w.workerId} pid ${w.pid} ${w.state}`) ?? null,
    };
    process.stdout.write(`multihost: ${JSON.stringify(summary)}\n`);

    expect.soft(replacedMs, `the replicas of ${victimId} were not all placed on ${otherId} within the ${CUT_MS} ms cut`).toBeDefined();
    expect.soft(late, `requests that waited past their ${DEADLINE_MS} ms deadline + ${SLACK_MS} ms`).toBe(0);
    expect.soft(failures, 'failed GET requests (shoal retries them as idempotent)').toEqual({});
    expect.soft(rejoinedMs, `worker pid ${victimPid} was not ALIVE again within ${REJOIN_MS} ms of its link coming back`).toBeDefined();
    expect.soft(statsError, 'GET /api/stats after the rejoin').toBeUndefined();
    for (const c of counts) {
      expect.soft(c.inStatus, `${c.deployment}: RUNNING replicas in /api/status`).toBe(c.numReplicas);
      expect.soft(c.hosted, `${c.deployment}: replicas the workers host (GET /api/stats)`).toBe(c.numReplicas);
    }
    expect(counts.length, 'deployments in the status after the rejoin').toBe(2);
  }, 120_000);
});
