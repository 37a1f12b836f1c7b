/**
 * The distributions and fixed-sample tests an A/B experiment reports: the normal and Student t CDFs and
 * quantiles, the two-proportion z-test, Welch's t-test, and the per-variant intervals (Wilson for a rate, t for a
 * mean). Pure functions over numbers, no dependencies.
 *
 *   studentTQuantile(0.975, 10)   // 2.2281...
 *   twoProportionZTest({ successes: 5, trials: 83 }, { successes: 12, trials: 99 }).pValue   // 0.159...
 *
 * The special functions follow Numerical Recipes (3rd ed., 6.1-6.4): ln Γ by Lanczos (g = 7, 9 terms, ~1e-15),
 * the regularized incomplete gamma by its series or Lentz's continued fraction, the regularized incomplete beta by
 * its continued fraction. erfc is Q(1/2, x²), so the normal CDF is good to ~1e-15 absolute and keeps its relative
 * precision far into the tails (two-sided p-values of 1e-30 come out right, not 0).
 */

/** Difference, interval and p-value of one two-sided test of treatment minus control. */
export interface TestResult {
  /** Treatment minus control (rate points, or metric units). */
  readonly difference: number;
  /** Two-sided (1 - alpha) confidence interval of the difference. */
  readonly ci: readonly [number, number];
  /** Two-sided p-value of "no difference". */
  readonly pValue: number;
  /** z or t. */
  readonly statistic: number;
  /** Standard error behind the interval. */
  readonly standardError: number;
}

/** A rate's counts. */
export interface RateSample {
  readonly successes: number;
  readonly trials: number;
}

/** A numeric metric's summary: count, mean and sample variance (n - 1 in the denominator). */
export interface MeanSample {
  readonly n: number;
  readonly mean: number;
  readonly variance: number;
}

const EPS = 1e-15;
const FPMIN = 1e-300;
/**
 * Continued fractions and series stop here at the latest. The incomplete beta needs O(sqrt(max(a, b))) terms:
 * 10,000 covers t with df up to ~1e8, beyond which the t distribution is the normal one to ~1e-8.
 */
const MAX_ITERATIONS = 10_000;
/** Above this df the t distribution is taken as the normal one (they differ by < 1e-8 there). */
const T_NORMAL_DF = 1e8;
const SQRT2 = Math.SQRT2;
const LN_SQRT_2PI = 0.5 * Math.log(2 * Math.PI);

const LANCZOS = [
  0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
  12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
];

/** ln Γ(x) for x > 0. */
export function lnGamma(x: number): number {
  if (!(x > 0)) throw new RangeError(`lnGamma: x must be > 0 (got ${x})`);
  if (x < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * x)) - lnGamma(1 - x);
  const z = x - 1;
  let a = LANCZOS[0]!;
  for (let i = 1; i < LANCZOS.length; i++) a += LANCZOS[i]! / (z + i);
  const t = z + 7.5;
  return LN_SQRT_2PI + (z + 0.5) * Math.log(t) - t + Math.log(a);
}

/** Regularized upper incomplete gamma Q(a, x) = Γ(a, x) / Γ(a), for a > 0, x >= 0. */
export function gammaQ(a: number, x: number): number {
  if (x <= 0) return 1;
  const prefix = Math.exp(-x + a * Math.log(x) - lnGamma(a));
  if (x < a + 1) {
    // Series for P(a, x).
    let ap = a;
    let term = 1 / a;
    let sum = term;
    for (let n = 0; n < MAX_ITERATIONS; n++) {
      ap += 1;
      term *= x / ap;
      sum += term;
      if (Math.abs(term) < Math.abs(sum) * EPS) break;
    }
    return 1 - sum * prefix;
  }
  // Lentz's continued fraction for Q(a, x).
  let b = x + 1 - a;
  let c = 1 / FPMIN;
  let d = 1 / b;
  let h = d;
  for (let i = 1; i < MAX_ITERATIONS; i++) {
    const an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < FPMIN) d = FPMIN;
    c = b + an / c;
    if (Math.abs(c) < FPMIN) c = FPMIN;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < EPS) break;
  }
  return prefix * h;
}

/** The complementary error function for x >= 0 (erfc(x) = Q(1/2, x²)), the tails' precision kept. */
function erfcNonNegative(x: number): number {
  return gammaQ(0.5, x * x);
}

/** Φ(z), the standard normal CDF. */
export function normalCdf(z: number): number {
  if (Number.isNaN(z)) return Number.NaN;
  return z < 0 ? 0.5 * erfcNonNegative(-z / SQRT2) : 1 - 0.5 * erfcNonNegative(z / SQRT2);
}

/** 2 (1 - Φ(|z|)): the two-sided normal p-value, precise for tiny values. */
export function normalTwoSidedP(z: number): number {
  return erfcNonNegative(Math.abs(z) / SQRT2);
}

// Acklam's rational approximation (relative error 1.15e-9), then one Halley step on the precise CDF.
const A = [-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02, 1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00];
const B = [-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02, 6.680131188771972e+01, -1.328068155288572e+01];
const C = [-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00, -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00];
const D = [7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00];
const P_LOW = 0.02425;

/** Φ⁻¹(p), the standard normal quantile, for p in (0, 1) (0 and 1 give -Infinity and Infinity). */
export function normalQuantile(p: number): number {
  if (!(p >= 0 && p <= 1)) throw new RangeError(`normalQuantile: p must be in [0, 1] (got ${p})`);
  if (p === 0) return Number.NEGATIVE_INFINITY;
  if (p === 1) return Number.POSITIVE_INFINITY;
  // The lower half only: the upper one by symmetry, so the refinement works on a CDF value near 0, where it is precise.
  if (p > 0.5) return -normalQuantile(1 - p);
  let x: number;
  if (p < P_LOW) {
    const q = Math.sqrt(-2 * Math.log(p));
    x = (((((C[0]! * q + C[1]!) * q + C[2]!) * q + C[3]!) * q + C[4]!) * q + C[5]!)
      / ((((D[0]! * q + D[1]!) * q + D[2]!) * q + D[3]!) * q + 1);
  } else {
    const q = p - 0.5;
    const r = q * q;
    x = (((((A[0]! * r + A[1]!) * r + A[2]!) * r + A[3]!) * r + A[4]!) * r + A[5]!) * q
      / (((((B[0]! * r + B[1]!) * r + B[2]!) * r + B[3]!) * r + B[4]!) * r + 1);
  }
  const e = normalCdf(x) - p;
  const u = e * Math.sqrt(2 * Math.PI) * Math.exp((x * x) / 2);
  return x - u / (1 + (x * u) / 2);
}

/** Lentz's continued fraction of the incomplete beta (Numerical Recipes betacf). */
function betaContinuedFraction(a: number, b: number, x: number): number {
  const qab = a + b;
  const qap = a + 1;
  const qam = a - 1;
  let c = 1;
  let d = 1 - (qab * x) / qap;
  if (Math.abs(d) < FPMIN) d = FPMIN;
  d = 1 / d;
  let h = d;
  for (let m = 1; m < MAX_ITERATIONS; m++) {
    const m2 = 2 * m;
    let aa = (m * (b - m) * x) / ((qam + m2) * (a + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < FPMIN) d = FPMIN;
    c = 1 + aa / c;
    if (Math.abs(c) < FPMIN) c = FPMIN;
    d = 1 / d;
    h *= d * c;
    aa = (-(a + m) * (qab + m) * x) / ((a + m2) * (qap + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < FPMIN) d = FPMIN;
    c = 1 + aa / c;
    if (Math.abs(c) < FPMIN) c = FPMIN;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < EPS) break;
  }
  return h;
}

/**
 * The regularized incomplete beta I_x(a, b). `y` is 1 - x, passed when the caller has it without cancellation
 * (the t distribution does: t²/(df + t²)).
 */
export function incompleteBeta(a: number, b: number, x: number, y = 1 - x): number {
  if (x <= 0) return 0;
  if (y <= 0) return 1;
  const front = Math.exp(lnGamma(a + b) - lnGamma(a) - lnGamma(b) + a * Math.log(x) + b * Math.log(y));
  // The fraction converges fast below (a + 1) / (a + b + 2); above it, I_x(a, b) = 1 - I_{1-x}(b, a).
  return x < (a + 1) / (a + b + 2)
    ? (front * betaContinuedFraction(a, b, x)) / a
    : 1 - (front * betaContinuedFraction(b, a, y)) / b;
}

function checkDf(df: number, fn: string): void {
  if (!(df > 0)) throw new RangeError(`${fn}: df must be > 0 (got ${df})`);
}

/** P(|T| > |t|) for Student's t with df degrees of freedom: the two-sided p-value. */
export function studentTTwoSidedP(t: number, df: number): number {
  checkDf(df, 'studentTTwoSidedP');
  if (Number.isNaN(t)) return Number.NaN;
  if (df > T_NORMAL_DF) return normalTwoSidedP(t);
  if (!Number.isFinite(t)) return 0;
  const t2 = t * t;
  return incompleteBeta(df / 2, 0.5, df / (df + t2), t2 / (df + t2));
}

/** P(T <= t) for Student's t with df degrees of freedom (df may be fractional, as Welch's is). */
export function studentTCdf(t: number, df: number): number {
  checkDf(df, 'studentTCdf');
  if (Number.isNaN(t)) return Number.NaN;
  const tail = studentTTwoSidedP(t, df) / 2;
  return t < 0 ? tail : 1 - tail;
}

/** The density of Student's t. */
export function studentTPdf(t: number, df: number): number {
  checkDf(df, 'studentTPdf');
  if (df > T_NORMAL_DF) return Math.exp(-t * t / 2 - LN_SQRT_2PI);
  return Math.exp(lnGamma((df + 1) / 2) - lnGamma(df / 2) - 0.5 * Math.log(df * Math.PI) - ((df + 1) / 2) * Math.log1p((t * t) / df));
}

/**
 * The p-quantile of Student's t: Newton's method on the upper tail, kept inside a bracket that bisection shrinks
 * whenever a Newton step would leave it (Numerical Recipes rtsafe). Converges to ~1e-12 relative.
 */
export function studentTQuantile(p: number, df: number): number {
  checkDf(df, 'studentTQuantile');
  if (!(p >= 0 && p <= 1)) throw new RangeError(`studentTQuantile: p must be in [0, 1] (got ${p})`);
  if (p === 0) return Number.NEGATIVE_INFINITY;
  if (p === 1) return Number.POSITIVE_INFINITY;
  if (p === 0.5) return 0;
  if (df > T_NORMAL_DF) return normalQuantile(p);
  if (p < 0.5) return -studentTQuantile(1 - p, df);
  // Solve upper(t) = q for t > 0, upper(t) = P(T > t) = two-sided / 2, decreasing in t.
  const q = 1 - p;
  const upper = (t: number): number => studentTTwoSidedP(t, df) / 2;
  let lo = 0;
  let hi = Math.max(1, normalQuantile(p));
  while (upper(hi) > q) {
    lo = hi;
    hi *= 2;
    if (!Number.isFinite(hi)) return Number.POSITIVE_INFINITY;
  }
  let t = (lo + hi) / 2;
  for (let i = 0; i < 200; i++) {
    const f = upper(t) - q;
    if (f > 0) lo = t; else hi = t;
    const slope = -studentTPdf(t, df);
    let next = slope === 0 ? Number.NaN : t - f / slope;
    if (!(next > lo && next < hi)) next = (lo + hi) / 2;
    if (Math.abs(next - t) <= 1e-12 * Math.max(1, Math.abs(next))) return next;
    t = next;
  }
  return t;
}

/**
 * The two-proportion z-test of treatment minus control: the p-value from the pooled standard error (the one the
 * null hypothesis of equal rates implies), the interval from the unpooled one (each arm's own rate). With no
 * variation at all (every trial a success, or none) z is 0 and p is 1.
 */
export function twoProportionZTest(control: RateSample, treatment: RateSample, alpha = 0.05): TestResult {
  const p1 = control.successes / control.trials;
  const p2 = treatment.successes / treatment.trials;
  const difference = p2 - p1;
  const pooled = (control.successes + treatment.successes) / (control.trials + treatment.trials);
  const sePooled = Math.sqrt(pooled * (1 - pooled) * (1 / control.trials + 1 / treatment.trials));
  const seUnpooled = Math.sqrt((p1 * (1 - p1)) / control.trials + (p2 * (1 - p2)) / treatment.trials);
  const statistic = sePooled > 0 ? difference / sePooled : 0;
  const half = normalQuantile(1 - alpha / 2) * seUnpooled;
  return { difference, ci: [difference - half, difference + half], pValue: normalTwoSidedP(statistic), statistic, standardError: seUnpooled };
}

/** Welch's test result: a TestResult with its Welch–Satterthwaite degrees of freedom. */
export interface WelchResult extends TestResult {
  readonly df: number;
}

/**
 * Welch's t-test of treatment minus control (unequal variances), df by Welch–Satterthwaite. Each sample needs
 * n >= 2. With both variances 0, df is n1 + n2 - 2 and p is 1 for equal means, 0 for different ones (t is
 * infinite).
 */
export function welchTTest(control: MeanSample, treatment: MeanSample, alpha = 0.05): WelchResult {
  if (control.n < 2 || treatment.n < 2) throw new RangeError(`welchTTest: each sample needs n >= 2 (got ${control.n} and ${treatment.n})`);
  const difference = treatment.mean - control.mean;
  const v1 = control.variance / control.n;
  const v2 = treatment.variance / treatment.n;
  const standardError = Math.sqrt(v1 + v2);
  if (!(standardError > 0)) {
    const pValue = difference === 0 ? 1 : 0;
    return { difference, ci: [difference, difference], pValue, statistic: difference === 0 ? 0 : Math.sign(difference) * Number.MAX_VALUE, standardError: 0, df: control.n + treatment.n - 2 };
  }
  const df = (v1 + v2) ** 2 / ((v1 * v1) / (control.n - 1) + (v2 * v2) / (treatment.n - 1));
  const statistic = difference / standardError;
  const half = studentTQuantile(1 - alpha / 2, df) * standardError;
  return { difference, ci: [difference - half, difference + half], pValue: studentTTwoSidedP(statistic, df), statistic, standardError, df };
}

/** The Wilson score interval of a rate at level 1 - alpha; [0, 1] with no trials. */
export function wilsonInterval(sample: RateSample, alpha = 0.05): [number, number] {
  const n = sample.trials;
  if (n <= 0) return [0, 1];
  const z = normalQuantile(1 - alpha / 2);
  const p = sample.successes / n;
  const z2n = (z * z) / n;
  const centre = (p + z2n / 2) / (1 + z2n);
  const half = (z * Math.sqrt((p * (1 - p)) / n + z2n / (4 * n))) / (1 + z2n);
  return [Math.max(0, centre - half), Math.min(1, centre + half)];
}

/** The t interval of a mean at level 1 - alpha; null below two observations. */
export function meanInterval(sample: MeanSample, alpha = 0.05): [number, number] | null {
  if (sample.n < 2) return null;
  const half = studentTQuantile(1 - alpha / 2, sample.n - 1) * Math.sqrt(sample.variance / sample.n);
  return [sample.mean - half, sample.mean + half];
}
