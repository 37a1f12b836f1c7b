/**
 * `shoal logs [--follow|-f] [--deployment APP/DEP|DEP] [--app A] [--since 10m|ISO] [--level L] [--limit N] [--json]`:
 * the recent log records of the head and every worker (GET /api/logs), one readable line each, or the JSON lines
 * as they are with --json. --follow keeps printing new ones until Ctrl-C, which ends it with exit code 0.
 */
import type { ParseArgsConfig } from 'node:util';
import { InvalidOptionError, LOG_LEVELS, MAX_LOG_QUERY_LIMIT, ReplicaUnavailableError, ShoalError, formatLogLine } from '@shoal/core';

export const LOGS_FLAGS = {
  follow: { type: 'boolean', short: 'f' },
  deployment: { type: 'string' },
  app: { type: 'string' },
  since: { type: 'string' },
  level: { type: 'string' },
  limit: { type: 'string' },
  json: { type: 'boolean' },
} satisfies ParseArgsConfig['options'];

type LogsValues = { [K in keyof typeof LOGS_FLAGS]?: (typeof LOGS_FLAGS)[K]['type'] extends 'boolean' ? boolean : string };

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** --since: a duration back from now (30s, 10m, 2h, 1d) or an ISO 8601 time; epoch ms. */
export function parseSince(raw: string, nowMs = Date.now()): number {
  const rel = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(raw);
  if (rel !== null) return Math.round(nowMs - Number(rel[1]) * UNIT_MS[rel[2]!]!);
  const at = /^\d{4}-\d\d-\d\d/.test(raw) ? Date.parse(raw) : Number.NaN;
  if (!Number.isFinite(at)) throw new InvalidOptionError('--since', 'must be a duration back from now (30s, 10m, 2h, 1d) or an ISO 8601 time (2026-12-01T16:00:00Z)', raw);
  return at;
}

/** The /api/logs path and query for the flags; every bad flag is an InvalidOptionError naming it. */
export function logsPath(v: LogsValues, nowMs = Date.now()): string {
  const q = new URLSearchParams();
  if (v.deployment !== undefined) {
    const parts = v.deployment.split('/');
    if (parts.length > 2 || parts.some((p) => p === '')) throw new InvalidOptionError('--deployment', 'must be APP/DEPLOYMENT or DEPLOYMENT', v.deployment);
    if (parts.length === 2 && v.app !== undefined && v.app !== parts[0]) throw new InvalidOptionError('--app', `contradicts --deployment ${v.deployment}`, v.app);
    q.set('deployment', v.deployment);
  }
  if (v.app !== undefined) {
    if (v.app === '') throw new InvalidOptionError('--app', 'must be an application name', v.app);
    q.set('app', v.app);
  }
  if (v.since !== undefined) q.set('since', String(parseSince(v.since, nowMs)));
  if (v.level !== undefined) {
    if (!(LOG_LEVELS as readonly string[]).includes(v.level)) throw new InvalidOptionError('--level', `must be one of ${LOG_LEVELS.join(', ')}`, v.level);
    q.set('level', v.level);
  }
  if (v.limit !== undefined) {
    const n = /^\d+$/.test(v.limit) ? Number(v.limit) : Number.NaN;
    if (!Number.isInteger(n) || n < 1 || n > MAX_LOG_QUERY_LIMIT) throw new InvalidOptionError('--limit', `must be an integer from 1 to ${MAX_LOG_QUERY_LIMIT}`, v.limit);
    q.set('limit', String(n));
  }
  if (v.follow === true) q.set('follow', '1');
  const s = q.toString();
  return s === '' ? '/api/logs' : `/api/logs?${s}`;
}

/**
 * Prints the lines of GET `url` as they arrive. Resolves 0 when the answer ends, or when the process gets SIGINT
 * or SIGTERM (a follow's Ctrl-C); throws with the head's message when it refuses.
 */
export async function printLogs(url: string, token: string, opts: { json: boolean; out?: (line: string) => void }): Promise<number> {
  const out = opts.out ?? ((line: string) => { process.stdout.write(`${line}\n`); });
  const ac = new AbortController();
  const stop = (): void => ac.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  // A reader that went (`shoal logs | head`) ends it too.
  process.stdout.once('error', stop);
  try {
    let res: Response;
    try {
      res = await fetch(url, { headers: { authorization: `Bearer ${token}` }, signal: ac.signal });
    } catch (err) {
      if (ac.signal.aborted) return 0;
      throw new ReplicaUnavailableError(`cannot reach the head at ${new URL(url).host}: ${((err as Error).cause as Error | undefined)?.message ?? (err as Error).message}`);
    }
    if (!res.ok) {
      const text = await res.text();
      let message = text;
      try { message = (JSON.parse(text) as { error?: string }).error ?? text; } catch { /* not JSON: the text itself */ }
      throw new ShoalError(res.status === 401 ? 'ERR_UNAUTHORIZED' : 'ERR_INTERNAL', `head answered ${res.status}: ${message}`, { httpStatus: res.status });
    }
    const decoder = new TextDecoder();
    let pending = '';
    const emit = (line: string): void => { if (line !== '') out(opts.json ? line : formatLogLine(line)); };
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        pending += decoder.decode(chunk, { stream: true });
        let nl: number;
        while ((nl = pending.indexOf('\n')) >= 0) {
          emit(pending.slice(0, nl));
          pending = pending.slice(nl + 1);
        }
      }
    } catch (err) {
      if (ac.signal.aborted) return 0;
      throw new ReplicaUnavailableError(`the log stream from ${new URL(url).host} broke: ${((err as Error).cause as Error | undefined)?.message ?? (err as Error).message}`);
    }
    emit(pending + decoder.decode());
    return 0;
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    process.stdout.off('error', stop);
  }
}
