/**
 * Sticky assignment of a key (a user id from a header) to one of an experiment's weighted variants. The router
 * assigns on traffic and the head's Experiment assigns when asked; both import these two functions, so any
 * process, on any platform, puts a key in the same variant while the weights stay the same.
 *
 *   const u = stickyBucket('checkout-button', userId);   // in [0, 1), the same for the same two strings
 *   const i = pickWeighted([50, 50], u);                  // 0 or 1
 *
 * The bucket is the first 53 bits of SHA-256 over the UTF-8 of `experiment + "\u0000" + key`, as a fraction of
 * 2^53. SHA-256 rather than a fast non-cryptographic hash: keys chosen by callers cannot cluster in one bucket,
 * and a reimplementation in another language needs only a standard library. The NUL separator keeps
 * ('ab', 'c') apart from ('a', 'bc'); experiment names cannot contain it.
 */
import { createHash } from 'node:crypto';
import { InvalidOptionError } from './errors.ts';

const TWO_POW_21 = 2 ** 21;
const TWO_POW_53 = 2 ** 53;

/** A number in [0, 1) fixed by (experiment, key): uniform over keys, independent across experiments. */
export function stickyBucket(experiment: string, key: string): number {
  const digest = createHash('sha256').update(experiment).update('\u0000').update(key).digest();
  // 32 high bits, then the next 21: 53 bits, all a double holds exactly.
  const high = digest.readUInt32BE(0);
  const low = digest.readUInt32BE(4) >>> 11;
  return (high * TWO_POW_21 + low) / TWO_POW_53;
}

/**
 * The index of the weighted bucket that `u` in [0, 1) falls in: weights [1, 3] give index 0 for u < 0.25 and
 * index 1 above. Weights are relative (they need not sum to 1 or 100); a zero weight is never picked.
 */
export function pickWeighted(weights: readonly number[], u: number): number {
  if (!(u >= 0 && u < 1)) throw new InvalidOptionError('u', 'must be in [0, 1)', u);
  let total = 0;
  for (let i = 0; i < weights.length; i++) {
    const w = weights[i]!;
    if (!(Number.isFinite(w) && w >= 0)) throw new InvalidOptionError(`weights[${i}]`, 'must be a finite number >= 0', w);
    total += w;
  }
  if (!(total > 0)) throw new InvalidOptionError('weights', `must have a positive sum (got ${weights.length} weights summing to ${total})`);
  const target = u * total;
  let cumulative = 0;
  let last = 0;
  for (let i = 0; i < weights.length; i++) {
    const w = weights[i]!;
    if (w === 0) continue;
    cumulative += w;
    last = i;
    if (target < cumulative) return i;
  }
  // Rounding in the running sum can leave target a hair above the last cumulative value: it is the last bucket.
  return last;
}
