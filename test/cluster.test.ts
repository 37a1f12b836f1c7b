/**
 * Integration: a real head in this process, real worker processes on 127.0.0.1 port 0, applications deployed from
 * a TypeScript module, called over HTTP and through handles.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { PeerGoneError, ShoalError, type AppSpec } from '@shoal/core';
import type { Head } from '@shoal/head';
import { localWorkerCommand } from '../packages/cli/src/main.ts';
import { deployFixture, handleFor, startCluster, waitFor } from './helpers.ts';
import type { Counter } from './fixtures/apps.ts';

let head: Head;
let spec: AppSpec;
const url = (p: string): string => `${head.httpAddress}${p}`;

beforeAll(async () => {
  // Small frames, so that the oversized-frame test needs only a few MiB.
  process.env.SHOAL_MAX_FRAME_BYTES = String(1024 * 1024);
  head = await startCluster({ maxFrameBytes: 1024 * 1024 });
  spec = await deployFixture(head);
});
afterAll(async () => {
  delete process.env.SHOAL_MAX_FRAME_BYTES;
  await head?.stop();
});

describe('a real cluster', () => {
  it('serves HTTP through the ingress deployment and a downstream handle', async () => {
    const res = await fetch(url('/incr?by=2'));
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/application\/json/);
    const body = await res.json() as { n: number; pid: number };
    expect(body.n).toBeGreaterThanOrEqual(2);
    expect(head.localWorkerPids()).toContain(body.pid);
  });

  it('passes method, path, query, headers and body to the ingress', async () => {
    const res = await fetch(url('/echo?a=1&b=two'), { method: 'PUT', body: 'payload', headers: { 'x-test': 'yes' } });
    expect(await res.json()).toEqual({ method: 'PUT', path: '/echo', query: { a: '1', b: 'two' }, body: 'payload', header: 'yes' });
  });

  it('spreads handle calls over the replicas of a deployment', async () => {
    const counter = handleFor<Counter>(head, spec, 'Counter');
    const pids = new Set<number>();
    for (let i = 0; i < 40; i++) pids.add((await counter.incr(1)).pid);
    expect(pids.size).toBe(2);
    // Concurrent calls land on both replicas, and each replica counts each of its calls exactly once: per process
    // the counts answered are consecutive, none lost or doubled.
    const results = await Promise.all(Array.from({ length: 200 }, () => counter.incr(1)));
    const byPid = new Map<number, number[]>();
    for (const { n, pid } of results) byPid.set(pid, [...(byPid.get(pid) ?? []), n]);
    expect(new Set(byPid.keys())).toEqual(pids);
    for (const ns of byPid.values()) {
      ns.sort((a, b) => a - b);
      expect(ns).toEqual(ns.map((_, i) => ns[0]! + i));
    }
  });

  it('carries typed arrays as binary through the graph', async () => {
    const counter = handleFor<Counter>(head, spec, 'Counter');
    expect(await counter.sum(new Float32Array([1.5, 2.5, 3]))).toBe(7);
    const blob = await counter.blob(1000);
    expect(blob).toBeInstanceOf(Uint8Array);
    expect(blob.byteLength).toBe(1000);
    const res = await fetch(url('/sum'), { method: 'POST', body: JSON.stringify([1, 2, 3.5]) });
    expect(await res.json()).toEqual({ sum: 6.5 });
  });

  it('returns a user exception as HTTP 500 with the message, from the ingress or downstream', async () => {
    const down = await fetch(url('/fail?msg=kaput'));
    expect(down.status).toBe(500);
    expect(await down.json()).toMatchObject({ error: 'kaput', code: 'ERR_USER_CODE' });
    const here = await fetch(url('/fail-here?msg=oops'));
    expect(here.status).toBe(500);
    expect(await here.json()).toMatchObject({ error: 'front failed: oops', code: 'ERR_USER_CODE' });
    // the workers survived
    expect((await fetch(url('/incr'))).status).toBe(200);
  });

  it('gives a typed error to a handle caller when user code throws', async () => {
    const counter = handleFor<Counter>(head, spec, 'Counter');
    const err = await counter.fail('handle-side').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ShoalError);
    expect((err as ShoalError).message).toBe('handle-side');
    expect((err as ShoalError).code).toBe('ERR_USER_CODE');
  });

  it('refuses an oversized frame with a clear error and keeps serving', async () => {
    // The ingress runs in each worker: an answer made where it was received crosses no frame and arrives whole;
    // one that crosses a worker connection is refused with the frame bound named.
    for (let i = 0; i < 6; i++) {
      const res = await fetch(url('/blob-raw?bytes=3000000'), { headers: { connection: 'close' } });
      if (res.status === 200) expect((await res.arrayBuffer()).byteLength).toBe(3_000_000);
      else expect([res.status, (await res.json() as { error: string }).error]).toEqual([413, expect.stringMatching(/exceeds maxFrameBytes=1048576/)]);
    }
    const counter = handleFor<Counter>(head, spec, 'Counter');
    const err = await counter.sum(new Float32Array(400_000)).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/exceeds maxFrameBytes/);
    expect((await fetch(url('/incr'))).status).toBe(200);
  });

  it('serves liveness and readiness', async () => {
    expect((await fetch(url('/-/healthz'))).status).toBe(200);
    expect((await fetch(url('/-/ready'))).status).toBe(200);
  });

  it('refuses control calls without the right token, and a worker with a wrong token', async () => {
    const control = head.clusterAddress.replace('ws://', 'http://');
    const missing = await fetch(`${control}/api/status`);
    expect(missing.status).toBe(401);
    expect((await missing.json() as { error: string }).error).toMatch(/missing cluster token/);
    const wrong = await fetch(`${control}/api/apps`, { method: 'POST', headers: { authorization: 'Bearer nope' }, body: '{}' });
    expect(wrong.status).toBe(401);
    expect((await wrong.json() as { error: string }).error).toMatch(/wrong cluster token/);
    const ok = await fetch(`${control}/api/status`, { headers: { authorization: `Bearer ${head.token}` } });
    expect(ok.status).toBe(200);

    const { command, args } = localWorkerCommand();
    const before = head.controller.aliveWorkers().length;
    const child = spawn(command, [...args, '--address', head.clusterAddress, '--token', 'not-the-token'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    expect(code).not.toBe(0);
    expect(stderr).toMatch(/token/i);
    expect(head.controller.aliveWorkers().length).toBe(before);
  });

  it('re-places the replicas of a SIGKILLed worker and serves again', async () => {
    const counter = handleFor<Counter>(head, spec, 'Counter');
    const victim = (await counter.incr(1)).pid;
    const victimWorker = head.controller.status().workers.find((w) => w.pid === victim)!;
    const original = new Set(head.controller.status().workers.map((w) => w.workerId));
    process.kill(victim, 'SIGKILL');
    await waitFor('the dead worker to be declared dead', () => head.controller.status().workers.find((w) => w.workerId === victimWorker.workerId)?.state !== 'ALIVE', 10_000);
    // Calls in the gap either succeed on the surviving replica or fail with a typed error; none hangs, and the
    // survivor, which is running, answers some of them.
    const gap = await Promise.allSettled(Array.from({ length: 20 }, () => counter.incr(1)));
    const answered = gap.filter((r) => r.status === 'fulfilled').map((r) => r.value.pid);
    expect(answered.length).toBeGreaterThan(0);
    expect(answered.filter((p) => p === victim)).toEqual([]);
    for (const r of gap) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(ShoalError);
    await waitFor('Counter back to two running replicas', () => {
      const reps = head.controller.status().replicas.filter((r) => r.deployment === 'Counter' && r.state === 'RUNNING');
      return reps.length === 2 && reps.every((r) => r.workerId !== victimWorker.workerId);
    }, 20_000);
    await waitFor('HTTP to answer again', async () => (await fetch(url('/incr'))).status === 200, 10_000);
    // The calls now reach both of the new placement's replicas: the pids of the workers the head lists for them.
    const pids = new Set<number>();
    for (let i = 0; i < 40; i++) pids.add((await counter.incr(1)).pid);
    const st = head.controller.status();
    const hosting = new Set(st.replicas.filter((r) => r.deployment === 'Counter' && r.state === 'RUNNING').map((r) => st.workers.find((w) => w.workerId === r.workerId)?.pid));
    expect(pids).toEqual(hosting);
    expect(pids.has(victim)).toBe(false);
    // The head started a replacement process, and it got the shared HTTP socket: it answers on the public port too.
    await waitFor('a replacement local worker to join', () => head.controller.aliveWorkers().length === 2, 20_000);
    const fresh = head.controller.aliveWorkers().find((w) => !original.has(w.workerId))?.workerId;
    expect(fresh).toBeDefined();
    const served = async (): Promise<number> => (await head.stats()).workers.find((w) => w.workerId === fresh)?.traffic?.ingressRequests ?? 0;
    await waitFor('the replacement to answer HTTP on the shared port', async () => {
      // New connections each time, so the kernel can hand some to the replacement.
      for (let i = 0; i < 20; i++) expect((await fetch(url('/incr'), { headers: { connection: 'close' } })).status).toBe(200);
      return (await served()) > 0;
    }, 20_000);
  });

  it('rejects pending calls with PeerGoneError when a worker dies mid-call', async () => {
    const counter = handleFor<Counter>(head, spec, 'Counter');
    await waitFor('two Counter replicas', () => head.controller.status().replicas.filter((r) => r.deployment === 'Counter' && r.state === 'RUNNING').length === 2);
    const calls = Array.from({ length: 6 }, () => counter.sleep(5000));
    await new Promise((r) => setTimeout(r, 300));
    const pid = head.controller.status().workers.find((w) => w.state === 'ALIVE' && w.replicas > 0 && head.controller.status().replicas.some((r) => r.workerId === w.workerId && r.deployment === 'Counter'))!.pid!;
    process.kill(pid, 'SIGKILL');
    const settled = await Promise.allSettled(calls);
    const rejected = settled.filter((s): s is PromiseRejectedResult => s.status === 'rejected');
    expect(rejected.length).toBeGreaterThan(0);
    for (const r of rejected) expect(r.reason).toBeInstanceOf(PeerGoneError);
  });
});
