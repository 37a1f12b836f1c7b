/** The consumer loop against a fake Source (implements the real interface): bounds, settle rules, graceful stop. */
import { describe, expect, it } from 'vitest';
import { BadRequestError, DeadlineExceededError, NotFoundError, compileConsume, silentLogger, type AppSpec, type Logger } from '@shoal/core';
import { Consumer, ConsumerSet, type BrokerMessage, type DeadLetterReason, type MessageResult, type Source } from '../src/index.ts';

const enc = new TextEncoder();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Hands out queued messages; records how each was settled. */
class FakeSource implements Source {
  readonly name = 'fake';
  readonly queue: BrokerMessage[] = [];
  readonly answered: Array<[string, string]> = [];
  readonly dead: Array<[string, DeadLetterReason]> = [];
  readonly released: string[] = [];
  closed = false;
  pulls = 0;
  readonly keptAlive: string[][] = [];
  keepAliveMs: number | undefined;
  private readonly keys = new Set<string>();
  add(key: string, body: string, deliveryCount = 1): void {
    this.queue.push({ key, id: key, payload: enc.encode(body), deliveryCount });
  }
  async start(): Promise<void> {}
  async pull(max: number): Promise<BrokerMessage[]> {
    this.pulls++;
    if (this.queue.length === 0) await sleep(5);
    return this.queue.splice(0, max);
  }
  async answer(m: BrokerMessage, value: Uint8Array): Promise<'answered' | 'duplicate'> {
    if (this.keys.has(m.key)) return 'duplicate';
    this.keys.add(m.key);
    this.answered.push([m.key, new TextDecoder().decode(value)]);
    return 'answered';
  }
  async deadLetter(m: BrokerMessage, reason: DeadLetterReason): Promise<'dead_lettered' | 'duplicate'> {
    if (this.keys.has(m.key)) return 'duplicate';
    this.keys.add(m.key);
    this.dead.push([m.key, reason]);
    return 'dead_lettered';
  }
  async release(m: BrokerMessage): Promise<void> { this.released.push(m.key); }
  async lag(): Promise<number> { return this.queue.length; }
  async close(): Promise<void> { this.closed = true; }
  async keepAlive(ms: readonly BrokerMessage[]): Promise<void> { this.keptAlive.push(ms.map((m) => m.key)); }
}

/** A logger that keeps its warnings. */
function recording(): { logger: Logger; warnings: Array<[string, Record<string, unknown> | undefined]> } {
  const warnings: Array<[string, Record<string, unknown> | undefined]> = [];
  const logger: Logger = { ...silentLogger, warn: (msg, fields) => { warnings.push([msg, fields]); }, child: () => logger };
  return { logger, warnings };
}

async function until(cond: () => boolean): Promise<void> {
  const end = Date.now() + 5000;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await sleep(5);
  }
}

describe('Consumer', () => {
  it('never holds more than concurrency messages, and answers each', async () => {
    const source = new FakeSource();
    for (let i = 0; i < 50; i++) source.add(`k${i}`, JSON.stringify(i));
    let running = 0;
    let most = 0;
    const results: MessageResult[] = [];
    const c = new Consumer({
      source, concurrency: 3, maxDeliveries: 5, encoding: 'json', logger: silentLogger, observer: { settled: (r) => results.push(r) },
      call: async (x) => { running++; most = Math.max(most, running); await sleep(2); running--; return (x as number) + 1; },
    });
    c.start();
    await until(() => source.answered.length === 50);
    expect(most).toBe(3);
    expect(c.inflight).toBe(0);
    expect(source.answered.find(([k]) => k === 'k7')?.[1]).toBe('8');
    expect(results.filter((r) => r === 'answered')).toHaveLength(50);
    await c.stop(1000);
    expect(source.closed).toBe(true);
  });

  it('takes one message at a time while the deployment has no running replica, then up to concurrency', async () => {
    const source = new FakeSource();
    for (let i = 0; i < 40; i++) source.add(`k${i}`, '1');
    let ready = false;
    let running = 0;
    const most: number[] = [];
    const c = new Consumer({
      source, concurrency: 4, maxDeliveries: 5, encoding: 'json', logger: silentLogger, ready: () => ready,
      call: async () => { running++; most.push(running); await sleep(5); running--; return 1; },
    });
    c.start();
    await until(() => source.answered.length >= 5);
    expect(Math.max(...most)).toBe(1);
    ready = true;
    await until(() => source.answered.length === 40);
    expect(Math.max(...most)).toBe(4);
    await c.stop(1000);
  });

  it('dead-letters a 4xx at once, releases a 5xx or a timeout until the last delivery, and keeps 499/429 retryable', async () => {
    const source = new FakeSource();
    source.add('bad', '"bad"');
    source.add('slow', '"slow"', 1);
    source.add('boom-1', '"boom"', 1);
    source.add('boom-5', '"boom"', 5);
    source.add('limited', '"limited"', 5);
    source.add('text', 'not json');
    const c = new Consumer({
      source, concurrency: 10, maxDeliveries: 5, encoding: 'json', logger: silentLogger,
      call: async (x) => {
        if (x === 'bad') throw new BadRequestError('bad item');
        if (x === 'slow') throw new DeadlineExceededError('too slow');
        if (x === 'limited') throw Object.assign(new BadRequestError('slow down'), { httpStatus: 429 });
        throw new Error('boom');
      },
    });
    c.start();
    await until(() => source.dead.length + source.released.length === 6);
    await c.stop(1000);
    expect(Object.fromEntries(source.dead.map(([k, r]) => [k, r.code]))).toEqual({ bad: 'ERR_BAD_REQUEST', 'boom-5': 'ERR_USER_CODE', limited: 'ERR_BAD_REQUEST', text: 'ERR_BAD_REQUEST' });
    expect(source.dead.find(([k]) => k === 'boom-5')?.[1].message).toBe('boom (delivery 5 of maxDeliveries 5)');
    expect(source.released.sort()).toEqual(['boom-1', 'slow']);
  });

  it('on stop, finishes what is in flight within drainMs, and hands back (releases) what is still running after it', async () => {
    const source = new FakeSource();
    source.add('quick', '10');
    source.add('stuck', '100000');
    const c = new Consumer({
      source, concurrency: 2, maxDeliveries: 5, encoding: 'json', logger: silentLogger,
      call: (ms, signal) => new Promise((resolve, reject) => {
        const t = setTimeout(() => resolve('done'), ms as number);
        signal.addEventListener('abort', () => { clearTimeout(t); reject(signal.reason); });
      }),
    });
    c.start();
    await until(() => c.inflight === 2);
    source.add('later', '1');
    await c.stop(300);
    expect(source.answered.map(([k]) => k)).toEqual(['quick']);
    expect(source.released).toEqual(['stuck']);
    expect(source.dead).toEqual([]);
    expect(source.queue.map((m) => m.key)).toEqual(['later']);
    expect(c.state).toBe('stopped');
  });

  it('keeps alive every message whose call is running, every keepAliveMs, and none once settled', async () => {
    const source = new FakeSource();
    source.keepAliveMs = 20;
    source.add('a', '"a"');
    source.add('b', '"b"');
    let finish!: () => void;
    const gate = new Promise<void>((r) => { finish = r; });
    const c = new Consumer({ source, concurrency: 2, maxDeliveries: 5, encoding: 'json', logger: silentLogger, call: async (x) => { await gate; return x; } });
    c.start();
    await until(() => source.keptAlive.some((k) => k.length === 2));
    expect(source.keptAlive.find((k) => k.length === 2)!.sort()).toEqual(['a', 'b']);
    finish();
    await until(() => source.answered.length === 2);
    const beats = source.keptAlive.length;
    await sleep(100);
    expect(source.keptAlive.length).toBe(beats);
    await c.stop(1000);
  });

  it('neither dead-letters nor releases a message when the deployment has no such method: it waits, pulls pause, one warning names the option and the methods', async () => {
    const source = new FakeSource();
    source.add('k1', '1');
    const { logger, warnings } = recording();
    let hasMethod = false;
    let calls = 0;
    const c = new Consumer({
      source, concurrency: 4, maxDeliveries: 2, encoding: 'json', logger, method: 'call', methodOption: 'app/d consume.redis.method', methodRetryMs: 300,
      call: async (x) => {
        calls++;
        if (!hasMethod) throw new NotFoundError('deployment "app/d" has no method "call" (it has: predict, embed)');
        return x;
      },
    });
    c.start();
    await until(() => calls >= 1);
    // A pull already under way when the call failed ends (empty); none starts after it.
    await sleep(50);
    const pullsAtError = source.pulls;
    source.add('k2', '2');
    // Retried (every 300 ms) past maxDeliveries (2) tries: still held, not dead-lettered, not released.
    await until(() => calls >= 3);
    expect(source.dead).toEqual([]);
    expect(source.released).toEqual([]);
    expect(c.inflight).toBe(1);
    // Paused: k2 was not taken while the method is missing.
    expect(source.queue.map((m) => m.key)).toEqual(['k2']);
    expect(source.pulls).toBe(pullsAtError);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]![0]).toContain('app/d consume.redis.method');
    expect(warnings[0]![1]).toMatchObject({ option: 'app/d consume.redis.method', method: 'call', has: 'predict, embed' });
    hasMethod = true;
    await until(() => source.answered.length === 2);
    expect(source.answered.map(([k]) => k).sort()).toEqual(['k1', 'k2']);
    expect(source.dead).toEqual([]);
    await c.stop(1000);
  });

  it('releases (does not dead-letter) a message waiting for a missing method when the consumer stops', async () => {
    const source = new FakeSource();
    source.add('k1', '1');
    let calls = 0;
    const c = new Consumer({
      source, concurrency: 1, maxDeliveries: 5, encoding: 'json', logger: silentLogger, methodRetryMs: 60_000,
      call: async () => { calls++; throw new NotFoundError('deployment "app/d" has no method "call" (it has: predict)'); },
    });
    c.start();
    await until(() => calls === 1);
    await c.stop(50);
    expect(source.released).toEqual(['k1']);
    expect(source.dead).toEqual([]);
  });

  it('still dead-letters a 404 of the method itself (the payload named something that does not exist)', async () => {
    const source = new FakeSource();
    source.add('k1', '1');
    const c = new Consumer({
      source, concurrency: 1, maxDeliveries: 5, encoding: 'json', logger: silentLogger,
      call: async () => { throw new NotFoundError('no item 1'); },
    });
    c.start();
    await until(() => source.dead.length === 1);
    expect(source.dead[0]![1].code).toBe('ERR_NOT_FOUND');
    await c.stop(1000);
  });
});

describe('ConsumerSet', () => {
  const app = (concurrency: number): AppSpec => ({
    name: 'app',
    deployments: [{ name: 'd', options: { consume: compileConsume({ redis: { url: 'redis://127.0.0.1:1', stream: 'in', output: 'out', concurrency } }, 'd', 'consume') } }],
  }) as unknown as AppSpec;

  it('restarts a consumer whose consume options changed (and only then), with the new options', async () => {
    const made: Array<{ source: FakeSource; concurrency: number; path: string }> = [];
    const set = new ConsumerSet({
      consumerName: 'w1', logger: silentLogger, drainMs: 100,
      call: async () => 1,
      createSource: (spec, _consumer, _logger, path) => {
        const source = new FakeSource();
        made.push({ source, concurrency: 'redis' in spec ? spec.redis.concurrency : 0, path });
        return source;
      },
    });
    set.update([app(4)]);
    set.update([app(4)]);
    expect(made).toHaveLength(1);
    set.update([app(8)]);
    expect(made.map((m) => m.concurrency)).toEqual([4, 8]);
    expect(made[1]!.path).toBe('app/d consume.redis');
    await until(() => made[0]!.source.closed);
    expect(made[1]!.source.closed).toBe(false);
    await set.stop(100);
    expect(made[1]!.source.closed).toBe(true);
  });
});
