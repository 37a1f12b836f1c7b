/**
 * How many outcomes per variant a fixed-horizon two-sided test needs to detect a given difference, and the power
 * a given count has: the normal approximations behind the two-proportion z-test and Welch's t-test.
 *
 *   sampleSizeForRate(0.10, 0.03, 0.05, 0.8)     // 1,774 per variant: 0.10 vs 0.13
 *   powerForRate(0.10, 0.03, 0.05, 3000)         // 0.95
 *
 * A sequential test (mSPRT) needs more than this at the same power, for its freedom to stop at any peek.
 */
import { normalCdf, normalQuantile } from './stats.ts';

/** The treatment rate the effect is measured against: baseline + effect, or baseline - effect when that passes 1. */
function otherRate(baseline: number, effect: number): number | null {
  if (baseline + effect <= 1) return baseline + effect;
  return baseline - effect >= 0 ? baseline - effect : null;
}

/**
 * Per-variant trials to detect an absolute rate difference `effect` from `baseline` (Fleiss, pooled variance
 * under the null, unpooled under the alternative); null when no rate pair fits in [0, 1].
 */
export function sampleSizeForRate(baseline: number, effect: number, alpha: number, power: number): number | null {
  const p2 = otherRate(baseline, effect);
  if (p2 === null || !(effect > 0)) return null;
  const p1 = baseline;
  const mean = (p1 + p2) / 2;
  const za = normalQuantile(1 - alpha / 2);
  const zb = normalQuantile(power);
  const root = za * Math.sqrt(2 * mean * (1 - mean)) + zb * Math.sqrt(p1 * (1 - p1) + p2 * (1 - p2));
  return Math.ceil((root * root) / (effect * effect));
}

/** The power of the two-proportion z-test with n trials per variant against a difference `effect` from `baseline`. */
export function powerForRate(baseline: number, effect: number, alpha: number, n: number): number | null {
  const p2 = otherRate(baseline, effect);
  if (p2 === null || !(effect > 0) || !(n > 0)) return null;
  const p1 = baseline;
  const mean = (p1 + p2) / 2;
  const za = normalQuantile(1 - alpha / 2);
  const sdAlt = Math.sqrt(p1 * (1 - p1) + p2 * (1 - p2));
  return normalCdf((effect * Math.sqrt(n) - za * Math.sqrt(2 * mean * (1 - mean))) / sdAlt);
}

/** Per-variant observations to detect a difference of means `effect` when each observation has standard deviation `sd`. */
export function sampleSizeForMean(sd: number, effect: number, alpha: number, power: number): number | null {
  if (!(sd > 0) || !(effect > 0)) return null;
  const z = normalQuantile(1 - alpha / 2) + normalQuantile(power);
  return Math.ceil((2 * sd * sd * z * z) / (effect * effect));
}

/** The power of the two-sample test of means with n observations per variant of standard deviation `sd`. */
export function powerForMean(sd: number, effect: number, alpha: number, n: number): number | null {
  if (!(sd > 0) || !(effect > 0) || !(n > 0)) return null;
  return normalCdf(effect / (sd * Math.sqrt(2 / n)) - normalQuantile(1 - alpha / 2));
}
