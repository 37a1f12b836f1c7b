/**
 * runBatch: a JSON-lines file through an async function (or a deployment of a running cluster), many calls in
 * flight, answers written in input order, resumable, in bounded memory.
 *
 *   const r = await runBatch({ input: 'in.jsonl', output: 'out.jsonl', call: async (x) => score(x), concurrency: 32 });
 *   // or: runBatch({ input, output, cluster: { address: 'ws://head:7450', token, deployment: 'rec/Ranker' } })
 *
 * How the bounds hold: lines are pulled from a read stream one at a time (line-reader.ts), and a line is taken
 * only while fewer than `concurrency` calls are in flight, fewer than maxWindowItems lines are between read and
 * written, and their bytes (input lines, answers waiting for an earlier line, output not yet in the file) are
 * under maxWindowBytes. Answers leave the window strictly in input order, so the prefix written is always
 * contiguous, and the checkpoint (checkpoint.ts) records its end exactly.
 *
 * Transient failures (a worker gone mid-call, no replica for now, a full queue, a deadline: isTransientError) are
 * not written off: the line's call is made again after a jittered exponential backoff, up to `retries` times. The
 * line keeps its slot meanwhile (and counts as in flight), so order, bounds and checkpoints are as for any slow line.
 */
import { rm, stat } from 'node:fs/promises';
import { setMaxListeners } from 'node:events';
import { InvalidOptionError, realClock, toWireError, type Clock } from '@shoal/core';
import type { ProgressStream } from '../progress.ts';
import { BatchAbortError, BatchError } from './errors.ts';
import { checkpointMismatch, checkpointPathFor, fingerprintOf, readCheckpoint, removeCheckpoint, writeCheckpoint, type Checkpoint, type InputFingerprint } from './checkpoint.ts';
import { DEFAULT_MAX_LINE_BYTES, readLines, type InputLine } from './line-reader.ts';
import { OutputWriter } from './output-writer.ts';
import { BatchProgress, type BatchProgressOptions, type BatchProgressState } from './progress.ts';
import { ClusterCaller, type ClusterCallerOptions } from './cluster-caller.ts';

export interface BatchCallContext {
  /** The input line the item came from (from 1). */
  line: number;
  /** Aborted when the run stops (interrupted, or another call threw BatchAbortError): the answer is not used. */
  signal: AbortSignal;
}

/** What each line is run through: it gets the line's parsed JSON value; what it resolves with is the line's output. */
export type BatchCall = (item: unknown, ctx: BatchCallContext) => Promise<unknown>;

/** How a run treats a checkpoint beside the output. */
export type ResumeMode =
  /** Resume when a checkpoint exists and matches the input; refuse when it does not match. */
  | 'auto'
  /** Resume; refuse when there is no checkpoint or it does not match. */
  | 'resume'
  /** Start over: drop the checkpoint, empty the output. */
  | 'restart';

export interface RunBatchOptions {
  /** The JSON-lines input file. */
  input: string;
  /** The output file; its checkpoint is `${output}.shoal-checkpoint`. */
  output: string;
  /** Run every line through this function. Exactly one of `call` and `cluster`. */
  call?: BatchCall;
  /** Run every line through a deployment of a running cluster (cluster-caller.ts). Exactly one of `call` and `cluster`. */
  cluster?: ClusterCallerOptions;
  /**
   * Calls in flight at most; a function is read again as the run goes (the cluster's default follows its
   * replicas). @default with `cluster`: replicas x maxOngoingRequests of the deployment (at most 1024); with `call`: 64
   */
  concurrency?: number | (() => number);
  /** Lines read and not yet written, at most. @default max(1024, 4 x concurrency) */
  maxWindowItems?: number;
  /** Bytes of the lines in the window, their answers and output not yet in the file, at most (one line always fits). @default 268435456 (256 MiB) */
  maxWindowBytes?: number;
  /** Longest input line; a longer one stops the run with ERR_BATCH_LINE_TOO_LONG naming it. @default 67108864 (64 MiB) */
  maxLineBytes?: number;
  /** @default 'auto' */
  resume?: ResumeMode;
  /** A checkpoint after this many more lines are written... @default 10000 */
  checkpointEveryItems?: number;
  /** ...or after this long, whichever comes first. @default 1000 */
  checkpointEveryMs?: number;
  /** What the lines run through, recorded in the checkpoint: a run with another target does not resume it. @default the cluster's "app/deployment.method"; none with `call` */
  target?: string;
  /** Where progress goes (the command: stderr), and how. @default none */
  progress?: ProgressStream | BatchProgressOptions;
  /** Aborting it stops the run: calls in flight are cancelled, a final checkpoint is written, the result says `interrupted`. */
  signal?: AbortSignal;
  /** Told where the run starts, before the first line is read: after `resumedAfterLine` (0: from the start). @default none */
  onStart?: (info: { resumedAfterLine: number; offset: number; inputBytes: number; target: string | undefined; concurrency: number }) => void;
  /** @default realClock */
  clock?: Clock;
  /**
   * Times a line's call is made again after a transient failure (isTransient) before its error line is written;
   * 0 writes it at once. The call may have run (a worker that died mid-call): the deployment should be idempotent.
   * @default 5
   */
  retries?: number;
  /** The backoff before a retry: `initialMs` doubling up to `maxMs`, each wait jittered to 50-100% of it. @default { initialMs: 100, maxMs: 5000 } */
  retryBackoff?: { initialMs?: number; maxMs?: number };
  /** Which errors are worth a retry. @default isTransientError */
  isTransient?: (err: unknown) => boolean;
}

/**
 * Errors that say nothing about the line itself, only about the cluster at that moment, so the same call may well
 * succeed a little later: the connection to the worker was lost (ERR_PEER_GONE: it died or restarted mid-call), no
 * replica is running (ERR_NO_REPLICA: a rollout, a restart, scaling), the chosen replica could not be reached
 * (ERR_REPLICA_UNAVAILABLE), the deployment refused it as overloaded (ERR_QUEUE_FULL, ERR_BACKPRESSURE), and the
 * call ran past its deadline (ERR_DEADLINE_EXCEEDED: a batch run sets no per-call timeout of its own, so this is the
 * deployment's requestTimeoutMs, most often met by a replica stalled or overloaded for a while). Anything else, the
 * caller's errors above all (bad input, an unknown method, the model's own exception), is final at once.
 */
export const TRANSIENT_ERROR_CODES: ReadonlySet<string> = new Set(['ERR_PEER_GONE', 'ERR_NO_REPLICA', 'ERR_REPLICA_UNAVAILABLE', 'ERR_QUEUE_FULL', 'ERR_BACKPRESSURE', 'ERR_DEADLINE_EXCEEDED']);

/** An error whose `code` is one of TRANSIENT_ERROR_CODES (a BatchAbortError never is). */
export function isTransientError(err: unknown): boolean {
  if (typeof err !== 'object' || err === null || err instanceof BatchAbortError) return false;
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && TRANSIENT_ERROR_CODES.has(code);
}

export interface BatchResult {
  /** Lines answered / written as errors, this run and the runs it resumed together. */
  ok: number;
  failed: number;
  /** Blank lines (nothing written for them), this run. */
  skipped: number;
  /** The last line covered by the output. */
  line: number;
  /** The line this run started after (0: from the start). */
  resumedAfterLine: number;
  /** The run stopped on its signal before the end of the input; its checkpoint stands. */
  interrupted: boolean;
  outputBytes: number;
  /** Calls the cluster refused as overloaded and that were sent again at once by the cluster client (0 with `call`). */
  overloadRetries: number;
  /** Calls made again after a transient failure (isTransient), this run. */
  retries: number;
  /** Highest values seen of the bounds (for tests, and to size them). */
  peak: { inflight: number; windowItems: number; windowBytes: number };
}

interface Slot {
  line: number;
  end: number;
  /** Bytes this slot holds in the window: its input line, then its answer. */
  bytes: number;
  /** undefined while its call runs; null for a blank line (nothing written). */
  out: Buffer | null | undefined;
  failed: boolean;
}

interface Covered { line: number; offset: number; outputBytes: number; ok: number; failed: number }

const DEFAULT_MAX_WINDOW_BYTES = 256 * 1024 * 1024;
/** Output waiting for the disk past which no line is read (inside maxWindowBytes too): a slow disk slows reading. */
const OUTPUT_HIGH_WATER_BYTES = 4 * 1024 * 1024;
const DEFAULT_CALL_CONCURRENCY = 64;

function positiveInt(path: string, v: number | undefined, fallback: number): number {
  if (v === undefined) return fallback;
  if (!Number.isSafeInteger(v) || v < 1) throw new InvalidOptionError(path, 'must be an integer >= 1', v);
  return v;
}

/** `{"line":N,"error":{"code","message"}}`; with `attempts` over 1 (a transient error retried until the retries ran out), `"attempts":N` too. */
export function errorLine(line: number, err: unknown, code?: string, attempts = 1): Buffer {
  const w = toWireError(err);
  const error = attempts > 1 ? { code: code ?? w.code, message: `${w.message} (gave up after ${attempts} attempts)`, attempts } : { code: code ?? w.code, message: w.message };
  return Buffer.from(`${JSON.stringify({ line, error })}\n`);
}

function isBlank(text: Buffer): boolean {
  for (const b of text) if (b !== 0x20 && b !== 0x09 && b !== 0x0d) return false;
  return true;
}

export async function runBatch(opts: RunBatchOptions): Promise<BatchResult> {
  if ((opts.call === undefined) === (opts.cluster === undefined)) throw new InvalidOptionError('runBatch', 'needs exactly one of `call` (a function) and `cluster` (a head address, token and deployment)');
  if (typeof opts.input !== 'string' || opts.input === '') throw new InvalidOptionError('input', 'must be the path of a JSON-lines file', opts.input);
  if (typeof opts.output !== 'string' || opts.output === '') throw new InvalidOptionError('output', 'must be a file path', opts.output);
  const resume = opts.resume ?? 'auto';
  if (!['auto', 'resume', 'restart'].includes(resume)) throw new InvalidOptionError('resume', "must be 'auto', 'resume' or 'restart'", resume);
  const maxLineBytes = positiveInt('maxLineBytes', opts.maxLineBytes, DEFAULT_MAX_LINE_BYTES);
  const maxWindowBytes = positiveInt('maxWindowBytes', opts.maxWindowBytes, DEFAULT_MAX_WINDOW_BYTES);
  const everyItems = positiveInt('checkpointEveryItems', opts.checkpointEveryItems, 10_000);
  const everyMs = positiveInt('checkpointEveryMs', opts.checkpointEveryMs, 1000);
  if (typeof opts.concurrency === 'number') positiveInt('concurrency', opts.concurrency, 1);
  if (opts.maxWindowItems !== undefined) positiveInt('maxWindowItems', opts.maxWindowItems, 1);
  const retries = opts.retries ?? 5;
  if (!Number.isSafeInteger(retries) || retries < 0) throw new InvalidOptionError('retries', 'must be an integer >= 0', opts.retries);
  const initialMs = opts.retryBackoff?.initialMs ?? 100;
  const maxMs = opts.retryBackoff?.maxMs ?? 5000;
  if (!Number.isFinite(initialMs) || initialMs < 0) throw new InvalidOptionError('retryBackoff.initialMs', 'must be a number of ms >= 0', initialMs);
  if (!Number.isFinite(maxMs) || maxMs < initialMs) throw new InvalidOptionError('retryBackoff.maxMs', `must be a number of ms >= retryBackoff.initialMs (${initialMs})`, maxMs);
  if (opts.isTransient !== undefined && typeof opts.isTransient !== 'function') throw new InvalidOptionError('isTransient', 'must be a function (err) => boolean', opts.isTransient);
  let fingerprint: InputFingerprint;
  try {
    if (!(await stat(opts.input)).isFile()) throw new InvalidOptionError('input', 'is not a file', opts.input);
    fingerprint = await fingerprintOf(opts.input);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new InvalidOptionError('input', 'no such file', opts.input);
    throw err;
  }

  // The target first: an unknown deployment or method is refused before any file is touched.
  const caller = opts.cluster !== undefined ? await ClusterCaller.connect(opts.cluster) : undefined;
  // The run holds the process open: calls waiting for a replica that does not exist yet (a deployment scaled to
  // zero) wait on unref'd timers only, and Node would exit 0 under them with nothing written.
  const keepAlive = setInterval(() => undefined, 1 << 30);
  try {
    const call: BatchCall = caller !== undefined ? (item, ctx) => caller.call(item, ctx) : opts.call!;
    const target = opts.target ?? caller?.target;
    const wanted: () => number = typeof opts.concurrency === 'function'
      ? () => Math.max(1, Math.floor((opts.concurrency as () => number)()))
      : typeof opts.concurrency === 'number' ? () => opts.concurrency as number
        : caller !== undefined ? () => caller.defaultConcurrency() : () => DEFAULT_CALL_CONCURRENCY;
    // Against a cluster, never more than it has shown it holds (overload refusals lower that, answers raise it).
    const concurrencyOf = caller !== undefined ? () => Math.min(wanted(), caller.overloadLimit()) : wanted;
    const windowItemsOf = opts.maxWindowItems !== undefined ? () => opts.maxWindowItems! : () => Math.max(1024, 4 * wanted());
    const r = await execute({ opts, call, target, fingerprint, resume, maxLineBytes, maxWindowBytes, everyItems, everyMs, concurrencyOf, windowItemsOf, retries, initialMs, maxMs, isTransient: opts.isTransient ?? isTransientError });
    return { ...r, overloadRetries: caller?.overloadRetries ?? 0 };
  } finally {
    clearInterval(keepAlive);
    caller?.close();
  }
}

interface Plan {
  opts: RunBatchOptions;
  call: BatchCall;
  target: string | undefined;
  fingerprint: InputFingerprint;
  resume: ResumeMode;
  maxLineBytes: number;
  maxWindowBytes: number;
  everyItems: number;
  everyMs: number;
  concurrencyOf: () => number;
  windowItemsOf: () => number;
  retries: number;
  initialMs: number;
  maxMs: number;
  isTransient: (err: unknown) => boolean;
}

async function outputSize(path: string): Promise<number | undefined> {
  try { return (await stat(path)).size; } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Where the run starts: from a matching checkpoint, or from the beginning. */
async function startingPoint(p: Plan, cpPath: string): Promise<Covered> {
  const { opts } = p;
  const fresh: Covered = { line: 0, offset: 0, outputBytes: 0, ok: 0, failed: 0 };
  if (p.resume === 'restart') { await removeCheckpoint(cpPath); return fresh; }
  const cp = await readCheckpoint(cpPath);
  if (cp === undefined) {
    if (p.resume === 'resume') throw new BatchError('ERR_BATCH_NO_CHECKPOINT', `nothing to resume: ${cpPath} does not exist (run without --resume to start)`);
    const size = await outputSize(opts.output);
    if (size !== undefined && size > 0) throw new BatchError('ERR_BATCH_OUTPUT_EXISTS', `${opts.output} exists (${size} bytes) and no checkpoint says it is unfinished: --restart overwrites it`);
    return fresh;
  }
  const why = checkpointMismatch(cp, p.fingerprint, p.target);
  if (why !== undefined) throw new BatchError('ERR_BATCH_CHECKPOINT_MISMATCH', `cannot resume from ${cpPath}: ${why}; --restart starts over (and overwrites ${opts.output})`);
  const size = (await outputSize(opts.output)) ?? 0;
  if (size < cp.outputBytes) throw new BatchError('ERR_BATCH_CHECKPOINT_CORRUPT', `cannot resume: ${opts.output} has ${size} bytes, fewer than the ${cp.outputBytes} its checkpoint says were written; --restart starts over`);
  return { line: cp.line, offset: cp.offset, outputBytes: cp.outputBytes, ok: cp.ok, failed: cp.failed };
}

async function execute(p: Plan): Promise<Omit<BatchResult, 'overloadRetries'>> {
  const { opts } = p;
  const clock = opts.clock ?? realClock;
  const cpPath = checkpointPathFor(opts.output);
  const start = await startingPoint(p, cpPath);
  const writer = await OutputWriter.open(opts.output, start.outputBytes);
  const checkpointOf = (c: Covered): Checkpoint => ({
    v: 1, input: opts.input, fingerprint: p.fingerprint, target: p.target, offset: c.offset, line: c.line, outputBytes: c.outputBytes, ok: c.ok, failed: c.failed, updatedAt: new Date(clock.wallNow()).toISOString(),
  });
  // Before the first output byte: a run killed at any point leaves a checkpoint that says how far it got.
  await writeCheckpoint(cpPath, checkpointOf(start));
  opts.onStart?.({ resumedAfterLine: start.line, offset: start.offset, inputBytes: p.fingerprint.size, target: p.target, concurrency: p.concurrencyOf() });

  const progress = opts.progress === undefined ? undefined : new BatchProgress('write' in opts.progress ? { stream: opts.progress, clock } : { clock, ...opts.progress });
  const startedAt = clock.monoNow();
  const stopper = new AbortController();
  // One signal for every call in flight (up to `concurrency` listeners, the Router's among them): no leak warning.
  setMaxListeners(0, stopper.signal);
  let covered: Covered = { ...start };
  let lastCp: Covered = { ...start };
  let lastCpAt = clock.monoNow();
  let checkpointing: Promise<void> | undefined;
  const slots = new Map<number, Slot>();
  let next = start.line + 1;
  let windowBytes = 0;
  let inflight = 0;
  let bytesRead = start.offset;
  let skipped = 0;
  let retried = 0;
  let eof = false;
  let stopping = false;
  let fatal: unknown;
  const peak = { inflight: 0, windowItems: 0, windowBytes: 0 };

  let poked = false;
  let waiter: (() => void) | undefined;
  const poke = (): void => { poked = true; const w = waiter; waiter = undefined; w?.(); };
  const sleep = (): Promise<void> => {
    if (poked) { poked = false; return Promise.resolve(); }
    return new Promise((r) => { waiter = () => { poked = false; r(); }; });
  };
  /** The ends of the retry waits under way (backoff): a stop ends them at once. */
  const backingOff = new Set<() => void>();
  const stop = (err?: unknown): void => {
    if (err !== undefined && fatal === undefined) fatal = err;
    if (stopping) return;
    stopping = true;
    stopper.abort(err ?? new Error('batch run interrupted'));
    for (const done of [...backingOff]) done();
    poke();
  };
  const onAbort = (): void => stop();
  if (opts.signal?.aborted === true) stop(); else opts.signal?.addEventListener('abort', onAbort, { once: true });

  const progressState = (): BatchProgressState => ({
    done: covered.ok + covered.failed, failed: covered.failed, bytesRead, totalBytes: p.fingerprint.size,
    startBytes: start.offset, startDone: start.ok + start.failed, elapsedMs: clock.monoNow() - startedAt,
  });

  /** Writes the answers at the head of the window, in order, as far as they are in. */
  const drainReady = (): void => {
    for (let s = slots.get(next); s !== undefined && s.out !== undefined; s = slots.get(next)) {
      if (s.out !== null) {
        try { writer.write(s.out); } catch (err) { stop(err); return; }
      }
      windowBytes -= s.bytes;
      slots.delete(next);
      next++;
      covered = { line: s.line, offset: s.end, outputBytes: writer.position, ok: covered.ok + (s.out !== null && !s.failed ? 1 : 0), failed: covered.failed + (s.failed ? 1 : 0) };
    }
    const held = windowBytes + writer.pendingBytes;
    if (held > peak.windowBytes) peak.windowBytes = held;
  };

  /** Starts a checkpoint when everyItems lines or everyMs have passed since the last one; one at a time. */
  const checkpoint = (): void => {
    if (checkpointing !== undefined || covered.line === lastCp.line) return;
    if (covered.line - lastCp.line < p.everyItems && clock.monoNow() - lastCpAt < p.everyMs) return;
    const c = covered;
    checkpointing = (async () => {
      await writer.writtenUpTo(c.outputBytes);
      await writer.sync();
      await writeCheckpoint(cpPath, checkpointOf(c));
      lastCp = c;
      lastCpAt = clock.monoNow();
    })().catch((err: unknown) => stop(err)).finally(() => { checkpointing = undefined; poke(); });
  };

  const settle = (slot: Slot, out: Buffer, failed: boolean): void => {
    inflight--;
    if (!stopping) {
      slot.out = out;
      slot.failed = failed;
      slot.bytes += out.length;
      windowBytes += out.length;
      drainReady();
      progress?.update(progressState);
    }
    poke();
  };

  const admit = (l: InputLine): void => {
    const slot: Slot = { line: l.line, end: l.end, bytes: l.text.length, out: undefined, failed: false };
    slots.set(l.line, slot);
    windowBytes += slot.bytes;
    if (isBlank(l.text)) { slot.out = null; skipped++; return; }
    let item: unknown;
    try {
      item = JSON.parse(l.text.toString('utf8'));
    } catch (err) {
      const out = errorLine(l.line, new Error(`line ${l.line} is not JSON: ${(err as Error).message}`), 'ERR_BAD_JSON');
      slot.out = out; slot.failed = true; slot.bytes += out.length; windowBytes += out.length;
      return;
    }
    inflight++;
    if (inflight > peak.inflight) peak.inflight = inflight;
    const ctx: BatchCallContext = { line: l.line, signal: stopper.signal };
    const attempt = (n: number): void => {
      let answer: Promise<unknown>;
      try { answer = p.call(item, ctx); } catch (err) { answer = Promise.reject(err); }
      Promise.resolve(answer).then((value) => {
        let out: Buffer;
        try {
          out = Buffer.from(`${JSON.stringify({ line: l.line, output: value ?? null })}\n`);
        } catch (err) {
          settle(slot, errorLine(l.line, new Error(`line ${l.line}: the answer cannot be written as JSON: ${(err as Error).message}`), 'ERR_ENCODE'), true);
          return;
        }
        settle(slot, out, false);
      }, (err: unknown) => {
        if (err instanceof BatchAbortError) { stop(err); inflight--; poke(); return; }
        if (n <= p.retries && !stopping && safeIsTransient(err)) {
          // The slot stays in the window and the call in flight while it waits: no line overtakes it in the output.
          retried++;
          backoff(n).then(() => { if (stopping) settle(slot, errorLine(l.line, err, undefined, n), true); else attempt(n + 1); });
          return;
        }
        settle(slot, errorLine(l.line, err, undefined, n), true);
      });
    };
    attempt(1);
  };

  const safeIsTransient = (err: unknown): boolean => {
    try { return p.isTransient(err) === true; } catch { return false; }
  };

  /**
   * The wait before attempt n + 1: initialMs x 2^(n-1), at most maxMs, jittered to 50-100% (calls that failed
   * together, as a dead worker's do, do not come back together). Ends at once when the run stops. A plain
   * (ref'd) timer: a run whose every line is waiting to retry stays alive.
   */
  const backoff = (n: number): Promise<void> => new Promise((resolve) => {
    const ms = Math.min(p.maxMs, p.initialMs * 2 ** Math.min(n - 1, 30)) * (0.5 + Math.random() / 2);
    const done = (): void => { clearTimeout(timer); backingOff.delete(done); resolve(); };
    const timer = setTimeout(done, ms);
    backingOff.add(done);
  });

  let closed = false;
  const reader = readLines(opts.input, { start: start.offset, firstLine: start.line + 1, maxLineBytes: p.maxLineBytes });
  try {
    for (;;) {
      while (!stopping && !eof && inflight < p.concurrencyOf() && slots.size < p.windowItemsOf()
        && writer.pendingBytes < OUTPUT_HIGH_WATER_BYTES
        && (windowBytes + writer.pendingBytes < p.maxWindowBytes || (slots.size === 0 && writer.pendingBytes === 0))) {
        let r: IteratorResult<InputLine>;
        try { r = await reader.next(); } catch (err) { stop(err); break; }
        if (r.done === true) { eof = true; break; }
        admit(r.value);
        bytesRead = r.value.end;
        if (slots.size > peak.windowItems) peak.windowItems = slots.size;
        drainReady();
      }
      if (!stopping) checkpoint();
      if (stopping ? inflight === 0 : eof && slots.size === 0) break;
      // Held back by output not yet in the file (not by answers still to come, whose arrival wakes the loop).
      const room = Math.min(OUTPUT_HIGH_WATER_BYTES, p.maxWindowBytes - windowBytes);
      if (!stopping && writer.pendingBytes > 0 && room > 0 && writer.pendingBytes >= room) writer.pendingBelow(room).then(poke, (err: unknown) => stop(err));
      await sleep();
    }
    await checkpointing;
    progress?.done(progressState());
    closed = true;
    await writer.close();
    // What is covered is in the file (drainReady wrote it in order, nothing after): the checkpoint says exactly
    // that. A finished run needs none.
    if (stopping && start.line === 0 && covered.line === 0) {
      // Stopped before its first line was written (an unknown method, Ctrl-C at once): it leaves nothing behind,
      // so the next run, whatever its target, starts afresh.
      await removeCheckpoint(cpPath);
      if ((await outputSize(opts.output)) === 0) await rm(opts.output, { force: true });
    } else if (stopping) await writeCheckpoint(cpPath, checkpointOf(covered));
    else await removeCheckpoint(cpPath);
    if (fatal !== undefined) throw fatal;
  } catch (err) {
    if (!closed) await writer.close().catch(() => undefined);
    throw err;
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
    await reader.return(undefined);
  }
  return { ok: covered.ok, failed: covered.failed, skipped, line: covered.line, resumedAfterLine: start.line, interrupted: stopping, outputBytes: covered.outputBytes, retries: retried, peak };
}
