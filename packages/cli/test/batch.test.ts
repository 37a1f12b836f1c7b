/**
 * runBatch with the `call` function form: answers in input order whatever order they complete in, bad lines as
 * error lines, resume after an interruption (AbortSignal) with every line exactly once, refusals of a checkpoint
 * that does not match, and the bounds on what is in flight and in the window over a 200,000-line input.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, appendFileSync, existsSync, createWriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { BatchAbortError, BatchError } from '../src/batch/errors.ts';
import { runBatch, isTransientError, type BatchCall } from '../src/batch/run-batch.ts';
import { BadRequestError, DeadlineExceededError, NoReplicaError, NotFoundError, PeerGoneError, QueueFullError, ReplicaUnavailableError, UserCodeError } from '@shoal/core';
import { checkpointPathFor, readCheckpoint } from '../src/batch/checkpoint.ts';
import { readLines } from '../src/batch/line-reader.ts';
import { argsOf, resolveDeployment } from '../src/batch/cluster-caller.ts';
import { formatBatchProgress } from '../src/batch/progress.ts';

let dir: string;
beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'shoal-batch-')); });
afterEach(() => { rmSync(dir, { recursive: true, force: true }); });

function input(lines: string[], name = 'in.jsonl'): string {
  const p = join(dir, name);
  writeFileSync(p, lines.map((l) => `${l}\n`).join(''));
  return p;
}

function outputOf(path: string): Array<{ line: number; output?: unknown; error?: { code: string; message: string } }> {
  return readFileSync(path, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l));
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('runBatch', () => {
  it('writes answers in input order when calls complete out of order', async () => {
    const n = 300;
    const inPath = input(Array.from({ length: n }, (_, i) => String(i)));
    const out = join(dir, 'out.jsonl');
    const finished: number[] = [];
    // Earlier lines wait longer: completion order is roughly the reverse of input order.
    const call: BatchCall = async (x) => { await sleep(((n - (x as number)) % 17) * 2); finished.push(x as number); return { double: (x as number) * 2 }; };
    const r = await runBatch({ input: inPath, output: out, call, concurrency: 50 });
    expect(finished).not.toEqual([...finished].sort((a, b) => a - b));
    const rows = outputOf(out);
    expect(rows.map((x) => x.line)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    expect(rows.map((x) => x.output)).toEqual(Array.from({ length: n }, (_, i) => ({ double: i * 2 })));
    expect(r).toMatchObject({ ok: n, failed: 0, interrupted: false, line: n });
    expect(r.peak.inflight).toBeLessThanOrEqual(50);
    expect(r.peak.inflight).toBeGreaterThan(1);
    expect(existsSync(checkpointPathFor(out))).toBe(false);
  });

  it('writes a bad JSON line and a failed call as error lines naming the line; blank lines are skipped', async () => {
    const inPath = input(['1', '{"oops":', '', '3', '"boom"', '   ', '{"args": [2, 5]}']);
    const out = join(dir, 'out.jsonl');
    const r = await runBatch({
      input: inPath, output: out, concurrency: 4,
      call: async (x) => { if (x === 'boom') throw new RangeError('no boom today'); return argsOf(x); },
    });
    const rows = outputOf(out);
    expect(rows.map((x) => x.line)).toEqual([1, 2, 4, 5, 7]);
    expect(rows[0]).toEqual({ line: 1, output: [1] });
    expect(rows[1]!.error!.code).toBe('ERR_BAD_JSON');
    expect(rows[1]!.error!.message).toMatch(/^line 2 is not JSON/);
    expect(rows[2]).toEqual({ line: 4, output: [3] });
    expect(rows[3]!.error).toEqual({ code: 'ERR_USER_CODE', message: 'no boom today' });
    expect(rows[4]).toEqual({ line: 7, output: [2, 5] });
    expect(r).toMatchObject({ ok: 3, failed: 2, skipped: 2 });
  });

  it('resumes after an interruption: every line once, in order, and the resumed run starts past the checkpoint', async () => {
    const n = 2000;
    const inPath = input(Array.from({ length: n }, (_, i) => String(i)));
    const out = join(dir, 'out.jsonl');
    const ac = new AbortController();
    let calls = 0;
    const first = await runBatch({
      input: inPath, output: out, concurrency: 16, signal: ac.signal, checkpointEveryItems: 100,
      call: async (x, ctx) => {
        if (++calls === 700) ac.abort();
        await sleep(Math.random() * 3);
        if (ctx.signal.aborted) throw new Error('cancelled');
        return (x as number) * 3;
      },
    });
    expect(first.interrupted).toBe(true);
    expect(first.line).toBeGreaterThan(0);
    expect(first.line).toBeLessThan(n);
    const cp = await readCheckpoint(checkpointPathFor(out));
    expect(cp).toMatchObject({ line: first.line, outputBytes: readFileSync(out).length });
    const seen = new Set<number>();
    const second = await runBatch({ input: inPath, output: out, concurrency: 16, call: async (x) => { seen.add(x as number); return (x as number) * 3; } });
    expect(second).toMatchObject({ interrupted: false, resumedAfterLine: first.line, ok: n, line: n });
    // The resumed run ran only the lines after the checkpoint.
    expect(Math.min(...seen)).toBe(first.line);
    const rows = outputOf(out);
    expect(rows.map((x) => x.line)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    expect(rows.map((x) => x.output)).toEqual(Array.from({ length: n }, (_, i) => i * 3));
  });

  it('refuses a checkpoint made on another input, and an output it would overwrite; --restart starts over', async () => {
    const inPath = input(Array.from({ length: 500 }, (_, i) => String(i)));
    const out = join(dir, 'out.jsonl');
    const ac = new AbortController();
    await runBatch({ input: inPath, output: out, concurrency: 4, signal: ac.signal, call: async (x) => { if (x === 100) ac.abort(); await sleep(0); return x; } });
    expect(existsSync(checkpointPathFor(out))).toBe(true);
    appendFileSync(inPath, '500\n');
    const refused = await runBatch({ input: inPath, output: out, call: async (x) => x }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(BatchError);
    expect(refused).toMatchObject({ code: 'ERR_BATCH_CHECKPOINT_MISMATCH', exitCode: 2 });
    expect((refused as Error).message).toMatch(/the input's size is \d+ bytes, the checkpoint was made on \d+.*--restart/);
    // Another target does not resume it either.
    const other = input(Array.from({ length: 3 }, (_, i) => String(i)), 'other.jsonl');
    const r = await runBatch({ input: inPath, output: out, resume: 'restart', call: async (x) => x });
    expect(r).toMatchObject({ ok: 501, resumedAfterLine: 0 });
    expect(outputOf(out).map((x) => x.line)).toEqual(Array.from({ length: 501 }, (_, i) => i + 1));
    // Finished: no checkpoint, so a second run would overwrite the output: refused.
    await expect(runBatch({ input: inPath, output: out, call: async (x) => x })).rejects.toMatchObject({ code: 'ERR_BATCH_OUTPUT_EXISTS' });
    await expect(runBatch({ input: other, output: join(dir, 'o2.jsonl'), resume: 'resume', call: async (x) => x })).rejects.toMatchObject({ code: 'ERR_BATCH_NO_CHECKPOINT' });
  });

  it('refuses resuming under another target, and a truncated output', async () => {
    const inPath = input(Array.from({ length: 200 }, (_, i) => String(i)));
    const out = join(dir, 'out.jsonl');
    const ac = new AbortController();
    await runBatch({ input: inPath, output: out, target: 'a/A.call', concurrency: 2, checkpointEveryItems: 1, signal: ac.signal, call: async (x) => { if (x === 50) ac.abort(); await sleep(0); return x; } });
    await expect(runBatch({ input: inPath, output: out, target: 'b/B.call', call: async (x) => x })).rejects.toThrow(/made running a\/A\.call, this run runs b\/B\.call/);
    writeFileSync(out, '');
    await expect(runBatch({ input: inPath, output: out, target: 'a/A.call', call: async (x) => x })).rejects.toMatchObject({ code: 'ERR_BATCH_CHECKPOINT_CORRUPT' });
  });

  it('stops on a line over maxLineBytes, naming it, with the lines before it written and resumable', async () => {
    const inPath = input(['1', '2', JSON.stringify('x'.repeat(5000)), '4']);
    const out = join(dir, 'out.jsonl');
    const err = await runBatch({ input: inPath, output: out, maxLineBytes: 1024, concurrency: 1, call: async (x) => x }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_BATCH_LINE_TOO_LONG', exitCode: 3 });
    expect((err as Error).message).toMatch(/input line 3 .* longer than maxLineBytes=1024/);
    expect(outputOf(out).map((x) => x.line)).toEqual([1, 2]);
    expect(await readCheckpoint(checkpointPathFor(out))).toMatchObject({ line: 2 });
  });

  it('a call that throws BatchAbortError stops the run without writing its line', async () => {
    const inPath = input(Array.from({ length: 50 }, (_, i) => String(i)));
    const out = join(dir, 'out.jsonl');
    const err = await runBatch({ input: inPath, output: out, concurrency: 1, call: async (x) => { if (x === 10) throw new BatchAbortError('credentials expired'); return x; } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BatchAbortError);
    expect(outputOf(out).map((x) => x.line)).toEqual(Array.from({ length: 10 }, (_, i) => i + 1));
  });

  it('keeps in-flight calls and the window within their bounds over 200,000 lines', async () => {
    const n = 200_000;
    const inPath = join(dir, 'big.jsonl');
    const ws = createWriteStream(inPath);
    for (let i = 0; i < n; i++) if (!ws.write(`{"id":${i},"pad":"${'p'.repeat(i % 40)}"}\n`)) await once(ws, 'drain');
    ws.end();
    await once(ws, 'finish');
    const out = join(dir, 'out.jsonl');
    let live = 0;
    let maxLive = 0;
    // Every 20,000th line is slow: the lines behind it pile up in the reorder window until the bound stops reading.
    const call: BatchCall = (x) => {
      const id = (x as { id: number }).id;
      live++;
      if (live > maxLive) maxLive = live;
      const done = (): number => { live--; return id; };
      return id % 20_000 === 0 ? sleep(30).then(done) : Promise.resolve().then(done);
    };
    const maxWindowBytes = 256 * 1024;
    const byItems = await runBatch({ input: inPath, output: out, call, concurrency: 64, maxWindowItems: 3000, maxWindowBytes: 1 << 30 });
    expect(byItems).toMatchObject({ ok: n, failed: 0 });
    expect(maxLive).toBeLessThanOrEqual(64);
    expect(byItems.peak.inflight).toBeLessThanOrEqual(64);
    expect(byItems.peak.windowItems).toBeLessThanOrEqual(3000);
    // The slow lines did fill the window to its bound.
    expect(byItems.peak.windowItems).toBe(3000);
    const rows = readFileSync(out, 'utf8').split('\n');
    expect(rows.length).toBe(n + 1);
    expect(JSON.parse(rows[n - 1]!)).toEqual({ line: n, output: n - 1 });

    maxLive = 0;
    const byBytes = await runBatch({ input: inPath, output: out, resume: 'restart', call, concurrency: 64, maxWindowItems: 1_000_000, maxWindowBytes });
    expect(byBytes).toMatchObject({ ok: n });
    // Reading stops once the bytes held reach the bound; what can come on top is the last line read and the
    // answers of the calls then in flight (each under 100 bytes here).
    expect(byBytes.peak.windowBytes).toBeLessThanOrEqual(maxWindowBytes + 64 * 100 + 100);
    expect(byBytes.peak.windowBytes).toBeGreaterThan(maxWindowBytes * 0.9);
    expect(byBytes.peak.windowItems).toBeLessThan(20_000);
    expect(maxLive).toBeLessThanOrEqual(64);
  });

  it('rejects bad options naming them', async () => {
    const inPath = input(['1']);
    await expect(runBatch({ input: inPath, output: join(dir, 'o'), call: async (x) => x, concurrency: 0 })).rejects.toThrow(/invalid option concurrency: must be an integer >= 1/);
    await expect(runBatch({ input: join(dir, 'missing.jsonl'), output: join(dir, 'o'), call: async (x) => x })).rejects.toThrow(/invalid option input: no such file/);
    await expect(runBatch({ input: inPath, output: join(dir, 'o') } as never)).rejects.toThrow(/exactly one of `call`/);
  });
});

describe('transient failures', () => {
  const fast = { initialMs: 1, maxMs: 4 };

  it('calls a line again after transient failures: every line answered once, in input order', async () => {
    const n = 400;
    const inPath = input(Array.from({ length: n }, (_, i) => String(i)));
    const out = join(dir, 'out.jsonl');
    const attempts = new Map<number, number>();
    const answered = new Map<number, number>();
    // Line i fails (i % 4) times, with the errors a dead worker, a rollout and an overloaded replica give.
    const kinds = [(m: string) => new PeerGoneError(m), (m: string) => new NoReplicaError(m), (m: string) => new ReplicaUnavailableError(m), (m: string) => new QueueFullError(m)];
    const call: BatchCall = async (x, ctx) => {
      const i = x as number;
      const a = (attempts.get(i) ?? 0) + 1;
      attempts.set(i, a);
      await sleep(i % 3);
      if (a <= i % 4) throw kinds[(i + a) % kinds.length]!(`line ${ctx.line}, attempt ${a}`);
      answered.set(i, (answered.get(i) ?? 0) + 1);
      return i * 10;
    };
    const r = await runBatch({ input: inPath, output: out, call, concurrency: 32, maxWindowItems: 64, retryBackoff: fast, checkpointEveryItems: 50 });
    const rows = outputOf(out);
    expect(rows).toEqual(Array.from({ length: n }, (_, i) => ({ line: i + 1, output: i * 10 })));
    expect(r).toMatchObject({ ok: n, failed: 0, interrupted: false });
    for (let i = 0; i < n; i++) {
      expect(attempts.get(i)).toBe(i % 4 + 1);
      expect(answered.get(i)).toBe(1);
    }
    expect(r.retries).toBe(Array.from({ length: n }, (_, i) => i % 4).reduce((a, b) => a + b, 0));
    // Lines waiting to retry kept their slots: the bounds held.
    expect(r.peak.inflight).toBeLessThanOrEqual(32);
    expect(r.peak.windowItems).toBeLessThanOrEqual(64);
  });

  it('writes the error line naming the attempts once the retries run out; caller errors are final at once', async () => {
    const inPath = input(['0', '1', '2', '3', '4']);
    const out = join(dir, 'out.jsonl');
    const calls = new Map<number, number>();
    const call: BatchCall = async (x) => {
      const i = x as number;
      calls.set(i, (calls.get(i) ?? 0) + 1);
      if (i === 1) throw new NoReplicaError('no running replica of "a/A" within 30000 ms');
      if (i === 2) throw new BadRequestError('field "text" is required');
      if (i === 3) throw new NotFoundError('deployment "a/A" has no method "nope"');
      if (i === 4) throw new RangeError('the model threw');
      return i;
    };
    const r = await runBatch({ input: inPath, output: out, call, concurrency: 5, retries: 3, retryBackoff: fast });
    const rows = outputOf(out);
    expect(rows.map((x) => x.line)).toEqual([1, 2, 3, 4, 5]);
    expect(rows[0]).toEqual({ line: 1, output: 0 });
    expect(rows[1]).toEqual({ line: 2, error: { code: 'ERR_NO_REPLICA', message: 'no running replica of "a/A" within 30000 ms (gave up after 4 attempts)', attempts: 4 } });
    expect(rows[2]).toEqual({ line: 3, error: { code: 'ERR_BAD_REQUEST', message: 'field "text" is required' } });
    expect(rows[3]!.error!.code).toBe('ERR_NOT_FOUND');
    expect(rows[4]).toEqual({ line: 5, error: { code: 'ERR_USER_CODE', message: 'the model threw' } });
    expect([...calls.entries()].sort((a, b) => a[0] - b[0])).toEqual([[0, 1], [1, 4], [2, 1], [3, 1], [4, 1]]);
    expect(r).toMatchObject({ ok: 1, failed: 4, retries: 3 });

    // retries: 0 writes the transient error at once; a custom isTransient decides for a `call` of its own.
    const once = await runBatch({ input: inPath, output: join(dir, 'o0.jsonl'), call, retries: 0 });
    expect(once.retries).toBe(0);
    expect(outputOf(join(dir, 'o0.jsonl'))[1]!.error).toEqual({ code: 'ERR_NO_REPLICA', message: 'no running replica of "a/A" within 30000 ms' });
    let flaky = 0;
    const custom = await runBatch({
      input: input(['1'], 'one.jsonl'), output: join(dir, 'o1.jsonl'), retryBackoff: fast,
      isTransient: (err) => (err as Error).message === 'HTTP 503',
      call: async () => { if (++flaky < 3) throw new Error('HTTP 503'); return 'ok'; },
    });
    expect(custom).toMatchObject({ ok: 1, retries: 2 });
  });

  it('a stop ends the waits between retries: the run ends interrupted, the line not written, resumable', async () => {
    const inPath = input(['0', '1', '2']);
    const out = join(dir, 'out.jsonl');
    const ac = new AbortController();
    let failedOnce = false;
    const r = await runBatch({
      input: inPath, output: out, concurrency: 1, signal: ac.signal, retryBackoff: { initialMs: 3_600_000, maxMs: 3_600_000 },
      call: async (x) => {
        if (x === 1) { failedOnce = true; setTimeout(() => ac.abort(), 5); throw new PeerGoneError('worker went away'); }
        return x;
      },
    });
    expect(failedOnce).toBe(true);
    expect(r).toMatchObject({ interrupted: true, line: 1, ok: 1, failed: 0, retries: 1 });
    expect(outputOf(out)).toEqual([{ line: 1, output: 0 }]);
    expect(await readCheckpoint(checkpointPathFor(out))).toMatchObject({ line: 1 });
  });

  it('classifies by error code: cluster-side transient errors only', () => {
    for (const e of [new PeerGoneError('x'), new NoReplicaError('x'), new ReplicaUnavailableError('x'), new QueueFullError('x'), new DeadlineExceededError('x'), { code: 'ERR_BACKPRESSURE' }]) expect(isTransientError(e)).toBe(true);
    for (const e of [new BadRequestError('x'), new NotFoundError('x'), new UserCodeError('x'), new Error('x'), new BatchAbortError('x'), null, 'ERR_PEER_GONE']) expect(isTransientError(e)).toBe(false);
  });

  it('rejects bad retry options naming them', async () => {
    const inPath = input(['1']);
    await expect(runBatch({ input: inPath, output: join(dir, 'o'), call: async (x) => x, retries: -1 })).rejects.toThrow(/invalid option retries: must be an integer >= 0/);
    await expect(runBatch({ input: inPath, output: join(dir, 'o'), call: async (x) => x, retryBackoff: { initialMs: 100, maxMs: 10 } })).rejects.toThrow(/invalid option retryBackoff\.maxMs: must be a number of ms >= retryBackoff\.initialMs \(100\)/);
  });
});

describe('progress', () => {
  it('redraws one line on a terminal and prints plain lines elsewhere, ending at 100%', async () => {
    const inPath = input(Array.from({ length: 100 }, (_, i) => String(i)));
    const tty = { isTTY: true, columns: 200, text: '', write(s: string) { this.text += s; return true; } };
    await runBatch({ input: inPath, output: join(dir, 'a.jsonl'), call: async (x) => x, progress: { stream: tty, redrawEveryMs: 0 } });
    expect(tty.text).toContain('\x1b[');
    expect(tty.text).toMatch(/batch 100% \[#{20}\] 100 lines {2}/);
    const log = { text: '', write(s: string) { this.text += s; return true; } };
    await runBatch({ input: inPath, output: join(dir, 'b.jsonl'), call: async (x) => (x === 5 ? Promise.reject(new Error('no')) : x), progress: { stream: log } });
    // A short run: no periodic line came due, only the final one, without escape codes.
    expect(log.text).toMatch(/^batch 100% 100 lines \(1 failed\) .* ETA \S+ {2}290 B of 290 B\n$/);
  });
});

describe('readLines', () => {
  it('reads from an offset, numbers lines, strips CR, and yields a last line without a newline', async () => {
    const p = join(dir, 'x.jsonl');
    writeFileSync(p, 'a\r\nbb\nccc');
    const all = [];
    for await (const l of readLines(p, { chunkBytes: 2 })) all.push({ ...l, text: l.text.toString() });
    expect(all).toEqual([{ line: 1, start: 0, end: 3, text: 'a' }, { line: 2, start: 3, end: 6, text: 'bb' }, { line: 3, start: 6, end: 9, text: 'ccc' }]);
    const rest = [];
    for await (const l of readLines(p, { start: 3, firstLine: 2 })) rest.push(l.line);
    expect(rest).toEqual([2, 3]);
  });
});

describe('formatBatchProgress', () => {
  it('shows lines, failures, rate and the ETA from bytes', () => {
    const text = formatBatchProgress({ done: 1500, failed: 3, bytesRead: 500, totalBytes: 1000, startBytes: 0, startDone: 0, elapsedMs: 10_000 });
    expect(text).toBe('batch 50% [##########----------] 1,500 lines (3 failed)  150/s  ETA 10s  500 B of 1000 B');
  });
});

describe('cluster targets', () => {
  const view = { version: 1, table: {}, deployments: { 'a/Ranker': { methods: ['call'] }, 'b/Ranker': { methods: [] }, 'a/Embed': { methods: [] } } };
  it('resolves app/deployment, or a deployment one application has; names what exists otherwise', () => {
    expect(resolveDeployment(view, 'a/Ranker')).toBe('a/Ranker');
    expect(resolveDeployment(view, 'Embed')).toBe('a/Embed');
    expect(() => resolveDeployment(view, 'Ranker')).toThrow('"Ranker" is a deployment of a, b: say which, as APP/Ranker');
    expect(() => resolveDeployment(view, 'c/X')).toThrow('no deployment "c/X" on the cluster (it has: a/Embed, a/Ranker, b/Ranker)');
    expect(() => resolveDeployment(view, 'Nope')).toThrow(BatchError);
  });
  it('spreads {"args": [...]} alone, and passes anything else as the one argument', () => {
    expect(argsOf({ args: [1, 2] })).toEqual([1, 2]);
    expect(argsOf({ args: [1], other: 2 })).toEqual([{ args: [1], other: 2 }]);
    expect(argsOf({ args: 'x' })).toEqual([{ args: 'x' }]);
    expect(argsOf([1, 2])).toEqual([[1, 2]]);
    expect(argsOf(null)).toEqual([null]);
  });
});
