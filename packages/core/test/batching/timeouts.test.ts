import { DeadlineExceededError } from '@shoal/core';
import { describe, expect, it } from 'vitest';
import { BatchQueue, type BatchOptions } from '../../src/batching/index.ts';
import { FakeClock } from '../../src/clock.ts';
import { manualBatch, track } from './helpers.ts';

function setup(options: BatchOptions<string>) {
  const clock = new FakeClock();
  const { calls, fn } = manualBatch<string, string>();
  const queue = new BatchQueue<string, string>({ maxBatchSize: 1, maxWaitMs: 0, ...options }, fn, { clock, name: 'rec' });
  const answer = (i: number): void => calls[i]?.resolve(calls[i].items);
  return { clock, calls, queue, answer };
}

describe('BatchQueue: queue timeouts and deadlines', () => {
  it('REJECT fails an item that waited queueTimeoutMs and takes it out of the queue', async () => {
    const { clock, queue, calls, answer } = setup({ queueTimeoutMs: 5, timeoutAction: 'REJECT' });
    void queue.submit('blocker');
    await clock.advanceAsync(0);
    const late = track(queue.submit('late'));
    await clock.advanceAsync(4);
    expect(late.status).toBe('pending');
    await clock.advanceAsync(1);
    expect(late.status).toBe('rejected');
    expect(late.error).toBeInstanceOf(DeadlineExceededError);
    expect((late.error as Error).message).toBe('queue timeout for "rec": waited 5ms in queue, queueTimeoutMs=5');
    expect(queue.stats()).toMatchObject({ queued: 0, inFlight: 1 });
    answer(0);
    await clock.advanceAsync(0);
    expect(calls).toHaveLength(1);
    expect(queue.stats().totals.queueTimedOut).toBe(1);
  });

  it('DELAY keeps a timed-out item but serves it after items of its level that have not timed out', async () => {
    const { clock, queue, calls, answer } = setup({ queueTimeoutMs: 5, timeoutAction: 'DELAY', priorityLevels: 2 });
    void queue.submit('blocker');
    await clock.advanceAsync(0);
    const old = track(queue.submit('old', { priority: 1 }));
    await clock.advanceAsync(3);
    void queue.submit('fresh', { priority: 1 });
    void queue.submit('low', { priority: 0, queueTimeoutMs: 1000 });
    await clock.advanceAsync(2);
    expect(old.status).toBe('pending');
    expect(queue.stats().totals.delayed).toBe(1);
    for (let i = 0; i < 4; i++) {
      answer(i);
      await clock.advanceAsync(0);
    }
    expect(calls.map((c) => c.items[0])).toEqual(['blocker', 'fresh', 'old', 'low']);
    expect(old.status).toBe('fulfilled');
  });

  it('a submit may set its own queue timeout', async () => {
    const { clock, queue } = setup({ queueTimeoutMs: 100 });
    void queue.submit('blocker');
    await clock.advanceAsync(0);
    const quick = track(queue.submit('quick', { queueTimeoutMs: 2 }));
    const patient = track(queue.submit('patient'));
    await clock.advanceAsync(2);
    expect([quick.status, patient.status]).toEqual(['rejected', 'pending']);
  });

  it('reconfigure re-arms queue timeouts from each item\'s arrival', async () => {
    const { clock, queue } = setup({});
    void queue.submit('blocker');
    await clock.advanceAsync(0);
    const item = track(queue.submit('x'));
    await clock.advanceAsync(10);
    queue.reconfigure({ queueTimeoutMs: 15 });
    await clock.advanceAsync(4);
    expect(item.status).toBe('pending');
    await clock.advanceAsync(1);
    expect(item.status).toBe('rejected');
    expect((item.error as Error).message).toContain('waited 15ms');
  });

  it('a deadline fails a queued item, and aborts a running item\'s signal', async () => {
    const { clock, queue, calls } = setup({ maxBatchSize: 2 });
    const running = track(queue.submit('running', { deadlineMs: clock.wallNow() + 20 }));
    const other = track(queue.submit('other'));
    await clock.advanceAsync(0);
    const queued = track(queue.submit('queued', { deadlineMs: clock.wallNow() + 10 }));
    await clock.advanceAsync(10);
    expect(queued.error).toBeInstanceOf(DeadlineExceededError);
    expect((queued.error as Error).message).toBe('deadline exceeded while queued for "rec": waited 10ms, deadline was 10ms after submit');
    await clock.advanceAsync(10);
    expect(running.error).toBeInstanceOf(DeadlineExceededError);
    expect(calls[0]?.ctx.signals[0]?.aborted).toBe(true);
    expect(calls[0]?.ctx.signal.aborted).toBe(false);
    calls[0]?.resolve(['R', 'O']);
    await clock.advanceAsync(0);
    expect(other.value).toBe('O');
    expect(queue.stats()).toMatchObject({ queued: 0, running: 0, inFlight: 0 });
  });

  it('refuses a submit whose deadline already passed', async () => {
    const { clock, queue } = setup({});
    await clock.advanceAsync(50);
    await expect(queue.submit('x', { deadlineMs: clock.wallNow() - 10 })).rejects.toThrow('deadline passed before the request was queued (deadline was 10ms ago)');
  });
});
