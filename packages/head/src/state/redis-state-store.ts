/**
 * A state store in Redis, for heads that must survive losing their machine. Keys, under `prefix`:
 *
 *   <prefix>lease     the single-head lease: JSON { token, host, pid, sinceMs }, SET NX PX leaseTtlMs, renewed
 *                     every renewEveryMs by its holder
 *   <prefix>schema    the schema version ("1")
 *   <prefix>apps      a hash: application name -> JSON StoredApp (spec, meta, version history)
 *   <prefix>workers   JSON SeenWorker[]
 *
 * Every write is one Lua script, which Redis runs atomically: it checks that the lease key still holds this
 * head's exact lease value (fencing) and only then changes the one key or field the write is about. So a head
 * that lost its lease (stalled past the TTL while a standby took over) gets StoreLeaseLostError instead of
 * overwriting the new head's state, and no reader ever sees half a write. One field per app, rather than one
 * SET of the whole document, keeps a worker-list update from rewriting every spec; the script makes the
 * multi-key change as atomic as a single SET would be. Loads read the keys in one MULTI/EXEC.
 *
 * The fence is as strong as the Redis it runs on: one primary. A failover to a replica that had not yet received
 * the lease can let two heads hold it; keep the keys on one primary (a prefix with a hash tag, `shoal:{prod}:`,
 * puts them in one cluster slot).
 *
 *   const store = new RedisStateStore({ url: 'redis://10.0.0.5:6379', prefix: 'shoal:prod:' });
 *   await store.open({ standby: true, onLeaseLost: () => process.exit(1) });
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { createRequire } from 'node:module';
import type { Redis } from 'ioredis';
import { InvalidOptionError, checkInt, type TimerHandle } from '@shoal/core';
import { StoreCorruptError, StoreIoError, StoreLeaseLostError, StoreLockedError, describeHolder, type LeaseHolder } from './errors.ts';
import { LeasedStateStore, compileStoreOptions, sleep, type CompiledStoreOptions } from './leased-state-store.ts';
import { checkSchemaVersion, checkStoredApp, checkWorkers, corruptAt, emptyState, type StateChange } from './state-document.ts';
import { STATE_SCHEMA_VERSION, type ClusterState, type StateStoreOptions, type StoredApp } from './state-store.ts';

/** ioredis, loaded on first use: a process that never keeps its state in Redis does not pay for its ~40 modules at start-up. */
let RedisClass: typeof Redis | undefined;
function redisClass(): typeof Redis {
  return RedisClass ??= (createRequire(import.meta.url)('ioredis') as typeof import('ioredis')).Redis;
}

export interface RedisStateStoreOptions extends StateStoreOptions {
  /** `redis://[user:password@]host:port[/db]` or `rediss://...`. */
  url: string;
  /** Prepended to every key. @default 'shoal:' */
  prefix?: string;
  /** Lifetime of the lease unless renewed: how long a standby waits after a holder dies. @default 10000 */
  leaseTtlMs?: number;
  /** How often the holder renews the lease; less than leaseTtlMs. @default leaseTtlMs / 3 */
  renewEveryMs?: number;
  /** A Redis command not answered within this fails (ERR_STORE_IO). @default 5000 */
  commandTimeoutMs?: number;
}

interface CompiledRedisOptions extends CompiledStoreOptions {
  url: string;
  prefix: string;
  leaseTtlMs: number;
  renewEveryMs: number;
  commandTimeoutMs: number;
}

const ROOT = 'redisStateStore';

function compile(opts: RedisStateStoreOptions): CompiledRedisOptions {
  if (typeof opts !== 'object' || opts === null) throw new InvalidOptionError(ROOT, 'must be an object with a url', opts);
  if (typeof opts.url !== 'string' || !/^rediss?:\/\//.test(opts.url)) throw new InvalidOptionError(`${ROOT}.url`, 'must be a redis:// or rediss:// URL', opts.url);
  const prefix = opts.prefix ?? 'shoal:';
  if (typeof prefix !== 'string' || prefix === '') throw new InvalidOptionError(`${ROOT}.prefix`, 'must be a non-empty string', prefix);
  const leaseTtlMs = checkInt(`${ROOT}.leaseTtlMs`, opts.leaseTtlMs, 100, 10_000);
  const renewEveryMs = checkInt(`${ROOT}.renewEveryMs`, opts.renewEveryMs, 10, Math.floor(leaseTtlMs / 3));
  if (renewEveryMs >= leaseTtlMs) throw new InvalidOptionError(`${ROOT}.renewEveryMs`, `must be less than leaseTtlMs (${leaseTtlMs})`, renewEveryMs);
  return {
    ...compileStoreOptions(opts, ROOT),
    url: opts.url, prefix, leaseTtlMs, renewEveryMs,
    commandTimeoutMs: checkInt(`${ROOT}.commandTimeoutMs`, opts.commandTimeoutMs, 10, 5000),
  };
}

/** The URL without its password, for messages and logs. */
function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString().replace(/\/$/, '');
  } catch {
    return url;
  }
}

// KEYS[1] lease; ARGV[1] this head's lease value, ARGV[2] ttl ms. Returns {1, ''} or {0, current value or ''}.
const RENEW = `
local held = redis.call('GET', KEYS[1])
if held ~= ARGV[1] then return {0, held or ''} end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, ''}`;

// KEYS[1] lease; ARGV[1] this head's lease value. Deletes the lease only if it is still this head's.
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

// KEYS[1] lease, KEYS[2] schema, KEYS[3] apps, KEYS[4] workers; ARGV[1] lease value, ARGV[2] schema version,
// ARGV[3] op, ARGV[4] app name, ARGV[5] JSON. The fence and the change run as one atomic step.
const WRITE = `
local held = redis.call('GET', KEYS[1])
if held ~= ARGV[1] then return {0, held or ''} end
redis.call('SET', KEYS[2], ARGV[2])
if ARGV[3] == 'putApp' then redis.call('HSET', KEYS[3], ARGV[4], ARGV[5])
elseif ARGV[3] == 'deleteApp' then redis.call('HDEL', KEYS[3], ARGV[4])
elseif ARGV[3] == 'putWorkers' then redis.call('SET', KEYS[4], ARGV[5])
else return redis.error_reply('shoal state store: unknown write ' .. ARGV[3]) end
return {1, ''}`;

type Reply = [number, string];
type ScriptedRedis = Redis & {
  shoalRenew(lease: string, value: string, ttlMs: number): Promise<Reply>;
  shoalRelease(lease: string, value: string): Promise<number>;
  shoalWrite(lease: string, schema: string, apps: string, workers: string, value: string, version: string, op: string, name: string, json: string): Promise<Reply>;
};

export class RedisStateStore extends LeasedStateStore {
  readonly description: string;
  private readonly r: CompiledRedisOptions;
  private readonly keys: { lease: string; schema: string; apps: string; workers: string };
  private readonly redis: ScriptedRedis;
  /** This head's lease value, once it holds the lease. */
  private leaseValue: string | undefined;
  /** Monotonic ms when the last renewal that Redis confirmed was sent: the lease runs at least ttl from then. */
  private confirmedAt = 0;
  private renewTimer: TimerHandle | undefined;
  private renewing: Promise<void> | undefined;
  private stopped = false;
  private lastConnectionError = '';

  constructor(opts: RedisStateStoreOptions) {
    const r = compile(opts);
    super(r);
    this.r = r;
    this.description = `redis ${redactUrl(r.url)} prefix ${r.prefix}`;
    this.keys = { lease: `${r.prefix}lease`, schema: `${r.prefix}schema`, apps: `${r.prefix}apps`, workers: `${r.prefix}workers` };
    this.redis = new (redisClass())(r.url, {
      lazyConnect: true,
      commandTimeout: r.commandTimeoutMs,
      connectTimeout: r.commandTimeoutMs,
      // A write fails soon when Redis is away rather than waiting through many reconnects; the head decides.
      maxRetriesPerRequest: 1,
    }) as ScriptedRedis;
    this.redis.defineCommand('shoalRenew', { numberOfKeys: 1, lua: RENEW });
    this.redis.defineCommand('shoalRelease', { numberOfKeys: 1, lua: RELEASE });
    this.redis.defineCommand('shoalWrite', { numberOfKeys: 4, lua: WRITE });
    // ioredis emits every failed reconnect; log each distinct failure once.
    this.redis.on('error', (err: Error) => {
      if (err.message === this.lastConnectionError) return;
      this.lastConnectionError = err.message;
      this.opts.logger.warn('state store redis connection error', { store: this.description, error: err.message });
    });
    this.redis.on('ready', () => { this.lastConnectionError = ''; });
  }

  protected async acquire(standby: boolean, signal: AbortSignal): Promise<void> {
    try {
      await this.redis.connect();
    } catch (err) {
      throw new StoreIoError(`cannot reach the state store ${this.description}`, err);
    }
    let waiting = false;
    for (;;) {
      const value = JSON.stringify({ token: randomBytes(16).toString('hex'), host: hostname(), pid: process.pid, sinceMs: this.opts.clock.wallNow() });
      const sentAt = this.opts.clock.monoNow();
      const [taken, held, pttl] = await this.io('take the lease', async () => {
        const ok = await this.redis.set(this.keys.lease, value, 'PX', this.r.leaseTtlMs, 'NX');
        if (ok === 'OK') return [true, null, 0] as const;
        const res = await this.redis.multi().get(this.keys.lease).pttl(this.keys.lease).exec();
        return [false, (res?.[0]?.[1] ?? null) as string | null, Number(res?.[1]?.[1] ?? -2)] as const;
      });
      if (taken) {
        this.leaseValue = value;
        this.confirmedAt = sentAt;
        this.scheduleRenewal();
        if (waiting) this.opts.logger.info('standby took the state store lease', { store: this.description });
        return;
      }
      if (held === null) continue; // expired between the SET and the GET
      const holder = this.parseHolder(held);
      if (!standby) {
        throw new StoreLockedError(
          `state store ${this.description} is held by another head: ${describeHolder(holder)} (lease key ${this.keys.lease} expires in ${pttl} ms unless renewed); stop that head, or open this one as a standby`,
          holder,
        );
      }
      if (!waiting) this.opts.logger.info('waiting as standby for the state store lease', { store: this.description, holder: describeHolder(holder), expiresInMs: pttl });
      waiting = true;
      await sleep(this.opts.clock, this.opts.standbyPollMs, signal, `standby wait for state store ${this.description}`);
    }
  }

  protected async read(): Promise<ClusterState> {
    const res = await this.io('read the state', () => this.redis.multi().get(this.keys.schema).hgetall(this.keys.apps).get(this.keys.workers).exec());
    const failed = res?.find(([err]) => err !== null)?.[0];
    if (res === null || failed !== undefined) throw new StoreIoError(`cannot read the state store ${this.description}`, failed ?? new Error('transaction aborted'));
    const schema = res[0]![1] as string | null;
    const rawApps = res[1]![1] as Record<string, string>;
    const rawWorkers = res[2]![1] as string | null;
    if (schema === null) {
      if (Object.keys(rawApps).length === 0 && rawWorkers === null) return emptyState();
      throw new StoreCorruptError(`${this.description} key ${this.keys.schema}`, `it is missing while ${this.keys.apps} or ${this.keys.workers} hold data`);
    }
    checkSchemaVersion(Number(schema), STATE_SCHEMA_VERSION, corruptAt(`${this.description} key ${this.keys.schema}`));
    const state = emptyState();
    for (const [name, json] of Object.entries(rawApps)) {
      const where = `${this.description} key ${this.keys.apps} field ${name}`;
      const app: StoredApp = checkStoredApp('(app)', this.parseJson(json, where), corruptAt(where));
      if (app.spec.name !== name) throw new StoreCorruptError(where, `its spec is named "${app.spec.name}"`);
      state.apps[name] = app;
    }
    if (rawWorkers !== null) {
      const where = `${this.description} key ${this.keys.workers}`;
      state.workers = checkWorkers('(workers)', this.parseJson(rawWorkers, where), corruptAt(where));
    }
    return state;
  }

  protected async persist(_next: ClusterState, change: StateChange): Promise<void> {
    const k = this.keys;
    const [name, json] = change.kind === 'putApp' ? [change.app.spec.name, JSON.stringify(change.app)]
      : change.kind === 'deleteApp' ? [change.name, '']
      : ['', JSON.stringify(change.workers)];
    const [ok, held] = await this.io(`write (${change.kind})`, () =>
      this.redis.shoalWrite(k.lease, k.schema, k.apps, k.workers, this.leaseValue!, String(STATE_SCHEMA_VERSION), change.kind, name, json));
    if (ok !== 1) throw this.lostError(held, `the ${change.kind} write was not made`);
  }

  protected async release(held: boolean): Promise<void> {
    this.stopped = true;
    if (this.renewTimer !== undefined) this.opts.clock.clearTimeout(this.renewTimer);
    await this.renewing;
    if (held && this.leaseValue !== undefined) {
      await this.redis.shoalRelease(this.keys.lease, this.leaseValue)
        .catch((err: unknown) => this.opts.logger.warn('could not release the state store lease; it expires by itself', { store: this.description, error: String(err) }));
    }
    if (this.redis.status === 'ready') await this.redis.quit().catch(() => this.redis.disconnect());
    else this.redis.disconnect();
  }

  private scheduleRenewal(): void {
    if (this.stopped) return;
    this.renewTimer = this.opts.clock.setTimeout(() => {
      this.renewTimer = undefined;
      this.renewing = this.renew().finally(() => {
        this.renewing = undefined;
        if (this.status === 'open' || this.status === 'opening') this.scheduleRenewal();
      });
    }, this.r.renewEveryMs);
  }

  private async renew(): Promise<void> {
    const sentAt = this.opts.clock.monoNow();
    try {
      const [ok, held] = await this.redis.shoalRenew(this.keys.lease, this.leaseValue!, this.r.leaseTtlMs);
      if (ok === 1) { this.confirmedAt = sentAt; return; }
      this.leaseLost(this.lostError(held, 'the renewal found it gone'));
    } catch (err) {
      const sinceMs = Math.round(this.opts.clock.monoNow() - this.confirmedAt);
      if (sinceMs < this.r.leaseTtlMs) {
        this.opts.logger.warn('state store lease renewal failed; retrying', { store: this.description, error: String(err), lastRenewedMsAgo: sinceMs });
        return;
      }
      // Past the TTL Redis may have expired the lease and a standby taken it: act as if it had.
      this.leaseLost(new StoreLeaseLostError(
        `state store ${this.description}: the lease could not be renewed for ${sinceMs} ms (leaseTtlMs=${this.r.leaseTtlMs}): ${String(err)}`,
      ));
    }
  }

  private lostError(held: string, what: string): StoreLeaseLostError {
    let holder: LeaseHolder | undefined;
    try {
      holder = held === '' ? undefined : this.parseHolder(held);
    } catch {
      holder = undefined;
    }
    return new StoreLeaseLostError(
      `state store ${this.description}: this head (pid ${process.pid}) lost the lease, which is now ${holder === undefined ? 'expired' : `held by ${describeHolder(holder)}`}; ${what}`,
      holder,
    );
  }

  private parseHolder(raw: string): LeaseHolder {
    const where = `${this.description} key ${this.keys.lease}`;
    const v = this.parseJson(raw, where) as Partial<LeaseHolder> | null;
    if (typeof v !== 'object' || v === null || typeof v.host !== 'string' || typeof v.pid !== 'number' || typeof v.sinceMs !== 'number') {
      throw new StoreCorruptError(where, 'it lacks host, pid or sinceMs');
    }
    return { host: v.host, pid: v.pid, sinceMs: v.sinceMs };
  }

  private parseJson(text: string, where: string): unknown {
    try {
      return JSON.parse(text);
    } catch (err) {
      throw new StoreCorruptError(where, `it is not JSON (${(err as Error).message})`, { cause: err });
    }
  }

  /** Runs a Redis call, turning connection and timeout failures into StoreIoError. */
  private async io<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw new StoreIoError(`cannot ${what} in the state store ${this.description}`, err);
    }
  }
}
