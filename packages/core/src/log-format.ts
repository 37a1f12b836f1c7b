/**
 * The human form of a JSON log record (SHOAL_LOG_FORMAT=pretty on stderr, and `shoal logs` without --json), and
 * lines about the logs themselves (a worker that did not answer, lines dropped) in the same JSON shape.
 */
import type { LogLevel } from './log-ring.ts';

/** Keys every record has, printed in fixed places rather than as key=value. */
const PLACED = new Set(['time', 'level', 'msg', 'component', 'worker']);

function value(v: unknown): string {
  if (typeof v === 'string') return /^[^\s"=]*$/.test(v) && v !== '' ? v : JSON.stringify(v);
  try { return JSON.stringify(v) ?? String(v); } catch { return String(v); }
}

/**
 * `2026-12-01T16:00:00.123Z INFO  w-1 replica/api hello requestId=abc n=3`: time, level, worker (when the
 * record names one), component, message, then every other field as key=value.
 */
export function formatLogRecord(rec: Record<string, unknown>): string {
  const level = typeof rec.level === 'string' ? rec.level.toUpperCase() : String(rec.level ?? '?');
  const head = [typeof rec.time === 'string' ? rec.time : typeof rec.time === 'number' ? new Date(rec.time).toISOString() : '-', level.padEnd(5)];
  if (rec.worker !== undefined) head.push(String(rec.worker));
  if (rec.component !== undefined) head.push(String(rec.component));
  head.push(typeof rec.msg === 'string' ? rec.msg : value(rec.msg));
  for (const [k, v] of Object.entries(rec)) if (!PLACED.has(k)) head.push(`${k}=${value(v)}`);
  return head.join(' ');
}

/** formatLogRecord of a JSON line; a line that is not a JSON object is given back as it is. */
export function formatLogLine(line: string): string {
  let rec: unknown;
  try { rec = JSON.parse(line); } catch { return line; }
  return typeof rec === 'object' && rec !== null && !Array.isArray(rec) ? formatLogRecord(rec as Record<string, unknown>) : line;
}

/** A record written outside any logger (it goes to a reader, not into a process's log): same keys, same order. */
export function logLine(level: LogLevel, component: string, msg: string, fields: Record<string, unknown> = {}, timeMs = Date.now()): string {
  return JSON.stringify({ level, time: new Date(timeMs).toISOString(), component, ...fields, msg });
}
