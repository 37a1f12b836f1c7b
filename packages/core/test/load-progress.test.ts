/** reportLoadProgress: what a starting replica's code reports of its model load, read back per replica. */
import { describe, expect, it } from 'vitest';
import { clearLoadProgress, contextStorage, loadProgressOf, reportLoadProgress, type RequestContext } from '@shoal/core';

const ctxOf = (replicaId: string): RequestContext => ({ signal: new AbortController().signal, deadline: undefined, app: 'a', deployment: 'D', replicaId });

describe('reportLoadProgress', () => {
  it('keeps the latest report of each replica, read from the replica context', () => {
    contextStorage.run(ctxOf('lp-1'), () => { reportLoadProgress(10, 100); reportLoadProgress(60, 100); });
    contextStorage.run(ctxOf('lp-2'), () => reportLoadProgress(0, 5));
    expect(loadProgressOf('lp-1')).toEqual([60, 100]);
    expect(loadProgressOf('lp-2')).toEqual([0, 5]);
    clearLoadProgress('lp-1');
    expect(loadProgressOf('lp-1')).toBeUndefined();
    expect(loadProgressOf('lp-2')).toEqual([0, 5]);
    clearLoadProgress('lp-2');
  });

  it('follows the context into async work the constructor started', async () => {
    await contextStorage.run(ctxOf('lp-3'), async () => {
      await new Promise((r) => setTimeout(r, 1));
      reportLoadProgress(7, 8);
    });
    expect(loadProgressOf('lp-3')).toEqual([7, 8]);
    clearLoadProgress('lp-3');
  });

  it('does nothing outside a replica', () => {
    reportLoadProgress(1, 2);
    expect(loadProgressOf('undefined')).toBeUndefined();
  });

  it('refuses bad numbers, naming the argument and the value', () => {
    expect(() => reportLoadProgress('1' as unknown as number, 2)).toThrow(TypeError);
    expect(() => reportLoadProgress('1' as unknown as number, 2)).toThrow(/bytesLoaded must be a number, got string/);
    expect(() => reportLoadProgress(1, Number.NaN)).toThrow(RangeError);
    expect(() => reportLoadProgress(1, -1)).toThrow(/bytesTotal must be a finite number >= 0, got -1/);
    expect(() => reportLoadProgress(3, 2)).toThrow(/bytesLoaded must be between 0 and bytesTotal=2, got 3/);
    expect(() => reportLoadProgress(-1, 2)).toThrow(RangeError);
  });
});
