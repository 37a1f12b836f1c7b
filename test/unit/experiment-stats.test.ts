/**
 * The A/B experiments' statistics against published values (issue 11, item 5): the normal and t tables, a
 * textbook two-proportion z-test and Welch test, Newcombe's Wilson intervals, the mSPRT's closed form against
 * its defining integral, and the sample-size formula against the classic d = 0.5 case.
 */
import { describe, expect, it } from 'vitest';
import {
  MeanAccumulator, RateAccumulator, SequentialComparison, meanInterval, msprtStep, normalCdf, normalQuantile, normalTwoSidedP,
  powerForMean, powerForRate, sampleSizeForMean, sampleSizeForRate, studentTCdf, studentTQuantile, studentTTwoSidedP,
  twoProportionZTest, welchTTest, wilsonInterval, type MeanSample,
} from '@shoal/head';
import { gammaQ, incompleteBeta, lnGamma } from '../../packages/head/src/experiments/stats.ts';

function sampleOf(values: number[]): MeanSample {
  const acc = new MeanAccumulator();
  for (const x of values) acc.add(x);
  return acc.sample();
}

describe('special functions', () => {
  it('ln Γ, the incomplete gamma and beta at closed-form points', () => {
    expect(lnGamma(5)).toBeCloseTo(Math.log(24), 13);
    expect(lnGamma(0.5)).toBeCloseTo(0.5 * Math.log(Math.PI), 13);
    expect(lnGamma(0.1)).toBeCloseTo(2.252712651734206, 12); // ln Γ(0.1), by the reflection branch
    expect(gammaQ(1, 2)).toBeCloseTo(Math.exp(-2), 14); // Q(1, x) = e^-x
    expect(incompleteBeta(1, 1, 0.3)).toBeCloseTo(0.3, 14); // uniform
    expect(incompleteBeta(2, 3, 0.4)).toBeCloseTo(0.5248, 12); // 1 - (1-x)^3 (1+3x) at 0.4
    expect(incompleteBeta(3, 2, 0.6)).toBeCloseTo(1 - 0.5248, 12); // the symmetry I_x(a,b) = 1 - I_{1-x}(b,a)
  });
});

describe('the normal distribution', () => {
  it('matches the standard normal table', () => {
    expect(normalCdf(0)).toBe(0.5);
    expect(normalCdf(1)).toBeCloseTo(0.8413447, 7);
    expect(normalCdf(1.96)).toBeCloseTo(0.9750021, 7);
    expect(normalCdf(-1.96)).toBeCloseTo(0.0249979, 7);
    expect(normalCdf(3.09)).toBeCloseTo(0.9989992, 7);
    expect(normalCdf(-3)).toBeCloseTo(0.0013499, 7);
    // The tails keep their relative precision: 2(1 - Φ(8)) = 1.2442e-15, not a rounding of 1 - 0.999...
    expect(normalTwoSidedP(8) / 1.2441921148543e-15).toBeCloseTo(1, 9);
  });

  it('inverts it: the table quantiles, and Φ(Φ⁻¹(p)) = p from 1e-12 to 1 - 1e-12', () => {
    expect(normalQuantile(0.975)).toBeCloseTo(1.959964, 6);
    expect(normalQuantile(0.95)).toBeCloseTo(1.644854, 6);
    expect(normalQuantile(0.995)).toBeCloseTo(2.575829, 6);
    expect(normalQuantile(0.999)).toBeCloseTo(3.090232, 6);
    expect(normalQuantile(0.025)).toBeCloseTo(-1.959964, 6);
    expect(normalQuantile(0.5)).toBe(0);
    expect(normalQuantile(0)).toBe(Number.NEGATIVE_INFINITY);
    for (const p of [1e-12, 1e-8, 1e-4, 0.01, 0.02425, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99, 0.9999]) {
      const x = normalQuantile(p);
      expect(Math.abs(normalCdf(x) - p) / Math.min(p, 1 - p)).toBeLessThan(1e-9);
    }
    expect(() => normalQuantile(1.5)).toThrow(RangeError);
  });
});

describe("Student's t distribution", () => {
  it('matches the t table (two-sided critical values)', () => {
    const table: Array<[p: number, df: number, t: number]> = [
      [0.975, 1, 12.706], [0.975, 10, 2.228], [0.95, 5, 2.015], [0.995, 20, 2.845],
      [0.975, 30, 2.042], [0.975, 120, 1.980], [0.999, 3, 10.215], [0.9, 2, 1.886],
    ];
    for (const [p, df, t] of table) expect(studentTQuantile(p, df)).toBeCloseTo(t, 3);
    expect(studentTQuantile(0.025, 10)).toBeCloseTo(-2.228, 3);
    expect(studentTCdf(2.228, 10)).toBeCloseTo(0.975, 4);
    expect(studentTTwoSidedP(2.228, 10)).toBeCloseTo(0.05, 4);
    expect(studentTCdf(1, 1)).toBeCloseTo(0.75, 12); // Cauchy: 1/2 + atan(1)/π
    expect(studentTCdf(0, 7)).toBe(0.5);
  });

  it('tends to the normal one for large df, and inverts for fractional (Welch) df', () => {
    expect(studentTQuantile(0.975, 1e9)).toBeCloseTo(1.959964, 6);
    expect(studentTQuantile(0.975, 1e5)).toBeCloseTo(1.959988, 6); // z + (z³ + z) / (4 df), to first order
    for (const df of [1.3, 2.5, 7.77, 24.99, 333.3]) {
      for (const p of [0.001, 0.05, 0.4, 0.6, 0.975, 0.9995]) expect(studentTCdf(studentTQuantile(p, df), df)).toBeCloseTo(p, 10);
    }
    expect(() => studentTCdf(1, 0)).toThrow(RangeError);
  });
});

describe('two-proportion z-test', () => {
  it("gives statsmodels' documented example: 5/83 vs 12/99, p = 0.159 (R prop.test without correction: X² = 1.982)", () => {
    const r = twoProportionZTest({ successes: 5, trials: 83 }, { successes: 12, trials: 99 });
    expect(r.difference).toBeCloseTo(12 / 99 - 5 / 83, 14);
    expect(r.statistic ** 2).toBeCloseTo(1.982, 3);
    expect(r.pValue).toBeCloseTo(0.1592, 4);
    // The interval uses each arm's own rate (R's prop.test interval, sign reversed: treatment minus control).
    expect(r.ci[0]).toBeCloseTo(-0.0212, 4);
    expect(r.ci[1]).toBeCloseTo(0.1432, 4);
  });

  it('is symmetric, and says p = 1 when there is no variation', () => {
    const a = twoProportionZTest({ successes: 30, trials: 300 }, { successes: 45, trials: 310 });
    const b = twoProportionZTest({ successes: 45, trials: 310 }, { successes: 30, trials: 300 });
    expect(b.pValue).toBeCloseTo(a.pValue, 14);
    expect(b.difference).toBeCloseTo(-a.difference, 14);
    expect(twoProportionZTest({ successes: 0, trials: 100 }, { successes: 0, trials: 100 }).pValue).toBe(1);
  });
});

describe("Welch's t-test", () => {
  // Wikipedia, "Welch's t-test", example 1 (A1 and A2, 15 values each): t = 2.46, ν ≈ 24.99, p = 0.021.
  const A1 = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4];
  const A2 = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4];

  it('gives the textbook example', () => {
    const r = welchTTest(sampleOf(A1), sampleOf(A2));
    expect(r.statistic).toBeCloseTo(2.4554, 4);
    expect(r.df).toBeCloseTo(24.99, 2);
    expect(r.pValue).toBeCloseTo(0.0214, 4);
    expect(r.difference).toBeCloseTo(2.1667, 4);
    expect(r.ci[0]).toBeCloseTo(0.3492, 4);
    expect(r.ci[1]).toBeCloseTo(3.9841, 4);
  });

  it('takes the smaller arm\'s df when one variance dominates, and refuses n < 2', () => {
    const r = welchTTest({ n: 10, mean: 0, variance: 100 }, { n: 1000, mean: 1, variance: 1e-6 });
    expect(r.df).toBeCloseTo(9, 3);
    expect(() => welchTTest({ n: 1, mean: 0, variance: 0 }, { n: 5, mean: 0, variance: 1 })).toThrow(RangeError);
    expect(welchTTest({ n: 5, mean: 3, variance: 0 }, { n: 5, mean: 3, variance: 0 }).pValue).toBe(1);
  });
});

describe('intervals of one variant', () => {
  it("Wilson's interval matches Newcombe (1998), table I", () => {
    const close = (ci: [number, number], lo: number, hi: number): void => {
      expect(ci[0]).toBeCloseTo(lo, 4);
      expect(ci[1]).toBeCloseTo(hi, 4);
    };
    close(wilsonInterval({ successes: 81, trials: 263 }), 0.2553, 0.3662);
    close(wilsonInterval({ successes: 15, trials: 148 }), 0.0624, 0.1605);
    close(wilsonInterval({ successes: 0, trials: 20 }), 0, 0.1611);
    close(wilsonInterval({ successes: 0, trials: 0 }), 0, 1);
  });

  it('the t interval of a mean', () => {
    // Mean 10, sd 2, n 11: 10 ± 2.228 · 2 / √11.
    const ci = meanInterval({ n: 11, mean: 10, variance: 4 })!;
    expect(ci[1] - 10).toBeCloseTo((2.228139 * 2) / Math.sqrt(11), 5);
    expect(meanInterval({ n: 1, mean: 3, variance: Number.NaN })).toBeNull();
  });
});

describe('streaming accumulators', () => {
  it("Welford's variance survives a large offset, and merge equals adding", () => {
    const acc = new MeanAccumulator();
    for (const x of [4, 7, 13, 16]) acc.add(1e9 + x);
    expect(acc.mean).toBe(1e9 + 10);
    expect(acc.variance).toBe(30);
    expect(acc.sum).toBe(4e9 + 40);
    const a = new MeanAccumulator();
    const b = new MeanAccumulator();
    const all = new MeanAccumulator();
    [1, 2, 3.5].forEach((x) => { a.add(x); all.add(x); });
    [10, -4, 8, 0.25].forEach((x) => { b.add(x); all.add(x); });
    a.merge(b);
    expect(a.n).toBe(7);
    expect(a.mean).toBeCloseTo(all.mean, 13);
    expect(a.variance).toBeCloseTo(all.variance, 12);
    expect(new MeanAccumulator().variance).toBeNaN();
  });

  it('counts successes over trials', () => {
    const r = new RateAccumulator();
    [true, false, false, true, false].forEach((s) => r.add(s));
    expect(r.sample()).toEqual({ successes: 2, trials: 5 });
    expect(r.rate).toBe(0.4);
    expect(r.sd).toBeCloseTo(Math.sqrt(0.24), 14);
  });
});

describe('the mSPRT', () => {
  it('Λ is the normal mixture of likelihood ratios (checked by quadrature), and the sequence edge is where Λ = 1/alpha', () => {
    const density = (x: number, mean: number, v: number): number => Math.exp(-((x - mean) ** 2) / (2 * v)) / Math.sqrt(2 * Math.PI * v);
    for (const [delta, v, tau] of [[0.02, 1e-4, 0.01], [-0.5, 0.04, 1], [0, 2, 0.3]] as const) {
      // ∫ N(Δ; θ, V) N(θ; 0, τ²) dθ / N(Δ; 0, V), by the midpoint rule over ±12 τ.
      const steps = 20_000;
      const width = (24 * tau) / steps;
      let integral = 0;
      for (let i = 0; i < steps; i++) {
        const theta = -12 * tau + (i + 0.5) * width;
        integral += density(delta, theta, v) * density(theta, 0, tau * tau) * width;
      }
      const step = msprtStep(delta, v, tau, 0.05);
      expect(Math.exp(step.logLambda) / (integral / density(delta, 0, v))).toBeCloseTo(1, 6);
      expect(msprtStep(delta, v, tau, 0.05, step.ci[0]).logLambda).toBeCloseTo(Math.log(20), 8);
      expect(msprtStep(delta, v, tau, 0.05, step.ci[1]).logLambda).toBeCloseTo(Math.log(20), 8);
    }
  });

  it('keeps the minimum p-value and the intersected interval, and skips updates without spread', () => {
    const seq = new SequentialComparison(0.02, 0.05);
    expect(seq.pValue).toBe(1);
    expect(seq.interval).toBeNull();
    seq.observe(0.01, 0);
    expect(seq.updates).toBe(0);
    seq.observe(0.05, 1e-4);
    const strong = seq.pValue;
    expect(seq.significant).toBe(true);
    seq.observe(0, 1e-4);
    expect(seq.pValue).toBe(strong);
    expect(seq.significant).toBe(true);
    const ci = seq.interval!;
    expect(ci[0]).toBeLessThanOrEqual(ci[1]);
  });
});

describe('sample size and power', () => {
  it('gives the classic 63 per group for an effect of half an sd (64 with the t correction)', () => {
    expect(sampleSizeForMean(1, 0.5, 0.05, 0.8)).toBe(63);
    expect(powerForMean(1, 0.5, 0.05, 63)).toBeCloseTo(0.8, 2);
  });

  it('for rates, the n it gives has the power asked for', () => {
    const n = sampleSizeForRate(0.1, 0.03, 0.05, 0.8)!;
    expect(n).toBe(1774);
    expect(powerForRate(0.1, 0.03, 0.05, n)).toBeGreaterThanOrEqual(0.8);
    expect(powerForRate(0.1, 0.03, 0.05, n - 1)).toBeLessThan(0.8);
    expect(sampleSizeForRate(0.995, 0.01, 0.05, 0.8)).not.toBeNull(); // measured downwards when up passes 1
    expect(sampleSizeForRate(0.5, 0.6, 0.05, 0.8)).toBeNull();
  });
});
