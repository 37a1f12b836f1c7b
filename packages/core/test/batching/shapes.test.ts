import { ShapeMismatchError } from '@shoal/core';
import { describe, expect, it } from 'vitest';
import { BatchQueue, shapeKeyOf, type BatchContext } from '../../src/batching/index.ts';
import { FakeClock } from '../../src/clock.ts';

interface Tensor { dims: number[]; id: string }
const t = (id: string, ...dims: number[]): Tensor => ({ id, dims: [1, ...dims] });

function recorder() {
  const batches: Array<{ ids: string[]; dims: number[][]; shapeKey: string; shapeKeys: readonly string[] }> = [];
  const fn = async (items: Tensor[], ctx: BatchContext): Promise<string[]> => {
    batches.push({ ids: items.map((x) => x.id), dims: items.map((x) => x.dims), shapeKey: ctx.shapeKey, shapeKeys: ctx.shapeKeys });
    return items.map((x) => x.id);
  };
  return { batches, fn };
}

describe('BatchQueue: shapes', () => {
  it('never mixes shape keys given by the caller in one batch', async () => {
    const clock = new FakeClock();
    const { batches, fn } = recorder();
    const queue = new BatchQueue<Tensor, string>({ maxBatchSize: 8, maxWaitMs: 0, maxConcurrentBatches: 4 }, fn, { clock });
    const submitted: Array<[Tensor, string]> = [[t('a', 3), '3'], [t('b', 4), '4'], [t('c', 3), '3'], [t('d', 4), '4'], [t('e', 5), '5']];
    const results = submitted.map(([x, shapeKey]) => queue.submit(x, { shapeKey }));
    await clock.advanceAsync(0);
    expect(await Promise.all(results)).toEqual(['a', 'b', 'c', 'd', 'e']);
    expect(batches.map((b) => [b.shapeKey, b.ids])).toEqual([['3', ['a', 'c']], ['4', ['b', 'd']], ['5', ['e']]]);
  });

  it('computes the key with shapeOf when the submit gives none (dims after the batch dim)', async () => {
    const clock = new FakeClock();
    const { batches, fn } = recorder();
    const queue = new BatchQueue<Tensor, string>({ maxWaitMs: 0, maxConcurrentBatches: 4, shapeOf: (x) => shapeKeyOf(x.dims) }, fn, { clock });
    for (const x of [t('a', 3, 32), t('b', 3, 64), t('c', 3, 32)]) void queue.submit(x);
    await clock.advanceAsync(0);
    expect(batches.map((b) => [b.shapeKey, b.ids])).toEqual([['3x32', ['a', 'c']], ['3x64', ['b']]]);
    expect(shapeKeyOf([8, 3, 224, 224])).toBe('3x224x224');
  });

  it('merges shapes into one batch only through the declared pad hook', async () => {
    const clock = new FakeClock();
    const { batches, fn } = recorder();
    const width = (key: string): number => Number(key);
    const queue = new BatchQueue<Tensor, string>({
      maxWaitMs: 0,
      maxConcurrentBatches: 4,
      shapeOf: (x) => shapeKeyOf(x.dims),
      pad: {
        // Widths pad up to a multiple of 64; wider than 128 has no bucket and stays alone.
        bucket: (key) => (width(key) <= 128 ? String(Math.ceil(width(key) / 64) * 64) : key),
        apply: (items, bucketKey) => items.map((x) => ({ ...x, dims: [1, Number(bucketKey)] })),
      },
    }, fn, { clock });
    for (const x of [t('a', 30), t('b', 64), t('c', 100), t('d', 120), t('e', 300)]) void queue.submit(x);
    await clock.advanceAsync(0);
    expect(batches).toEqual([
      { ids: ['a', 'b'], dims: [[1, 64], [1, 64]], shapeKey: '64', shapeKeys: ['30', '64'] },
      { ids: ['c', 'd'], dims: [[1, 128], [1, 128]], shapeKey: '128', shapeKeys: ['100', '120'] },
      { ids: ['e'], dims: [[1, 300]], shapeKey: '300', shapeKeys: ['300'] },
    ]);
  });

  it('rejects a submit whose shape cannot be computed, with ShapeMismatchError', async () => {
    const queue = new BatchQueue<Tensor, string>({ shapeOf: () => { throw new Error('no dims'); } }, async (xs) => xs.map((x) => x.id));
    await expect(queue.submit(t('a', 3))).rejects.toBeInstanceOf(ShapeMismatchError);
    await expect(queue.submit(t('a', 3))).rejects.toThrow('shapeOf failed: no dims');
    expect(queue.stats()).toMatchObject({ queued: 0, inFlight: 0 });
  });
});
