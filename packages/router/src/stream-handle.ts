/**
 * What a handle returns for a streaming method: an async iterable that sends the call when iteration (or an await)
 * begins, then reads the ChunkStream the router gives. A `break` (return()) before the first chunk aborts the call,
 * after it cancels the stream; either way the replica's generator ends and its request signal aborts, which
 * cancels its own downstream calls.
 */
import { CancelledError, ChunkStream, contextStorage, isStreamOwner, STREAM_OWNER, type HandleStream as HandleStreamType, type StreamOwner } from '@shoal/core';

const DONE: IteratorReturnResult<undefined> = Object.freeze({ done: true, value: undefined });

export class HandleStream<T = unknown> implements HandleStreamType<T>, AsyncIterableIterator<T> {
  private started: Promise<AsyncIterator<T>> | undefined;
  private iterator: AsyncIterator<T> | undefined;
  private stopped = false;

  /**
   * `start` sends the call with `signal` among its signals and resolves with the router's answer (a ChunkStream, or
   * a value when the method did not stream after all).
   */
  constructor(private readonly start: (signal: AbortSignal) => Promise<unknown>, private readonly method: string) {
    const ctx = contextStorage.getStore();
    if (isStreamOwner(ctx)) this.owner = ctx;
  }

  /** The request this stream was opened under (a replica's): it ends this stream, if still open, when it ends. */
  private owner: StreamOwner | undefined;

  private readonly own = new AbortController();

  [Symbol.asyncIterator](): this { return this; }

  next(): Promise<IteratorResult<T>> {
    if (this.iterator !== undefined) return this.iterator.next();
    if (this.stopped) return Promise.resolve(DONE);
    return this.begin().then((it) => it.next());
  }

  return(): Promise<IteratorResult<T>> {
    if (this.stopped) return Promise.resolve(DONE);
    this.stopped = true;
    if (this.iterator !== undefined) return this.iterator.return?.().then(() => DONE) ?? Promise.resolve(DONE);
    // Not started or waiting for its first chunk: abort the call (the router cancels it at the replica).
    this.own.abort(new CancelledError(`the stream of "${this.method}" was left before its first chunk`));
    this.started?.then((it) => it.return?.(), () => undefined);
    return Promise.resolve(DONE);
  }

  /** Awaiting the stream sends the call and resolves with an async iterable over its chunks. */
  then<A = AsyncIterable<T>, B = never>(onfulfilled?: ((value: AsyncIterable<T>) => A | PromiseLike<A>) | null, onrejected?: ((reason: unknown) => B | PromiseLike<B>) | null): PromiseLike<A | B> {
    // Not `this`: a thenable resolving to itself would be awaited forever.
    return this.begin().then(() => ({ [Symbol.asyncIterator]: () => this }) as AsyncIterable<T>).then(onfulfilled, onrejected);
  }

  private begin(): Promise<AsyncIterator<T>> {
    if (this.started !== undefined) return this.started;
    // Sent under a request: tracked by it until this stream ends, so the request ending ends it.
    const untrack = this.owner?.[STREAM_OWNER](this);
    this.started = this.start(this.own.signal).then((answer) => {
      const stream = ChunkStream.is(answer);
      const it = stream ? answer as unknown as AsyncIterator<T> : valueIterator<T>(answer, this.method);
      this.iterator = it;
      if (untrack !== undefined) { if (stream) answer.onEnd(untrack); else untrack(); }
      return it;
    }, (err: unknown) => { untrack?.(); throw err; });
    return this.started;
  }
}

/** A method routed as a stream that answered with a plain value: its elements if it is an array. */
function valueIterator<T>(value: unknown, method: string): AsyncIterator<T> {
  if (!Array.isArray(value)) {
    const err = new TypeError(`"${method}" answered with a value (${value === null ? 'null' : typeof value}), not a stream`);
    return { next: () => Promise.reject(err) };
  }
  let i = 0;
  return {
    next: () => Promise.resolve(i < value.length ? { done: false, value: value[i++] as T } : DONE),
    return: () => { i = value.length; return Promise.resolve(DONE); },
  };
}
