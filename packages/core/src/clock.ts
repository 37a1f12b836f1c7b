/**
 * The one source of time. Everything that reads the time or waits takes a Clock, so controllers, routers and
 * batch queues run against {@link FakeClock} in tests and never sleep.
 *
 * Two kinds of time, under different names so a call site says which one it means:
 * - {@link Clock.wallNow}: epoch milliseconds (Date.now()). Comparable across processes, so every deadline
 *   is wall time; it can jump when the system clock is set, so never measure a duration with it.
 * - {@link Clock.monoNow}: monotonic milliseconds (performance.now()). For durations: heartbeats, backoff,
 *   health-check periods, queue waits, service times. Its origin is per process; never send it to another one.
 */
export interface TimerHandle { readonly __timer: true }

export interface Clock {
  /** Wall time, epoch ms (Date.now()): for deadlines and timestamps that cross processes. */
  wallNow(): number;
  /** Monotonic ms (performance.now()): for durations within this process. */
  monoNow(): number;
  /** Runs fn after ms (a negative or non-finite ms is 0). Real timers are unref'd: a timer never keeps a process alive. */
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

function delayOf(ms: number): number {
  return Number.isFinite(ms) && ms > 0 ? ms : 0;
}

export const realClock: Clock = {
  wallNow: () => Date.now(),
  monoNow: () => performance.now(),
  setTimeout: (fn, ms) => {
    const timer = setTimeout(fn, delayOf(ms));
    // A queued request's timers must not keep a draining process alive; the pending promises say what is left.
    timer.unref?.();
    return timer as unknown as TimerHandle;
  },
  clearTimeout: (handle) => clearTimeout(handle as unknown as NodeJS.Timeout),
};

/**
 * An absolute deadline: epoch ms on the wall clock ({@link Clock.wallNow}), the number that travels in messages
 * and request contexts. `undefined` where a deadline is optional means none.
 */
export type Deadline = number;

export const Deadline = {
  /** The deadline `ms` from now. */
  after(clock: Clock, ms: number): Deadline {
    return clock.wallNow() + ms;
  },
  /** Milliseconds left before `deadline`, never negative: what a timer enforcing it waits. */
  remainingMs(deadline: Deadline, clock: Clock): number {
    return Math.max(0, deadline - clock.wallNow());
  },
  /** Whether `deadline` has passed (reaching it counts as passed). */
  expired(deadline: Deadline, clock: Clock): boolean {
    return clock.wallNow() >= deadline;
  },
} as const;

interface FakeTimer {
  readonly id: number;
  readonly at: number;
  readonly fn: () => void;
}

/** Where a FakeClock's wall time starts unless told: 2024-01-01T00:00:00Z, far from monoNow's 0 so a mix-up shows. */
export const FAKE_WALL_EPOCH_MS = Date.UTC(2024, 0, 1);

/**
 * A clock that moves only when told to. Wall and monotonic time advance together, from `wallStartMs` and
 * `monoStartMs`. {@link advance} / {@link advanceAsync} fire due timers in order of due time (ties in creation
 * order) with the time set to each timer's due time while it runs; timers that a firing timer schedules inside
 * the advanced window fire in the same call.
 */
export class FakeClock implements Clock {
  /** Monotonic time; wall time is this plus wallOffset. */
  private t: number;
  private readonly wallOffset: number;
  private nextId = 1;
  /** Sorted by (at, id). Thousands of timers at most in tests, so a sorted array beats a heap for clarity. */
  private readonly timers: FakeTimer[] = [];

  constructor(opts: { wallStartMs?: number; monoStartMs?: number } = {}) {
    this.t = opts.monoStartMs ?? 0;
    this.wallOffset = (opts.wallStartMs ?? FAKE_WALL_EPOCH_MS) - this.t;
  }

  wallNow(): number {
    return this.t + this.wallOffset;
  }

  monoNow(): number {
    return this.t;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const timer: FakeTimer = { id: this.nextId++, at: this.t + delayOf(ms), fn };
    this.timers.splice(this.indexAfter(timer.at), 0, timer);
    return { id: timer.id } as unknown as TimerHandle;
  }

  clearTimeout(handle: TimerHandle): void {
    const id = (handle as unknown as { id?: unknown }).id;
    const i = this.timers.findIndex((timer) => timer.id === id);
    if (i >= 0) this.timers.splice(i, 1);
  }

  /** Number of timers not yet fired or cleared. */
  pendingTimers(): number {
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
