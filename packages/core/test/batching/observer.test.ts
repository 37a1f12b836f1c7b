import { describe, expect, it } from 'vitest';
import { BatchQueue, type BatchObserver, type BatchReleaseReason } from '../../src/batching/index.ts';
import { FakeClock } from '../../src/clock.ts';
import { manualBatch } from './helpers.ts';

/** Records every call, as the worker's metrics would observe them. */
class RecordingObserver implements BatchObserver {
  readonly releases: Array<[number, BatchReleaseReason]> = [];
  readonly waits: number[] = [];
  readonly runs: Array<[number, number]> = [];
  released(size: number, reason: BatchReleaseReason): void { this.releases.push([size, reason]); }
  waited(waitMs: number): void { this.waits.push(waitMs); }
  ran(runMs: number, size: number): void { this.runs.push([runMs, size]); }
}

function setup(options: ConstructorParameters<typeof BatchQueue<string, string>>[0]) {
  const clock = new FakeClock();
  const { calls, fn } = manualBatch<string, string>();
  const queue = new BatchQueue<string, string>(options, fn, { clock, name: 'rec.predict' });
  const observer = new RecordingObserver();
  queue.setObserver(observer);
  const answer = (i: number): void => calls[i]?.resolve(calls[i].items.map((x) => x.toUpperCase()));
  return { clock, calls, queue, observer, answer };
}

describe('BatchQueue: observer and release reasons', () => {
  it('tells idle, full and timeout apart, with each item\'s wait and the batch function\'s run time', async () => {
    const { clock, calls, queue, observer, answer } = setup({ maxBatchSize: 3, maxWaitMs: 10 });
    // A lone item at an idle queue goes at once.
    const lone = queue.submit('a');
    await clock.advanceAsync(0);
    expect(observer.releases).toEqual([[1, 'idle']]);
    expect(observer.waits).toEqual([0]);
    // While that batch runs, three items fill a batch (full); two more wait out maxWaitMs (timeout).
    const full = ['b', 'c', 'd'].map((x) => queue.submit(x));
    await clock.advanceAsync(2);
    const late = ['e', 'f'].map((x) => queue.submit(x));
    await clock.advanceAsync(4);
    answer(0);
    await lone;
    await clock.advanceAsync(0);
    expect(observer.releases).toEqual([[1, 'idle'], [3, 'full']]);
    // b, c and d waited from their submit (t=0) until the first batch returned at t=6.
    expect(observer.waits.slice(1)).toEqual([6, 6, 6]);
    expect(observer.runs).toEqual([[6, 1]]);
    answer(1);
    await Promise.all(full);
    await clock.advanceAsync(6);
    expect(observer.releases).toEqual([[1, 'idle'], [3, 'full'], [2, 'timeout']]);
    // e and f arrived at t=2 and left when the oldest had waited maxWaitMs.
    expect(observer.waits.slice(4)).toEqual([10, 10]);
    answer(2);
    await Promise.all(late);
    expect(observer.runs.map(([, size]) => size)).toEqual([1, 3, 2]);
    expect(calls).toHaveLength(3);
  });

  it('counts a preferred batch size below the max as preferred, and a failed batch function\'s run', async () => {
    const { clock, calls, queue, observer } = setup({ maxBatchSize: 8, maxWaitMs: 50, preferredBatchSizes: [2, 8] });
    const hold = queue.submit('x');
    await clock.advanceAsync(0);
    const pair = ['a', 'b', 'c'].map((x) => queue.submit(x).catch((e: unknown) => e));
    calls[0]!.resolve(['X']);
    await hold;
    await clock.advanceAsync(0);
    expect(observer.releases).toEqual([[1, 'idle'], [2, 'preferred']]);
    await clock.advanceAsync(3);
    calls[1]!.reject(new Error('model crashed'));
    await clock.advanceAsync(0);
    expect(observer.runs[1]).toEqual([3, 2]);
    // 'c' waits for companions until maxWaitMs, as no preferred size fits one item.
    await clock.advanceAsync(50);
    expect(observer.releases.at(-1)).toEqual([1, 'timeout']);
    calls[2]!.resolve(['C']);
    const results = await Promise.all(pair);
    expect(results.slice(0, 2).map((e) => (e as Error).message)).toEqual(['model crashed', 'model crashed']);
    expect(results[2]).toBe('C');
  });

  it('counts batches released by the adaptive controller\'s smaller size as adaptive', async () => {
    // Slow start: the controller begins at size 1, under the options' maxBatchSize of 8: even a lone item at an
    // idle queue is a batch its limit closed.
    const { clock, calls, queue, observer, answer } = setup({ maxBatchSize: 8, maxWaitMs: 20, latencyObjective: { percentile: 99, ms: 100 } });
    expect(queue.effective.maxBatchSize).toBe(1);
    const first = queue.submit('a');
    await clock.advanceAsync(0);
    const more = ['b', 'c'].map((x) => queue.submit(x));
    answer(0);
    await first;
    await clock.advanceAsync(0);
    expect(observer.releases).toEqual([[1, 'adaptive'], [1, 'adaptive']]);
    answer(1);
    await clock.advanceAsync(0);
    answer(2);
    await Promise.all(more);
    expect(observer.releases.map(([, reason]) => reason)).toEqual(['adaptive', 'adaptive', 'adaptive']);
  });

  it('releases no batch when it closes with items queued, and stops reporting once the observer is removed', async () => {
    const { clock, calls, queue, observer, answer } = setup({ maxBatchSize: 4, maxWaitMs: 100 });
    const running = queue.submit('a');
    await clock.advanceAsync(0);
    const queued = queue.submit('b').catch((e: unknown) => e);
    queue.setObserver(undefined);
    const closed = queue.close();
    answer(0);
    await Promise.all([running, closed]);
    expect((await queued) instanceof Error).toBe(true);
    expect(observer.releases).toEqual([[1, 'idle']]);
    expect(observer.runs).toEqual([]);
    expect(calls).toHaveLength(1);
  });
});
