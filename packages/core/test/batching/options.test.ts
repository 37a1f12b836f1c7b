import { InvalidOptionError } from '@shoal/core';
import { describe, expect, it } from 'vitest';
import { compileBatchOptions, mergeBatchOptions, type BatchOptions } from '../../src/batching/options.ts';

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
      queueTimeoutMs: undefined, timeoutAction: 'REJECT', maxQueueSize: 1024, latencyObjective: undefined, shapeOf: undefined, pad: undefined,
    });
  });

  it('sorts preferred sizes, fills objective defaults, and accepts its own output', () => {
    const compiled = compileBatchOptions({ maxBatchSize: 16, preferredBatchSizes: [16, 4, 8], latencyObjective: { percentile: 99, ms: 50 } });
    expect(compiled.preferredBatchSizes).toEqual([4, 8, 16]);
    expect(compiled.latencyObjective).toEqual({ percentile: 99, ms: 50, decreaseFactor: 0.75, windowBatches: 8 });
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
    [{ latencyObjective: { ms: 0 } }, 'batch.latencyObjective.ms', 'must be > 0'],
    [{ latencyObjective: {} }, 'batch.latencyObjective.ms', 'required'],
    [{ latencyObjective: { ms: 50, percentile: 0 } }, 'batch.latencyObjective.percentile', '(0, 100]'],
    [{ latencyObjective: { ms: 50, percentile: 101 } }, 'batch.latencyObjective.percentile', '(got 101)'],
    [{ latencyObjective: { ms: 10, decreaseFactor: 1 } }, 'batch.latencyObjective.decreaseFactor', '(got 1)'],
    [{ latencyObjective: { ms: 10, p99Ms: 10 } }, 'batch.latencyObjective.p99Ms', 'unknown option'],
    [{ shapeOf: 'dims' }, 'batch.shapeOf', 'function'],
    [{ pad: { bucket: 'x' } }, 'batch.pad.bucket', 'function'],
    [{ maxBatchsize: 8 }, 'batch.maxBatchsize', 'unknown option'],
  ])('rejects %j naming %s', (input, path, fragment) => {
    const err = errorOf(input);
    expect(err.message).toContain(`invalid option ${path}:`);
    expect(err.message).toContain(fragment);
    expect(err.details).toEqual({ path });
  });

  it('merges a partial change over compiled options; an explicit undefined restores the default', () => {
    const current = compileBatchOptions({ maxBatchSize: 16, queueTimeoutMs: 20, latencyObjective: { ms: 50 } });
    const next = mergeBatchOptions(current, { maxWaitMs: 1, queueTimeoutMs: undefined });
    expect(next).toMatchObject({ maxBatchSize: 16, maxWaitMs: 1, queueTimeoutMs: undefined, latencyObjective: { ms: 50 } });
    expect(() => mergeBatchOptions(current, { preferredBatchSizes: [32] })).toThrow('batch.preferredBatchSizes[0]: must be <= batch.maxBatchSize=16');
  });

  it('names the caller-given path', () => {
    expect(errorOf({ maxBatchSize: -3 }, 'deployments.rec.batch').message).toContain('deployments.rec.batch.maxBatchSize');
  });
});
