/**
 * Streaming per-variant summaries, O(1) memory each: successes over trials for a rate, and Welford's running
 * mean and M2 (the sum of squared deviations from the mean) for a numeric metric. Welford rather than a raw sum
 * of squares, whose variance (Σx² - n·mean²) cancels catastrophically when the mean is large beside the spread
 * (response times of 1e6 ± 1).
 *
 *   const acc = new MeanAccumulator();
 *   for (const x of values) acc.add(x);
 *   welchTTest(controlAcc.sample(), acc.sample());
 */
import type { MeanSample, RateSample } from './stats.ts';

/** Successes out of trials. */
export class RateAccumulator {
  successes = 0;
  trials = 0;

  add(success: boolean): void {
    this.trials += 1;
    if (success) this.successes += 1;
  }

  /** successes / trials; NaN with no trials. */
  get rate(): number {
    return this.successes / this.trials;
  }

  /** The spread of one outcome, sqrt(p (1 - p)); NaN with no trials. */
  get sd(): number {
    const p = this.rate;
    return Math.sqrt(p * (1 - p));
  }

  get n(): number {
    return this.trials;
  }

  sample(): RateSample {
    return { successes: this.successes, trials: this.trials };
  }
}

/** Count, sum and Welford's mean and M2 of a stream of finite numbers. */
export class MeanAccumulator {
  n = 0;
  sum = 0;
  mean = 0;
  /** Σ (x - mean)², kept by Welford's update. */
  m2 = 0;

  add(x: number): void {
    this.n += 1;
    this.sum += x;
    const delta = x - this.mean;
    this.mean += delta / this.n;
    this.m2 += delta * (x - this.mean);
  }

  /** Folds another accumulator in (Chan et al.'s parallel update), as if its values had been added here. */
  merge(other: MeanAccumulator): void {
    if (other.n === 0) return;
    const n = this.n + other.n;
    const delta = other.mean - this.mean;
    this.m2 += other.m2 + (delta * delta * this.n * other.n) / n;
    this.mean += (delta * other.n) / n;
    this.sum += other.sum;
    this.n = n;
  }

  /** The sample variance (n - 1 in the denominator); NaN below two values. */
  get variance(): number {
    return this.n < 2 ? Number.NaN : this.m2 / (this.n - 1);
  }

  get sd(): number {
    return Math.sqrt(this.variance);
  }

  sample(): MeanSample {
    return { n: this.n, mean: this.mean, variance: this.variance };
  }
}
