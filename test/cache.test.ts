/**
 * Integration: the exact-match response cache on a real head with two real worker processes and a real
 * redis-server this test starts on a free port (and kills by its pid). Inferences are counted from the lines the
 * fixture's replicas append to a file (test/fixtures/cache-app.ts), whatever process ran them. Without
 * redis-server the test is skipped with a logged reason, unless SHOAL_REQUIRE_REDIS=1.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { compileCache, env, type AppSpec, type CacheOptions, type Handle } from '@shoal/core';
import type { Head } from '@shoal/head';
import { loadAppSpec } from '../packages/cli/src/main.ts';
import { redisServerAvailable, startRedisServer, type RedisServer } from '../packages/head/test/redis-server.ts';
import { handleFor, samples, startCluster, waitFor } from './helpers.ts';
import type { Front, Model } from './fixtures/cache-app.ts';

const APP = resolve(import.meta.dirname, 'fixtures/cache-app.ts');
const REQUIRE_REDIS = env.requireRedis();
const haveRedis = redisServerAvailable();
if (!haveRedis && !REQUIRE_REDIS) {
  console.warn('cache.test: skipping: redis-server is not on PATH (Debian: apt-get install -y redis-server; set SHOAL_REQUIRE_REDIS=1 to fail instead)');
}

/** Computations recorded in a log file, by kind. */
function count(log: string, kind: 'predict' | 'fetch'): number {
  let text = '';
  try { text = readFileSync(log, 'utf8'); } catch { return 0; }
  return text.split('\n').filter((l) => l.startsWith(`${kind} `)).length;
}

/** One GET on a connection of its own (so the kernel may hand it to either worker), with its headers. */
function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolveP, reject) => {
    const req = request(url, { agent: false, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => resolveP({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe.skipIf(!haveRedis && !REQUIRE_REDIS)('response cache on a real cluster', () => {
  let redis: RedisServer;
  let head: Head;
  let dir: string;

  beforeAll(async () => {
    if (!haveRedis) throw new Error('SHOAL_REQUIRE_REDIS=1 but redis-server is not on PATH: install it (Debian: apt-get install -y redis-server)');
    redis = await startRedisServer();
    dir = mkdtempSync(join(tmpdir(), 'shoal-cache-test-'));
    // Four CPUs per worker, three per Front replica: one Front on each worker.
    head = await startCluster({ workers: 2, workerCpus: 4 });
  });

  // Each test's application takes every CPU (one Front per worker): it goes before the next one deploys.
  afterEach(async () => {
    for (const a of head.controller.appSpecs()) await head.deleteApp(a.name);
    await waitFor('the replicas to stop', () => head.controller.status().replicas.every((r) => r.state === 'STOPPED' || r.state === 'FAILED'));
  });

  afterAll(async () => {
    await head?.stop();
    await redis?.stop();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  /** Deploys the fixture as `name`, Model cached with `model`, Front with `front` (when given). */
  async function deploy(name: string, log: string, model: CacheOptions, front?: CacheOptions, modelExtra: Partial<AppSpec['deployments'][number]['options']> = {}): Promise<AppSpec> {
    const spec = await loadAppSpec(APP, { name, routePrefix: `/${name}` });
    for (const d of spec.deployments) {
      d.options.userConfig = { log };
      if (d.name === 'Model') Object.assign(d.options, { cache: compileCache(model, 'cache'), ...modelExtra });
      if (d.name === 'Front') {
        d.options.resources = { ...d.options.resources, cpus: 3 };
        if (front !== undefined) d.options.cache = compileCache(front, 'cache');
      }
    }
    await head.deploy(spec);
    await head.waitReady(name, 30_000);
    return spec;
  }

  it('with Redis, an answer computed through one worker\'s router is a hit through the other\'s', async () => {
    const log = join(dir, 'shared.log');
    const spec = await deploy('shared', log, { store: 'redis', redisUrl: redis.url, ttlMs: 600_000 });
    const fronts = head.controller.status().replicas.filter((r) => r.app === 'shared' && r.deployment === 'Front');
    expect(new Set(fronts.map((r) => r.workerId)).size).toBe(2);
    const front = handleFor<Front>(head, spec, 'Front');
    // The head's router spreads Front's calls over both workers; each Front calls Model through its own worker.
    const seen = new Set<number>();
    for (let i = 0; i < 60 && seen.size < 2; i++) {
      const r = await front.run([1, 2, 3]);
      expect(r.y).toEqual([2, 4, 6]);
      seen.add(r.front);
    }
    expect(seen.size).toBe(2);
    expect(count(log, 'predict')).toBe(1);
    // The head's own router has the cache too: the same input from here is a hit as well.
    expect((await handleFor<Model>(head, spec, 'Model').predict([1, 2, 3])).y).toEqual([2, 4, 6]);
    expect(count(log, 'predict')).toBe(1);
  });

  it('coalesces concurrent identical calls into one inference; bypass computes every time', async () => {
    const log = join(dir, 'coalesce.log');
    const spec = await deploy('coalesce', log, { store: 'redis', redisUrl: redis.url, ttlMs: 600_000 });
    const model = handleFor<Model>(head, spec, 'Model');
    const answers = await Promise.all(Array.from({ length: 16 }, () => model.predict([7], 300)));
    expect(new Set(answers.map((a) => JSON.stringify(a))).size).toBe(1);
    expect(count(log, 'predict')).toBe(1);
    const bypass = model.withOptions({ cache: 'bypass' });
    await bypass.predict([7]);
    await bypass.predict([7]);
    expect(count(log, 'predict')).toBe(3);
    // Bypass stored nothing either: the cached answer is the first one.
    expect(await model.predict([7], 300)).toEqual(answers[0]);
    expect(count(log, 'predict')).toBe(3);
  });

  it('HTTP: GET answers say miss, hit or bypass; x-shoal-cache: bypass and Cache-Control: no-cache compute again', async () => {
    const log = join(dir, 'http.log');
    // Model with a near cache (memory in front of Redis) in each worker's router.
    await deploy('http', log, { store: 'redis', redisUrl: redis.url, ttlMs: 600_000, nearCache: true }, { store: 'redis', redisUrl: redis.url, ttlMs: 600_000 });
    const url = `${head.httpAddress}/http/predict?x=4`;
    const first = await get(url);
    expect(first.status).toBe(200);
    expect(first.headers['x-shoal-cache']).toBe('miss');
    expect(JSON.parse(first.body).y).toEqual([8]);
    for (let i = 0; i < 6; i++) {
      const again = await get(url);
      expect(again.headers['x-shoal-cache']).toBe('hit');
      expect(again.body).toBe(first.body);
    }
    expect(count(log, 'fetch')).toBe(1);
    const bypassed = await get(url, { 'x-shoal-cache': 'bypass' });
    expect(bypassed.headers['x-shoal-cache']).toBe('bypass');
    expect((await get(url, { 'cache-control': 'no-cache' })).headers['x-shoal-cache']).toBe('bypass');
    expect(count(log, 'fetch')).toBe(3);
    // Front's own call to Model is a call of its own: Model's cache answered it every time.
    expect(count(log, 'predict')).toBe(1);
    expect((await get(`${head.httpAddress}/http/predict?x=5`)).headers['x-shoal-cache']).toBe('miss');
    // The workers' series, merged by the head.
    const text = await (await fetch(`${head.httpAddress}/-/metrics`)).text();
    const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);
    const front = { app: 'http', deployment: 'Front' };
    expect(sum(samples(text, 'shoal_cache_requests_total', { ...front, result: 'hit' }))).toBe(6);
    expect(sum(samples(text, 'shoal_cache_requests_total', { ...front, result: 'miss' }))).toBe(2);
    expect(sum(samples(text, 'shoal_cache_requests_total', { ...front, result: 'bypass' }))).toBe(2);
    expect(sum(samples(text, 'shoal_cache_requests_total', { app: 'http', deployment: 'Model', result: 'hit' }))).toBe(2);
    // A Redis store holds its entries in Redis, none in a worker.
    expect(samples(text, 'shoal_cache_entries', { ...front, store: 'redis' })).toEqual([0, 0]);
    // Model's near copies: x=4 and x=5, in the workers whose routers asked.
    expect(sum(samples(text, 'shoal_cache_entries', { app: 'http', deployment: 'Model', store: 'near' }))).toBeGreaterThanOrEqual(2);
  });

  it('a redeploy with changed options is a new version: its first answer is computed, never the old entry', async () => {
    const log = join(dir, 'version.log');
    const spec = await deploy('version', log, { store: 'redis', redisUrl: redis.url, ttlMs: 600_000 });
    const model = handleFor<Model>(head, spec, 'Model');
    const old = await model.predict([9]);
    expect(await model.predict([9])).toEqual(old);
    expect(count(log, 'predict')).toBe(1);
    await deploy('version', log, { store: 'redis', redisUrl: redis.url, ttlMs: 600_000 }, undefined, { maxOngoingRequests: 99 });
    // Until the old replica is gone its answers are not stored under the new version; then the new one answers.
    await waitFor('the new version\'s replica to answer', async () => (await model.predict([9])).pid !== old.pid);
    const n = count(log, 'predict');
    expect(n).toBeGreaterThanOrEqual(2);
    const fresh = await model.predict([9]);
    expect(fresh.pid).not.toBe(old.pid);
    expect(await model.predict([9])).toEqual(fresh);
    expect(count(log, 'predict')).toBe(n);
  });

  it('entries expire after ttlMs', async () => {
    const log = join(dir, 'ttl.log');
    const spec = await deploy('ttl', log, { store: 'memory', ttlMs: 1000 });
    const model = handleFor<Model>(head, spec, 'Model');
    await model.predict([1]);
    expect(count(log, 'predict')).toBe(1);
    // Hits until the entry expires (calls every 50 ms or so over its 1000 ms), then one computation.
    let calls = 0;
    await waitFor('the entry to expire', async () => { await model.predict([1]); calls++; return count(log, 'predict') >= 2; });
    expect(count(log, 'predict')).toBe(2);
    // Every call but the last was answered from the cache: without caching the first would have computed.
    expect(calls).toBeGreaterThan(1);
  });

  it('fails open: with Redis stopped, requests are computed and answered', async () => {
    const log = join(dir, 'down.log');
    writeFileSync(log, '');
    const spec = await deploy('down', log, { store: 'redis', redisUrl: redis.url, ttlMs: 600_000 });
    // Through Front, so Model's cache is a worker's (whose metrics the head scrapes).
    const front = handleFor<Front>(head, spec, 'Front');
    await front.run([3]);
    expect(count(log, 'predict')).toBe(1);
    await redis.stop();
    for (let i = 0; i < 3; i++) expect((await front.run([3])).y).toEqual([6]);
    expect(count(log, 'predict')).toBe(4);
    const text = await (await fetch(`${head.httpAddress}/-/metrics`)).text();
    expect(samples(text, 'shoal_cache_store_errors_total', { app: 'down', deployment: 'Model' }).reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
  });
});
