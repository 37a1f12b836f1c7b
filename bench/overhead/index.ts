/**
 * bench/overhead: what shoal's data path costs. In one run, side by side: a bare Node http no-op server, the same
 * no-op served through shoal (HTTP ingress -> worker replica -> back), and the two-deployment hello graph of
 * examples/hello (an ingress deployment calling a second deployment through a handle), under wrk with 64 connections
 * and with 1; plus a handle-call round trip from the head process to a replica. And the cost of tracing: the same
 * no-op on a cluster whose worker records the spans (ingress, queue, compute) of every new trace (sample
 * ratio 1) and exports them over OTLP/HTTP to a receiver in its own process (otlp-sink.mjs), which counts them.
 * Traced and untraced requests go to that same cluster, in turn: untraced ones carry a traceparent whose sampled
 * flag is off, so nothing is recorded for them. (Two clusters of this one machine differ by up to 20% in req/s
 * with the same code, more than the cost measured, so the comparison must be within one cluster.)
 *
 *   pnpm bench overhead [--seconds 5] [--rounds 3] [--out FILE (instead of bench/results/overhead.json)]
 */
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { createInterface } from 'node:readline';
import { readFileSync } from 'node:fs';
import { silentLogger } from '@shoal/core';
import { Head } from '@shoal/head';
import { createHandle } from '@shoal/router';
import { loadAppSpec, localWorkerCommand } from '@shoal/cli';
import { hasWrk, machine, median, percentile, printGoals, printTable, round, wrk, writeResult, type Goal, type Row, type WrkResult } from '../lib.ts';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '5' }, rounds: { type: 'string', default: '3' }, out: { type: 'string' } } });
const seconds = Number(values.seconds);
const rounds = Number(values.rounds);
if (!hasWrk()) {
  process.stderr.write('bench/overhead needs wrk (Debian: apt-get install -y wrk)\n');
  process.exit(1);
}

const bare = spawn(process.execPath, [resolve(import.meta.dirname, 'bare-server.mjs')], { stdio: ['ignore', 'pipe', 'inherit'] });
const barePort = await new Promise<string>((r) => createInterface({ input: bare.stdout! }).once('line', r));
const bareUrl = `http://127.0.0.1:${barePort}/`;

interface SinkTotals { exports: number; spans: number; bytes: number }
/** An OTLP receiver in its own process, as a collector would be; totals() asks it what it got so far. */
async function startSink(): Promise<{ port: string; totals(): Promise<SinkTotals>; kill(): void }> {
  const child = spawn(process.execPath, [resolve(import.meta.dirname, 'otlp-sink.mjs')], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! });
  const port = await new Promise<string>((r) => lines.once('line', r));
  return {
    port,
    async totals() {
      const line = new Promise<string>((r) => lines.once('line', r));
      child.kill('SIGUSR2');
      return JSON.parse(await line) as SinkTotals;
    },
    kill: () => { child.kill('SIGTERM'); },
  };
}
const sink = await startSink();
/** CPU seconds a process has used, all its threads (utime + stime of /proc/PID/stat). */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // clock ticks: 100 per second on Linux
}

/** A traceparent whose sampled flag is off: the traced cluster records nothing for the request. */
const UNSAMPLED = { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00' };

// One worker holds the no-op and hello's three replicas (each asks for 1 logical CPU by default).
const head = new Head({ port: 0, httpPort: 0, workers: 1, workerCommand: localWorkerCommand(), workerCpus: 4, logger: silentLogger });
// The traced clusters: each local worker inherits the OTLP endpoint and ratio from the environment it is spawned with.
const traced = new Head({ port: 0, httpPort: 0, workers: 1, workerCommand: localWorkerCommand(), workerCpus: 4, logger: silentLogger });
try {
  await head.start();
  await head.waitForWorkers(1);
  process.env.SHOAL_OTLP_ENDPOINT = `http://127.0.0.1:${sink.port}/v1/traces`;
  process.env.SHOAL_TRACE_SAMPLE_RATIO = '1';
  await traced.start();
  await traced.waitForWorkers(1);
  delete process.env.SHOAL_OTLP_ENDPOINT;
  delete process.env.SHOAL_TRACE_SAMPLE_RATIO;
  const spec = await loadAppSpec(resolve(import.meta.dirname, 'app.ts'), {});
  await head.deploy(spec);
  await head.waitReady(spec.name);
  const shoalUrl = `${head.httpAddress}/`;
  const check = await (await fetch(shoalUrl)).json() as { ok?: boolean };
  if (check.ok !== true) throw new Error(`the no-op app answered ${JSON.stringify(check)}`);
  await traced.deploy(spec);
  await traced.waitReady(spec.name);
  const tracedUrl = `${traced.httpAddress}/`;
  const tracedCheck = await fetch(tracedUrl);
  if (tracedCheck.headers.get('x-request-id') === null || (await tracedCheck.json() as { ok?: boolean }).ok !== true) throw new Error('the traced no-op app did not answer with a request id');
  const hello = await loadAppSpec(resolve(import.meta.dirname, '../../examples/hello/app.ts'), { name: 'hello', routePrefix: '/hello' });
  await head.deploy(hello);
  await head.waitReady(hello.name);
  const helloUrl = `${head.httpAddress}/hello?text=what+a+great+and+happy+day`;
  const helloCheck = await (await fetch(helloUrl)).json() as { label?: string };
  if (helloCheck.label !== 'positive') throw new Error(`the hello graph answered ${JSON.stringify(helloCheck)}`);

  process.stdout.write(`bench/overhead on ${machine()}: ${rounds} rounds x ${seconds}s per setting, wrk 1 thread\n`);
  // warm both paths (JIT, connection setup)
  await wrk(bareUrl, { connections: 64, seconds: 3 });
  await wrk(shoalUrl, { connections: 64, seconds: 3 });
  await wrk(helloUrl, { connections: 64, seconds: 3 });
  await wrk(tracedUrl, { connections: 64, seconds: 3, headers: UNSAMPLED });
  await wrk(tracedUrl, { connections: 64, seconds: 3 });
  // Let the warm-up's spans go out, so the counts below are the measured runs'.
  await new Promise((r) => setTimeout(r, 2500));
  const sinkBefore = await sink.totals();
  if (sinkBefore.spans === 0) throw new Error('the traced cluster exported no spans during its warm-up');

  const targets: Record<string, { url: string; headers?: Record<string, string> }> = {
    bare: { url: bareUrl }, shoal: { url: shoalUrl }, untraced: { url: tracedUrl, headers: UNSAMPLED }, traced: { url: tracedUrl }, hello: { url: helloUrl },
  };
  const runs: Record<string, WrkResult[]> = {};
  let untracedSpans = 0;
  // The traced cluster's worker (its event loop and its export thread): CPU per request, traced and not.
  const tracedPid = traced.controller.status().workers[0]?.pid;
  if (tracedPid === undefined) throw new Error('the traced cluster\'s worker has no pid in the status');
  const cpu: Record<string, { seconds: number; requests: number }> = { traced: { seconds: 0, requests: 0 }, untraced: { seconds: 0, requests: 0 } };
  for (let r = 0; r < rounds; r++) {
    for (const connections of [64, 1]) {
      // Traced and untraced swap places every round, so neither always runs first.
      const order = r % 2 === 0 ? ['bare', 'shoal', 'untraced', 'traced', 'hello'] : ['bare', 'shoal', 'traced', 'untraced', 'hello'];
      for (const target of order) {
        const t = targets[target]!;
        const before = target === 'untraced' ? (await sink.totals()).spans : 0;
        const cpu0 = cpuSeconds(tracedPid);
        const result = await wrk(t.url, { connections, seconds, ...(t.headers === undefined ? {} : { headers: t.headers }) });
        (runs[`${target} c${connections}`] ??= []).push(result);
        if ((target === 'traced' || target === 'untraced') && connections === 64) {
          // The traced run's export work finishes after wrk does: count the pause after it too (below).
          if (target === 'traced') await new Promise((r) => setTimeout(r, 2500));
          cpu[target]!.seconds += cpuSeconds(tracedPid) - cpu0;
          cpu[target]!.requests += result.requests;
        }
        // Spans of the traced run before it may still be on their way; what the untraced run adds beyond those is checked below.
        if (target === 'untraced') untracedSpans += (await sink.totals()).spans - before;
        // What a traced run recorded goes out within about a second: let it, before the next run is measured.
        if (target === 'traced' && connections !== 64) await new Promise((r) => setTimeout(r, 2500));
      }
    }
  }
  // The batch processor exports every second: give it two to send what the last run left.
  await new Promise((r) => setTimeout(r, 2500));
  const sinkAfter = await sink.totals();
  const requestsOf = (target: string): number => Object.entries(runs).filter(([k]) => k.startsWith(`${target} `)).reduce((sum, [, xs]) => sum + xs.reduce((a, x) => a + x.requests, 0), 0);
  const spansPerRequest = (sinkAfter.spans - sinkBefore.spans) / requestsOf('traced');
  const summary = (k: string): WrkResult => {
    const xs = runs[k]!;
    return { rps: median(xs.map((x) => x.rps)), p50us: median(xs.map((x) => x.p50us)), p99us: median(xs.map((x) => x.p99us)), errors: xs.reduce((s, x) => s + x.errors, 0), requests: xs.reduce((s, x) => s + x.requests, 0) };
  };

  // Handle round trip: head process -> worker replica -> back, sequential, then 64 in flight.
  const handle = createHandle<{ ping(x: number): Promise<number> }>({ router: head.router, key: `${spec.name}/Noop`, methods: spec.deployments[0]!.methods });
  for (let i = 0; i < 2000; i++) await handle.ping(i);
  const lat: number[] = [];
  const n = 20_000;
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await handle.ping(i);
    lat.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  lat.sort((a, b) => a - b);
  const t0 = performance.now();
  let done = 0;
  const total = 100_000;
  await Promise.all(Array.from({ length: 64 }, async () => { while (done < total) { done++; await handle.ping(done); } }));
  const handleRps = total / ((performance.now() - t0) / 1000);

  const rows: Row[] = [];
  for (const k of Object.keys(runs)) {
    const s = summary(k);
    const [target, conns] = k.split(' ');
    const path = target === 'bare' ? 'bare node http' : target === 'shoal' ? 'shoal http->worker (no-op)' : target === 'traced' ? 'shoal no-op, tracing on (every request traced, OTLP/HTTP)' : target === 'untraced' ? 'shoal no-op, same cluster, requests not sampled' : 'shoal hello graph (ingress -> handle -> model)';
    rows.push({ path, connections: Number(conns!.slice(1)), 'req/s': round(s.rps, 0), p50_us: round(s.p50us), p99_us: round(s.p99us), errors: s.errors });
  }
  rows.push({ path: 'shoal handle call (seq)', connections: 1, 'req/s': round(n / (lat.reduce((a, b) => a + b, 0) / 1e6), 0), p50_us: round(percentile(lat, 50)), p99_us: round(percentile(lat, 99)), errors: 0 });
  rows.push({ path: 'shoal handle call (64 in flight)', connections: 64, 'req/s': round(handleRps, 0), p50_us: null, p99_us: null, errors: 0 });
  printTable(rows);

  const ratio = summary('shoal c64').rps / summary('bare c64').rps;
  const added = summary('shoal c1').p50us - summary('bare c1').p50us;
  const helloRatio = summary('hello c64').rps / summary('bare c64').rps;
  const helloAdded = summary('hello c1').p50us - summary('bare c1').p50us;
  process.stdout.write(`\nno-op through shoal / bare at 64 connections: ${ratio.toFixed(2)}x; added p50 at concurrency 1: ${added.toFixed(0)} us\n`);
  process.stdout.write(`hello graph / bare at 64 connections: ${helloRatio.toFixed(2)}x; added p50 at concurrency 1: ${helloAdded.toFixed(0)} us (no goal)\n`);
  const tracingRatio = summary('traced c64').rps / summary('untraced c64').rps;
  // Per round (the two ran seconds apart): how much of the difference is this host's noise.
  const perRound = (a: string, b: string): number[] => runs[a]!.map((x, i) => x.rps / runs[b]![i]!.rps);
  const tracedRounds = perRound('traced c64', 'untraced c64');
  const spread = (xs: number[]): string => `per round ${xs.map((x) => x.toFixed(2)).join(' ')}`;
  const tracingRatio1 = summary('traced c1').rps / summary('untraced c1').rps;
  const tracingAdded = summary('traced c1').p50us - summary('untraced c1').p50us;
  const cpuUs = (k: string): number => (cpu[k]!.seconds / cpu[k]!.requests) * 1e6;
  const cpuRatio = cpuUs('traced') / cpuUs('untraced');
  process.stdout.write(`tracing on / off (no-op): ${tracingRatio.toFixed(3)}x at 64 connections (${spread(tracedRounds)}), ${tracingRatio1.toFixed(3)}x at 1 (p50 +${tracingAdded.toFixed(0)} us); ${spansPerRequest.toFixed(2)} spans exported per traced request, ${untracedSpans} while untraced requests ran; worker CPU per request ${cpuUs('untraced').toFixed(1)} us untraced, ${cpuUs('traced').toFixed(1)} us traced (+${((cpuRatio - 1) * 100).toFixed(1)}%) (${sinkAfter.exports - sinkBefore.exports} exports, ${((sinkAfter.bytes - sinkBefore.bytes) / 1e6).toFixed(1)} MB)\n`);
  const goals: Goal[] = [
    { goal: 'no-op through shoal req/s / bare node req/s (wrk, 64 connections)', value: round(ratio, 2), target: '>= 0.75', unit: 'x', met: ratio >= 0.75 },
    { goal: 'no-op through shoal: added p50 latency at concurrency 1', value: round(added, 0), target: '< 50', unit: 'us', met: added < 50 },
    { goal: 'tracing on costs under 10% of no-op throughput: traced req/s / untraced req/s (wrk, 64 connections)', value: round(tracingRatio, 3), target: '> 0.90', unit: 'x', met: tracingRatio > 0.9 },
    { goal: 'every traced request exports its ingress, queue and compute spans (spans per request; none dropped)', value: round(spansPerRequest, 2), target: '>= 3', unit: 'spans', met: spansPerRequest >= 3 },
  ];
  printGoals(goals);
  const file = writeResult('overhead', rows, goals, { settings: { seconds, rounds, wrkThreads: 1, workers: 1, rawRuns: runs }, tracing: { tracedPerRound64: tracedRounds.map((x) => round(x, 3)), untracedRunSpans: untracedSpans, workerCpuUsPerRequest: { untraced: round(cpuUs('untraced'), 1), traced: round(cpuUs('traced'), 1), ratio: round(cpuRatio, 3) }, vsUntraced64: round(tracingRatio, 3), vsUntraced1: round(tracingRatio1, 3), addedP50usAt1: round(tracingAdded, 0), spansPerRequest: round(spansPerRequest, 2), exports: sinkAfter.exports - sinkBefore.exports, bytes: sinkAfter.bytes - sinkBefore.bytes }, hello: { vsBare: round(helloRatio, 2), addedP50us: round(helloAdded, 0) } }, values.out === undefined ? undefined : resolve(values.out));
  process.stdout.write(`wrote ${file}\n`);
} finally {
  await head.stop();
  await traced.stop();
  bare.kill('SIGTERM');
  sink.kill();
}
