import { InvalidOptionError } from '@shoal/core';
import { describe, expect, it } from 'vitest';
import { compileBatchOptions, type BatchOptions } from '../../src/batching/options.ts';

function errorOf(input: unknown, path?: string): InvalidOptionError {
  try {
    compileBatchOptions(input as BatchOptions, path);
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidOptionError);
    return err as InvalidOptionError;
  }
  throw new Error('expected compileBatchOptions to throw');
}

describe('compileBatchOptions', () => {
  it('fills every default', () => {
    expect(compileBatchOptions(undefined)).toEqual({
      maxBatchSize: 8, maxWaitMs: 5, preferredBatchSizes: [], maxConcurrentBatches: 1, priorityLevels: 1, defaultPriority: 0,
      queueTimeoutMs: undefined, timeoutAction: 'REJECT', maxQueueSize: 1024, latencyObjective: undefined, pad: undefined,
    });
  });

  it('sorts preferred sizes, fills objective defaults, and accepts its own output', () => {
    const compiled = compileBatchOptions({ maxBatchSize: 16, preferredBatchSizes: [16, 4, 8], latencyObjective: { p99Ms: 50 } });
    expect(compiled.preferredBatchSizes).toEqual([4, 8, 16]);
    expect(compiled.latencyObjective).toEqual({ p99Ms: 50, decreaseFactor: 0.75, windowBatches: 8 });
    expect(compileBatchOptions(compiled)).toEqual(compiled);
  });

  it.each([
    [{ maxBatchSize: 0 }, 'batch.maxBatchSize', '(got 0)'],
    [{ maxBatchSize: 2.5 }, 'batch.maxBatchSize', 'integer'],
    [{ maxBatchSize: '8' }, 'batch.maxBatchSize', 'must be a number'],
    [{ maxWaitMs: -1 }, 'batch.maxWaitMs', '(got -1)'],
    [{ maxWaitMs: Infinity }, 'batch.maxWaitMs', 'finite'],
    [{ maxBatchSize: 8, preferredBatchSizes: [4, 16] }, 'batch.preferredBatchSizes[1]', 'batch.maxBatchSize=8'],
    [{ preferredBatchSizes: [2, 2] }, 'batch.preferredBatchSizes[1]', 'duplicates'],
    [{ preferredBatchSizes: [0] }, 'batch.preferredBatchSizes[0]', '(got 0)'],
    [{ preferredBatchSizes: 4 }, 'batch.preferredBatchSizes', 'array'],
    [{ maxConcurrentBatches: 1.5 }, 'batch.maxConcurrentBatches', '(got 1.5)'],
    [{ priorityLevels: 0 }, 'batch.priorityLevels', '(got 0)'],
    [{ priorityLevels: 2, defaultPriority: 2 }, 'batch.defaultPriority', 'batch.priorityLevels=2'],
    [{ queueTimeoutMs: 0 }, 'batch.queueTimeoutMs', 'must be > 0'],
    [{ timeoutAction: 'DROP' }, 'batch.timeoutAction', '"DROP"'],
    [{ maxQueueSize: 0 }, 'batch.maxQueueSize', '(got 0)'],
    [{ latencyObjective: { p99Ms: 0 } }, 'batch.latencyObjective.p99Ms', 'must be > 0'],
    [{ latencyObjective: {} }, 'batch.latencyObjective.p99Ms', 'required'],
    [{ latencyObjective: { p99Ms: 10, decreaseFactor: 1 } }, 'batch.latencyObjective.decreaseFactor', '(got 1)'],
    [{ pad: { bucket: 'x' } }, 'batch.pad.bucket', 'function'],
    [{ maxBatchsize: 8 }, 'batch.maxBatchsize', 'unknown option'],
  ])('rejects %j naming %s', (input, path, fragment) => {
    const err = errorOf(input);
    expect(err.message).toContain(`invalid option ${path}:`);
    expect(err.message).toContain(fragment);
    expect(err.details).toEqual({ path });
  });

  it('names the caller-given path', () => {
    expect(errorOf({ maxBatchSize: -3 }, 'deployments.rec.batch').message).toContain('deployments.rec.batch.maxBatchSize');
  });
});
