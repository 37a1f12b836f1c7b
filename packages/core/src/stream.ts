/**
 * Streamed answers: a deployment method that is an async generator (or returns any other async iterable) answers
 * chunk by chunk. Both ends of a stream live here, with no transport in them, so one flow-control logic serves the
 * in-process path and the wire:
 *
 * - {@link ChunkStream}, the consumer's side: a bounded buffer that is an AsyncIterableIterator (handles iterate it;
 *   the ingress takes whole batches with {@link ChunkStream.nextBatch}). It grants credit as its consumer takes chunks.
 * - {@link StreamPump}, the producer's side: pulls the generator only while it holds credit, so a consumer that does
 *   not read stops the generator with at most one window of chunks produced ahead.
 *
 * Credit: the consumer grants a window of `chunks` chunks and about `bytes` bytes; the producer may have that much
 * sent and not yet taken. Each chunk the consumer takes gives one chunk (and that chunk's bytes, which only the
 * producer measures) back.
 */
import { CancelledError, ProtocolError } from './errors.ts';

/** How much a consumer lets a producer send ahead of what it has taken. */
export interface StreamWindow {
  /** Chunks sent and not yet taken, at most. */
  readonly chunks: number;
  /** Their estimated bytes, at most (one chunk always fits, whatever its size). */
  readonly bytes: number;
}

/** 16 chunks and 1 MiB ahead: enough to hide a round trip between workers, small enough that a slow reader holds little. */
export const DEFAULT_STREAM_WINDOW: StreamWindow = Object.freeze({ chunks: 16, bytes: 1024 * 1024 });
/** Bounds a window a peer may ask for, so a caller cannot make a replica buffer without limit. */
export const MAX_STREAM_WINDOW: StreamWindow = Object.freeze({ chunks: 4096, bytes: 64 * 1024 * 1024 });

/** How a stream ended, for metrics: the producer finished, it failed, or the consumer (or a deadline) stopped it. */
export type StreamEndReason = 'complete' | 'error' | 'cancelled';

/** What a ChunkStream tells its producer (a pump in this process, or a peer that sends `credit` and `cancel`). */
export interface ChunkSource {
  /** The consumer took `n` chunks: the producer may send `n` more. */
  credit(n: number): void;
  /** The consumer stopped: stop pulling the generator and end it (its finally blocks run). */
  cancel(reason: Error): void;
}

/** Told once when a stream ends: how, the error if any, and how many chunks it received. */
export type StreamEndListener = (reason: StreamEndReason, error: Error | undefined, chunks: number) => void;

type Phase = 'open' | 'ended' | 'failed' | 'cancelled';

const DONE: IteratorReturnResult<undefined> = Object.freeze({ done: true, value: undefined });
const BRAND = Symbol.for('shoal.chunkStream');

/**
 * The consumer's side of a stream. Chunks arrive with push(), the end with end() or fail(); the consumer takes them
 * with next() (one) or nextBatch() (all buffered), and stops early with return() or cancel(). One consumer at a
 * time: a second next() while one waits is an error.
 */
export class ChunkStream<T = unknown> implements AsyncIterableIterator<T> {
  readonly [BRAND] = true;
  private buffer: unknown[] = [];
  private head = 0;
  private phase: Phase = 'open';
  /** Set by fail() (after the buffered chunks are taken) and by cancel() (at once). */
  private error: Error | undefined;
  private waiter: { resolve: (v: IteratorResult<T> | unknown[] | undefined) => void; reject: (e: Error) => void; batch: boolean } | undefined;
  /** Chunks taken and not yet credited back. */
  private untaken = 0;
  private readonly creditEvery: number;
  private listeners: StreamEndListener[] = [];
  /** Chunks pushed so far. */
  received = 0;
  /** Chunks credited back to the producer so far: received - credited is what it has out, at most its window. */
  private credited = 0;

  constructor(private readonly source: ChunkSource, readonly window: StreamWindow = DEFAULT_STREAM_WINDOW) {
    // Credit goes back in batches (half a window), and whenever the buffer runs dry, so the producer never waits
    // on credit the consumer is sitting on.
    this.creditEvery = Math.max(1, Math.floor(window.chunks / 2));
  }

  static is(v: unknown): v is ChunkStream {
    return typeof v === 'object' && v !== null && (v as Record<symbol, unknown>)[BRAND] === true;
  }

  /** Chunks buffered, not yet taken. */
  get buffered(): number { return this.buffer.length - this.head; }
  /** True once the producer ended, failed, or the stream was cancelled. */
  get closed(): boolean { return this.phase !== 'open'; }

  [Symbol.asyncIterator](): this { return this; }

  /** Producer: chunks arrived. Ignored once the stream was cancelled. */
  push(chunks: readonly unknown[]): void {
    if (this.phase !== 'open' || chunks.length === 0) return;
    // A producer never has more than the window out (sent, not credited back): one message of slack, then this
    // stream fails and the producer is told to stop, rather than buffering whatever a broken peer sends.
    if (this.received - this.credited > this.window.chunks) { this.overrun(chunks.length); return; }
    this.received += chunks.length;
    let from = 0;
    const w = this.waiter;
    if (w !== undefined && this.buffered === 0) {
      this.waiter = undefined;
      if (w.batch) { this.took(chunks.length); w.resolve(chunks.slice()); return; }
      this.took(1);
      w.resolve({ done: false, value: chunks[0] as T });
      from = 1;
    }
    for (let i = from; i < chunks.length; i++) this.buffer.push(chunks[i]);
  }

  /** Producer: the stream is complete. */
  end(): void {
    if (this.phase !== 'open') return;
    this.phase = 'ended';
    this.settleWaiter();
    this.emit('complete', undefined);
  }

  /** Producer: the stream failed; the consumer gets the chunks already buffered, then the error. */
  fail(err: Error): void {
    if (this.phase !== 'open') return;
    this.phase = 'failed';
    this.error = err;
    this.settleWaiter();
    this.emit('error', err);
  }

  /**
   * Stops the stream now (a deadline, an abort, a consumer leaving): buffered chunks are dropped, the producer is
   * told, and a waiting or later next() rejects with `reason`. No-op once the stream ended.
   */
  cancel(reason: Error): void {
    if (this.phase !== 'open') return;
    this.phase = 'cancelled';
    this.error = reason;
    this.buffer = [];
    this.head = 0;
    const w = this.waiter;
    this.waiter = undefined;
    w?.reject(reason);
    try { this.source.cancel(reason); } finally { this.emit('cancelled', reason); }
  }

  next(): Promise<IteratorResult<T>> {
    if (this.head < this.buffer.length) {
      const value = this.buffer[this.head++] as T;
      if (this.head === this.buffer.length) { this.buffer = []; this.head = 0; }
      this.took(1);
      return Promise.resolve({ done: false, value });
    }
    return this.wait(false) as Promise<IteratorResult<T>>;
  }

  /** Every chunk buffered (waiting for at least one), or undefined at the end; rejects with the stream's error. */
  nextBatch(): Promise<T[] | undefined> {
    if (this.head < this.buffer.length) {
      const batch = this.head === 0 ? this.buffer : this.buffer.slice(this.head);
      this.buffer = [];
      this.head = 0;
      this.took(batch.length);
      return Promise.resolve(batch as T[]);
    }
    return this.wait(true) as Promise<T[] | undefined>;
  }

  /** The consumer stops reading (a `break` out of for-await): the producer is cancelled; resolves done. */
  return(): Promise<IteratorResult<T>> {
    this.cancel(new CancelledError('the stream\'s consumer stopped reading'));
    this.error = undefined;
    return Promise.resolve(DONE);
  }

  /** Told once when the stream ends (at once if it has). */
  onEnd(listener: StreamEndListener): void {
    if (this.phase === 'open') { this.listeners.push(listener); return; }
    listener(this.phase === 'ended' ? 'complete' : this.phase === 'failed' ? 'error' : 'cancelled', this.phase === 'ended' ? undefined : this.error, this.received);
  }

  private wait(batch: boolean): Promise<unknown> {
    if (this.phase !== 'open') return this.finalAnswer(batch);
    if (this.waiter !== undefined) return Promise.reject(new ProtocolError('a stream has one consumer: next() was called while another next() waited'));
    // Going to wait: hand back the credit held, or a producer out of credit would wait for this consumer forever.
    this.flushCredit();
    return new Promise((resolve, reject) => { this.waiter = { resolve: resolve as (v: unknown) => void, reject, batch }; });
  }

  /** What next() answers once the buffer is empty and the stream is over: done, or its error once. */
  private finalAnswer(batch: boolean): Promise<unknown> {
    const err = this.error;
    if (err !== undefined && this.phase !== 'ended') { this.error = undefined; return Promise.reject(err); }
    return Promise.resolve(batch ? undefined : DONE);
  }

  private settleWaiter(): void {
    const w = this.waiter;
    if (w === undefined) return;
    this.waiter = undefined;
    this.finalAnswer(w.batch).then((v) => w.resolve(v as IteratorResult<T>), w.reject);
  }

  private took(n: number): void {
    if (this.phase !== 'open') return;
    this.untaken += n;
    if (this.untaken >= this.creditEvery) { this.flushCredit(); return; }
    // The buffer ran dry: credit goes back at the end of this tick, one message for every chunk taken in it (a
    // consumer that waits meanwhile flushes at once, in wait()).
    if (this.head === this.buffer.length && !this.flushQueued) { this.flushQueued = true; queueMicrotask(this.queuedFlush); }
  }

  private flushQueued = false;
  private readonly queuedFlush = (): void => { this.flushQueued = false; this.flushCredit(); };

  private flushCredit(): void {
    const n = this.untaken;
    if (n === 0 || this.phase !== 'open') return;
    this.untaken = 0;
    this.credited += n;
    this.source.credit(n);
  }

  private overrun(incoming: number): void {
    const out = this.received - this.credited;
    const err = new ProtocolError(`stream producer overran its window of ${this.window.chunks} chunks: ${out + incoming} sent and not credited back (${out} before this message of ${incoming})`);
    this.fail(err);
    try { this.source.cancel(err); } catch { /* the producer's end is its own; this stream already failed */ }
  }

  private emit(reason: StreamEndReason, error: Error | undefined): void {
    const ls = this.listeners;
    this.listeners = [];
    for (const l of ls) l(reason, error, this.received);
  }
}

/** What a pump pulls: an async iterator (the replica wraps the user's in its request context). */
export interface PumpSource {
  next(): Promise<IteratorResult<unknown>>;
  return?(): Promise<unknown> | unknown;
}

export interface StreamPumpHooks {
  /** Chunks to deliver (one at a time; a sink that sends messages batches them), with their estimated bytes. */
  chunk(value: unknown, bytes: number): void;
  /** The stream is over: complete (no error), failed with the generator's error, or cancelled with the reason. */
  done(error: Error | undefined, reason: StreamEndReason): void;
}

/**
 * The producer's side: pulls `source` (one next() at a time) while the consumer's credit allows, and never
 * otherwise. cancel() ends it: the source's return() runs (an async generator's finally blocks), at once if it is
 * parked at a yield, else once its pending next() settles.
 */
export class StreamPump {
  private outChunks = 0;
  private outBytes = 0;
  /** Sizes of the chunks out, oldest first, so credit gives back the right bytes. */
  private sizes: number[] = [];
  private sizesHead = 0;
  private pulling = false;
  private finished = false;
  /** Chunks produced so far. */
  produced = 0;

  /** Armed while the pump waits for credit, when an idle bound was given. */
  private idleTimer: ReturnType<typeof setTimeout> | undefined;

  /**
   * `idle`: a consumer that grants no credit for `ms` while the pump waits for it (it stopped reading) calls
   * `expired`, which ends the stream (the deployment's streamIdleTimeoutMs). @default none
   */
  constructor(private readonly source: PumpSource, private readonly window: StreamWindow, private readonly hooks: StreamPumpHooks, private readonly idle?: { ms: number; expired: () => void }) {}

  start(): void { this.pull(); }

  get over(): boolean { return this.finished; }
  /** Chunks sent and not yet credited back. */
  get outstanding(): number { return this.outChunks; }

  /** The consumer took `n` chunks. More than are out is a peer's mistake: only what is out is given back. */
  credit(n: number): void {
    if (!(n > 0) || this.finished) return;
    const k = Math.min(Math.floor(n), this.outChunks);
    for (let i = 0; i < k; i++) this.outBytes -= this.sizes[this.sizesHead++]!;
    if (this.sizesHead > 1024 && this.sizesHead * 2 > this.sizes.length) { this.sizes = this.sizes.slice(this.sizesHead); this.sizesHead = 0; }
    this.outChunks -= k;
    this.clearIdle();
    this.pull();
  }

  cancel(reason: Error): void {
    if (this.finished) return;
    this.finished = true;
    this.clearIdle();
    try {
      const r = this.source.return?.();
      if (r !== undefined && typeof (r as Promise<unknown>).then === 'function') (r as Promise<unknown>).then(undefined, () => undefined);
    } catch { /* the source's own end is reported by the replica; the caller gets the cancellation */ }
    this.hooks.done(reason, 'cancelled');
  }

  private get hasCredit(): boolean {
    return this.outChunks < this.window.chunks && (this.outChunks === 0 || this.outBytes < this.window.bytes);
  }

  private clearIdle(): void {
    if (this.idleTimer !== undefined) { clearTimeout(this.idleTimer); this.idleTimer = undefined; }
  }

  private pull(): void {
    if (this.pulling || this.finished) return;
    if (!this.hasCredit) {
      // Waiting for a consumer that may have stopped reading: bounded when the deployment says so.
      if (this.idle !== undefined && this.idleTimer === undefined) {
        const idle = this.idle;
        this.idleTimer = setTimeout(() => { this.idleTimer = undefined; if (!this.finished) idle.expired(); }, idle.ms);
        this.idleTimer.unref?.();
      }
      return;
    }
    this.pulling = true;
    let p: Promise<IteratorResult<unknown>>;
    try { p = this.source.next(); } catch (err) { this.pulling = false; this.fail(err); return; }
    p.then(this.onResult, this.onError);
  }

  private readonly onResult = (r: IteratorResult<unknown>): void => {
    this.pulling = false;
    if (this.finished) return;
    if (r.done === true) { this.finished = true; this.clearIdle(); this.hooks.done(undefined, 'complete'); return; }
    const bytes = chunkBytes(r.value);
    this.outChunks++;
    this.outBytes += bytes;
    this.sizes.push(bytes);
    this.produced++;
    this.hooks.chunk(r.value, bytes);
    this.pull();
  };

  private readonly onError = (err: unknown): void => { this.pulling = false; this.fail(err); };

  private fail(err: unknown): void {
    if (this.finished) return;
    this.finished = true;
    this.clearIdle();
    this.hooks.done(err instanceof Error ? err : new Error(String(err)), 'error');
  }
}

/**
 * A method's result that streams: an async iterable that is not an array, a string, a Buffer or a typed array.
 * One typeof and one property read for an ordinary object: called on every answer's value.
 */
export function isStreamResult(v: unknown): v is AsyncIterable<unknown> {
  return typeof v === 'object' && v !== null && typeof (v as { [Symbol.asyncIterator]?: unknown })[Symbol.asyncIterator] === 'function' && !ArrayBuffer.isView(v) && !Array.isArray(v);
}

/** Values visited per chunk when estimating its size: a huge nested chunk is charged what was seen. */
const SIZE_VISIT_LIMIT = 10_000;

/** An estimate of a chunk's encoded size (bytes and strings exactly; 8 per number; structure counted lightly). */
export function chunkBytes(v: unknown): number {
  if (typeof v === 'string') return v.length;
  if (ArrayBuffer.isView(v)) return v.byteLength;
  if (typeof v !== 'object' || v === null) return 8;
  let bytes = 0;
  let visited = 0;
  const stack: unknown[] = [v];
  while (stack.length > 0 && visited < SIZE_VISIT_LIMIT) {
    const x = stack.pop();
    visited++;
    if (typeof x === 'string') bytes += x.length + 2;
    else if (ArrayBuffer.isView(x)) bytes += x.byteLength;
    else if (x instanceof ArrayBuffer) bytes += x.byteLength;
    else if (typeof x !== 'object' || x === null) bytes += 8;
    else if (Array.isArray(x)) { bytes += 2; for (const e of x) stack.push(e); }
    else for (const [k, e] of Object.entries(x)) { bytes += k.length + 2; stack.push(e); }
  }
  return bytes;
}

/** A window as it travels in `call` and `http` messages: [chunks, bytes]. */
export type WireStreamWindow = [chunks: number, bytes: number];

/** The default window on the wire: one frozen tuple, so a request taking the default allocates none. */
export const DEFAULT_WIRE_STREAM_WINDOW: WireStreamWindow = Object.freeze([DEFAULT_STREAM_WINDOW.chunks, DEFAULT_STREAM_WINDOW.bytes]) as unknown as WireStreamWindow;

export function windowToWire(w: StreamWindow): WireStreamWindow {
  if (w === DEFAULT_STREAM_WINDOW) return DEFAULT_WIRE_STREAM_WINDOW;
  return [w.chunks, w.bytes];
}

/** The window a request's `s` grants, unchecked (this process sent it): built only when its stream starts. */
export function windowOfWire(s: WireStreamWindow): StreamWindow {
  if (s === DEFAULT_WIRE_STREAM_WINDOW || (s[0] === DEFAULT_STREAM_WINDOW.chunks && s[1] === DEFAULT_STREAM_WINDOW.bytes)) return DEFAULT_STREAM_WINDOW;
  return { chunks: s[0], bytes: s[1] };
}

/**
 * Reads a window a caller sent (field `path` of its message): positive integers within MAX_STREAM_WINDOW; anything
 * else is a ProtocolError naming the field and the value. `maxBytes` (half the connection's frame bound, say) caps
 * its bytes, so what the producer may send ahead always fits the frames that carry it.
 */
export function windowFromWire(path: string, s: unknown, maxBytes = MAX_STREAM_WINDOW.bytes): StreamWindow {
  if (!Array.isArray(s) || s.length !== 2) throw new ProtocolError(`${path} must be [chunks, bytes], got ${JSON.stringify(s)}`);
  const [chunks, bytes] = s as unknown[];
  if (!Number.isSafeInteger(chunks) || (chunks as number) < 1 || (chunks as number) > MAX_STREAM_WINDOW.chunks) throw new ProtocolError(`${path}[0] (chunks) must be an integer in [1, ${MAX_STREAM_WINDOW.chunks}], got ${String(chunks)}`);
  if (!Number.isSafeInteger(bytes) || (bytes as number) < 1 || (bytes as number) > MAX_STREAM_WINDOW.bytes) throw new ProtocolError(`${path}[1] (bytes) must be an integer in [1, ${MAX_STREAM_WINDOW.bytes}], got ${String(bytes)}`);
  const cap = Math.max(1, Math.floor(maxBytes));
  return { chunks: chunks as number, bytes: Math.min(bytes as number, cap) };
}

/** What a request's context tracks of the streams opened under it: ending one ends it at its replica. */
export interface OpenedStream { return(): unknown }

/**
 * A request context that owns the streams its code opens (the replica's, per request): it ends those still open
 * when the request ends, so a method that starts `handle.gen()`, or reads a few chunks and returns, does not leave
 * the stream below it running until its deadline. A HandleStream registers itself when its call is sent.
 */
export const STREAM_OWNER = Symbol.for('shoal.streamOwner');
export interface StreamOwner {
  /** Tracks `stream` until the returned function is called (the stream ended by itself). */
  [STREAM_OWNER](stream: OpenedStream): () => void;
}

export function isStreamOwner(ctx: unknown): ctx is StreamOwner {
  return typeof ctx === 'object' && ctx !== null && typeof (ctx as Record<symbol, unknown>)[STREAM_OWNER] === 'function';
}
