/**
 * The Redis store against a real redis-server this test starts on a free port (and kills by its pid). Without
 * redis-server it is skipped with a logged reason, unless SHOAL_REQUIRE_REDIS=1.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { env } from '@shoal/core';
import { redisServerAvailable, startRedisServer, type RedisServer } from '../../head/test/redis-server.ts';
import { RedisClients, RedisStore } from '../src/redis-store.ts';
import { MemoryStore } from '../src/memory-store.ts';
import { NearStore } from '../src/near-store.ts';
import { ResponseCache } from '../src/response-cache.ts';

const REQUIRE_REDIS = env.requireRedis();
const haveRedis = redisServerAvailable();
if (!haveRedis && !REQUIRE_REDIS) {
  console.warn('redis-store.test: skipping: redis-server is not on PATH (Debian: apt-get install -y redis-server; set SHOAL_REQUIRE_REDIS=1 to fail instead)');
}

async function until(what: string, cond: () => Promise<boolean> | boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe.skipIf(!haveRedis && !REQUIRE_REDIS)('RedisStore', () => {
  let server: RedisServer;
  let admin: Redis;
  const errors: Array<{ op: string; message: string }> = [];
  const clients = new RedisClients({ onConnectionError: () => undefined });

  beforeAll(async () => {
    if (!haveRedis) throw new Error('SHOAL_REQUIRE_REDIS=1 but redis-server is not on PATH: install it (Debian: apt-get install -y redis-server)');
    server = await startRedisServer();
    admin = new Redis(server.url);
  });
  afterAll(async () => {
    clients.close();
    admin?.disconnect();
    await server?.stop();
  });

  const store = (): RedisStore => new RedisStore({ client: clients.acquire(server.url), prefix: 'shoal:cache', onError: (err, op) => errors.push({ op, message: err.message }) });

  it('stores msgpack bytes under the prefix with a PX expiry, and typed arrays come back typed', async () => {
    const s = store();
    const cache = new ResponseCache({ store: s, ttlMs: 60_000, maxEntryBytes: 1 << 20 });
    const value = { y: new Float32Array([1.5, 2.5]), ids: new BigInt64Array([1n]), label: 'x' };
    await until('the client to connect', async () => (await admin.ping()) === 'PONG' && clients.acquire(server.url).status === 'ready');
    clients.release(server.url);
    expect((await cache.get('app/dep:v1.c:c:abc', async () => value, () => 'store')).result).toBe('miss');
    await until('the entry to be written', async () => (await admin.exists('shoal:cache:app/dep:v1.c:c:abc')) === 1);
    const ttl = await admin.pttl('shoal:cache:app/dep:v1.c:c:abc');
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(60_000);
    // A second cache (another worker) over the same server: a hit.
    const other = new ResponseCache({ store: store(), ttlMs: 60_000, maxEntryBytes: 1 << 20 });
    const hit = await other.get('app/dep:v1.c:c:abc', async () => { throw new Error('must not compute'); }, () => 'store');
    expect(hit.result).toBe('hit');
    const v = hit.value as typeof value;
    expect(v.y).toBeInstanceOf(Float32Array);
    expect([...v.y]).toEqual([1.5, 2.5]);
    expect(v.ids).toBeInstanceOf(BigInt64Array);
    expect(v.label).toBe('x');
  });

  it('an entry expires after its TTL (Redis PX)', async () => {
    const s = store();
    s.set('short', Buffer.from('x'), 50);
    await until('the entry to exist', async () => (await admin.exists('shoal:cache:short')) === 1);
    await until('the entry to expire', async () => (await s.get('short')) === undefined);
  });

  it('fails open: with Redis unreachable a get is a miss and a set is dropped, each reported, none thrown', async () => {
    errors.length = 0;
    const dead = new RedisClients({ commandTimeoutMs: 100, onConnectionError: () => undefined });
    // A port nothing listens on: the server's, once stopped, is not reused here; use a fresh closed one.
    const s = new RedisStore({ client: dead.acquire('redis://127.0.0.1:1'), prefix: 'p', onError: (err, op) => errors.push({ op, message: err.message }) });
    const cache = new ResponseCache({ store: s, ttlMs: 1000, maxEntryBytes: 1 << 20 });
    let runs = 0;
    for (let i = 0; i < 3; i++) expect(await cache.get('k', async () => ++runs, () => 'store')).toEqual({ value: i + 1, result: 'miss' });
    await until('the failed sets to be reported', () => errors.filter((e) => e.op === 'set').length === 3);
    expect(errors.filter((e) => e.op === 'get')).toHaveLength(3);
    dead.close();
  });

  it('near cache: a Redis hit is kept in memory for what its Redis entry has left, never longer', async () => {
    const a = new NearStore(new MemoryStore({ maxBytes: 1 << 20, maxEntries: 100 }), store());
    const bMemory = new MemoryStore({ maxBytes: 1 << 20, maxEntries: 100 });
    const b = new NearStore(bMemory, store());
    a.set('near:k', Buffer.from('answer'), 400);
    await until('the entry to reach Redis', async () => (await admin.exists('shoal:cache:near:k')) === 1);
    // b: not near yet; Redis answers, and b keeps it near.
    expect(Buffer.from((await b.get('near:k'))!).toString()).toBe('answer');
    expect(bMemory.keys()).toEqual(['near:k']);
    // Gone from Redis (someone flushed it): b still answers from memory, without a round trip...
    await admin.del('shoal:cache:near:k');
    const near = b.get('near:k');
    expect(near).toBeInstanceOf(Uint8Array);
    // ...but only until the Redis entry would have expired.
    await until('the near copy to expire with the Redis TTL', () => bMemory.get('near:k') === undefined, 5000);
    expect(await b.get('near:k')).toBeUndefined();
    // A key with no expiry (not ours) is never kept near.
    await admin.set('shoal:cache:near:forever', 'x');
    expect(await b.get('near:forever')).toBeUndefined();
    expect(bMemory.keys()).toEqual([]);
  });

  it('clients are shared per URL and closed with their last user', async () => {
    const pool = new RedisClients({ onConnectionError: () => undefined });
    const a = pool.acquire(server.url);
    const b = pool.acquire(server.url);
    expect(a).toBe(b);
    pool.release(server.url);
    expect(a.status).not.toBe('end');
    pool.release(server.url);
    await until('the last release to close the client', () => a.status === 'end');
  });
});
