import { describe, expect, it } from 'vitest';
import { InvalidHandleError, MemoryBudgetError, openNativeRuntime } from '../src/index.ts';
import { addonBuilt, recordingLogger, skipReason } from './helpers.ts';

describe.skipIf(!addonBuilt)(`memory pools${skipReason}`, () => {
  const rt = addonBuilt ? openNativeRuntime({ backend: 'host', hostCapacityBytes: 64 << 20, logger: recordingLogger() }) : undefined!;

  it('enforces the budget with requested, used and budget bytes', () => {
    const pool = rt.createPool({ budgetBytes: 4096 });
    const a = pool.alloc(2048);
    let err: unknown;
    try {
      pool.alloc(4000);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(MemoryBudgetError);
    const oom = err as MemoryBudgetError;
    expect(oom.code).toBe('ERR_OUT_OF_MEMORY');
    expect([oom.requestedBytes, oom.usedBytes, oom.budgetBytes]).toEqual([4000, 2048, 4096]);
    expect(oom.scope).toBe(`pool ${pool.id}`);
    expect(oom.message).toContain('requested=4000 used=2048 budget=4096');
    a.free();
    pool.destroy();
  });

  it('caches freed blocks by size class', () => {
    const pool = rt.createPool({ budgetBytes: 1 << 20 });
    for (let i = 0; i < 50; i++) pool.alloc(3000).free();
    const s = pool.stats();
    expect(s).toMatchObject({ cacheMisses: 1, cacheHits: 49, usedBytes: 0, liveBlocks: 0, allocCount: 50 });
    expect(s.cachedBytes).toBeGreaterThanOrEqual(3000);
    const before = rt.devices()[0]!.freeBytes;
    pool.emptyCache();
    expect(rt.devices()[0]!.freeBytes).toBe(before + s.cachedBytes);
    expect(rt.metrics().some((m) => m.name === 'shoal_native_pool_cache_hits' && m.labels.pool === String(pool.id) && m.value === 49)).toBe(true);
    pool.destroy();
  });

  it('double free, use after destroy and unknown handles are JS errors', () => {
    const pool = rt.createPool({ budgetBytes: 1 << 16 });
    const a = pool.alloc(100);
    a.free();
    expect(() => a.free()).toThrow(InvalidHandleError);
    expect(() => pool.free(123456)).toThrow(InvalidHandleError);
    pool.destroy();
    expect(() => pool.alloc(10)).toThrow(InvalidHandleError);
    expect(() => pool.stats()).toThrow(/does not exist or was destroyed/);
    expect(() => pool.destroy()).toThrow(InvalidHandleError);
  });

  it('rejects bad arguments with TypeError / RangeError naming them', () => {
    const pool = rt.createPool({ budgetBytes: 1 << 16 });
    expect(() => pool.alloc('10' as never)).toThrow(TypeError);
    expect(() => pool.alloc(0)).toThrow(/bytes must be an integer >= 1/);
    expect(() => pool.alloc(1.5)).toThrow(RangeError);
    expect(() => rt.createPool({ budgetBytes: 0 })).toThrow(/budgetBytes/);
    expect(() => rt.createPool({ budgetBytes: 10, device: 3 })).toThrow(/device must be an integer in \[0, 1\)/);
    pool.destroy();
  });
});
