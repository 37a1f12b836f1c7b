/**
 * bench/streaming, exact cache section: lookup time at 100,000 entries, as a router's call pays it (the canonical
 * hash of the input, the store's get, the decode of a hit, the coalescing bookkeeping; the inference a miss goes
 * on to is not counted), for the memory store and for a Redis store on a local redis-server (started here on a
 * free port when redis-server is on PATH, and killed by its pid at the end). Also the hash's cost alone on a
 * 1 MiB tensor and on a small JSON request, and the encode and decode of a 1 MiB answer.
 *
 * Inputs are small JSON requests (a prompt and a few parameters, about 150 bytes); answers about 200 bytes of
 * msgpack. Hits ask for held keys in a seeded random order; misses for keys never stored.
 */
import { once } from 'node:events';
import { seededRandom } from '@shoal/core';
import {
  MemoryStore, RedisClients, RedisStore, ResponseCache, decodeValue, encodeValue, inputHash, type CacheStore,
} from '../../packages/cache/src/index.ts';
import { redisServerAvailable, startRedisServer } from '../../packages/head/test/redis-server.ts';
import { percentile, round, type Goal, type Row } from '../lib.ts';

const N = 100_000;
const MEMORY_LOOKUPS = 50_000;
const REDIS_LOOKUPS = 10_000;
const PREFIX = 'app/Model:0123456789ab.fedcba987654:c:';

function request(i: number): unknown[] {
  return ['predict', null, false, [{ prompt: `question number ${i}: what does the cache hold?`, temperature: 0.2, maxTokens: 64, stop: ['\n'], user: { id: i % 977, tier: 'pro' } }]];
}

function answer(i: number): unknown {
  return { text: `answer ${i} `.repeat(12), tokens: 48, finish: 'stop', id: i };
}

/** Per-call times (ms) of `fn` over `inputs`, after a warm-up of the first `warm`. */
async function timeEach<T>(inputs: T[], fn: (x: T) => unknown, warm = 1000): Promise<{ p50: number; p99: number; max: number; mean: number }> {
  for (let i = 0; i < Math.min(warm, inputs.length); i++) await fn(inputs[i]!);
  const times = new Float64Array(inputs.length);
  for (let i = 0; i < inputs.length; i++) {
    const t0 = performance.now();
    await fn(inputs[i]!);
    times[i] = performance.now() - t0;
  }
  const sorted = [...times].sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), max: sorted[sorted.length - 1]!, mean: sorted.reduce((a, b) => a + b, 0) / sorted.length };
}

/** Mean time (us) of a synchronous `fn` over `n` calls. */
function meanUs(n: number, fn: () => unknown): number {
  for (let i = 0; i < Math.min(n, 100); i++) fn();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) fn();
  return ((performance.now() - t0) / n) * 1000;
}

/** What a router's lookup does: hash, then the cache's get (hit: decode; miss: a compute that answers at once). */
function lookup(cache: ResponseCache, i: number): Promise<unknown> {
  return cache.get(`${PREFIX}${inputHash(request(i))}`, async () => null, () => 'none');
}

function rowOf(store: string, measured: string, n: number, t: { p50: number; p99: number; max: number }): Row {
  return { store, entries: N, measured, lookups: n, p50Us: round(t.p50 * 1000, 1), p99Us: round(t.p99 * 1000, 1), maxUs: round(t.max * 1000, 0) };
}

async function fill(store: CacheStore): Promise<void> {
  for (let i = 0; i < N; i++) store.set(`${PREFIX}${inputHash(request(i))}`, encodeValue(answer(i))!, 3_600_000);
}

export async function section(): Promise<{ rows: Row[]; goals: Goal[] }> {
  const rows: Row[] = [];
  const goals: Goal[] = [];
  const rand = seededRandom(13);
  const hitIds = Array.from({ length: MEMORY_LOOKUPS }, () => Math.floor(rand() * N));
  const missIds = Array.from({ length: MEMORY_LOOKUPS }, (_, i) => N + 1 + i);

  // The hash alone, and the codec on a large answer.
  const tensor = new Float32Array(262_144).map((_, i) => i * 0.5);
  const tensorUs = meanUs(500, () => inputHash(['infer', null, false, [{ x: { type: 'float32', dims: [512, 512], data: tensor } }]]));
  const smallUs = meanUs(100_000, () => inputHash(request(7)));
  const big = encodeValue({ y: tensor })!;
  const encodeUs = meanUs(300, () => encodeValue({ y: tensor }));
  const decodeUs = meanUs(300, () => decodeValue(big));
  rows.push({ store: '-', entries: null, measured: 'inputHash, 1 MiB float32 tensor (sha256)', lookups: 500, p50Us: null, p99Us: null, maxUs: null, meanUs: round(tensorUs, 1) });
  rows.push({ store: '-', entries: null, measured: 'inputHash, small JSON request (~150 B)', lookups: 100_000, p50Us: null, p99Us: null, maxUs: null, meanUs: round(smallUs, 2) });
  rows.push({ store: '-', entries: null, measured: 'encode 1 MiB float32 answer (msgpackr)', lookups: 300, p50Us: null, p99Us: null, maxUs: null, meanUs: round(encodeUs, 1) });
  rows.push({ store: '-', entries: null, measured: 'decode 1 MiB float32 answer (a hit\'s copy)', lookups: 300, p50Us: null, p99Us: null, maxUs: null, meanUs: round(decodeUs, 1) });

  // Memory store, full at 100,000 entries.
  const memory = new MemoryStore({ maxBytes: 1 << 30, maxEntries: N });
  await fill(memory);
  const mc = new ResponseCache({ store: memory, ttlMs: 3_600_000, maxEntryBytes: 1 << 20 });
  const mHit = await timeEach(hitIds, (i) => lookup(mc, i));
  const mMiss = await timeEach(missIds, (i) => lookup(mc, i));
  rows.push({ ...rowOf('memory', 'hit (hash + get + decode)', MEMORY_LOOKUPS, mHit), meanUs: round(mHit.mean * 1000, 2), bytes: memory.stats().bytes });
  rows.push({ ...rowOf('memory', 'miss (hash + get)', MEMORY_LOOKUPS, mMiss), meanUs: round(mMiss.mean * 1000, 2), bytes: null });
  memory.close();

  // Redis store on a local server.
  if (!redisServerAvailable()) {
    rows.push({ store: 'redis', entries: null, measured: 'skipped: redis-server is not on PATH', lookups: 0, p50Us: null, p99Us: null, maxUs: null });
    return { rows, goals };
  }
  const server = await startRedisServer();
  const clients = new RedisClients({ onConnectionError: () => undefined });
  try {
    const client = clients.acquire(server.url);
    if (client.status !== 'ready') await once(client, 'ready');
    let errors = 0;
    const redis = new RedisStore({ client, prefix: 'shoal:cache', onError: () => { errors++; } });
    // Filled through a pipeline: 100,000 single SETs would only measure the fill.
    for (let from = 0; from < N; from += 5000) {
      const p = client.pipeline();
      for (let i = from; i < Math.min(N, from + 5000); i++) p.set(`shoal:cache:${PREFIX}${inputHash(request(i))}`, Buffer.from(encodeValue(answer(i))!), 'PX', 3_600_000);
      await p.exec();
    }
    const rc = new ResponseCache({ store: redis, ttlMs: 3_600_000, maxEntryBytes: 1 << 20 });
    const rHit = await timeEach(hitIds.slice(0, REDIS_LOOKUPS), (i) => lookup(rc, i), 500);
    const rMiss = await timeEach(missIds.slice(0, REDIS_LOOKUPS), (i) => lookup(rc, i), 500);
    const dbsize = await client.dbsize();
    rows.push({ ...rowOf('redis', 'hit (hash + GET + decode), one at a time', REDIS_LOOKUPS, rHit), meanUs: round(rHit.mean * 1000, 1), bytes: null, redisKeys: dbsize, errors });
    rows.push({ ...rowOf('redis', 'miss (hash + GET), one at a time', REDIS_LOOKUPS, rMiss), meanUs: round(rMiss.mean * 1000, 1), bytes: null, redisKeys: dbsize, errors });
  } finally {
    clients.close();
    await server.stop();
  }
  return { rows, goals };
}
