import { describe, expect, it } from 'vitest';
import { FakeClock, RetryBudget } from '../src/index.ts';

/** Takes retries until the budget refuses one; returns how many it gave. */
function drain(budget: RetryBudget, limit = 10_000): number {
  let n = 0;
  while (n < limit && budget.tryRetry()) n++;
  return n;
}

function requests(budget: RetryBudget, n: number): void {
  for (let i = 0; i < n; i++) budget.request();
}

describe('RetryBudget', () => {
  it('allows the floor of 10 retries per window with no request at all, then refuses and counts each refusal', () => {
    const budget = new RetryBudget(new FakeClock());
    expect(drain(budget)).toBe(10);
    expect(budget.refused).toBe(1);
    expect(budget.tryRetry()).toBe(false);
    expect(budget.tryRetry()).toBe(false);
    expect(budget.refused).toBe(3);
  });

  it('adds 20% of the requests in the window to the floor', () => {
    const budget = new RetryBudget(new FakeClock());
    requests(budget, 100);
    expect(drain(budget)).toBe(30); // 10 + 0.2 * 100
    expect(budget.refused).toBe(1);
    // More requests make room again, one retry per five.
    requests(budget, 50);
    expect(drain(budget)).toBe(10);
    expect(budget.refused).toBe(2);
  });

  it('takes its ratio, floor and window from options', () => {
    const clock = new FakeClock();
    const budget = new RetryBudget(clock, { ratio: 0.5, minRetries: 0, windowMs: 1000 });
    expect(budget.tryRetry()).toBe(false); // no floor, no requests: nothing
    requests(budget, 10);
    expect(drain(budget)).toBe(5);
    clock.advance(1000); // the whole window later: all forgotten
    expect(budget.tryRetry()).toBe(false);
    expect(budget.refused).toBe(3); // before the requests, at the end of drain(), after the window
  });

  it('a ratio of 0 leaves only the floor, however many requests', () => {
    const budget = new RetryBudget(new FakeClock(), { ratio: 0, minRetries: 2 });
    requests(budget, 1000);
    expect(drain(budget)).toBe(2);
  });

  describe('the sliding window', () => {
    it('forgets the retries it spent once they leave the window', () => {
      const clock = new FakeClock();
      const budget = new RetryBudget(clock); // 10 s in slots of 1 s
      expect(drain(budget)).toBe(10);
      clock.advance(9_999);
      expect(budget.tryRetry()).toBe(false); // still inside the window
      clock.advance(1);
      expect(drain(budget)).toBe(10);
    });

    it('forgets old requests, so a burst long ago does not pay for a storm now', () => {
      const clock = new FakeClock();
      const budget = new RetryBudget(clock);
      requests(budget, 1000);
      clock.advance(10_000);
      expect(drain(budget)).toBe(10); // the floor alone: the 1000 requests left the window
    });

    it('slides by slots: what happened in the oldest slot goes first, the rest stays', () => {
      const clock = new FakeClock();
      const budget = new RetryBudget(clock, { ratio: 1, minRetries: 0, windowMs: 10_000 });
      requests(budget, 10); // slot at 0 s
      clock.advance(5_000);
      requests(budget, 4); // slot at 5 s
      expect(drain(budget)).toBe(14);
      // At 10 s the slot of 0 s (10 requests, 14 retries spent at 5 s stay) leaves: 4 requests, 14 retries.
      clock.advance(5_000);
      expect(budget.tryRetry()).toBe(false);
      // At 15 s the slot of 5 s leaves too: nothing left on either side.
      clock.advance(5_000);
      requests(budget, 3);
      expect(drain(budget)).toBe(3);
    });

    it('keeps a steady load at its ratio: 20 requests a second for a minute allow 4 retries a second plus the floor', () => {
      const clock = new FakeClock();
      const budget = new RetryBudget(clock);
      let made = 0;
      for (let s = 0; s < 60; s++) {
        requests(budget, 20);
        // Retry whatever the budget allows each second.
        made += drain(budget);
        clock.advance(1000);
      }
      // Over any 10 s window at most 10 + 0.2 * 200 = 50 retries; over 60 s, about six windows of them.
      expect(made).toBeGreaterThanOrEqual(4 * 60);
      expect(made).toBeLessThanOrEqual(6 * 50 + 10);
    });

    it('survives a jump of many windows at once', () => {
      const clock = new FakeClock();
      const budget = new RetryBudget(clock);
      requests(budget, 100);
      drain(budget);
      clock.advance(3_600_000);
      expect(drain(budget)).toBe(10);
      requests(budget, 50);
      expect(drain(budget)).toBe(10);
    });
  });
});
