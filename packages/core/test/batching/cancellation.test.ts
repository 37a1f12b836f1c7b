import { CancelledError, DeadlineExceededError, IllegalStateError } from '@shoal/core';
import { describe, expect, it } from 'vitest';
import { BatchQueue, type BatchContext } from '../../src/batching/index.ts';
import { FakeClock } from '../../src/clock.ts';
import { manualBatch, seededRandom, track } from './helpers.ts';

/** A model that runs `ms` of fake time per batch, or stops early (rejecting) once the batch signal aborts. */
function abortableModel(clock: FakeClock, ms: number) {
  return (items: number[], ctx: BatchContext): Promise<number[]> =>
    new Promise((resolve, reject) => {
      const timer = clock.setTimeout(() => resolve(items), ms);
      ctx.signal.addEventListener('abort', () => {
        clock.clearTimeout(timer);
        reject(ctx.signal.reason);
      }, { once: true });
    });
}

const idle = { queued: 0, running: 0, runningBatches: 0, inFlight: 0 };

describe('BatchQueue: cancellation', () => {
  it('removes an item whose signal aborts while queued, at once', async () => {
    const clock = new FakeClock();
    const { calls, fn } = manualBatch<string, string>();
    const queue = new BatchQueue<string, string>({ maxBatchSize: 4, maxWaitMs: 10, maxConcurrentBatches: 2 }, fn, { clock });
    // A batch in flight, so 'a' and 'b' wait for companions instead of going at once.
    void queue.submit('busy');
    await clock.advanceAsync(0);
    const controller = new AbortController();
    const cancelled = track(queue.submit('a', { signal: controller.signal }));
    void queue.submit('b');
    await clock.advanceAsync(1);
    controller.abort(new Error('client went away'));
    await clock.advanceAsync(0);
    expect(cancelled.error).toBeInstanceOf(CancelledError);
    expect((cancelled.error as Error).message).toBe('request cancelled while queued (waited 1ms)');
    expect((cancelled.error as Error).cause).toEqual(new Error('client went away'));
    expect(queue.stats()).toMatchObject({ queued: 1, inFlight: 2 });
    await clock.advanceAsync(9);
    expect(calls.map((c) => c.items)).toEqual([['busy'], ['b']]);
  });

  it('refuses a submit whose signal is already aborted', async () => {
    const queue = new BatchQueue<string, string>({}, async (xs) => xs);
    await expect(queue.submit('a', { signal: AbortSignal.abort() })).rejects.toBeInstanceOf(CancelledError);
    expect(queue.stats()).toMatchObject(idle);
  });

  it('counts a signal aborted with DeadlineExceededError as a deadline, queued, running or before submit', async () => {
    const clock = new FakeClock();
    const { calls, fn } = manualBatch<string, string>();
    const queue = new BatchQueue<string, string>({ maxBatchSize: 1, maxWaitMs: 0 }, fn, { clock });
    const running = new AbortController();
    const queued = new AbortController();
    const r = track(queue.submit('a', { signal: running.signal }));
    const q = track(queue.submit('b', { signal: queued.signal }));
    await clock.advanceAsync(0);
    const expired = new DeadlineExceededError('deadline exceeded in "Model"');
    queued.abort(expired);
    running.abort(expired);
    await clock.advanceAsync(0);
    expect(q.error).toBe(expired);
    expect(r.error).toBe(expired);
    expect(calls[0]?.ctx.signals[0]?.reason).toBe(expired);
    await expect(queue.submit('c', { signal: AbortSignal.abort(expired) })).rejects.toBe(expired);
    calls[0]?.resolve(['x']);
    await clock.advanceAsync(0);
    expect(queue.stats()).toMatchObject({ ...idle, totals: { deadlineExceeded: 3, cancelled: 0 } });
  });

  it('aborts the batch signal only when every item of the batch is cancelled', async () => {
    const clock = new FakeClock();
    const { calls, fn } = manualBatch<string, string>();
    const queue = new BatchQueue<string, string>({ maxBatchSize: 2, maxWaitMs: 0 }, fn, { clock });
    const a = new AbortController();
    const b = new AbortController();
    const first = track(queue.submit('a', { signal: a.signal }));
    track(queue.submit('b', { signal: b.signal }));
    await clock.advanceAsync(0);
    const ctx = calls[0]?.ctx as BatchContext;
    a.abort();
    await clock.advanceAsync(0);
    expect(first.error).toBeInstanceOf(CancelledError);
    expect([ctx.signals[0]?.aborted, ctx.signals[1]?.aborted, ctx.signal.aborted]).toEqual([true, false, false]);
    expect(queue.stats()).toMatchObject({ running: 2, inFlight: 1 });
    b.abort();
    expect(ctx.signal.aborted).toBe(true);
    expect(ctx.signal.reason).toBeInstanceOf(CancelledError);
    calls[0]?.reject(ctx.signal.reason);
    await clock.advanceAsync(0);
    expect(queue.stats()).toMatchObject({ ...idle, totals: { cancelled: 2, failed: 0 } });
  });

  it('cancelling 1000 requests mid-flight brings every gauge back to 0', async () => {
    const clock = new FakeClock();
    const queue = new BatchQueue<number, number>(
      { maxBatchSize: 8, maxWaitMs: 2, maxConcurrentBatches: 4, queueTimeoutMs: 10_000 },
      abortableModel(clock, 50),
      { clock },
    );
    const controllers = Array.from({ length: 1000 }, () => new AbortController());
    const outcomes = controllers.map((c, i) => track(queue.submit(i, { signal: c.signal, deadlineMs: clock.wallNow() + 60_000 })));
    await clock.advanceAsync(1);
    expect(queue.stats()).toMatchObject({ queued: 968, running: 32, runningBatches: 4, inFlight: 1000 });
    for (const c of controllers) c.abort();
    await clock.advanceAsync(0);
    expect(queue.stats()).toMatchObject({ ...idle, totals: { submitted: 1000, cancelled: 1000 } });
    expect(outcomes.every((o) => o.error instanceof CancelledError)).toBe(true);
    expect(clock.pendingTimers()).toBe(0);
  });

  it('gauges never drift under random cancellations, deadlines and timeouts', async () => {
    const clock = new FakeClock();
    const random = seededRandom(42);
    const queue = new BatchQueue<number, number>(
      { maxBatchSize: 8, maxWaitMs: 3, maxConcurrentBatches: 2, queueTimeoutMs: 40, maxQueueSize: 200 },
      abortableModel(clock, 10),
      { clock },
    );
    const outcomes: Array<ReturnType<typeof track<number>>> = [];
    for (let i = 0; i < 2000; i++) {
      const controller = new AbortController();
      outcomes.push(track(queue.submit(i, { signal: controller.signal, deadlineMs: random() < 0.3 ? clock.wallNow() + 30 * random() : undefined })));
      if (random() < 0.3) clock.setTimeout(() => controller.abort(), 60 * random());
      await clock.advanceAsync(random() * 2);
    }
    await clock.advanceAsync(1000);
    const { totals, ...gauges } = queue.stats();
    expect(gauges).toMatchObject(idle);
    expect(outcomes.every((o) => o.status !== 'pending')).toBe(true);
    expect(totals.succeeded + totals.failed + totals.cancelled + totals.deadlineExceeded + totals.queueTimedOut + totals.rejectedQueueFull).toBe(2000);
    expect(totals.cancelled * totals.deadlineExceeded * totals.succeeded).toBeGreaterThan(0);
    expect(outcomes.some((o) => o.error instanceof DeadlineExceededError)).toBe(true);
  });

  it('close rejects queued items, lets running batches finish, then refuses submits', async () => {
    const clock = new FakeClock();
    const { calls, fn } = manualBatch<string, string>();
    const queue = new BatchQueue<string, string>({ maxBatchSize: 1, maxWaitMs: 0 }, fn, { clock, name: 'rec' });
    const running = track(queue.submit('running'));
    await clock.advanceAsync(0);
    const queued = track(queue.submit('queued'));
    const closed = track(queue.close());
    await clock.advanceAsync(0);
    expect((queued.error as Error).message).toBe('batch queue for "rec" closed with 1 requests queued');
    expect([queue.state, closed.status]).toEqual(['closing', 'pending']);
    calls[0]?.resolve(['done']);
    await clock.advanceAsync(0);
    expect([queue.state, closed.status, running.value]).toEqual(['closed', 'fulfilled', 'done']);
    await expect(queue.submit('late')).rejects.toBeInstanceOf(IllegalStateError);
    expect(queue.stats()).toMatchObject(idle);
  });
});
