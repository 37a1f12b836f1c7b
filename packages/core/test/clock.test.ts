import { describe, expect, it } from 'vitest';
import { Deadline, FAKE_WALL_EPOCH_MS, FakeClock, realClock } from '../src/clock.ts';

describe('FakeClock', () => {
  it('fires due timers in order of due time, ties in creation order, with the time at each due time', () => {
    const clock = new FakeClock({ monoStartMs: 100 });
    const fired: string[] = [];
    clock.setTimeout(() => fired.push(`b@${clock.monoNow()}`), 20);
    clock.setTimeout(() => fired.push(`a@${clock.monoNow()}`), 10);
    clock.setTimeout(() => fired.push(`c@${clock.monoNow()}`), 20);
    clock.advance(15);
    expect(fired).toEqual(['a@110']);
    clock.advance(100);
    expect(fired).toEqual(['a@110', 'b@120', 'c@120']);
    expect(clock.monoNow()).toBe(215);
  });

  it('moves wall and monotonic time together, wall from a settable epoch', () => {
    const clock = new FakeClock();
    expect(clock.monoNow()).toBe(0);
    expect(clock.wallNow()).toBe(FAKE_WALL_EPOCH_MS);
    const wallAt: number[] = [];
    clock.setTimeout(() => wallAt.push(clock.wallNow()), 7);
    clock.advance(10);
    expect(wallAt).toEqual([FAKE_WALL_EPOCH_MS + 7]);
    expect([clock.monoNow(), clock.wallNow()]).toEqual([10, FAKE_WALL_EPOCH_MS + 10]);

    const set = new FakeClock({ wallStartMs: 1_000_000, monoStartMs: 50 });
    set.advance(5);
    expect([set.monoNow(), set.wallNow()]).toEqual([55, 1_000_005]);
  });

  it('fires timers scheduled by a firing timer inside the same window, and honours clearTimeout', () => {
    const clock = new FakeClock();
    const fired: number[] = [];
    const cleared = clock.setTimeout(() => fired.push(-1), 5);
    clock.setTimeout(() => {
      fired.push(clock.monoNow());
      clock.setTimeout(() => fired.push(clock.monoNow()), 3);
    }, 2);
    clock.clearTimeout(cleared);
    clock.advance(10);
    expect(fired).toEqual([2, 5]);
    expect(clock.pendingTimers()).toBe(0);
  });

  it('treats a negative or non-finite delay as 0', () => {
    const clock = new FakeClock();
    const fired: string[] = [];
    clock.setTimeout(() => fired.push('neg'), -5);
    clock.setTimeout(() => fired.push('nan'), Number.NaN);
    clock.advance(0);
    expect(fired).toEqual(['neg', 'nan']);
  });

  it('advanceAsync lets promise chains run between timers', async () => {
    const clock = new FakeClock();
    const seen: number[] = [];
    void (async () => {
      await clock.sleep(5);
      seen.push(clock.monoNow());
      await clock.sleep(5);
      seen.push(clock.monoNow());
    })();
    await clock.advanceAsync(20);
    expect(seen).toEqual([5, 10]);
  });
});

describe('realClock', () => {
  it('gives wall time as Date.now() and monotonic time as performance.now()', () => {
    const before = Date.now();
    const wall = realClock.wallNow();
    expect(wall).toBeGreaterThanOrEqual(before);
    expect(wall).toBeLessThanOrEqual(Date.now());
    const mono = performance.now();
    expect(realClock.monoNow()).toBeGreaterThanOrEqual(mono);
    expect(realClock.monoNow()).toBeLessThan(wall / 2);
  });
});

describe('Deadline', () => {
  it('is absolute wall time: after, remainingMs (never negative) and expired', () => {
    const clock = new FakeClock();
    const d = Deadline.after(clock, 100);
    expect(d).toBe(clock.wallNow() + 100);
    expect(Deadline.remainingMs(d, clock)).toBe(100);
    expect(Deadline.expired(d, clock)).toBe(false);
    clock.advance(99);
    expect(Deadline.remainingMs(d, clock)).toBe(1);
    clock.advance(1);
    expect(Deadline.expired(d, clock)).toBe(true);
    clock.advance(50);
    expect(Deadline.remainingMs(d, clock)).toBe(0);
  });
});
