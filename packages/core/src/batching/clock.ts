/**
 * Time as the batcher sees it. Everything in batching that reads the time or waits goes through a Clock, so
 * tests drive time with {@link FakeClock} and never sleep.
 */

import type { Clock, TimerHandle } from '../clock.ts';

// The batcher takes core's Clock, so the replica host can hand it the same clock as the rest of the worker.
export type { Clock, TimerHandle };

/**
 * The real clock. `now()` is epoch milliseconds read from the monotonic clock (timeOrigin + performance.now()),
 * so service-time measurements do not jump with wall-clock adjustments while deadlines stay comparable to
 * Date.now() across processes.
 */
export const systemClock: Clock = {
  now: () => performance.timeOrigin + performance.now(),
  setTimeout: (fn, ms) => {
    const timer = setTimeout(fn, Number.isFinite(ms) && ms > 0 ? ms : 0);
    // A queued request's timers must not keep a draining process alive; the pending promises say what is left.
    timer.unref();
    return timer as unknown as TimerHandle;
  },
  clearTimeout: (handle) => clearTimeout(handle as unknown as NodeJS.Timeout),
};

interface FakeTimer {
  readonly id: number;
  readonly at: number;
  readonly fn: () => void;
}

/**
 * A manual clock for tests (core's FakeClock plus {@link advanceAsync} and {@link sleep}, which async batch
 * functions need). Time moves only in {@link advance} / {@link advanceAsync}, which fire due timers in
 * order of due time (ties in creation order) with `now()` set to each timer's due time while it runs. Timers
 * that a firing timer schedules inside the advanced window fire in the same call.
 */
export class FakeClock implements Clock {
  private t: number;
  private nextId = 1;
  /** Sorted by (at, id). Thousands of timers at most in tests, so a sorted array beats a heap for clarity. */
  private readonly timers: FakeTimer[] = [];

  constructor(startMs = 0) {
    this.t = startMs;
  }

  now(): number {
    return this.t;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const delay = Number.isFinite(ms) && ms > 0 ? ms : 0;
    const timer: FakeTimer = { id: this.nextId++, at: this.t + delay, fn };
    this.timers.splice(this.indexAfter(timer.at), 0, timer);
    return { id: timer.id } as unknown as TimerHandle;
  }

  clearTimeout(handle: TimerHandle): void {
    const id = (handle as unknown as { id?: unknown }).id;
    const i = this.timers.findIndex((timer) => timer.id === id);
    if (i >= 0) this.timers.splice(i, 1);
  }

  /** Number of timers not yet fired or cleared. */
  get pendingTimers(): number {
    return this.timers.length;
  }

  /** Moves time forward by `ms`, firing due timers synchronously. Promise callbacks do not run in between. */
  advance(ms: number): void {
    const target = this.t + Math.max(0, ms);
    for (let timer = this.takeDue(target); timer !== undefined; timer = this.takeDue(target)) {
      this.t = timer.at;
      timer.fn();
    }
    this.t = target;
  }

  /**
   * Moves time forward by `ms` like {@link advance}, but lets pending promise callbacks run before and after
   * each timer, so async code driven by the timers (a batch that "takes" 20ms) settles as it would in real time.
   */
  async advanceAsync(ms: number): Promise<void> {
    const target = this.t + Math.max(0, ms);
    await flushMicrotasks();
    for (let timer = this.takeDue(target); timer !== undefined; timer = this.takeDue(target)) {
      this.t = timer.at;
      timer.fn();
      await flushMicrotasks();
    }
    this.t = target;
  }

  /** A promise that resolves after `ms` on this clock (for fake model code in tests). */
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.setTimeout(resolve, ms));
  }

  private takeDue(target: number): FakeTimer | undefined {
    const first = this.timers[0];
    if (first === undefined || first.at > target) return undefined;
    this.timers.shift();
    return first;
  }

  private indexAfter(at: number): number {
    let lo = 0;
    let hi = this.timers.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.timers[mid] as FakeTimer).at <= at) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

/** Resolves once every promise callback queued so far (and those they queue) has run. */
export function flushMicrotasks(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
