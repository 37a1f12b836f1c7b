/**
 * RedisStreamSource against a real redis-server (Debian's) on a free port, started by this file and stopped by
 * its pid. Without redis-server it is skipped with a logged reason, unless SHOAL_REQUIRE_REDIS=1 (CI sets it).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { BadRequestError, compileConsume, env, silentLogger, type CompiledRedisConsume } from '@shoal/core';
import { Consumer, RedisStreamSource, type MessageResult } from '../src/index.ts';
import { available, startRedisServer, type TestServer } from './servers.ts';

const REQUIRE = env.requireRedis();
const missing = !available('redis-server');
if (missing && !REQUIRE) process.stderr.write('redis-stream-source.test.ts: skipped: no redis-server on PATH (Debian: apt-get install redis-server; SHOAL_REQUIRE_REDIS=1 makes this a failure)\n');

const enc = new TextEncoder();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe.skipIf(missing && !REQUIRE)('RedisStreamSource', () => {
  let server: TestServer;
  let redis: Redis;
  const sources: Array<RedisStreamSource | Consumer> = [];
  let n = 0;
  let o: CompiledRedisConsume;

  beforeAll(async () => {
    if (missing) throw new Error('SHOAL_REQUIRE_REDIS=1 but redis-server is not on PATH (Debian: apt-get install redis-server)');
    server = await startRedisServer();
    redis = new Redis(server.url);
  });
  afterAll(async () => {
    await redis?.quit();
    await server?.stop();
  });
  /** Fresh stream names per test. */
  const options = (extra: Record<string, unknown> = {}): CompiledRedisConsume => {
    n++;
    const [s] = compileConsume({ redis: { url: server.url, stream: `in${n}`, output: `out${n}`, claimIdleMs: 100, ...extra } }, 'd', 'consume');
    return (s as { redis: CompiledRedisConsume }).redis;
  };
  const source = (name: string, opts = o): RedisStreamSource => {
    const s = new RedisStreamSource({ options: opts, consumer: name, logger: silentLogger });
    sources.push(s);
    return s;
  };
  afterEach(async () => {
    for (const s of sources.splice(0)) await (s instanceof Consumer ? s.stop(1000) : s.close());
  });
  const publish = async (count: number, field: (i: number) => string[] = (i) => ['payload', JSON.stringify({ i })]): Promise<void> => {
    for (let i = 0; i < count; i++) await redis.xadd(o.stream, '*', ...field(i));
  };
  /** Output entries as field maps. */
  const entries = async (stream: string): Promise<Array<Record<string, string>>> =>
    (await redis.xrange(stream, '-', '+')).map(([, f]) => Object.fromEntries(f.flatMap((_, i) => (i % 2 === 0 ? [[f[i]!, f[i + 1]!]] : []))));
  const pending = async (): Promise<number> => Number((await redis.xpending(o.stream, o.group) as [number])[0]);

  it('creates the group once (a second start is BUSYGROUP, swallowed) and reads entries with delivery count 1', async () => {
    o = options();
    const a = source('a');
    const b = source('b');
    await a.start();
    await b.start();
    await publish(3);
    const got = await a.pull(10);
    expect(got.map((m) => [JSON.parse(Buffer.from(m.payload).toString()), m.deliveryCount, m.key === m.id])).toEqual([[{ i: 0 }, 1, true], [{ i: 1 }, 1, true], [{ i: 2 }, 1, true]]);
    expect(await b.pull(10)).toEqual([]);
  });

  it('writes one answer when two consumers race on the same message (a claim of a slow one)', async () => {
    o = options();
    const slow = source('slow');
    const fast = source('fast');
    await slow.start();
    await fast.start();
    await publish(1);
    const [first] = await slow.pull(1);
    await sleep(150); // idle past claimIdleMs: the fast consumer claims it
    const [again] = await fast.pull(1);
    expect(again?.id).toBe(first!.id);
    expect(again?.deliveryCount).toBe(2);
    const results = await Promise.all([slow.answer(first!, enc.encode('"a"')), fast.answer(again!, enc.encode('"b"'))]);
    expect(results.sort()).toEqual(['answered', 'duplicate']);
    const out = await entries(o.output);
    expect(out).toHaveLength(1);
    expect(out[0]).toMatchObject({ id: first!.key, entry: first!.id });
    expect(await pending()).toBe(0);
  });

  it('answers a producer idempotency key once, however many entries carry it', async () => {
    o = options();
    const s = source('a');
    await s.start();
    await publish(3, () => ['id', 'order-7', 'payload', '1']);
    const got = await s.pull(10);
    expect(got.map((m) => m.key)).toEqual(['order-7', 'order-7', 'order-7']);
    const results: string[] = [];
    for (const m of got) results.push(await s.answer(m, enc.encode('2')));
    expect(results).toEqual(['answered', 'duplicate', 'duplicate']);
    expect(await entries(o.output)).toEqual([{ id: 'order-7', entry: got[0]!.id, result: '2' }]);
    expect(await pending()).toBe(0);
  });

  it('claims the pending entries of a consumer that died (XAUTOCLAIM), and a consumer answers each once', async () => {
    o = options();
    const dead = source('dead');
    await dead.start();
    await publish(20);
    expect(await dead.pull(8)).toHaveLength(8);
    await dead.close(); // died holding 8: they stay pending under its name
    const results: MessageResult[] = [];
    const c = new Consumer({
      source: source('alive'), concurrency: 4, maxDeliveries: 5, encoding: 'json', logger: silentLogger,
      call: async (arg) => ({ doubled: (arg as { i: number }).i * 2 }),
      observer: { settled: (r) => results.push(r) },
    });
    sources.push(c);
    c.start();
    await waitFor(async () => (await redis.xlen(o.output)) === 20 && (await pending()) === 0);
    const out = await entries(o.output);
    expect(new Set(out.map((e) => e.id)).size).toBe(20);
    expect(out.map((e) => JSON.parse(e.result!) as { doubled: number }).map((r) => r.doubled).sort((x, y) => x - y)).toEqual([...Array(20).keys()].map((i) => i * 2));
    expect(results.filter((r) => r === 'answered')).toHaveLength(20);
    // The 8 the dead consumer held came back to the live one: its name now holds nothing pending either.
    const consumers = await redis.xinfo('CONSUMERS', o.stream, o.group) as unknown[][];
    const deadInfo = consumers.map((x) => Object.fromEntries(x.flatMap((_, i) => (i % 2 === 0 ? [[x[i], x[i + 1]]] : [])))).find((x) => x.name === 'dead');
    expect(deadInfo?.pending).toBe(0);
  });

  it('dead-letters a message whose call keeps failing after maxDeliveries deliveries, and a 4xx or a bad payload at once', async () => {
    o = options();
    await publish(1, () => ['id', 'boom', 'payload', '{"fail":500}']);
    await publish(1, () => ['id', 'bad', 'payload', '{"fail":400}']);
    await publish(1, () => ['id', 'notjson', 'payload', '{nope']);
    await publish(1, () => ['id', 'nopayload', 'other', 'x']);
    const calls = new Map<string, number>();
    const c = new Consumer({
      source: source('a'), concurrency: 2, maxDeliveries: 3, encoding: 'json', logger: silentLogger,
      call: async (arg) => {
        const fail = (arg as { fail: number }).fail;
        calls.set(String(fail), (calls.get(String(fail)) ?? 0) + 1);
        if (fail === 400) throw new BadRequestError('no such item');
        throw new Error('model crashed');
      },
    });
    sources.push(c);
    c.start();
    await waitFor(async () => (await redis.xlen(o.deadLetter)) === 4 && (await pending()) === 0);
    const dead = Object.fromEntries((await entries(o.deadLetter)).map((e) => [e.id, e]));
    expect(dead.boom).toMatchObject({ code: 'ERR_USER_CODE', deliveries: '3', payload: '{"fail":500}' });
    expect(dead.boom!.error).toContain('model crashed');
    expect(dead.bad).toMatchObject({ code: 'ERR_BAD_REQUEST', deliveries: '1', error: 'no such item' });
    expect(dead.notjson).toMatchObject({ code: 'ERR_BAD_REQUEST', deliveries: '1' });
    expect(dead.nopayload).toMatchObject({ code: 'ERR_BAD_REQUEST', error: 'the entry has no field "payload" (payloadField)' });
    expect(Object.fromEntries(calls)).toEqual({ 500: 3, 400: 1 });
    expect(await redis.xlen(o.output)).toBe(0);
  });

  it('dead-letters without a call a message delivered more than maxDeliveries times (its workers kept dying)', async () => {
    o = options();
    await publish(1);
    const poisoned = source('p');
    await poisoned.start();
    let m = (await poisoned.pull(1))[0]!;
    for (let i = 2; i <= 3; i++) {
      await poisoned.release(m);
      await sleep(150);
      m = (await poisoned.pull(1))[0]!;
      expect(m.deliveryCount).toBe(i);
    }
    await poisoned.close();
    let called = 0;
    const c = new Consumer({ source: source('b'), concurrency: 1, maxDeliveries: 2, encoding: 'json', logger: silentLogger, call: async () => { called++; return 1; } });
    sources.push(c);
    c.start();
    await waitFor(async () => (await redis.xlen(o.deadLetter)) === 1);
    expect((await entries(o.deadLetter))[0]).toMatchObject({ code: 'ERR_MAX_DELIVERIES', deliveries: '4' });
    expect(called).toBe(0);
  });

  it('reports lag: entries not yet delivered plus delivered and unacknowledged', async () => {
    o = options();
    const s = source('a');
    await s.start();
    await publish(10);
    expect(await s.lag()).toBe(10);
    const got = await s.pull(4);
    expect(await s.lag()).toBe(10);
    for (const m of got) await s.answer(m, enc.encode('1'));
    expect(await s.lag()).toBe(6);
  });

  it('keeps a slow call\'s entry from being claimed: keepAlive (XCLAIM JUSTID) every claimIdleMs/3, no delivery counted', async () => {
    o = options({ claimIdleMs: 300 });
    let calls = 0;
    const consumer = (name: string): Consumer => {
      const c = new Consumer({
        source: source(name), concurrency: 2, maxDeliveries: 5, encoding: 'json', logger: silentLogger,
        // Five times claimIdleMs: without keepAlive the other consumer claims it and calls it again.
        call: async () => { calls++; await sleep(1500); return 'done'; },
      });
      sources.push(c);
      c.start();
      return c;
    };
    consumer('a');
    consumer('b');
    await publish(1);
    await waitFor(async () => (await redis.xlen(o.output)) === 1);
    expect(calls).toBe(1);
    expect(await pending()).toBe(0);
  });

  it('recovers when its stream and group disappear under it (DEL, XGROUP DESTROY): the group is made again and new entries answered', async () => {
    o = options();
    const c = new Consumer({ source: source('a'), concurrency: 2, maxDeliveries: 5, encoding: 'json', logger: silentLogger, call: async (x) => x });
    sources.push(c);
    c.start();
    await publish(1);
    await waitFor(async () => (await redis.xlen(o.output)) === 1);
    await redis.del(o.stream);
    await publish(1, () => ['payload', '"after del"', 'id', 'k-del']);
    await waitFor(async () => (await entries(o.output)).some((e) => e.id === 'k-del'));
    await redis.xgroup('DESTROY', o.stream, o.group);
    await publish(1, () => ['payload', '"after destroy"', 'id', 'k-destroy']);
    await waitFor(async () => (await entries(o.output)).some((e) => e.id === 'k-destroy'));
    // The entry answered before the DESTROY is called again by the new group, and not answered twice.
    expect((await entries(o.output)).filter((e) => e.id === 'k-del')).toHaveLength(1);
    expect(await redis.xlen(o.deadLetter)).toBe(0);
  });
});

async function waitFor(cond: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('timed out');
    await sleep(50);
  }
}
