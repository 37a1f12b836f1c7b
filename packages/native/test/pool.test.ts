import { describe, expect, it } from 'vitest';
import { InvalidHandleError, MemoryBudgetError, openNativeRuntime, writeExampleFamily } from '../src/index.ts';
import { addonBuilt, recordingLogger, skipReason, tempDir } from './helpers.ts';
import { input } from './reference.ts';

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

  it("freeing a handle that a running batch's workspace owns is an InvalidHandleError, not an abort", async () => {
    const fam = await writeExampleFamily({ dir: tempDir('lease'), name: `lease${process.pid}`, dims: [256, 512, 512], variants: 2, rank: 8 });
    const pool = rt.createPool({ budgetBytes: 64 << 20 });
    const model = await rt.loadFamilyFile(fam.manifestPath, pool);
    const rows = 512;
    const x = input(rows, 256, 5);
    const variants = Array.from({ length: rows }, (_, i) => i % 2);
    const expected = await model.run(x, variants);
    const mine = pool.alloc(100);
    // Handles are sequential per pool: the batch's workspace takes the next ones. Free them while it runs.
    let owned: unknown;
    for (let attempt = 0; attempt < 5 && owned === undefined; attempt++) {
      const first = mine.handle + 1 + attempt * 3;
      const freed = pool.stats().freeCount;
      const pending = model.run(x, variants);
      const deadline = Date.now() + 5000;
      while (owned === undefined && Date.now() < deadline) {
        const s = pool.stats();
        if (s.freeCount >= freed + 3) break;  // the batch already returned its three workspace blocks
        if (s.liveBlocks < 2) continue;        // its worker thread has not taken them yet
        for (let h = first; h < first + 3; h++) {
          let err: unknown;
          try {
            pool.free(h);
          } catch (e) {
            err = e;
          }
          expect(err).toBeInstanceOf(InvalidHandleError);  // owned by the batch, or already returned by it: never freed
          if (/owned by an in-flight inference workspace/.test((err as Error).message)) owned = err;
        }
      }
      const y = await pending;
      expect(y).toEqual(expected);  // the batch finished with its workspace intact
    }
    expect(owned).toBeInstanceOf(InvalidHandleError);
    expect((owned as InvalidHandleError).code).toBe('ERR_ILLEGAL_STATE');
    expect((owned as Error).message).toMatch(new RegExp(`pool ${pool.id}: allocation handle \\d+ is owned by an in-flight inference workspace`));
    expect(pool.stats()).toMatchObject({ liveBlocks: 1, usedBytes: 512 });  // only the caller's own block is left
    mine.free();
    model.release();
    pool.destroy();
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
