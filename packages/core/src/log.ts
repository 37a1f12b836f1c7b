/**
 * Structured logs: one JSON object per line (pino), on stderr and in this process's in-memory ring (log-ring.ts),
 * which `shoal logs` reads from every worker. Every record has
 *
 *   {"level":"info","time":"2026-12-01T16:00:00.123Z","component":"head/controller",
 *    "worker":"w-1","requestId":"…","traceId":"…","spanId":"…","app":"a","deployment":"D","replica":"D#1",
 *    …the fields given…,"msg":"…"}
 *
 * `time` is ISO 8601 UTC with milliseconds (sorts as text, reads without a tool); `level` is a name; `worker` is
 * there once the process has joined a head as a worker; the request fields when the line was logged inside a
 * replica's request (requestContext()). SHOAL_LOG_LEVEL picks the least level written; SHOAL_LOG_FORMAT=pretty
 * writes stderr as one readable line per record instead (auto, the default: pretty on a terminal, JSON otherwise);
 * the ring always holds JSON. pino writes synchronously to our own destination: no transport threads.
 *
 * User code logs with `logger` (`import { logger } from '@shoal/core'`): inside a replica its lines carry the
 * application, deployment, replica and request ids without being told.
 */
import { pino, type Logger as PinoLogger } from 'pino';
import { env } from './constants.ts';
import { contextStorage, type RequestContext } from './context.ts';
import { InvalidOptionError } from './errors.ts';
import { formatLogLine } from './log-format.ts';
import { LOG_LEVEL_VALUES, LOG_LEVELS, LogRing, type LogLevel, type LogMeta } from './log-ring.ts';

export type { LogLevel } from './log-ring.ts';

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  /** A logger whose component is this one's and `component`, joined by '/' ("head/controller"). */
  child(component: string): Logger;
}

/** Where a logger's lines go: the JSON line (no newline) and what the ring files it by. */
export type LogSink = (line: string, meta: LogMeta) => void;

/** What every copy of this package in the process shares: one ring, one worker id, one stderr format. */
interface ProcessLog {
  ring: LogRing;
  worker: string | undefined;
  pretty: boolean | undefined;
}
const KEY = Symbol.for('shoal.processLog');
const g = globalThis as unknown as Record<symbol, ProcessLog | undefined>;
const shared: ProcessLog = g[KEY] ??= { ring: new LogRing(), worker: undefined, pretty: undefined };

/** This process's recent records (what a worker answers `logs` from). */
export function processLogRing(): LogRing {
  return shared.ring;
}

/** Names this process in every later record (`"worker":"w-1"`); a worker calls it when the head gives it its id. */
export function setProcessLogWorker(worker: string | undefined): void {
  shared.worker = worker;
}

function prettyStderr(): boolean {
  if (shared.pretty === undefined) {
    const f = env.logFormat();
    if (f !== 'json' && f !== 'pretty' && f !== 'auto') throw new InvalidOptionError('env SHOAL_LOG_FORMAT', 'must be json, pretty or auto', f);
    shared.pretty = f === 'pretty' || (f === 'auto' && process.stderr.isTTY === true);
  }
  return shared.pretty;
}

/** The default sink: the ring, and stderr (JSON, or the readable form). */
export const processLogSink: LogSink = (line, meta) => {
  shared.ring.push(line, meta);
  process.stderr.write(prettyStderr() ? `${formatLogLine(line)}\n` : `${line}\n`);
};

/**
 * What the record being written is (set just before pino is called, read by its time function, its mixin and our
 * destination, all within the same synchronous call).
 */
const current: { timeMs: number; level: number; ctx: RequestContext | undefined } = { timeMs: 0, level: 0, ctx: undefined };
/** The mixin's answer when there is nothing to add: tells the merge strategy to allocate nothing. */
const NOTHING = Object.freeze({});

function mixin(): object {
  const ctx = current.ctx;
  const worker = shared.worker;
  if (ctx === undefined) return worker === undefined ? NOTHING : { worker };
  const out: Record<string, unknown> = {};
  if (worker !== undefined) out.worker = worker;
  if (ctx.requestId !== undefined) out.requestId = ctx.requestId;
  if (ctx.trace !== undefined) { out.traceId = ctx.trace.traceId; out.spanId = ctx.trace.spanId; }
  out.app = ctx.app;
  out.deployment = ctx.deployment;
  out.replica = ctx.replicaId;
  return out;
}

/** Keys every record has; a field of the same name is renamed `field_` rather than written twice. */
const RESERVED = ['level', 'time', 'component', 'msg'] as const;

function clashFree(fields: Record<string, unknown>): Record<string, unknown> {
  if (!RESERVED.some((k) => k in fields)) return fields;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields)) out[(RESERVED as readonly string[]).includes(k) ? `${k}_` : k] = v;
  return out;
}

function checkLevel(level: string, path = 'level'): LogLevel {
  if (!(LOG_LEVELS as readonly string[]).includes(level)) throw new InvalidOptionError(path, `must be one of ${LOG_LEVELS.join(', ')}`, level);
  return level as LogLevel;
}

/**
 * A logger for `component`. `level`: the least level written (SHOAL_LOG_LEVEL by default). `sink`: where lines
 * go (tests pass a function that keeps them); by default this process's ring and stderr.
 */
export function createLogger(component: string, level: LogLevel = checkLevel(env.logLevel(), 'env SHOAL_LOG_LEVEL'), sink: LogSink = processLogSink): Logger {
  const min = LOG_LEVEL_VALUES[checkLevel(level)];
  const out = sink;
  const root = pino({
    level,
    // No pid or hostname: fields often carry a pid of their own (a child's), and JSON keys must not repeat.
    base: undefined,
    timestamp: () => `,"time":"${new Date(current.timeMs).toISOString()}"`,
    formatters: { level: (label) => ({ level: label }) },
    mixin,
    mixinMergeStrategy: (merge: object, extra: object) => (extra === NOTHING ? merge : Object.assign(extra, merge)),
  }, {
    write(s: string): void {
      const ctx = current.ctx;
      // pino ends each line with a newline; the sink gets the line alone.
      out(s.endsWith('\n') ? s.slice(0, -1) : s, { timeMs: current.timeMs, level: current.level, app: ctx?.app, deployment: ctx?.deployment, tagged: shared.worker !== undefined });
    },
  });
  const make = (name: string): Logger => {
    const p: PinoLogger = root.child({ component: name });
    const emit = (lv: LogLevel, msg: string, fields: Record<string, unknown> | undefined): void => {
      const n = LOG_LEVEL_VALUES[lv];
      if (n < min) return;
      current.timeMs = Date.now();
      current.level = n;
      current.ctx = contextStorage.getStore();
      try {
        if (fields === undefined) p[lv](msg); else p[lv](clashFree(fields), msg);
      } finally {
        current.ctx = undefined;
      }
    };
    return {
      debug: (m, f) => emit('debug', m, f),
      info: (m, f) => emit('info', m, f),
      warn: (m, f) => emit('warn', m, f),
      error: (m, f) => emit('error', m, f),
      child: (c) => make(`${name}/${c}`),
    };
  };
  return make(component);
}

export const silentLogger: Logger = {
  debug() {}, info() {}, warn() {}, error() {},
  child() { return silentLogger; },
};

let userLogger: Logger | undefined;
const user = (): Logger => (userLogger ??= createLogger('replica'));

/**
 * The logger for application code. Inside a replica (its constructor, init() and requests) every line carries
 * app, deployment, replica, and the request's requestId and traceId; `logger.child('tokenizer')` names a part.
 *
 *   import { logger } from '@shoal/core';
 *   class Api { fetch(req) { logger.info('scoring', { items: 3 }); ... } }
 */
export const logger: Logger = {
  debug: (m, f) => user().debug(m, f),
  info: (m, f) => user().info(m, f),
  warn: (m, f) => user().warn(m, f),
  error: (m, f) => user().error(m, f),
  child: (c) => user().child(c),
};
