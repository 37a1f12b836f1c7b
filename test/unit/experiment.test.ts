/**
 * The head's A/B experiment (issue 11, item 5): options and their errors, sticky weighted assignment, the
 * bounded request id table, the outcomes API, the report's verdicts, and simulations with a seeded PRNG:
 * - a known effect (conversion 0.10 vs 0.13) is detected in at least 90% of 50 runs, fixed and sequential;
 * - 200 null runs of each mode and metric give a false positive rate within alpha (a binomial tolerance:
 *   alpha + 3 sqrt(alpha (1 - alpha) / 200)), the report read after every 100 outcomes per arm and any
 *   'significant' counted, while a naive fixed test at every peek shows the inflation the modes prevent.
 */
import { describe, expect, it } from 'vitest';
import {
  BadRequestError, FakeClock, InvalidOptionError, NotFoundError, pickWeighted, seededRandom, stickyBucket,
} from '@shoal/core';
import {
  DuplicateOutcomeError, Experiment, compileExperimentOptions, formatExperimentReport, powerForRate, twoProportionZTest,
  type ExperimentOptions,
} from '@shoal/head';

const AB = [{ name: 'A' }, { name: 'B' }];

function expectOptionError(fn: () => unknown, path: string): void {
  let caught: unknown;
  try { fn(); } catch (err) { caught = err; }
  expect(caught).toBeInstanceOf(InvalidOptionError);
  expect((caught as Error).message).toContain(`invalid option ${path}:`);
}

describe('experiment options', () => {
  it('fills the defaults', () => {
    const o = compileExperimentOptions({ name: 'checkout', variants: [{ name: 'A' }, { name: 'B', weight: 3 }], metric: 'conversion' });
    expect(o).toEqual({
      name: 'checkout', variants: [{ name: 'A', weight: 1 }, { name: 'B', weight: 3 }], metric: 'conversion', alpha: 0.05, power: 0.8,
      minSamples: 100, mode: 'sequential', horizon: undefined, minEffect: 0.01, tau: 0.01, maxAssignments: 1_000_000,
      assignmentTtlMs: 7 * 24 * 3600 * 1000,
    });
    const fixed = compileExperimentOptions({ name: 'n', variants: AB, metric: 'numeric', mode: 'fixed', horizon: 500 });
    expect([fixed.mode, fixed.horizon, fixed.tau, fixed.minEffect]).toEqual(['fixed', 500, undefined, undefined]);
  });

  it('names the option path in every error', () => {
    const base: ExperimentOptions = { name: 'e', variants: AB, metric: 'conversion' };
    const bad = (patch: Record<string, unknown>): unknown => ({ ...base, ...patch });
    expectOptionError(() => compileExperimentOptions(bad({ name: 'has space' })), 'experiment.name');
    expectOptionError(() => compileExperimentOptions(bad({ metric: 'ctr' })), 'experiment.metric');
    expectOptionError(() => compileExperimentOptions(bad({ variants: [{ name: 'A' }] })), 'experiment.variants');
    expectOptionError(() => compileExperimentOptions(bad({ variants: [{ name: 'A' }, { name: 'B', weight: -1 }] })), 'experiment.variants[1].weight');
    expectOptionError(() => compileExperimentOptions(bad({ variants: [{ name: 'A' }, { name: 'A' }] })), 'experiment.variants[1].name');
    expectOptionError(() => compileExperimentOptions(bad({ variants: [{ name: 'A', weight: 0 }, { name: 'B', weight: 0 }] })), 'experiment.variants');
    expectOptionError(() => compileExperimentOptions(bad({ variants: [{ name: 'A', share: 1 }, { name: 'B' }] })), 'experiment.variants[0].share');
    expectOptionError(() => compileExperimentOptions(bad({ alpha: 0 })), 'experiment.alpha');
    expectOptionError(() => compileExperimentOptions(bad({ alpha: 0.7 })), 'experiment.alpha');
    expectOptionError(() => compileExperimentOptions(bad({ power: 1 })), 'experiment.power');
    expectOptionError(() => compileExperimentOptions(bad({ minSamples: 1 })), 'experiment.minSamples');
    expectOptionError(() => compileExperimentOptions(bad({ mode: 'bayes' })), 'experiment.mode');
    expectOptionError(() => compileExperimentOptions(bad({ mode: 'fixed' })), 'experiment.horizon');
    expectOptionError(() => compileExperimentOptions(bad({ mode: 'fixed', horizon: 50 })), 'experiment.horizon'); // < minSamples
    expectOptionError(() => compileExperimentOptions(bad({ horizon: 500 })), 'experiment.horizon'); // sequential has none
    expectOptionError(() => compileExperimentOptions(bad({ mode: 'fixed', horizon: 500, tau: 0.1 })), 'experiment.tau');
    expectOptionError(() => compileExperimentOptions(bad({ minEffect: 1.5 })), 'experiment.minEffect');
    expectOptionError(() => compileExperimentOptions(bad({ metric: 'numeric' })), 'experiment.minEffect'); // sequential numeric needs a scale
    expectOptionError(() => compileExperimentOptions(bad({ maxAssignments: 0 })), 'experiment.maxAssignments');
    expectOptionError(() => compileExperimentOptions(bad({ assignmentTtlMs: -5 })), 'experiment.assignmentTtlMs');
    expectOptionError(() => compileExperimentOptions(bad({ horizion: 500 })), 'experiment.horizion');
    // A rollout keeps the statistical options under `stats`: those errors name that path, the others the experiment's.
    expectOptionError(() => compileExperimentOptions(bad({ alpha: 2 }), 'rollout.experiment', 'rollout.experiment.stats'), 'rollout.experiment.stats.alpha');
    expectOptionError(() => new Experiment(bad({ metric: 1 }) as ExperimentOptions, { path: 'rollout.experiment' }), 'rollout.experiment.metric');
  });
});

describe('sticky assignment', () => {
  it('is a fixed function of (experiment, key): SHA-256 of "experiment\\0key", 53 bits', () => {
    // The same numbers from Python: (int.from_bytes(sha256(b'checkout\0user-1').digest()[:8], 'big') >> 11) / 2**53
    expect(stickyBucket('checkout', 'user-1')).toBe(0.03999887188261686);
    expect(stickyBucket('checkout', 'user-2')).toBe(0.3322601180247261);
    expect(stickyBucket('other', 'user-1')).toBe(0.32606526939437575);
    const exp = new Experiment({ name: 'checkout', variants: [{ name: 'A' }, { name: 'B', weight: 2 }], metric: 'conversion' });
    for (let i = 0; i < 200; i++) {
      const key = `user-${i}`;
      expect(exp.assign(key)).toBe(exp.assign(key));
      // What the router computes in its own process.
      expect(exp.assign(key)).toBe(exp.variants[pickWeighted([1, 2], stickyBucket('checkout', key))]);
    }
  });

  it('picks weighted buckets, never a zero weight, and refuses bad weights', () => {
    expect(pickWeighted([1, 3], 0)).toBe(0);
    expect(pickWeighted([1, 3], 0.2499)).toBe(0);
    expect(pickWeighted([1, 3], 0.25)).toBe(1);
    expect(pickWeighted([1, 3], 0.9999999999)).toBe(1);
    expect(pickWeighted([0, 5, 0], 0)).toBe(1);
    expect(pickWeighted([2, 0], 0.9999999999)).toBe(0);
    expect(() => pickWeighted([1, -1], 0.5)).toThrow(InvalidOptionError);
    expect(() => pickWeighted([0, 0], 0.5)).toThrow(InvalidOptionError);
    expect(() => pickWeighted([1, 1], 1)).toThrow(InvalidOptionError);
  });

  it('respects the weights over 100k keys (chi-square below its 0.999 quantile)', () => {
    const weights = [1, 2, 7];
    const exp = new Experiment({ name: 'weights', variants: [{ name: 'a', weight: 1 }, { name: 'b', weight: 2 }, { name: 'c', weight: 7 }], metric: 'conversion' });
    const counts = new Map<string, number>();
    const n = 100_000;
    for (let i = 0; i < n; i++) {
      const v = exp.assign(`key-${i}`);
      counts.set(v, (counts.get(v) ?? 0) + 1);
    }
    let chi2 = 0;
    exp.variants.forEach((v, i) => {
      const expected = (n * weights[i]!) / 10;
      chi2 += ((counts.get(v) ?? 0) - expected) ** 2 / expected;
    });
    console.log(`sticky assignment of ${n} keys, weights 1:2:7: counts ${[...counts.entries()].map(([k, c]) => `${k}=${c}`).join(' ')}, chi2=${chi2.toFixed(2)}`);
    expect(chi2).toBeLessThan(13.82); // chi-square, 2 df, 0.999
    // Another experiment salts the hash: its assignment of the same keys is independent of this one's.
    const other = new Experiment({ name: 'weights-2', variants: [{ name: 'a' }, { name: 'b' }], metric: 'conversion' });
    let same = 0;
    for (let i = 0; i < 10_000; i++) if ((stickyBucket('weights', `key-${i}`) < 0.5) === (other.assign(`key-${i}`) === 'a')) same++;
    expect(Math.abs(same - 5000)).toBeLessThan(250); // 5 sd
  });
});

describe('assignments and outcomes', () => {
  const clock = (): FakeClock => new FakeClock();

  it('ignores a duplicate assignment and refuses an unknown variant', () => {
    const exp = new Experiment({ name: 'e', variants: AB, metric: 'conversion' }, { clock: clock() });
    expect(exp.recordAssignment('r1', 'A')).toBe(true);
    expect(exp.recordAssignment('r1', 'B')).toBe(false);
    expect(exp.report().variants.map((v) => v.assigned)).toEqual([1, 0]);
    expect(() => exp.recordAssignment('r2', 'C')).toThrow(BadRequestError);
    expect(() => exp.recordAssignment('', 'A')).toThrow(BadRequestError);
    expect(() => exp.recordAssignment('x'.repeat(257), 'A')).toThrow(BadRequestError);
  });

  it('forgets the oldest past maxAssignments', () => {
    const exp = new Experiment({ name: 'lru', variants: AB, metric: 'conversion', maxAssignments: 3 }, { clock: clock() });
    for (const id of ['r1', 'r2', 'r3', 'r4']) exp.recordAssignment(id, 'A');
    expect(() => exp.recordOutcome({ requestId: 'r1', value: 1 })).toThrow(/never assigned, or forgotten past maxAssignments=3/);
    expect(exp.recordOutcome({ requestId: 'r2', value: 1 })).toEqual({ requestId: 'r2', variant: 'A' });
    const b = exp.report().bookkeeping;
    expect([b.tracked, b.evicted, b.refused.unknown]).toEqual([3, 1, 1]);
  });

  it('refuses an outcome after assignmentTtlMs as expired', () => {
    const c = clock();
    const exp = new Experiment({ name: 'ttl', variants: AB, metric: 'conversion', assignmentTtlMs: 60_000 }, { clock: c });
    exp.recordAssignment('old', 'A');
    c.advance(30_000);
    exp.recordAssignment('young', 'B');
    c.advance(30_001);
    let caught: unknown;
    try { exp.recordOutcome({ requestId: 'old', value: true }); } catch (err) { caught = err; }
    expect(caught).toBeInstanceOf(NotFoundError);
    expect((caught as NotFoundError).httpStatus).toBe(404);
    expect((caught as Error).message).toMatch(/expired \(60001 ms old, assignmentTtlMs=60000\)/);
    expect(exp.recordOutcome({ requestId: 'young', value: true }).variant).toBe('B');
    // An `at` from another process's wall clock counts from then.
    exp.recordAssignment('stamped', 'A', c.wallNow() - 59_000);
    c.advance(1_001);
    expect(() => exp.recordOutcome({ requestId: 'stamped', value: 0 })).toThrow(NotFoundError);
    expect(exp.report().bookkeeping.refused.expired).toBe(2);
  });

  it('counts the first outcome of a request, refuses a second, and checks the value kind', () => {
    const exp = new Experiment({ name: 'dup', variants: AB, metric: 'conversion' }, { clock: clock() });
    exp.recordAssignment('r1', 'B');
    expect(exp.recordOutcome({ requestId: 'r1', value: true })).toEqual({ requestId: 'r1', variant: 'B' });
    let caught: unknown;
    try { exp.recordOutcome({ requestId: 'r1', value: false }); } catch (err) { caught = err; }
    expect(caught).toBeInstanceOf(DuplicateOutcomeError);
    expect((caught as DuplicateOutcomeError).httpStatus).toBe(409);
    expect((caught as Error).message).toContain('the first one counts, this one was not counted');
    const b = exp.report().variants[1]!;
    expect([b.outcomes, b.rate]).toEqual([1, 1]);

    exp.recordAssignment('r2', 'A');
    for (const value of [2, '1', 'true', null, undefined, 0.5, Number.NaN]) {
      expect(() => exp.recordOutcome({ requestId: 'r2', value })).toThrow(BadRequestError);
    }
    expect(() => exp.recordOutcome({ requestId: 'nope', value: 1 })).toThrow(NotFoundError);
    expect(() => exp.recordOutcome(null as never)).toThrow(BadRequestError);
    expect(() => exp.recordOutcome({ requestId: 42, value: 1 } as never)).toThrow(/requestId must be a string/);
    // A refused value does not use up the request's outcome.
    expect(exp.recordOutcome({ requestId: 'r2', value: 0 }).variant).toBe('A');
    expect(exp.report().bookkeeping.refused).toEqual({ unknown: 1, expired: 0, duplicate: 1, invalid: 7 });

    const num = new Experiment({ name: 'num', variants: AB, metric: 'numeric', minEffect: 1 }, { clock: clock() });
    num.recordAssignment('r1', 'A');
    for (const value of [Number.POSITIVE_INFINITY, Number.NaN, '3', true]) expect(() => num.recordOutcome({ requestId: 'r1', value })).toThrow(/a numeric outcome must be a finite number/);
    expect(num.recordOutcome({ requestId: 'r1', value: -12.5 }).variant).toBe('A');
    expect(num.report().variants[0]!.mean).toBe(-12.5);
  });
});

let nextRequestId = 0;

/** Feeds both arms `perArm` outcomes each, alternately; `onPeek` after every `peekEvery` per arm. */
function feed(exp: Experiment, perArm: number, draw: (arm: number) => number | boolean, peekEvery: number, onPeek: (exp: Experiment) => void): void {
  for (let i = 1; i <= perArm; i++) {
    for (let arm = 0; arm < 2; arm++) {
      const requestId = `r${nextRequestId++}`;
      exp.recordAssignment(requestId, exp.variants[arm]!);
      exp.recordOutcome({ requestId, value: draw(arm) });
    }
    if (i % peekEvery === 0) onPeek(exp);
  }
}

describe('report and verdicts', () => {
  it('fixed mode: no verdict before the horizon, one test at it, and outcomes past it do not retest', () => {
    const exp = new Experiment({ name: 'fixed', variants: AB, metric: 'conversion', mode: 'fixed', horizon: 400, minSamples: 200 }, { clock: new FakeClock() });
    const rnd = seededRandom(7);
    const verdicts: string[] = [];
    feed(exp, 400, (arm) => rnd() < (arm === 0 ? 0.1 : 0.2), 100, (e) => verdicts.push(e.report().comparisons[0]!.verdict));
    expect(verdicts).toEqual(['insufficient data (n < minSamples)', 'waiting for horizon', 'waiting for horizon', 'significant']);
    const atHorizon = exp.report().comparisons[0]!;
    expect(atHorizon.correction).toBe('fixed horizon 400 per variant; verdict only at the horizon');
    expect(atHorizon.test).toBe('two-proportion z');
    expect(atHorizon.pValue).toBeLessThan(0.05);
    feed(exp, 300, () => false, 300, () => {});
    const later = exp.report();
    expect(later.variants[0]!.outcomes).toBe(700);
    expect(later.comparisons[0]).toEqual(atHorizon);
    expect(later.sampleSize.powerAtHorizon).toBeGreaterThan(0);
  });

  it('fixed mode: a variant with weight 0 (no traffic) does not hold the horizon back', () => {
    const exp = new Experiment({ name: 'off', variants: [{ name: 'A' }, { name: 'B' }, { name: 'C', weight: 0 }], metric: 'numeric', mode: 'fixed', horizon: 100 }, { clock: new FakeClock() });
    const rnd = seededRandom(5);
    feed(exp, 100, () => rnd(), 100, () => {});
    const [b, c] = exp.report().comparisons;
    expect(b!.verdict).toBe('not significant');
    expect(b!.df).toBeGreaterThan(150);
    expect(c!.verdict).toBe('insufficient data (n < minSamples)');
    expect(exp.format()).toMatch(/welch t \(df 1\d\d(\.\d+)?\)/);
  });

  it('sequential mode: the always-valid p-value and the confidence sequence, stated in the output', () => {
    const exp = new Experiment({ name: 'seq', variants: AB, metric: 'numeric', minEffect: 0.5, minSamples: 50 }, { clock: new FakeClock() });
    const rnd = seededRandom(11);
    feed(exp, 40, (arm) => rnd() * 10 + arm, 40, () => {});
    const early = exp.report().comparisons[0]!;
    expect([early.verdict, early.pValue, early.ci]).toEqual(['insufficient data (n < minSamples)', null, null]);
    expect(early.difference).not.toBeNull();
    feed(exp, 400, (arm) => rnd() * 10 + arm * 2, 400, () => {});
    const report = exp.report();
    const c = report.comparisons[0]!;
    expect(c.correction).toBe('sequential (mSPRT, tau=0.5), valid at any peek');
    expect(report.correction).toBe(c.correction);
    expect([c.test, c.verdict]).toEqual(['welch t', 'significant']);
    expect(c.ci![0]).toBeGreaterThan(0);
    expect(c.df).toBeUndefined();
    expect(JSON.parse(JSON.stringify(report))).toEqual(report);
  });

  it('reports counts, rates, intervals and a sample-size hint, and formats them as a table', () => {
    const exp = new Experiment({ name: 'checkout', variants: [{ name: 'control' }, { name: 'green' }, { name: 'red', weight: 0 }], metric: 'conversion' }, { clock: new FakeClock() });
    const rnd = seededRandom(3);
    feed(exp, 150, (arm) => rnd() < (arm === 0 ? 0.1 : 0.12), 150, () => {});
    const report = exp.report();
    expect(report.variants.map((v) => [v.name, v.assigned, v.outcomes])).toEqual([['control', 150, 150], ['green', 150, 150], ['red', 0, 0]]);
    expect(report.variants[2]!.rate).toBeNull();
    expect(report.comparisons.map((c) => c.verdict)).toEqual(['not significant', 'insufficient data (n < minSamples)']);
    expect(report.sampleSize.perVariant).toBeGreaterThan(1000);
    expect(report.sampleSize.basis).toMatch(/^observed control rate /);
    expect(JSON.parse(JSON.stringify(report))).toEqual(report);
    const text = exp.format();
    expect(text).toBe(formatExperimentReport(report));
    expect(text).toContain('sequential (mSPRT, tau=0.01), valid at any peek');
    expect(text).toMatch(/variant +weight +assigned +outcomes +rate +sd +95% CI/);
    expect(text).toMatch(/green vs control +[+-]/);
    console.log(text);
  });
});

/** One seeded run: true when any peek of the report said 'significant'; `naive` with a fixed z-test at every peek. */
function simulate(seed: number, options: Omit<ExperimentOptions, 'name' | 'variants'>, perArm: number, draw: (arm: number, rnd: () => number) => number | boolean): { significant: boolean; naive: boolean } {
  const rnd = seededRandom(seed);
  const exp = new Experiment({ name: 'sim', variants: AB, ...options }, { clock: new FakeClock() });
  let significant = false;
  let naive = false;
  feed(exp, perArm, (arm) => draw(arm, rnd), 100, (e) => {
    const r = e.report();
    if (r.comparisons[0]!.verdict === 'significant') significant = true;
    if (options.metric === 'conversion') {
      const [a, b] = r.variants.map((v) => ({ successes: Math.round(v.rate! * v.outcomes), trials: v.outcomes }));
      if (twoProportionZTest(a!, b!).pValue <= 0.05) naive = true;
    }
  });
  return { significant, naive };
}

function gaussian(rnd: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - rnd())) * Math.cos(2 * Math.PI * rnd());
}

describe('simulations with a seeded PRNG', () => {
  const ALPHA = 0.05;
  const RUNS = 200;
  const TOLERANCE = ALPHA + 3 * Math.sqrt((ALPHA * (1 - ALPHA)) / RUNS);
  const conversion = (p0: number, p1: number) => (arm: number, rnd: () => number): boolean => rnd() < (arm === 0 ? p0 : p1);

  function falsePositives(label: string, seedBase: number, options: Omit<ExperimentOptions, 'name' | 'variants'>, perArm: number, draw: (arm: number, rnd: () => number) => number | boolean): { rate: number; naive: number } {
    let fp = 0;
    let naive = 0;
    for (let run = 0; run < RUNS; run++) {
      const r = simulate(seedBase + run, options, perArm, draw);
      if (r.significant) fp++;
      if (r.naive) naive++;
    }
    console.log(`${label}: false positive rate ${fp}/${RUNS} = ${(fp / RUNS).toFixed(3)} (alpha ${ALPHA}, bound ${TOLERANCE.toFixed(4)})${options.metric === 'conversion' ? `; a naive z-test at every peek: ${(naive / RUNS).toFixed(3)}` : ''}`);
    return { rate: fp / RUNS, naive: naive / RUNS };
  }

  it('detects a known effect (conversion 0.10 vs 0.13) in at least 90% of 50 runs', () => {
    // n = 4000 per arm: power 0.988, so 90% of 50 runs is 5 sd below the expected count (3000 would give 0.954, 2 sd).
    const expected = powerForRate(0.1, 0.03, ALPHA, 4000)!;
    expect(expected).toBeGreaterThan(0.98);
    let fixed = 0;
    let sequential = 0;
    for (let run = 0; run < 50; run++) {
      if (simulate(5000 + run, { metric: 'conversion', mode: 'fixed', horizon: 4000 }, 4000, conversion(0.1, 0.13)).significant) fixed++;
      // The mSPRT pays for stopping at any peek with a longer run: 5,000 per arm, its mixture centred on the effect's size.
      if (simulate(6000 + run, { metric: 'conversion', tau: 0.03 }, 5000, conversion(0.1, 0.13)).significant) sequential++;
    }
    console.log(`known effect 0.10 vs 0.13: detected fixed (horizon 4000, expected power ${expected.toFixed(3)}) ${fixed}/50, sequential (mSPRT tau 0.03, 5000 per arm, peeking every 100) ${sequential}/50`);
    expect(fixed / 50).toBeGreaterThanOrEqual(0.9);
    expect(sequential / 50).toBeGreaterThanOrEqual(0.9);
  });

  it(`keeps the false positive rate within alpha on ${RUNS} null runs, fixed horizon`, () => {
    const conv = falsePositives('fixed horizon 1000, conversion 0.10 vs 0.10', 10_000, { metric: 'conversion', mode: 'fixed', horizon: 1000 }, 1000, conversion(0.1, 0.1));
    expect(conv.rate).toBeLessThanOrEqual(TOLERANCE);
    // Skewed outcomes (exponential, mean 5): Welch's test leans on the central limit theorem.
    const num = falsePositives('fixed horizon 500, numeric exponential(mean 5) both arms', 20_000, { metric: 'numeric', mode: 'fixed', horizon: 500 }, 500, (_arm, rnd) => -5 * Math.log(1 - rnd()));
    expect(num.rate).toBeLessThanOrEqual(TOLERANCE);
    // The same reports read with a fixed test at every peek, as if there were no horizon: the inflation it prevents.
    expect(conv.naive).toBeGreaterThan(TOLERANCE);
  });

  it(`keeps the false positive rate within alpha on ${RUNS} null runs, sequential, peeking after every 100 per arm`, () => {
    const conv = falsePositives('sequential mSPRT tau 0.01 (the default), conversion 0.10 vs 0.10, 1000 per arm', 30_000, { metric: 'conversion' }, 1000, conversion(0.1, 0.1));
    expect(conv.rate).toBeLessThanOrEqual(TOLERANCE);
    expect(conv.naive).toBeGreaterThan(TOLERANCE);
    const tight = falsePositives('sequential mSPRT tau 0.03, conversion 0.10 vs 0.10, 2000 per arm', 40_000, { metric: 'conversion', tau: 0.03 }, 2000, conversion(0.1, 0.1));
    expect(tight.rate).toBeLessThanOrEqual(TOLERANCE);
    const num = falsePositives('sequential mSPRT tau 0.5, numeric N(10, 3) both arms, 1000 per arm', 50_000, { metric: 'numeric', minEffect: 0.5 }, 1000, (_arm, rnd) => 10 + 3 * gaussian(rnd));
    expect(num.rate).toBeLessThanOrEqual(TOLERANCE);
  });
});
