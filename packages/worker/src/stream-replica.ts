/**
 * The replica side of a streamed answer. A method's async iterable becomes a ReplicaStream: every next() runs in
 * the request's context (so the generator sees requestContext(), its signal and deadline, and its handle calls are
 * children of the request), and the stream's end, however it comes (done, a throw, return()), is reported once, so
 * the replica gives its slot back and records the request's outcome and compute time then, not at the first chunk.
 *
 * The worker hands it to a StreamPump (packages/core/src/stream.ts) that feeds a ChunkStream in this process or
 * `chunk` messages to another (see ChunkBatcher), or gathers it for a caller that cannot take a stream.
 */
import { contextStorage, type PumpSource, type RequestContext } from '@shoal/core';

/** How the replica learns a stream ended: `error` is the raw throw (undefined: done or returned early). */
export interface ReplicaStreamEnd {
  (error: unknown, cancelled: boolean): void;
}

const BRAND = Symbol.for('shoal.replicaStream');

export class ReplicaStream implements PumpSource {
  readonly [BRAND] = true;
  private ended = false;
  private returning = false;

  constructor(
    private readonly iterator: AsyncIterator<unknown>,
    private readonly ctx: RequestContext,
    private readonly onEnd: ReplicaStreamEnd,
    /** Turns the user's throw into the error the caller sees (UserCodeError, or a shoal error as is). */
    private readonly toCallerError: (err: unknown) => Error,
  ) {}

  static is(v: unknown): v is ReplicaStream {
    return typeof v === 'object' && v !== null && (v as Record<symbol, unknown>)[BRAND] === true;
  }

  /** Makes the iterator of a method's async iterable in the request's context. */
  static of(iterable: AsyncIterable<unknown>, ctx: RequestContext, onEnd: ReplicaStreamEnd, toCallerError: (err: unknown) => Error): ReplicaStream {
    const iterator = contextStorage.run(ctx, iteratorOf, iterable);
    return new ReplicaStream(iterator, ctx, onEnd, toCallerError);
  }

  get over(): boolean { return this.ended; }

  /** Set by whoever pumps the stream: how to cancel it from the replica's side (a drain that timed out). */
  stopper: ((reason: Error) => void) | undefined = undefined;

  /** Cancels the stream as its caller would (the pump ends it and answers with `reason`); else ends it here. */
  stop(reason: Error): void {
    if (this.ended) return;
    if (this.stopper !== undefined) this.stopper(reason);
    else void this.return();
  }

  next(): Promise<IteratorResult<unknown>> {
    let p: Promise<IteratorResult<unknown>>;
    try {
      p = contextStorage.run(this.ctx, nextOf, this.iterator);
    } catch (err) {
      this.end(err, false);
      return Promise.reject(this.toCallerError(err));
    }
    return Promise.resolve(p).then(
      (r) => { if (r.done === true) this.end(undefined, false); return r; },
      (err: unknown) => { this.end(err, false); throw this.toCallerError(err); },
    );
  }

  /**
   * Ends the generator early (its finally blocks run). An async generator busy in a next() runs this once that
   * next() settles; the slot is given back only then, when user code has really stopped.
   */
  return(): Promise<unknown> {
    if (this.ended || this.returning) return Promise.resolve(undefined);
    this.returning = true;
    const ret = this.iterator.return;
    if (typeof ret !== 'function') { this.end(undefined, true); return Promise.resolve(undefined); }
    let p: unknown;
    try {
      p = contextStorage.run(this.ctx, () => ret.call(this.iterator));
    } catch (err) {
      this.end(err, true);
      return Promise.resolve(undefined);
    }
    return Promise.resolve(p).then(() => this.end(undefined, true), (err: unknown) => this.end(err, true));
  }

  private end(error: unknown, cancelled: boolean): void {
    if (this.ended) return;
    this.ended = true;
    this.onEnd(error, cancelled);
  }
}

function iteratorOf(iterable: AsyncIterable<unknown>): AsyncIterator<unknown> {
  return iterable[Symbol.asyncIterator]();
}

function nextOf(it: AsyncIterator<unknown>): Promise<IteratorResult<unknown>> {
  return it.next();
}

/**
 * Chunks of one stream on their way to another process: those produced in one event-loop turn go in one `chunk`
 * message (coalescing under load), or at once when a window's worth has gathered, or about `maxBytes` of them
 * (by the pump's estimate: a quarter of the frame bound, say), so a message of large chunks stays well within a frame.
 */
export class ChunkBatcher {
  private pending: unknown[] = [];
  private pendingBytes = 0;
  private scheduled = false;
  /** Chunks send() took so far. */
  sent = 0;

  /** `send` returns how many of the chunks it sent (fewer when the stream is failing). */
  constructor(private readonly send: (chunks: unknown[]) => number, private readonly maxBatch: number, private readonly maxBytes = Number.POSITIVE_INFINITY) {}

  add(chunk: unknown, bytes = 0): void {
    this.pending.push(chunk);
    this.pendingBytes += bytes;
    if (this.pending.length >= this.maxBatch || this.pendingBytes >= this.maxBytes) { this.flush(); return; }
    if (!this.scheduled) { this.scheduled = true; setImmediate(this.flush); }
  }

  readonly flush = (): void => {
    this.scheduled = false;
    const chunks = this.pending;
    if (chunks.length === 0) return;
    this.pending = [];
    this.pendingBytes = 0;
    this.sent += this.send(chunks);
  };
}
