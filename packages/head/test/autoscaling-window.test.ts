import { describe, expect, it } from 'vitest';
import { compileDeploymentOptions, FakeClock } from '@shoal/core';
import { AutoscalingWindow } from '../src/autoscaling-window.ts';

describe('AutoscalingWindow', () => {
  it('keeps the samples of the last lookBackPeriodMs, oldest first', () => {
    const clock = new FakeClock();
    const w = new AutoscalingWindow({ lookBackPeriodMs: 3000 });
    for (let i = 0; i < 10; i++) {
      w.record(clock.monoNow(), i);
      clock.advance(1000);
    }
    // Recorded at 0..9 s; now 10 s: (7 s, 10 s] holds 8 s and 9 s, and recording at 9 s already dropped 6 s and before.
    expect(w.size).toBe(3);
    expect(w.samples(clock.monoNow())).toEqual([{ at: 8000, ongoing: 8 }, { at: 9000, ongoing: 9 }]);
    expect(w.size).toBe(2);
    expect(w.samples(20_000)).toEqual([]);
    expect(w.size).toBe(0);
  });

  it('leaves out samples newer than now without dropping them', () => {
    const w = new AutoscalingWindow({ lookBackPeriodMs: 10_000 });
    w.record(1000, 1);
    w.record(2000, 2);
    expect(w.samples(1500)).toEqual([{ at: 1000, ongoing: 1 }]);
    expect(w.size).toBe(2);
  });

  it('is bounded by maxSamples besides, dropping the oldest', () => {
    const w = new AutoscalingWindow({ lookBackPeriodMs: 60_000, maxSamples: 3 });
    for (let i = 0; i < 100; i++) w.record(i, i);
    expect(w.size).toBe(3);
    expect(w.samples(99).map((s) => s.ongoing)).toEqual([97, 98, 99]);
    expect(new AutoscalingWindow({ lookBackPeriodMs: 1 }).maxSamples).toBe(10_000);
  });

  it('takes its period from the compiled options', () => {
    const config = compileDeploymentOptions({ autoscaling: { lookBackPeriodMs: 7000 } }, 'M').autoscaling!;
    const w = AutoscalingWindow.for(config, 50);
    expect([w.lookBackPeriodMs, w.maxSamples]).toEqual([7000, 50]);
  });

  it('accepts samples at the same time, and forgets all on clear()', () => {
    const w = new AutoscalingWindow({ lookBackPeriodMs: 1000 });
    w.record(5, 1);
    w.record(5, 2);
    expect(w.samples(5)).toHaveLength(2);
    w.clear();
    expect(w.size).toBe(0);
  });

  it.each<[string, () => void, RegExp]>([
    ['a sample before the previous one', () => { const w = new AutoscalingWindow({ lookBackPeriodMs: 1000 }); w.record(10, 1); w.record(9, 1); }, /at must be monotonic ms, not before the previous sample's 10 \(got 9\)/],
    ['a non-finite time', () => new AutoscalingWindow({ lookBackPeriodMs: 1000 }).record(Number.NaN, 1), /at must be monotonic ms/],
    ['negative ongoing', () => new AutoscalingWindow({ lookBackPeriodMs: 1000 }).record(0, -1), /ongoing must be a finite number >= 0 \(got -1\)/],
    ['infinite ongoing', () => new AutoscalingWindow({ lookBackPeriodMs: 1000 }).record(0, Infinity), /ongoing must be a finite number >= 0/],
    ['a period of 0', () => new AutoscalingWindow({ lookBackPeriodMs: 0 }), /lookBackPeriodMs must be > 0 \(got 0\)/],
    ['maxSamples 0', () => new AutoscalingWindow({ lookBackPeriodMs: 1, maxSamples: 0 }), /maxSamples must be an integer >= 1 \(got 0\)/],
  ])('rejects %s with a RangeError', (_what, fn, message) => {
    expect(fn).toThrow(RangeError);
    expect(fn).toThrow(message);
  });
});
