import { InvalidOptionError, QueueFullError } from '@shoal/core';
import { describe, expect, it } from 'vitest';
import { BatchQueue } from '../../src/batching/index.ts';
import { FakeClock, flushMicrotasks } from '../../src/clock.ts';
import { manualBatch, track } from './helpers.ts';

function setup(options: ConstructorParameters<typeof BatchQueue<string, string>>[0]) {
  const clock = new FakeClock();
  const { calls, fn } = manualBatch<string, string>();
  const queue = new BatchQueue<string, string>(options, fn, { clock, name: 'rec' });
  const answer = (i: number): void => calls[i]?.resolve(calls[i].items.map((x) => x.toUpperCase()));
  return { clock, calls, queue, answer };
}

describe('BatchQueue: forming batches', () => {
  it('dispatches a full batch at once and a partial one when its oldest item has waited maxWaitMs', async () => {
    const { clock, calls, queue, answer } = setup({ maxBatchSize: 4, maxWaitMs: 10, maxConcurrentBatches: 2 });
    const full = ['a', 'b', 'c', 'd'].map((x) => queue.submit(x));
    await clock.advanceAsync(0);
    expect(calls.map((c) => c.items)).toEqual([['a', 'b', 'c', 'd']]);

    const first = track(queue.submit('e'));
    await clock.advanceAsync(4);
    const second = track(queue.submit('f'));
    await clock.advanceAsync(5);
    expect(calls).toHaveLength(1);
    await clock.advanceAsync(1);
    expect(calls.map((c) => c.items)).toEqual([['a', 'b', 'c', 'd'], ['e', 'f']]);
    expect(clock.monoNow()).toBe(10);

    answer(0);
    answer(1);
    expect(await Promise.all(full)).toEqual(['A', 'B', 'C', 'D']);
    await clock.advanceAsync(0);
    expect([first.value, second.value]).toEqual(['E', 'F']);
    expect(queue.stats().batchSizeCounts).toEqual({ 2: 1, 4: 1 });
  });

  it('with maxWaitMs 0 batches what was submitted in the same tick', async () => {
    const { clock, calls, queue } = setup({ maxBatchSize: 8, maxWaitMs: 0 });
    for (const x of ['a', 'b', 'c']) void queue.submit(x);
    await clock.advanceAsync(0);
    expect(calls.map((c) => c.items)).toEqual([['a', 'b', 'c']]);
  });

  it('dispatches the largest reachable preferred size at once, and the rest after the wait', async () => {
    const { clock, calls, queue } = setup({ maxBatchSize: 8, maxWaitMs: 10, preferredBatchSizes: [2, 4], maxConcurrentBatches: 4 });
    for (const x of ['a', 'b', 'c']) void queue.submit(x);
    await clock.advanceAsync(0);
    expect(calls.map((c) => c.items)).toEqual([['a', 'b']]);
    for (const x of ['d', 'e', 'f', 'g', 'h']) void queue.submit(x);
    await clock.advanceAsync(0);
    expect(calls.map((c) => c.items)).toEqual([['a', 'b'], ['c', 'd', 'e', 'f'], ['g', 'h']]);
    void queue.submit('i');
    await clock.advanceAsync(9);
    expect(calls).toHaveLength(3);
    await clock.advanceAsync(1);
    expect(calls[3]?.items).toEqual(['i']);
  });

  it('runs at most maxConcurrentBatches batches and starts the next when one returns', async () => {
    const { clock, calls, queue, answer } = setup({ maxBatchSize: 1, maxWaitMs: 0, maxConcurrentBatches: 2 });
    for (const x of ['a', 'b', 'c']) void queue.submit(x);
    await clock.advanceAsync(0);
    expect(calls).toHaveLength(2);
    expect(queue.stats()).toMatchObject({ queued: 1, running: 2, runningBatches: 2, inFlight: 3 });
    answer(0);
    await clock.advanceAsync(0);
    expect(calls[2]?.items).toEqual(['c']);
  });

  it('serves higher priority first and FIFO within a level', async () => {
    const { clock, calls, queue, answer } = setup({ maxBatchSize: 2, maxWaitMs: 0, priorityLevels: 3 });
    void queue.submit('blocker');
    await clock.advanceAsync(0);
    const submitted: Array<[string, number]> = [['low1', 0], ['top1', 2], ['mid', 1], ['top2', 2], ['low2', 0]];
    for (const [x, priority] of submitted) void queue.submit(x, { priority });
    expect(queue.stats().queuedByPriority).toEqual([2, 1, 2]);
    for (let i = 0; i < 3; i++) {
      answer(i);
      await clock.advanceAsync(0);
    }
    expect(calls.map((c) => c.items)).toEqual([['blocker'], ['top1', 'top2'], ['mid', 'low1'], ['low2']]);
  });

  it('rejects a submit past maxQueueSize with the numbers, not counting running items', async () => {
    const { clock, queue, answer } = setup({ maxBatchSize: 1, maxWaitMs: 0, maxQueueSize: 2 });
    void queue.submit('first');
    await clock.advanceAsync(12);
    answer(0);
    void queue.submit('running');
    await clock.advanceAsync(0);
    void queue.submit('q1');
    void queue.submit('q2');
    const err = await queue.submit('q3').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QueueFullError);
    expect((err as QueueFullError).message).toBe('batch queue full for "rec": queued=2, maxQueueSize=2');
    // One batch of 1 must finish before there is room; batches have taken 12 ms.
    expect((err as QueueFullError).details).toEqual({ queued: 2, maxQueueSize: 2, retryAfterMs: 12 });
    expect(queue.stats().totals.rejectedQueueFull).toBe(1);
  });

  it('refuses bad submit arguments with the argument named', async () => {
    const { queue } = setup({ priorityLevels: 2 });
    const bad = await queue.submit('x', { priority: 2 }).catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(InvalidOptionError);
    expect((bad as Error).message).toContain('invalid option submit.priority: must be an integer in [0, 1]');
    await expect(queue.submit('x', { queueTimeoutMs: 0 })).rejects.toThrow('submit.queueTimeoutMs');
    expect(() => new BatchQueue({ maxBatchSize: 0 }, () => [])).toThrow('invalid option batch.maxBatchSize: must be >= 1 (got 0)');
  });
});

describe('BatchQueue: light load costs nothing', () => {
  it('an idle queue dispatches a lone item at once, with no timer and no time passing', async () => {
    const { clock, calls, queue, answer } = setup({ maxBatchSize: 8, maxWaitMs: 50 });
    const lone = queue.submit('x');
    await flushMicrotasks();
    expect(calls.map((c) => c.items)).toEqual([['x']]);
    expect(clock.monoNow()).toBe(0);
    expect(clock.pendingTimers()).toBe(0);
    answer(0);
    expect(await lone).toBe('X');

    // Idle again once the batch returned: the next lone item goes at once too.
    await flushMicrotasks();
    void queue.submit('y');
    await flushMicrotasks();
    expect(calls.map((c) => c.items)).toEqual([['x'], ['y']]);
    expect(clock.monoNow()).toBe(0);
  });

  it('items submitted in one tick to an idle queue go together, up to maxBatchSize', async () => {
    const { calls, queue } = setup({ maxBatchSize: 2, maxWaitMs: 50, maxConcurrentBatches: 2 });
    for (const x of ['a', 'b', 'c']) void queue.submit(x);
    await flushMicrotasks();
    // The first batch went eagerly; with it running, 'c' is under load and waits for companions.
    expect(calls.map((c) => c.items)).toEqual([['a', 'b']]);
  });

  it('holds for preferredBatchSizes and adaptive batching: a lone item at an idle queue still goes at once', async () => {
    const preferred = setup({ maxBatchSize: 8, maxWaitMs: 50, preferredBatchSizes: [4, 8] });
    void preferred.queue.submit('p');
    await flushMicrotasks();
    expect(preferred.calls.map((c) => c.items)).toEqual([['p']]);

    const adaptive = setup({ maxBatchSize: 8, maxWaitMs: 50, latencyObjective: { ms: 200 } });
    void adaptive.queue.submit('q');
    await flushMicrotasks();
    expect(adaptive.calls.map((c) => c.items)).toEqual([['q']]);
  });

  it('under load (a batch running) items gather up to maxWaitMs or maxBatchSize as before', async () => {
    const { clock, calls, queue } = setup({ maxBatchSize: 3, maxWaitMs: 50, maxConcurrentBatches: 3 });
    void queue.submit('busy');
    await flushMicrotasks();
    expect(calls).toHaveLength(1);

    void queue.submit('w');
    await clock.advanceAsync(49);
    expect(calls).toHaveLength(1);
    await clock.advanceAsync(1);
    expect(calls.map((c) => c.items)).toEqual([['busy'], ['w']]);

    for (const x of ['f1', 'f2', 'f3']) void queue.submit(x);
    await flushMicrotasks();
    expect(calls[2]?.items).toEqual(['f1', 'f2', 'f3']);
    expect(clock.monoNow()).toBe(50);
  });

  it('items that queued behind a running batch keep gathering after it returns', async () => {
    const { clock, calls, queue, answer } = setup({ maxBatchSize: 8, maxWaitMs: 50 });
    void queue.submit('busy');
    await clock.advanceAsync(10);
    void queue.submit('p');
    await clock.advanceAsync(10);
    answer(0);
    await clock.advanceAsync(39);
    expect(calls).toHaveLength(1);
    await clock.advanceAsync(1);
    expect(calls.map((c) => c.items)).toEqual([['busy'], ['p']]);
    expect(clock.monoNow()).toBe(60);
  });
});

describe('BatchQueue: reconfigure', () => {
  it('applies new limits to queued items without losing any', async () => {
    const { clock, calls, queue, answer } = setup({ maxBatchSize: 8, maxWaitMs: 100, maxConcurrentBatches: 2 });
    // A batch in flight, so the queue is under load and the items below gather rather than go at once.
    const busy = queue.submit('busy');
    await clock.advanceAsync(0);
    const results = ['a', 'b', 'c', 'd', 'e'].map((x) => queue.submit(x));
    await clock.advanceAsync(10);
    expect(calls.map((c) => c.items)).toEqual([['busy']]);

    queue.reconfigure({ maxBatchSize: 2, maxConcurrentBatches: 3 });
    await clock.advanceAsync(0);
    expect(calls.map((c) => c.items)).toEqual([['busy'], ['a', 'b'], ['c', 'd']]);
    expect(queue.config).toMatchObject({ maxBatchSize: 2, maxWaitMs: 100, maxConcurrentBatches: 3 });

    answer(1);
    queue.reconfigure({ maxWaitMs: 0 });
    await clock.advanceAsync(0);
    expect(calls[3]?.items).toEqual(['e']);
    answer(0);
    answer(2);
    answer(3);
    expect(await busy).toBe('BUSY');
    expect(await Promise.all(results)).toEqual(['A', 'B', 'C', 'D', 'E']);
  });

  it('re-levels queued items when priorityLevels changes', async () => {
    const { clock, calls, queue, answer } = setup({ maxBatchSize: 1, maxWaitMs: 0, priorityLevels: 3 });
    void queue.submit('blocker');
    await clock.advanceAsync(0);
    void queue.submit('p2', { priority: 2 });
    void queue.submit('p1', { priority: 1 });
    void queue.submit('p0', { priority: 0 });
    queue.reconfigure({ priorityLevels: 2 });
    expect(queue.stats().queuedByPriority).toEqual([1, 2]);
    for (let i = 0; i < 3; i++) {
      answer(i);
      await clock.advanceAsync(0);
    }
    // p2 now shares the top level with p1 and came first.
    expect(calls.map((c) => c.items[0])).toEqual(['blocker', 'p2', 'p1', 'p0']);
  });

  it('changes nothing when the new options are invalid', async () => {
    const { queue } = setup({ maxBatchSize: 8, preferredBatchSizes: [8] });
    expect(() => queue.reconfigure({ maxBatchSize: 4 })).toThrow('invalid option batch.preferredBatchSizes[0]: must be <= batch.maxBatchSize=4 (got 8)');
    expect(queue.config.maxBatchSize).toBe(8);
  });
});
