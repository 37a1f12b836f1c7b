import { BatchSizeMismatchError } from '@shoal/core';
import { describe, expect, it } from 'vitest';
import { BatchQueue, itemError } from '../../src/batching/index.ts';
import { FakeClock } from '../../src/clock.ts';
import { track } from './helpers.ts';

async function runBatch(fn: (items: number[]) => unknown): Promise<Array<ReturnType<typeof track<number>>>> {
  const clock = new FakeClock();
  const queue = new BatchQueue<number, number>({ maxBatchSize: 3, maxWaitMs: 0 }, fn as never, { clock });
  const outcomes = [1, 2, 3].map((x) => track(queue.submit(x)));
  await clock.advanceAsync(0);
  expect(queue.stats()).toMatchObject({ queued: 0, running: 0, runningBatches: 0, inFlight: 0 });
  return outcomes;
}

describe('BatchQueue: results', () => {
  it('fans results back out in order', async () => {
    const outcomes = await runBatch(async (items) => items.map((x) => x * 10));
    expect(outcomes.map((o) => o.value)).toEqual([10, 20, 30]);
  });

  it('fails every caller with both numbers when the count of results is wrong', async () => {
    for (const outcome of await runBatch(async (items) => items.slice(1))) {
      expect(outcome.error).toBeInstanceOf(BatchSizeMismatchError);
      expect((outcome.error as Error).message).toBe('batch method returned 2 results for 3 inputs');
    }
    const notArray = await runBatch(async () => 'oops');
    expect((notArray[0]?.error as Error).message).toBe('batch method returned "oops" instead of an array for 3 inputs');
  });

  it('fails only the item marked with itemError', async () => {
    const bad = new RangeError('item 2 is bad');
    const outcomes = await runBatch(async (items) => items.map((x) => (x === 2 ? itemError(bad) : x)));
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(outcomes[1]?.error).toBe(bad);
  });

  it('fails every item with what the batch function threw, sync or async', async () => {
    const boom = new Error('boom');
    for (const fn of [async () => { throw boom; }, () => { throw boom; }]) {
      expect((await runBatch(fn)).map((o) => o.error)).toEqual([boom, boom, boom]);
    }
  });
});
