import { describe, expect, it } from 'vitest';
import {
  FakeClock, InvalidOptionError, LogRing, contextStorage, createLogger, formatLogLine, formatLogRecord, logLine, processLogRing, type LogMeta, type RequestContext, type TimedLine,
} from '@shoal/core';

function recorder(level: 'debug' | 'info' | 'warn' | 'error' = 'debug'): { lines: string[]; metas: LogMeta[]; records: () => Array<Record<string, unknown>>; log: ReturnType<typeof createLogger> } {
  const lines: string[] = [];
  const metas: LogMeta[] = [];
  const log = createLogger('head', level, (l, m) => { lines.push(l); metas.push(m); });
  return { lines, metas, log, records: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

const ctx: RequestContext = {
  signal: new AbortController().signal, deadline: undefined, app: 'shop', deployment: 'Ranker', replicaId: 'Ranker#3',
  requestId: 'req-42', trace: { traceId: 'ab'.repeat(16), spanId: 'cd'.repeat(8), sampled: true },
};

const meta = (timeMs: number, extra: Partial<LogMeta> = {}): LogMeta => ({ timeMs, level: 30, app: undefined, deployment: undefined, tagged: false, ...extra });

describe('createLogger', () => {
  it('writes one JSON object per line: level by name, ISO time, pid, component, fields, msg', () => {
    const r = recorder();
    r.log.info('replica started', { replicaId: 'a#1', n: 3, ok: true });
    r.log.child('controller').warn('slow', { ms: 12.5 });
    expect(r.lines).toHaveLength(2);
    const [a, b] = r.records();
    expect(a).toEqual({ level: 'info', time: expect.any(String), component: 'head', replicaId: 'a#1', n: 3, ok: true, msg: 'replica started' });
    expect(new Date(a!.time as string).toISOString()).toBe(a!.time);
    expect(b).toMatchObject({ level: 'warn', component: 'head/controller', ms: 12.5, msg: 'slow' });
    expect(r.lines[0]).not.toContain('\n');
    expect(r.metas[0]).toMatchObject({ level: 30, app: undefined, deployment: undefined });
    expect(Date.parse(a!.time as string)).toBe(r.metas[0]!.timeMs);
  });

  it('inside a request adds requestId, traceId, spanId, app, deployment and replica (and files it by app and deployment)', () => {
    const r = recorder();
    contextStorage.run(ctx, () => r.log.info('scored', { items: 2 }));
    r.log.info('outside');
    const [inside, outside] = r.records();
    expect(inside).toMatchObject({ requestId: 'req-42', traceId: 'ab'.repeat(16), spanId: 'cd'.repeat(8), app: 'shop', deployment: 'Ranker', replica: 'Ranker#3', items: 2, msg: 'scored' });
    expect(r.metas[0]).toMatchObject({ app: 'shop', deployment: 'Ranker' });
    expect(outside).not.toHaveProperty('requestId');
    expect(outside).not.toHaveProperty('app');
    expect(r.metas[1]).toMatchObject({ app: undefined, deployment: undefined });
  });

  it('the fields given win over the context fields of the same name, and a field object is not changed', () => {
    const r = recorder();
    const fields = { deployment: 'other' };
    contextStorage.run(ctx, () => r.log.info('x', fields));
    expect(r.records()[0]).toMatchObject({ deployment: 'other', app: 'shop' });
    expect(fields).toEqual({ deployment: 'other' });
  });

  it('renames a field that would repeat a key every record has (level, time, component, msg)', () => {
    const r = recorder();
    r.log.info('spawned', { pid: 7, level: 3, msg: 'm', component: 'c' });
    expect(r.lines[0]).toBe(`{"level":"info","time":"${r.records()[0]!.time as string}","component":"head","pid":7,"level_":3,"msg_":"m","component_":"c","msg":"spawned"}`);
  });

  it('writes nothing below its level', () => {
    const r = recorder('warn');
    r.log.debug('d');
    r.log.info('i');
    r.log.warn('w');
    r.log.error('e', { code: 1 });
    expect(r.records().map((x) => x.level)).toEqual(['warn', 'error']);
  });

  it('refuses a level that is not one of the four, naming it', () => {
    expect(() => createLogger('x', 'loud' as never)).toThrow(InvalidOptionError);
    expect(() => createLogger('x', 'loud' as never)).toThrow(/level.*debug, info, warn, error/);
  });

  it('survives fields that JSON cannot hold (a cycle, a bigint)', () => {
    const r = recorder();
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic.self = cyclic;
    r.log.info('odd', { cyclic, big: 10n });
    expect(r.lines).toHaveLength(1);
    expect(r.records()[0]).toMatchObject({ msg: 'odd', cyclic: { a: 1 } });
  });

  it('the process ring is shared by every copy of the package (one slot on globalThis)', () => {
    expect(processLogRing()).toBe((globalThis as Record<symbol, { ring: LogRing }>)[Symbol.for('shoal.processLog')]!.ring);
  });
});

describe('LogRing', () => {
  it('keeps at most maxLines records, the newest', () => {
    const ring = new LogRing({ maxLines: 3 });
    for (let i = 0; i < 5; i++) ring.push(logLine('info', 't', `m${i}`, {}, 1000 + i), meta(1000 + i));
    expect(ring.size).toBe(3);
    expect(ring.evicted).toBe(2);
    expect(ring.query({}).lines.map(([, l]) => JSON.parse(l).msg)).toEqual(['m2', 'm3', 'm4']);
  });

  it('keeps at most maxBytes characters, evicting the oldest; a line over maxLineBytes is kept as a line saying so', () => {
    const ring = new LogRing({ maxBytes: 2048, maxLineBytes: 512 });
    const line = (i: number): string => logLine('info', 't', `m${i}`, { pad: 'x'.repeat(300) }, i);
    for (let i = 0; i < 20; i++) ring.push(line(i), meta(i));
    expect(ring.bytes).toBeLessThanOrEqual(2048);
    expect(ring.size).toBe(Math.floor(2048 / line(10).length));
    expect(JSON.parse(ring.query({}).lines.at(-1)![1]).msg).toBe('m19');
    ring.push(logLine('info', 't', 'huge', { pad: 'y'.repeat(5000) }, 99), meta(99));
    const last = JSON.parse(ring.query({}).lines.at(-1)![1]) as Record<string, unknown>;
    expect(last.msg).toMatch(/log line of \d+ characters is too long .*maxLineBytes 512/);
    expect(ring.bytes).toBeLessThanOrEqual(2048);
  });

  it('filters by level, time, app and deployment, and answers the most recent `limit` with the count left out', () => {
    const ring = new LogRing();
    ring.push('{"msg":"a"}', meta(1, { level: 20 }));
    ring.push('{"msg":"b"}', meta(2, { level: 40, app: 'shop', deployment: 'Ranker' }));
    ring.push('{"msg":"c"}', meta(3, { level: 50, app: 'shop', deployment: 'Api' }));
    ring.push('{"msg":"d"}', meta(4, { level: 30, app: 'blog', deployment: 'Ranker' }));
    const msgs = (f: Parameters<LogRing['query']>[0]): string[] => ring.query(f).lines.map(([, l]) => JSON.parse(l).msg as string);
    expect(msgs({ level: 'warn' })).toEqual(['b', 'c']);
    expect(msgs({ sinceMs: 3 })).toEqual(['c', 'd']);
    expect(msgs({ deployment: 'Ranker' })).toEqual(['b', 'd']);
    expect(msgs({ app: 'shop', deployment: 'Ranker' })).toEqual(['b']);
    expect(ring.query({ limit: 2 })).toEqual({ lines: [[3, '{"msg":"c"}'], [4, '{"msg":"d"}']], more: 2 });
    expect(() => ring.query({ level: 'loud' as never })).toThrow(/filter\.level: must be one of debug, info, warn, error/);
    expect(() => ring.query({ limit: 0 })).toThrow(/filter\.limit/);
    expect(() => ring.query({ limit: 10_001 })).toThrow(/filter\.limit.*at most 10000/);
  });

  it('tags lines without a worker field, and leaves tagged ones as they are', () => {
    const ring = new LogRing();
    ring.push('{"level":"info","msg":"early"}', meta(1));
    ring.push('{"level":"info","worker":"w-1","msg":"later"}', meta(2, { tagged: true }));
    expect(ring.query({}, 'w-1').lines.map(([, l]) => JSON.parse(l))).toEqual([{ worker: 'w-1', level: 'info', msg: 'early' }, { level: 'info', worker: 'w-1', msg: 'later' }]);
  });

  it('refuses bounds that make no sense, naming the option', () => {
    expect(() => new LogRing({ maxLines: 0 })).toThrow(/maxLines: must be an integer >= 1/);
    expect(() => new LogRing({ maxBytes: 4096, maxLineBytes: 8192 })).toThrow(/maxLineBytes: must be at most maxBytes/);
  });
});

describe('LogRing.follow', () => {
  it('batches new matching lines per interval', () => {
    const clock = new FakeClock();
    const ring = new LogRing({ clock });
    const got: Array<{ lines: TimedLine[]; dropped: number }> = [];
    const f = ring.follow({ filter: { level: 'warn' }, tag: 'w-2', deliver: (lines, dropped) => { got.push({ lines, dropped }); return true; } });
    ring.push('{"msg":"info"}', meta(1, { level: 30 }));
    ring.push('{"msg":"w1"}', meta(2, { level: 40 }));
    ring.push('{"msg":"w2"}', meta(3, { level: 40 }));
    expect(got).toEqual([]);
    clock.advance(100);
    expect(got).toEqual([{ lines: [[2, '{"worker":"w-2","msg":"w1"}'], [3, '{"worker":"w-2","msg":"w2"}']], dropped: 0 }]);
    f.close();
    ring.push('{"msg":"w3"}', meta(4, { level: 40 }));
    clock.advance(1000);
    expect(got).toHaveLength(1);
    expect(ring.followerCount).toBe(0);
  });

  it('drops past maxPendingLines, and when the reader refuses a batch; the next batch taken says how many', () => {
    const clock = new FakeClock();
    const ring = new LogRing({ clock });
    let accept = false;
    const got: Array<{ n: number; dropped: number }> = [];
    ring.follow({ filter: {}, maxPendingLines: 3, deliver: (lines, dropped) => { if (!accept) return false; got.push({ n: lines.length, dropped }); return true; } });
    for (let i = 0; i < 5; i++) ring.push(`{"i":${i}}`, meta(i));
    clock.advance(100); // refused: 3 taken lines lost, and 2 over the bound
    accept = true;
    clock.advance(100); // nothing new: the count alone comes
    expect(got).toEqual([{ n: 0, dropped: 5 }]);
    ring.push('{"i":9}', meta(9));
    clock.advance(100);
    expect(got).toEqual([{ n: 0, dropped: 5 }, { n: 1, dropped: 0 }]);
  });
});

describe('formatLogRecord', () => {
  it('puts time, level, worker, component and msg first, then the other fields as key=value', () => {
    const line = '{"level":"warn","time":"2026-12-01T16:00:00.123Z","component":"replica","worker":"w-1","requestId":"r 1","pid":7,"obj":{"a":1},"msg":"slow"}';
    expect(formatLogLine(line)).toBe('2026-12-01T16:00:00.123Z WARN  w-1 replica slow requestId="r 1" pid=7 obj={"a":1}');
    expect(formatLogLine('not json')).toBe('not json');
    expect(formatLogRecord({ msg: 'x' })).toBe('- ?     x');
  });
});
