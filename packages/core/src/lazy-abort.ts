/**
 * An AbortController whose AbortSignal is made only when someone asks for it. A request path makes one per request,
 * and most requests finish without anyone listening for their abort; an AbortSignal (an EventTarget) costs several
 * microseconds to build in Node 20, a large share of a no-op request. Aborting before the signal exists records the
 * reason; a signal made afterwards is already aborted with it.
 */
export class LazyAbortController {
  private controller: AbortController | undefined;
  private abortReason: unknown;
  private isAborted = false;
  private listener: ((reason: unknown) => void) | undefined;

  get aborted(): boolean { return this.isAborted; }
  /** The reason given to abort(), or undefined while not aborted. */
  get reason(): unknown { return this.abortReason; }

  get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController();
      if (this.isAborted) this.controller.abort(this.abortReason);
    }
    return this.controller.signal;
  }

  abort(reason?: unknown): void {
    if (this.isAborted) return;
    this.isAborted = true;
    this.abortReason = reason ?? new DOMException('This operation was aborted', 'AbortError');
    const l = this.listener;
    this.listener = undefined;
    l?.(this.abortReason);
    this.controller?.abort(this.abortReason);
  }

  /**
   * One listener, told of the abort without making the signal (what the router uses while it waits on a request);
   * a new one replaces the old, undefined removes it.
   */
  listen(fn: ((reason: unknown) => void) | undefined): void {
    this.listener = fn;
  }
}

/** What a request path needs of its cancellation: a flag, a reason, and (made on demand) a real signal. */
export interface Abortable {
  readonly aborted: boolean;
  readonly reason: unknown;
  readonly signal: AbortSignal;
}

/** An Abortable over an existing AbortSignal (for callers that have one). */
export function abortableOf(signal: AbortSignal | Abortable): Abortable {
  if (!(signal instanceof AbortSignal)) return signal;
  return { get aborted() { return signal.aborted; }, get reason(): unknown { return signal.reason; }, signal };
}
