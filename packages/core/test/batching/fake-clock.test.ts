import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/batching/clock.ts';

describe('FakeClock', () => {
  it('fires due timers in order of due time, ties in creation order, with now() at each due time', () => {
    const clock = new FakeClock(100);
    const fired: string[] = [];
    clock.setTimeout(() => fired.push(`b@${clock.now()}`), 20);
    clock.setTimeout(() => fired.push(`a@${clock.now()}`), 10);
    clock.setTimeout(() => fired.push(`c@${clock.now()}`), 20);
    clock.advance(15);
    expect(fired).toEqual(['a@110']);
    clock.advance(100);
    expect(fired).toEqual(['a@110', 'b@120', 'c@120']);
    expect(clock.now()).toBe(215);
  });

  it('fires timers scheduled by a firing timer inside the same window, and honours clearTimeout', () => {
    const clock = new FakeClock();
    const fired: number[] = [];
    const cleared = clock.setTimeout(() => fired.push(-1), 5);
    clock.setTimeout(() => {
      fired.push(clock.now());
      clock.setTimeout(() => fired.push(clock.now()), 3);
    }, 2);
    clock.clearTimeout(cleared);
    clock.advance(10);
    expect(fired).toEqual([2, 5]);
    expect(clock.pendingTimers).toBe(0);
  });

  it('advanceAsync lets promise chains run between timers', async () => {
    const clock = new FakeClock();
    const seen: number[] = [];
    void (async () => {
      await clock.sleep(5);
      seen.push(clock.now());
      await clock.sleep(5);
      seen.push(clock.now());
    })();
    await clock.advanceAsync(20);
    expect(seen).toEqual([5, 10]);
  });
});
