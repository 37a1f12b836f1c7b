/**
 * Broker ingress from a Redis stream, with real processes: a cluster of two workers consumes a stream (a consumer
 * group, each worker one consumer), one worker is SIGKILLed while it holds messages, and every message is answered
 * exactly once in the output stream: as many entries as messages, one per idempotency key, none dead-lettered.
 * Then another worker is SIGTERMed mid-stream: it finishes the messages it holds before it exits.
 *
 * Starts its own redis-server on a free port (stopped by its pid). Without redis-server it is skipped with a
 * logged reason, unless SHOAL_REQUIRE_REDIS=1 (CI sets it).
 */
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileConsume, env, type AppSpec, type DeploymentSpec } from '@shoal/core';
import type { Head } from '@shoal/head';
import { deploymentVersion } from '../packages/head/src/controller.ts';
import { Redis, available, startRedisServer, type TestServer } from '../packages/broker/test/servers.ts';
import { deployFixture, isAlive, samples, startCluster, waitFor } from './helpers.ts';

const APP = resolve(import.meta.dirname, 'fixtures/broker-app.ts');
const MESSAGES = 400;
const REQUIRE = env.requireRedis();
const missing = !available('redis-server');
// Local workers inherit this process's environment: their info lines are not what this test reads.
process.env.SHOAL_LOG_LEVEL ??= 'warn';
if (missing && !REQUIRE) process.stderr.write('broker-redis.test.ts: skipped: no redis-server on PATH (Debian: apt-get install redis-server; SHOAL_REQUIRE_REDIS=1 makes this a failure)\n');

/** Field maps of XINFO-style flat arrays. */
function fields(flat: unknown[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[String(flat[i])] = flat[i + 1];
  return out;
}

describe.skipIf(missing && !REQUIRE)('broker ingress: Redis stream', () => {
  let server: TestServer;
  let redis: Redis;
  let head: Head | undefined;
  const workerPids = new Set<number>();

  beforeAll(async () => {
    if (missing) throw new Error('SHOAL_REQUIRE_REDIS=1 but redis-server is not on PATH (Debian: apt-get install redis-server)');
    server = await startRedisServer();
    redis = new Redis(server.url);
    // Local workers inherit it: the fixture's deployment reads its broker's address from there.
    process.env.SHOAL_TEST_BROKER_REDIS = server.url;
  });
  afterAll(async () => {
    await head?.stop();
    // Workers the head started and did not stop (it was told to stop them; one may be mid-replacement).
    for (const pid of workerPids) if (isAlive(pid)) process.kill(pid, 'SIGKILL');
    await redis?.quit();
    await server?.stop();
  });

  it('answers every message exactly once although a worker holding messages is SIGKILLed mid-stream, and another SIGTERMed', async () => {
    const h = await startCluster({ workers: 2 });
    head = h;
    const pids = (): number[] => h.controller.status().workers.filter((w) => w.state === 'ALIVE' && w.pid !== undefined).map((w) => w.pid!);
    for (const p of pids()) workerPids.add(p);
    await deployFixture(h, { module: APP, exportName: 'redisApp', name: 'brokerredis' });
    const group = 'shoal:redis_scorer';
    const consumers = async (): Promise<Array<Record<string, unknown>>> => {
      try { return (await redis.xinfo('CONSUMERS', 'jobs', group) as unknown[][]).map(fields); } catch { return []; }
    };
    // Both workers are consumers of the group (each made its first XREADGROUP) before anything is published.
    await waitFor('both workers consuming', async () => (await consumers()).length === 2);

    for (let i = 0; i < MESSAGES; i++) await redis.xadd('jobs', '*', 'id', `job-${i}`, 'payload', JSON.stringify({ i }));

    // Mid-stream: some answers written, and a worker holding unacknowledged messages, which is the one killed.
    let victim: number | undefined;
    await waitFor('a worker holding messages mid-stream', async () => {
      const answered = await redis.xlen('answers');
      if (answered < 40) return false;
      if (answered >= MESSAGES) throw new Error('the stream was answered before a worker could be killed mid-stream');
      const holder = (await consumers()).find((c) => Number(c.pending) > 0);
      const pid = Number(String(holder?.name ?? '').split('-').pop());
      if (!pids().includes(pid)) return false;
      victim = pid;
      return true;
    }, 30_000);
    process.kill(victim!, 'SIGKILL');
    const answeredAtKill = await redis.xlen('answers');

    await waitFor('every message answered', async () => {
      for (const p of pids()) workerPids.add(p);
      return (await redis.xlen('answers')) >= MESSAGES && Number((await redis.xpending('jobs', group) as [number])[0]) === 0;
    }, 60_000);
    expect(isAlive(victim!)).toBe(false);

    const out = (await redis.xrange('answers', '-', '+')).map(([, f]) => fields(f));
    expect(out).toHaveLength(MESSAGES);
    expect(new Set(out.map((e) => e.id)).size).toBe(MESSAGES);
    const results = out.map((e) => JSON.parse(String(e.result)) as { i: number; score: number; pid: number });
    expect(results.every((r) => `job-${r.i}` === out[results.indexOf(r)]!.id && r.score === r.i * 2)).toBe(true);
    expect(new Set(results.map((r) => r.i)).size).toBe(MESSAGES);
    expect(await redis.xlen('jobs:dead')).toBe(0);
    expect(answeredAtKill).toBeLessThan(MESSAGES);
    // What the killed worker held was claimed by the others: its consumer holds nothing now.
    const dead = (await consumers()).find((c) => String(c.name).endsWith(`-${victim}`));
    expect(Number(dead?.pending)).toBe(0);

    // The cluster's metrics: the lag came down to 0, and the survivors counted answers.
    const metricsUrl = `${h.clusterAddress.replace('ws://', 'http://')}/-/metrics`;
    await waitFor('lag 0 in the metrics', async () => {
      const lag = samples(await (await fetch(metricsUrl)).text(), 'shoal_broker_lag', { app: 'brokerredis', deployment: 'redis_scorer', source: 'redis:jobs' });
      return lag.length > 0 && lag.every((v) => v === 0);
    });
    const text = await (await fetch(metricsUrl)).text();
    expect(samples(text, 'shoal_broker_messages_total', { deployment: 'redis_scorer', result: 'answered' }).reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
    const count = (result: string): number => samples(text, 'shoal_broker_messages_total', { deployment: 'redis_scorer', result }).reduce((a, b) => a + b, 0);
    expect(count('dead_lettered')).toBe(0);
    // Counted by the workers alive now (the killed one's counts died with it).
    process.stdout.write(`[broker] redis ${JSON.stringify({ messages: MESSAGES, answeredAtKill, survivors: { answered: count('answered'), duplicate: count('duplicate'), failed: count('failed') } })}\n`);

    // Then a graceful stop mid-stream: the SIGTERMed worker finishes what it holds before it exits, leaving
    // nothing pending for a claim, and still every message has one answer.
    await waitFor('two consumers again', async () => pids().length === 2 && (await consumers()).filter((c) => pids().some((p) => String(c.name).endsWith(`-${p}`))).length === 2, 30_000);
    for (let i = MESSAGES; i < 2 * MESSAGES; i++) await redis.xadd('jobs', '*', 'id', `job-${i}`, 'payload', JSON.stringify({ i }));
    let stopped: number | undefined;
    await waitFor('a worker holding messages mid-stream, again', async () => {
      if ((await redis.xlen('answers')) < MESSAGES + 40) return false;
      const holder = (await consumers()).find((c) => Number(c.pending) > 0 && pids().some((p) => String(c.name).endsWith(`-${p}`)));
      stopped = holder === undefined ? undefined : Number(String(holder.name).split('-').pop());
      return stopped !== undefined;
    }, 30_000);
    process.kill(stopped!, 'SIGTERM');
    await waitFor('the stopped worker to exit', () => !isAlive(stopped!), 30_000);
    const left = (await consumers()).find((c) => String(c.name).endsWith(`-${stopped}`));
    expect(Number(left?.pending)).toBe(0);
    await waitFor('every message answered, again', async () => {
      for (const p of pids()) workerPids.add(p);
      return (await redis.xlen('answers')) >= 2 * MESSAGES && Number((await redis.xpending('jobs', group) as [number])[0]) === 0;
    }, 60_000);
    const all = (await redis.xrange('answers', '-', '+')).map(([, f]) => fields(f));
    expect(all).toHaveLength(2 * MESSAGES);
    expect(new Set(all.map((e) => e.id)).size).toBe(2 * MESSAGES);
    expect(await redis.xlen('jobs:dead')).toBe(0);
  }, 180_000);
});

describe('broker ingress: consume options are the workers\', not part of the deployment version', () => {
  it('gives a deployment whose `consume` alone changed the same version (no replica restarts), and another for other options', () => {
    const consume = (concurrency: number) => compileConsume({ redis: { url: 'redis://127.0.0.1:6379', stream: 'jobs', output: 'answers', concurrency } }, 'd', 'consume');
    const d = (options: Record<string, unknown>): DeploymentSpec => ({ name: 'd', kind: 'class', dependencies: [], methods: ['call'], options }) as unknown as DeploymentSpec;
    const app = { name: 'a', modulePath: '/x/app.ts', exportName: 'app', routePrefix: null, ingress: 'd', deployments: [] } as unknown as AppSpec;
    const base = { maxOngoingRequests: 8 };
    const v = deploymentVersion(app, d({ ...base, consume: consume(4) }));
    expect(deploymentVersion(app, d({ ...base, consume: consume(16) }))).toBe(v);
    expect(deploymentVersion(app, d({ ...base }))).toBe(v);
    expect(deploymentVersion(app, d({ maxOngoingRequests: 9, consume: consume(4) }))).not.toBe(v);
  });
});
