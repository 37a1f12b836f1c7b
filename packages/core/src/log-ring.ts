/**
 * The recent log records of this process, kept in memory (bounded by lines and by size) so `shoal logs` can read
 * them from every worker without a log shipper; and followers, which get the new matching lines in batches.
 *
 * A record is stored as the JSON line written to stderr plus what the filters need (time, level, app,
 * deployment), taken when it was logged: nothing is parsed to answer a query.
 */
import { InvalidOptionError } from './errors.ts';
import { realClock, type Clock, type TimerHandle } from './clock.ts';
import { logLine } from './log-format.ts';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
/** Levels in order; a filter's level keeps that level and those after it. */
export const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];
/** pino's numbers for our levels (what `level` compares by). */
export const LOG_LEVEL_VALUES: Readonly<Record<LogLevel, number>> = { debug: 20, info: 30, warn: 40, error: 50 };

/** Which records a query or a follower wants; each field given narrows it. */
export interface LogFilter {
  /** Records logged inside a request (or the construction) of this application's replicas. */
  app?: string;
  /** Records logged inside this deployment's replicas (of any application, unless `app` is given too). */
  deployment?: string;
  /** Records at or after this wall time (epoch ms). */
  sinceMs?: number;
  /** Records at this level or above. @default 'debug' (all) */
  level?: LogLevel;
  /** At most this many records, the most recent ones (a query only). @default 1000 */
  limit?: number;
}

/** Largest `limit` a query may ask for. */
export const MAX_LOG_QUERY_LIMIT = 10_000;
export const DEFAULT_LOG_QUERY_LIMIT = 1000;

/** A line and its time (epoch ms), as queries and followers hand them out, oldest first. */
export type TimedLine = [timeMs: number, line: string];

/** What the logger knows of a record when it is written. */
export interface LogMeta {
  timeMs: number;
  level: number;
  app: string | undefined;
  deployment: string | undefined;
  /** The line carries a `worker` field already (logged after this process learned its worker id). */
  tagged: boolean;
}

interface Entry extends LogMeta { line: string }

export interface LogRingOptions {
  /** Records kept; past it, the oldest goes. @default 10000 */
  maxLines?: number;
  /** Characters kept across all records (a JSON line is ASCII but for what fields carry); past it, the oldest goes. @default 8 MiB */
  maxBytes?: number;
  /** A record longer than this is kept as a short line saying so (stderr has it whole). @default 64 KiB */
  maxLineBytes?: number;
  /** For followers' batching timers. @default realClock */
  clock?: Clock;
}

export interface LogQueryAnswer {
  lines: TimedLine[];
  /** Matching records left out by the limit (the older ones). */
  more: number;
}

export interface LogFollowOptions {
  filter: LogFilter;
  /** Prepended as a `worker` field to lines that do not carry one. @default none */
  tag?: string;
  /**
   * Takes one batch; answers false when it cannot (its reader is behind): the batch is dropped and counted, and
   * the next one that is taken carries the count.
   */
  deliver: (lines: TimedLine[], dropped: number) => boolean;
  /** How long new lines gather before a batch goes. @default 100 */
  intervalMs?: number;
  /** Lines waiting for the next batch; past it, new ones are dropped and counted. @default 2000 */
  maxPendingLines?: number;
  /** Characters waiting for the next batch (a batch must fit in one frame); past it, new lines are dropped and counted. @default 1 MiB */
  maxPendingBytes?: number;
}

export interface LogFollower { close(): void }

const check = (path: string, v: number | undefined, fallback: number, min: number): number => {
  if (v === undefined) return fallback;
  if (!Number.isInteger(v) || v < min) throw new InvalidOptionError(path, `must be an integer >= ${min}`, v);
  return v;
};

/** Checks a filter from outside (a query string, a message) and fills the limit. */
export function compileLogFilter(f: LogFilter, path = 'filter'): LogFilter & { limit: number } {
  if (f.level !== undefined && !LOG_LEVELS.includes(f.level)) throw new InvalidOptionError(`${path}.level`, `must be one of ${LOG_LEVELS.join(', ')}`, f.level);
  if (f.sinceMs !== undefined && !Number.isFinite(f.sinceMs)) throw new InvalidOptionError(`${path}.sinceMs`, 'must be a time in epoch ms', f.sinceMs);
  for (const k of ['app', 'deployment'] as const) if (f[k] !== undefined && (typeof f[k] !== 'string' || f[k] === '')) throw new InvalidOptionError(`${path}.${k}`, 'must be a non-empty string', f[k]);
  const limit = check(`${path}.limit`, f.limit, DEFAULT_LOG_QUERY_LIMIT, 1);
  if (limit > MAX_LOG_QUERY_LIMIT) throw new InvalidOptionError(`${path}.limit`, `must be at most ${MAX_LOG_QUERY_LIMIT}`, limit);
  return { ...f, limit };
}

function matches(e: LogMeta, f: LogFilter, minLevel: number): boolean {
  return e.level >= minLevel
    && (f.sinceMs === undefined || e.timeMs >= f.sinceMs)
    && (f.deployment === undefined || e.deployment === f.deployment)
    && (f.app === undefined || e.app === f.app);
}

/** The line with a `worker` field first, unless it has one. */
function tagged(e: Entry, tag: string | undefined): string {
  return tag === undefined || e.tagged ? e.line : `{"worker":${JSON.stringify(tag)},${e.line.slice(1)}`;
}

export class LogRing {
  readonly maxLines: number;
  readonly maxBytes: number;
  readonly maxLineBytes: number;
  private readonly clock: Clock;
  /** A circular buffer of maxLines slots; `start` is the oldest, `count` are used. */
  private readonly slots: Array<Entry | undefined>;
  private start = 0;
  private count = 0;
  private chars = 0;
  private readonly followers = new Set<Follower>();
  /** Records that went, to make room (both bounds), since the process started. */
  evicted = 0;

  constructor(opts: LogRingOptions = {}) {
    this.maxLines = check('maxLines', opts.maxLines, 10_000, 1);
    this.maxBytes = check('maxBytes', opts.maxBytes, 8 * 1024 * 1024, 1024);
    this.maxLineBytes = check('maxLineBytes', opts.maxLineBytes, 64 * 1024, 256);
    if (this.maxLineBytes > this.maxBytes) throw new InvalidOptionError('maxLineBytes', `must be at most maxBytes (${this.maxBytes})`, this.maxLineBytes);
    this.clock = opts.clock ?? realClock;
    this.slots = new Array<Entry | undefined>(this.maxLines);
  }

  get size(): number { return this.count; }
  /** Characters held now (at most maxBytes). */
  get bytes(): number { return this.chars; }

  push(line: string, meta: LogMeta): void {
    if (line.length > this.maxLineBytes) {
      line = logLine('warn', 'logs', `a log line of ${line.length} characters is too long for the in-memory log (maxLineBytes ${this.maxLineBytes}); stderr has it`, { start: line.slice(0, 200) }, meta.timeMs);
      meta = { ...meta, tagged: false };
    }
    while (this.count > 0 && (this.count >= this.maxLines || this.chars + line.length > this.maxBytes)) this.evictOldest();
    const e: Entry = { ...meta, line };
    this.slots[(this.start + this.count) % this.maxLines] = e;
    this.count++;
    this.chars += line.length;
    for (const f of this.followers) f.offer(e);
  }

  /** The most recent matching records (up to the filter's limit), oldest first. */
  query(filter: LogFilter, tag?: string): LogQueryAnswer {
    const f = compileLogFilter(filter);
    const min = LOG_LEVEL_VALUES[f.level ?? 'debug'];
    const out: TimedLine[] = [];
    let more = 0;
    for (let i = this.count - 1; i >= 0; i--) {
      const e = this.slots[(this.start + i) % this.maxLines]!;
      if (!matches(e, f, min)) continue;
      if (out.length < f.limit) out.push([e.timeMs, tagged(e, tag)]); else more++;
    }
    out.reverse();
    return { lines: out, more };
  }

  /** Hands new matching records to `deliver` in batches, until close(). */
  follow(opts: LogFollowOptions): LogFollower {
    const f = new Follower(opts, this.clock, (x) => this.followers.delete(x));
    this.followers.add(f);
    return f;
  }

  get followerCount(): number { return this.followers.size; }

  private evictOldest(): void {
    const e = this.slots[this.start]!;
    this.slots[this.start] = undefined;
    this.start = (this.start + 1) % this.maxLines;
    this.count--;
    this.chars -= e.line.length;
    this.evicted++;
  }
}

class Follower implements LogFollower {
  private readonly filter: LogFilter;
  private readonly minLevel: number;
  private readonly intervalMs: number;
  private readonly maxPending: number;
  private readonly maxPendingBytes: number;
  private pending: TimedLine[] = [];
  private pendingChars = 0;
  private dropped = 0;
  private timer: TimerHandle | undefined;
  private closed = false;

  constructor(private readonly opts: LogFollowOptions, private readonly clock: Clock, private readonly onClose: (f: Follower) => void) {
    this.filter = compileLogFilter(opts.filter, 'follow.filter');
    this.minLevel = LOG_LEVEL_VALUES[this.filter.level ?? 'debug'];
    this.intervalMs = check('follow.intervalMs', opts.intervalMs, 100, 1);
    this.maxPending = check('follow.maxPendingLines', opts.maxPendingLines, 2000, 1);
    this.maxPendingBytes = check('follow.maxPendingBytes', opts.maxPendingBytes, 1024 * 1024, 1024);
  }

  offer(e: Entry): void {
    if (this.closed || !matches(e, this.filter, this.minLevel)) return;
    if (this.pending.length >= this.maxPending || this.pendingChars + e.line.length > this.maxPendingBytes) this.dropped++;
    else {
      this.pending.push([e.timeMs, tagged(e, this.opts.tag)]);
      this.pendingChars += e.line.length;
    }
    this.timer ??= this.clock.setTimeout(this.flush, this.intervalMs);
  }

  private readonly flush = (): void => {
    this.timer = undefined;
    if (this.closed) return;
    const lines = this.pending;
    const dropped = this.dropped;
    this.pending = [];
    this.pendingChars = 0;
    this.dropped = 0;
    let taken = false;
    try {
      taken = this.opts.deliver(lines, dropped);
    } finally {
      // Not taken (or the reader threw): these lines are lost, and said so with the next batch, which goes
      // within another interval even when nothing new is logged.
      if (!taken) {
        this.dropped += dropped + lines.length;
        if (!this.closed) this.timer ??= this.clock.setTimeout(this.flush, this.intervalMs);
      }
    }
  };

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.onClose(this);
  }
}
