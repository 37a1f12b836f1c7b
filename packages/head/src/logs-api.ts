/**
 * GET /api/logs: the recent log records of the head and of every live worker, merged into one NDJSON answer sorted
 * by time, each line with a `worker` field ("head" for the head's own). With follow=1 the answer stays open and
 * new matching lines stream as they are logged (in batches of up to 100 ms per process) until the client goes; a
 * worker that joins meanwhile is followed too.
 *
 * Bounded everywhere: a worker that does not answer within `answerTimeoutMs` is left out, with a line saying so;
 * a client that does not read loses lines past `maxBufferedBytes` (a line says how many); a worker whose
 * connection to the head is congested drops its batches and says how many with the next one.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  BadRequestError, DEFAULT_LOG_QUERY_LIMIT, compileLogFilter, logLine, toWireError, type LogFilter, type LogFollower, type LogLevel, type LogQueryAnswer,
  type LogRing, type TimedLine,
} from '@shoal/core';
import type { LogsPushMessage, NewRequest, Peer } from '@shoal/protocol';

export interface HeadLogsOptions {
  /** The head process's own records. */
  ring: LogRing;
  /** The workers connected now. */
  workers: () => Array<[workerId: string, peer: LogPeer]>;
  /** How long a worker has to answer a query before it is left out. @default 1000 */
  answerTimeoutMs?: number;
  /** Bytes a follow's client may leave unread before new lines are dropped (and counted). @default 1 MiB */
  maxBufferedBytes?: number;
}

/** What this needs of a worker's connection (a Peer; tests pass fakes). */
export type LogPeer = Pick<Peer, 'requestWithId' | 'forget' | 'send' | 'closed'>;

/** The worker field of the head's own lines. */
const HEAD = 'head';

/** One open follow: its client, its filter, and its subscriptions on workers (by sub id). */
interface Follow {
  res: ServerResponse;
  filter: LogFilter;
  startedAtMs: number;
  subs: Map<number, { workerId: string; peer: LogPeer }>;
  own: LogFollower | undefined;
  /**
   * Lines that came while the merged backlog was still being gathered; written right after it. Bounded by
   * maxBufferedBytes like the client's buffer: past it lines are counted in earlyDropped, and a line says so.
   */
  early: string[] | undefined;
  earlyBytes: number;
  earlyDropped: number;
  /** Per worker, the time of the last line streamed: a worker that comes back is followed from there on. */
  lastMs: Map<string, number>;
  dropped: number;
  closed: boolean;
}

export class HeadLogs {
  private readonly follows = new Set<Follow>();
  private readonly bySub = new Map<number, Follow>();
  private nextSub = 1;
  private readonly answerTimeoutMs: number;
  private readonly maxBufferedBytes: number;

  constructor(private readonly opts: HeadLogsOptions) {
    this.answerTimeoutMs = opts.answerTimeoutMs ?? 1000;
    this.maxBufferedBytes = opts.maxBufferedBytes ?? 1024 * 1024;
  }

  /** Follows open now (for tests and status). */
  get followCount(): number { return this.follows.size; }
  /** Subscriptions on workers held now, over every follow (for tests). */
  get subscriptionCount(): number { return this.bySub.size; }

  /** Answers GET /api/logs (the token was checked); a bad parameter throws before anything is written. */
  async serve(url: URL, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const { filter, follow } = parseLogQuery(url.searchParams);
    if (!follow) {
      const lines = await this.gather(filter);
      const body = lines.length === 0 ? '' : `${lines.join('\n')}\n`;
      res.writeHead(200, { 'content-type': 'application/x-ndjson; charset=utf-8', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' }).end(body);
      return;
    }
    req.resume();
    res.writeHead(200, { 'content-type': 'application/x-ndjson; charset=utf-8', 'cache-control': 'no-store', 'x-accel-buffering': 'no' });
    res.flushHeaders();
    const f: Follow = { res, filter, startedAtMs: Date.now(), subs: new Map(), own: undefined, early: [], earlyBytes: 0, earlyDropped: 0, lastMs: new Map(), dropped: 0, closed: false };
    this.follows.add(f);
    res.on('close', () => this.close(f));
    // The head's own: backlog and subscription in the same turn.
    const own = this.opts.ring.query(filter, HEAD);
    f.own = this.opts.ring.follow({ filter: followFilter(filter), tag: HEAD, deliver: (lines, dropped) => this.deliver(f, HEAD, lines, dropped) });
    const answers = await Promise.all(this.opts.workers().map(([id, peer]) => this.subscribe(f, id, peer, filter)));
    if (f.closed) return;
    const { lines } = merge([{ source: HEAD, answer: own }, ...answers], filter.limit ?? DEFAULT_LOG_QUERY_LIMIT);
    const early = f.early ?? [];
    f.early = undefined;
    if (f.earlyDropped > 0) {
      early.push(logLine('warn', 'logs', `${f.earlyDropped} log lines dropped while the backlog was gathered (over maxBufferedBytes ${this.maxBufferedBytes})`, { dropped: f.earlyDropped }));
      f.earlyDropped = 0;
    }
    this.write(f, [...lines, ...early]);
  }

  /** A worker joined: every open follow subscribes to it, from the follow's start on. */
  workerJoined(workerId: string, peer: LogPeer): void {
    for (const f of this.follows) {
      if (f.closed) continue;
      const last = f.lastMs.get(workerId);
      const since = Math.max(f.filter.sinceMs ?? 0, f.startedAtMs, last === undefined ? 0 : last + 1);
      void this.subscribe(f, workerId, peer, { ...f.filter, sinceMs: since }).then((a) => {
        const { lines } = merge([a], f.filter.limit ?? DEFAULT_LOG_QUERY_LIMIT);
        this.write(f, lines);
      });
    }
  }

  /**
   * A worker's connection closed: its subscriptions end with it (the worker ends its side on its own). Without
   * this they stayed in every follow until the client went. `peer`: the connection that closed, so a newer one
   * of the same worker keeps its subscriptions.
   */
  workerLeft(workerId: string, peer: LogPeer): void {
    for (const f of this.follows) {
      for (const [sub, s] of f.subs) {
        if (s.workerId !== workerId || s.peer !== peer) continue;
        f.subs.delete(sub);
        this.bySub.delete(sub);
      }
    }
  }

  /** A `logsPush` from a worker. */
  onPush(workerId: string, m: LogsPushMessage): void {
    const f = this.bySub.get(m.sub);
    if (f === undefined || f.closed || f.subs.get(m.sub)?.workerId !== workerId) return;
    this.deliver(f, workerId, m.lines, m.dropped ?? 0);
  }

  /** Ends every follow (the head stops). */
  closeAll(): void {
    for (const f of [...this.follows]) { f.res.end(); this.close(f); }
  }

  /** Every source's matching lines, merged by time and cut to the limit; notes for sources that did not answer. */
  private async gather(filter: LogFilter): Promise<string[]> {
    const own = { source: HEAD, answer: this.opts.ring.query(filter, HEAD) };
    const answers = await Promise.all(this.opts.workers().map(([id, peer]) => this.ask(id, peer, { t: 'logs', filter })));
    return merge([own, ...answers], filter.limit ?? DEFAULT_LOG_QUERY_LIMIT).lines;
  }

  private async subscribe(f: Follow, workerId: string, peer: LogPeer, filter: LogFilter): Promise<Source> {
    const sub = this.nextSub++;
    f.subs.set(sub, { workerId, peer });
    this.bySub.set(sub, f);
    const a = await this.ask(workerId, peer, { t: 'logsFollow', sub, filter });
    const lines = a.answer?.lines;
    if (lines !== undefined && lines.length > 0) f.lastMs.set(workerId, Math.max(f.lastMs.get(workerId) ?? 0, lines[lines.length - 1]![0]));
    // Left out (no answer in time, or an error): a late subscription must not stream to no one.
    if (a.answer === undefined || f.closed) this.unsubscribe(sub);
    return a;
  }

  private unsubscribe(sub: number): void {
    const f = this.bySub.get(sub);
    const s = f?.subs.get(sub);
    this.bySub.delete(sub);
    f?.subs.delete(sub);
    if (s !== undefined && !s.peer.closed) s.peer.send({ t: 'logsUnfollow', sub });
  }

  /** One worker's answer, or a note saying why there is none; never waits past answerTimeoutMs. */
  private async ask(workerId: string, peer: LogPeer, message: NewRequest): Promise<Source> {
    let timer: NodeJS.Timeout | undefined;
    const { id, reply } = peer.requestWithId(message);
    const timeout = new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), this.answerTimeoutMs); });
    try {
      const r = await Promise.race([reply, timeout]);
      if (r === 'timeout') {
        peer.forget(id);
        return { source: workerId, note: logLine('warn', 'logs', `worker ${workerId} did not answer within ${this.answerTimeoutMs} ms; its lines are left out`, { worker: workerId }) };
      }
      if (!r.ok) return { source: workerId, note: logLine('warn', 'logs', `worker ${workerId} could not answer: ${r.error.message}; its lines are left out`, { worker: workerId }) };
      return { source: workerId, answer: r.value as LogQueryAnswer };
    } catch (err) {
      return { source: workerId, note: logLine('warn', 'logs', `worker ${workerId} could not answer: ${toWireError(err).message}; its lines are left out`, { worker: workerId }) };
    } finally {
      clearTimeout(timer);
    }
  }

  /** New lines for a follow; false (dropped, counted) when its client is behind. */
  private deliver(f: Follow, source: string, lines: TimedLine[], dropped: number): boolean {
    if (f.closed) return true;
    const out: string[] = [];
    if (dropped > 0) out.push(logLine('warn', 'logs', `${dropped} log lines of ${source} dropped: the head did not keep up`, { worker: source, dropped }));
    for (const [, line] of lines) out.push(line);
    if (lines.length > 0) f.lastMs.set(source, Math.max(f.lastMs.get(source) ?? 0, lines[lines.length - 1]![0]));
    return this.write(f, out);
  }

  private write(f: Follow, lines: string[]): boolean {
    if (f.closed || lines.length === 0) return true;
    if (f.early !== undefined) {
      for (const l of lines) {
        if (f.earlyBytes + l.length > this.maxBufferedBytes) { f.earlyDropped++; continue; }
        f.earlyBytes += l.length + 1;
        f.early.push(l);
      }
      return true;
    }
    if (f.res.writableLength > this.maxBufferedBytes) { f.dropped += lines.length; return true; }
    let text = '';
    if (f.dropped > 0) {
      text += `${logLine('warn', 'logs', `${f.dropped} log lines dropped: this reader did not keep up`, { dropped: f.dropped })}\n`;
      f.dropped = 0;
    }
    text += `${lines.join('\n')}\n`;
    f.res.write(text);
    return true;
  }

  private close(f: Follow): void {
    if (f.closed) return;
    f.closed = true;
    this.follows.delete(f);
    f.own?.close();
    for (const sub of [...f.subs.keys()]) this.unsubscribe(sub);
  }
}

/** A source's answer, or the note that stands for it. */
interface Source { source: string; answer?: LogQueryAnswer; note?: string }

/**
 * Lines of every source sorted by time (a stable sort: one source's order stays), the most recent `limit`; then
 * one note per source that did not answer, and one for what the limit left out.
 */
function merge(sources: Source[], limit: number): { lines: string[] } {
  const all: TimedLine[] = [];
  let more = 0;
  const notes: string[] = [];
  for (const s of sources) {
    if (s.answer !== undefined) { all.push(...s.answer.lines); more += s.answer.more; }
    if (s.note !== undefined) notes.push(s.note);
  }
  all.sort((a, b) => a[0] - b[0]);
  const cut = Math.max(0, all.length - limit);
  more += cut;
  const lines = all.slice(cut).map(([, l]) => l);
  if (more > 0) lines.unshift(logLine('info', 'logs', `${more} older matching lines left out (limit ${limit})`, { more, limit }));
  return { lines: [...lines, ...notes] };
}

/** A follow's subscription wants every new line: no since (they are new) and no limit. */
function followFilter(f: LogFilter): LogFilter {
  const { sinceMs: _s, limit: _l, ...rest } = f;
  return rest;
}

/**
 * The query string: deployment=D or APP/D, app=A, since=ISO 8601 time or epoch ms (12+ digits), level=debug|info|warn|error,
 * limit=N (1..10000, default 1000), follow=1.
 */
export function parseLogQuery(q: URLSearchParams): { filter: LogFilter & { limit: number }; follow: boolean } {
  const known = new Set(['deployment', 'app', 'since', 'level', 'limit', 'follow']);
  for (const k of q.keys()) if (!known.has(k)) throw new BadRequestError(`unknown parameter "${k}" for /api/logs (known: ${[...known].join(', ')})`);
  const filter: LogFilter = {};
  let app = q.get('app') ?? undefined;
  let deployment = q.get('deployment') ?? undefined;
  if (deployment !== undefined && deployment.includes('/')) {
    const [a, d] = [deployment.slice(0, deployment.indexOf('/')), deployment.slice(deployment.indexOf('/') + 1)];
    if (app !== undefined && app !== a) throw new BadRequestError(`deployment "${deployment}" names application "${a}" but app is "${app}"`);
    app = a;
    deployment = d;
  }
  if (app !== undefined) filter.app = app;
  if (deployment !== undefined) filter.deployment = deployment;
  const since = q.get('since');
  if (since !== null) {
    // Epoch ms with 12 digits or more (from 1973 on, what `shoal logs` sends), or an ISO 8601 time: a bare number
    // such as 2024 is neither a year nor 2 s after 1970, so it is refused rather than guessed.
    const ms = /^\d{12,}$/.test(since) ? Number(since) : /^\d{4}-\d\d-\d\d/.test(since) ? Date.parse(since) : Number.NaN;
    if (!Number.isFinite(ms)) {
      throw new BadRequestError(`since: must be an ISO 8601 time (2026-12-01T16:00:00Z) or epoch milliseconds (12 digits or more), got "${since}"`);
    }
    filter.sinceMs = ms;
  }
  const level = q.get('level');
  if (level !== null) filter.level = level as LogLevel;
  const limit = q.get('limit');
  if (limit !== null) {
    if (!/^\d+$/.test(limit)) throw new BadRequestError(`limit: must be a whole number, got "${limit}"`);
    filter.limit = Number(limit);
  }
  const follow = q.get('follow');
  if (follow !== null && !['1', '0', 'true', 'false'].includes(follow)) throw new BadRequestError(`follow: must be 1 or 0, got "${follow}"`);
  try {
    return { filter: compileLogFilter(filter, 'logs'), follow: follow === '1' || follow === 'true' };
  } catch (err) {
    throw new BadRequestError(toWireError(err).message);
  }
}
