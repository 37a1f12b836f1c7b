/**
 * A Redis stream read by a consumer group. New entries come from XREADGROUP (BLOCK, on a connection of its own);
 * entries another consumer delivered and left idle past claimIdleMs (it died, or its call failed) are taken over
 * with XAUTOCLAIM. An answer is one Lua script: SET NX of the idempotency key with a TTL, XADD to the output
 * only when that SET won, then XACK, so two consumers racing on one message (a claim of a slow one) write one
 * answer. A dead letter goes through the same script to the dead-letter stream.
 */
import { createRequire } from 'node:module';
import type { Redis } from 'ioredis';
import type { CompiledRedisConsume, Logger } from '@shoal/core';
import { SourceGoneError, type BrokerMessage, type DeadLetterReason, type Source } from './source.ts';

/** ioredis, loaded on first use: a process that never reads a Redis stream does not pay for its ~40 modules at start-up. */
let RedisClass: typeof Redis | undefined;
function redisClass(): typeof Redis {
  return RedisClass ??= (createRequire(import.meta.url)('ioredis') as typeof import('ioredis')).Redis;
}

/**
 * KEYS: idempotency key, output stream, input stream. ARGV: group, entry id, TTL in ms, then the output entry's
 * fields and values. 1 when the entry was written, 0 when the key was already settled (only the XACK happens).
 */
const SETTLE_LUA = `
local won = redis.call('SET', KEYS[1], ARGV[2], 'NX', 'PX', ARGV[3])
if won then redis.call('XADD', KEYS[2], '*', unpack(ARGV, 4)) end
redis.call('XACK', KEYS[3], ARGV[1], ARGV[2])
if won then return 1 end
return 0
`;

/** The longest XREADGROUP BLOCK: how long a stop waits for the pull in progress. */
const MAX_BLOCK_MS = 1000;
/** Entries one XRANGE counts when Redis has no `lag` for the group (Redis 6, or after XDEL): lag is at least this. */
const MAX_LAG_SCAN = 100_000;

type Settle = (keys: [string, string, string], args: Array<string | number | Buffer>) => Promise<number>;

export interface RedisStreamSourceOptions {
  options: CompiledRedisConsume;
  /** This consumer's name in the group (the worker's name). */
  consumer: string;
  logger: Logger;
}

/** NOGROUP: the stream or its group is gone (Redis restarted without persistence, DEL, XGROUP DESTROY). */
function gone(err: unknown, o: CompiledRedisConsume): unknown {
  const msg = String((err as Error)?.message ?? err);
  return msg.startsWith('NOGROUP') ? new SourceGoneError(`the stream "${o.stream}" or its consumer group "${o.group}" is gone (${msg})`) : err;
}

export class RedisStreamSource implements Source {
  readonly name: string;
  /** A third of claimIdleMs: a held entry is never idle long enough to be claimed. */
  readonly keepAliveMs: number;
  private readonly o: CompiledRedisConsume;
  private readonly consumer: string;
  private readonly logger: Logger;
  /** Commands and scripts. */
  private readonly redis: Redis;
  /** XREADGROUP BLOCK only: a blocked connection answers nothing else. */
  private readonly blocking: Redis;
  private readonly settle: Settle;
  /** Entries this consumer was handed and has not settled or released: a claim of its own entries skips them. */
  private readonly held = new Set<string>();
  private claimCursor = '0-0';
  private nextClaimAt = 0;
  private readonly claimEveryMs: number;
  private readonly blockMs: number;
  private lastErrorLog = 0;

  constructor(opts: RedisStreamSourceOptions) {
    this.o = opts.options;
    this.name = opts.options.name;
    this.consumer = opts.consumer;
    this.logger = opts.logger;
    const connection = { lazyConnect: true, maxRetriesPerRequest: 2, connectionName: `shoal-broker:${opts.consumer}` };
    const RedisClient = redisClass();
    this.redis = new RedisClient(this.o.url, connection);
    this.blocking = new RedisClient(this.o.url, connection);
    // A broker that is down is reported by the calls that fail (rate-limited); these events would repeat it.
    for (const r of [this.redis, this.blocking]) r.on('error', (err: Error) => this.logError('redis connection error', err));
    this.redis.defineCommand('shoalSettle', { numberOfKeys: 3, lua: SETTLE_LUA });
    const command = (this.redis as unknown as Record<string, (...a: unknown[]) => Promise<number>>).shoalSettle!.bind(this.redis);
    this.settle = (keys, args) => command(...keys, ...args);
    this.claimEveryMs = Math.min(5000, Math.max(50, Math.floor(this.o.claimIdleMs / 2)));
    this.blockMs = Math.min(MAX_BLOCK_MS, this.claimEveryMs);
    this.keepAliveMs = Math.max(1, Math.floor(this.o.claimIdleMs / 3));
  }

  /**
   * Again after a failure or a SourceGoneError (the consumer loop retries start): a connection already tried
   * reconnects by itself. A group made anew starts at the stream's beginning ('0'): after a Redis restart or a DEL
   * that is every entry; after an XGROUP DESTROY alone, entries already answered are called again, and their
   * answers are not written twice (the idempotency keys, for idempotencyTtlMs).
   */
  async start(): Promise<void> {
    this.held.clear();
    this.claimCursor = '0-0';
    this.nextClaimAt = 0;
    await Promise.all([this.redis, this.blocking].map((r) => (r.status === 'wait' ? r.connect() : undefined)));
    try {
      await this.redis.xgroup('CREATE', this.o.stream, this.o.group, '0', 'MKSTREAM');
    } catch (err) {
      // Another worker (or an earlier run) created it: the group and its pending entries are shared.
      if (!String((err as Error).message).startsWith('BUSYGROUP')) throw err;
    }
    // Listed in XINFO CONSUMERS from now on, not from its first delivery (Redis 6.2+, as XAUTOCLAIM is).
    await this.redis.xgroup('CREATECONSUMER', this.o.stream, this.o.group, this.consumer);
  }

  async pull(max: number): Promise<BrokerMessage[]> {
    try {
      return await this.pullOnce(max);
    } catch (err) {
      throw gone(err, this.o);
    }
  }

  private async pullOnce(max: number): Promise<BrokerMessage[]> {
    if (performance.now() >= this.nextClaimAt) {
      const claimed = await this.claim(max);
      if (claimed.length > 0) return claimed;
    }
    const res = await this.blocking.callBuffer('XREADGROUP', 'GROUP', this.o.group, this.consumer, 'COUNT', max, 'BLOCK', this.blockMs, 'STREAMS', this.o.stream, '>') as Array<[Buffer, Array<[Buffer, Buffer[]]>]> | null;
    const out: BrokerMessage[] = [];
    for (const [, entries] of res ?? []) {
      for (const [id, fields] of entries) {
        const m = this.message(id.toString(), fields, 1);
        this.held.add(m.id);
        out.push(m);
      }
    }
    return out;
  }

  /**
   * XAUTOCLAIM of entries idle past claimIdleMs, from any consumer; their delivery counts from XPENDING. It takes
   * this consumer's own pending entries too, counting a delivery for each: those are never the ones held (being
   * called), whose keepAlive XCLAIMs every claimIdleMs/3 keep them from going idle that long. Should one be (the
   * keepAlive failed), it is in `held` and skipped here, so it is never processed twice by this consumer.
   */
  private async claim(max: number): Promise<BrokerMessage[]> {
    const res = await this.redis.callBuffer('XAUTOCLAIM', this.o.stream, this.o.group, this.consumer, this.o.claimIdleMs, this.claimCursor, 'COUNT', max) as [Buffer, Array<[Buffer, Buffer[] | null] | null>, Buffer[]?];
    this.claimCursor = res[0].toString();
    // A full pass over the pending entries ended: the next one after a pause; otherwise go on at the next pull.
    if (this.claimCursor === '0-0') this.nextClaimAt = performance.now() + this.claimEveryMs;
    const entries = res[1].filter((e): e is [Buffer, Buffer[]] => e !== null && e[1] !== null && !this.held.has(e[0].toString()));
    if (entries.length === 0) return [];
    const counts = await this.deliveryCounts(entries.map((e) => e[0].toString()));
    return entries.map(([id, fields]) => {
      const m = this.message(id.toString(), fields, counts.get(id.toString()) ?? 1);
      this.held.add(m.id);
      return m;
    });
  }

  private async deliveryCounts(ids: string[]): Promise<Map<string, number>> {
    const pipe = this.redis.pipeline();
    for (const id of ids) pipe.xpending(this.o.stream, this.o.group, id, id, 1);
    const out = new Map<string, number>();
    for (const [err, rows] of (await pipe.exec()) ?? []) {
      if (err !== null) throw err;
      for (const row of rows as Array<[string, string, number, number]>) out.set(row[0], Number(row[3]));
    }
    return out;
  }

  private message(id: string, fields: Buffer[], deliveryCount: number): BrokerMessage {
    let payload: Buffer | undefined;
    let key: string | undefined;
    for (let i = 0; i + 1 < fields.length; i += 2) {
      const f = fields[i]!.toString();
      if (f === this.o.payloadField) payload = fields[i + 1];
      else if (f === this.o.idField) key = fields[i + 1]!.toString();
    }
    if (payload !== undefined) return { id, key: key ?? id, payload, deliveryCount };
    // Still settled: to the dead letters, since no call can be made of it.
    return { id, key: key ?? id, payload: new Uint8Array(0), deliveryCount, malformed: `the entry has no field "${this.o.payloadField}" (payloadField)` };
  }

  async answer(m: BrokerMessage, value: Uint8Array): Promise<'answered' | 'duplicate'> {
    const won = await this.settle([this.dedupKey(m), this.o.output, this.o.stream], [
      this.o.group, m.id, this.o.idempotencyTtlMs, 'id', m.key, 'entry', m.id, 'result', Buffer.from(value.buffer, value.byteOffset, value.byteLength),
    ]);
    this.held.delete(m.id);
    return won === 1 ? 'answered' : 'duplicate';
  }

  async deadLetter(m: BrokerMessage, reason: DeadLetterReason): Promise<'dead_lettered' | 'duplicate'> {
    const won = await this.settle([this.dedupKey(m), this.o.deadLetter, this.o.stream], [
      this.o.group, m.id, this.o.idempotencyTtlMs, 'id', m.key, 'entry', m.id, 'payload', Buffer.from(m.payload.buffer, m.payload.byteOffset, m.payload.byteLength),
      'code', reason.code, 'error', reason.message, 'deliveries', m.deliveryCount,
    ]);
    this.held.delete(m.id);
    return won === 1 ? 'dead_lettered' : 'duplicate';
  }

  /**
   * XCLAIM of the held entries to this consumer with min-idle 0 and JUSTID: it resets their idle time and, JUSTID,
   * does not count a delivery. An entry another consumer claimed meanwhile (a keepAlive failed) comes back here,
   * and the one answer written per key keeps the output right.
   */
  async keepAlive(messages: readonly BrokerMessage[]): Promise<void> {
    if (messages.length === 0) return;
    try {
      await this.redis.xclaim(this.o.stream, this.o.group, this.consumer, 0, ...messages.map((m) => m.id), 'JUSTID');
    } catch (err) {
      throw gone(err, this.o);
    }
  }

  /** The entry stays pending; once idle past claimIdleMs, a claim (this consumer's or another's) delivers it again. */
  async release(m: BrokerMessage): Promise<void> {
    this.held.delete(m.id);
  }

  /** XINFO GROUPS: the group's `lag` (entries not yet delivered; Redis 7) plus its pending entries. */
  async lag(): Promise<number> {
    const groups = await this.redis.xinfo('GROUPS', this.o.stream) as unknown[][];
    for (const g of groups) {
      const info = new Map<string, unknown>();
      for (let i = 0; i + 1 < g.length; i += 2) info.set(String(g[i]), g[i + 1]);
      if (info.get('name') !== this.o.group) continue;
      const pending = Number(info.get('pending') ?? 0);
      const lag = info.get('lag');
      if (typeof lag === 'number') return lag + pending;
      // No counter (Redis 6, or entries deleted from the stream): count what lies past the last delivered entry.
      const after = await this.redis.xrange(this.o.stream, `(${String(info.get('last-delivered-id') ?? '0-0')}`, '+', 'COUNT', MAX_LAG_SCAN);
      return after.length + pending;
    }
    return 0;
  }

  async close(): Promise<void> {
    this.blocking.disconnect();
    try {
      await this.redis.quit();
    } catch {
      this.redis.disconnect();
    }
  }

  /** In the output's hash slot when the output key has a {tag}, so the script's keys share one Redis Cluster slot. */
  private dedupKey(m: BrokerMessage): string {
    return `${this.o.output}:answered:${this.o.stream}:${m.key}`;
  }

  private logError(msg: string, err: Error): void {
    if (Date.now() - this.lastErrorLog < 10_000) return;
    this.lastErrorLog = Date.now();
    this.logger.warn(msg, { source: this.name, error: err.message });
  }
}
