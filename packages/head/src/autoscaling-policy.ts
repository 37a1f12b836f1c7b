/**
 * The autoscaling policy: a pure function from a deployment's recent load to the replica count it should have.
 * No clock, no I/O; the controller passes the time and keeps the state between calls.
 *
 *   let state = INITIAL_AUTOSCALING_STATE;
 *   // each controller tick, for a deployment with options.autoscaling set:
 *   const r = decideReplicas({ config, currentTarget, running, samples: window.samples(now), state, now });
 *   state = r.state;
 *   if (r.decision) { log(formatAutoscalingDecision(name, r.decision)); currentTarget = r.desired; }
 *
 * The rules, after Ray Serve's default policy:
 * - The load needs ceil(average / targetOngoingRequests) replicas to scale up, and
 *   ceil(average / targetOngoingRequests / (1 - downscaleTolerance)) to scale down; between the two the count holds.
 *   The count wanted is ceil(current + s * (need - current)), s the up or down smoothing factor, at least one away
 *   from current while the need differs from it, never below the need on the way down, and within
 *   [minReplicas, maxReplicas]; with s = 1 it is the need.
 * - A larger count is taken once it has been wanted for upscaleDelayMs, a smaller one after downscaleDelayMs. A want
 *   that stops, or turns around, starts over; the count taken is the one wanted on the tick the delay runs out.
 * - Down to zero goes through one: from above one the policy goes to one, and from one to zero only after zero has
 *   been wanted for downscaleToZeroDelayMs.
 * - From zero, a waiting request (the latest sample above zero) scales up on that tick, without the upscale delay.
 * - A count outside [minReplicas, maxReplicas] (the bounds changed) is brought inside on that tick.
 *
 * No oscillation on a steady load: the counts that stay where they are lie between the two needs, every other count
 * moves towards them (an upscale factor above 1 may overshoot once; the way down stops at the need), so a steady
 * average is reached and held. A noisy load near a threshold must cross the tolerance band to turn a scaling
 * around, and each flip of the wanted count restarts the delay, which is why the default downscale delay
 * (10 minutes) is long beside the upscale one.
 */
import type { CompiledDeploymentOptions } from '@shoal/core';

/** The compiled autoscaling options (`CompiledAutoscaling` in @shoal/core). */
export type AutoscalingConfig = NonNullable<CompiledDeploymentOptions['autoscaling']>;

/** One load sample: when it was taken, and the deployment's ongoing requests then. */
export interface AutoscalingSample {
  /** Monotonic ms (Clock.monoNow). */
  readonly at: number;
  /** Requests running on the deployment's replicas plus those waiting for one in routers, summed over the deployment. */
  readonly ongoing: number;
}

/** What the policy remembers between calls: a change it wants but has not yet made, and since when. */
export type AutoscalingPolicyState =
  | { readonly want: 'none' }
  | {
    readonly want: 'upscale' | 'downscale';
    /** The target the want was formed against; a want formed against another target is void. */
    readonly from: number;
    /** The count wanted on the latest call. */
    readonly to: number;
    /** Monotonic ms of the first call that wanted this direction. */
    readonly sinceMs: number;
  };

export const INITIAL_AUTOSCALING_STATE: AutoscalingPolicyState = Object.freeze({ want: 'none' });

export interface AutoscalingInput {
  readonly config: AutoscalingConfig;
  /** The replica count the controller is keeping now (its target, not what happens to be running). */
  readonly currentTarget: number;
  /** Replicas running now (started and not draining). */
  readonly running: number;
  /** Load samples; only those in (now - lookBackPeriodMs, now] count. */
  readonly samples: readonly AutoscalingSample[];
  /** The state the previous call returned, or INITIAL_AUTOSCALING_STATE. */
  readonly state: AutoscalingPolicyState;
  /** Monotonic ms. */
  readonly now: number;
}

export type AutoscalingReason = 'upscale' | 'downscale' | 'downscale-to-zero' | 'scale-from-zero' | 'bounds';

/** A change of the target, with the numbers that caused it. */
export interface AutoscalingDecision {
  readonly from: number;
  readonly to: number;
  readonly reason: AutoscalingReason;
  /** Mean ongoing requests over the samples in the window (0 when there were none). */
  readonly averageOngoing: number;
  /** The newest sample's ongoing requests (0 when there were none). */
  readonly latestOngoing: number;
  /** averageOngoing per running replica (averageOngoing itself when none runs). */
  readonly perReplica: number;
  /** averageOngoing / targetOngoingRequests, before rounding, smoothing and bounds. */
  readonly rawReplicas: number;
  readonly targetOngoingRequests: number;
  readonly running: number;
  /** Samples in the window. */
  readonly samples: number;
  /** How long the change had been wanted (0 for one made on the spot). */
  readonly wantedForMs: number;
}

export interface AutoscalingResult {
  /** The target to keep from now on; equals currentTarget unless there is a decision. */
  readonly desired: number;
  /** To pass back on the next call. */
  readonly state: AutoscalingPolicyState;
  /** Set when desired differs from currentTarget. */
  readonly decision?: AutoscalingDecision;
}

/**
 * Tolerance for rounding up: an average of exactly n targets' worth must want n replicas, even when floating point
 * makes it n + 1e-16 (0.3 / 0.1 and the like).
 */
const EPSILON = 1e-9;

function ceil(x: number): number {
  return Math.ceil(x - EPSILON);
}

/**
 * The count to move to from `current`, for a load of `raw` replicas' worth (unrounded): at least one replica away
 * when the rounded need differs, smoothed, never below the need (with its tolerance) on the way down, and within
 * bounds.
 */
function wantedCount(config: AutoscalingConfig, current: number, raw: number): number {
  // Down, the load is weighed as if it were 1 / (1 - tolerance) larger: the band between the two is the hysteresis.
  const rawDown = raw / (1 - config.downscaleTolerance);
  let wanted = current;
  // A damped step smaller than one replica would round back to the current count and never move.
  if (ceil(raw) > current) wanted = Math.max(current + 1, ceil(current + config.upscaleSmoothingFactor * (raw - current)));
  else if (ceil(rawDown) < current) wanted = Math.max(ceil(rawDown), Math.min(current - 1, ceil(current + config.downscaleSmoothingFactor * (rawDown - current))));
  wanted = Math.min(config.maxReplicas, Math.max(config.minReplicas, wanted));
  // Zero is reached from one only, so that it waits its own delay.
  if (current > 1) wanted = Math.max(1, wanted);
  return wanted;
}

/** The target to keep from `now` on, the state for the next call, and the decision when the target changes. */
export function decideReplicas(input: AutoscalingInput): AutoscalingResult {
  const { config, currentTarget: current, running, now } = input;
  const windowStart = now - config.lookBackPeriodMs;
  let count = 0;
  let sum = 0;
  let latest: AutoscalingSample | undefined;
  for (const s of input.samples) {
    if (s.at <= windowStart || s.at > now) continue;
    count++;
    sum += s.ongoing;
    if (latest === undefined || s.at >= latest.at) latest = s;
  }
  const averageOngoing = count === 0 ? 0 : sum / count;
  const latestOngoing = latest?.ongoing ?? 0;
  const rawReplicas = averageOngoing / config.targetOngoingRequests;
  const decide = (to: number, reason: AutoscalingReason, wantedForMs: number): AutoscalingResult => ({
    desired: to,
    state: INITIAL_AUTOSCALING_STATE,
    decision: {
      from: current, to, reason, averageOngoing, latestOngoing, perReplica: averageOngoing / Math.max(1, running), rawReplicas,
      targetOngoingRequests: config.targetOngoingRequests, running, samples: count, wantedForMs,
    },
  });
  const hold: AutoscalingResult = { desired: current, state: INITIAL_AUTOSCALING_STATE };

  const bounded = Math.min(config.maxReplicas, Math.max(config.minReplicas, current));
  if (bounded !== current) return decide(bounded, 'bounds', 0);
  // No sample in the window: nothing to go on, so no want survives either.
  if (count === 0) return hold;
  if (current === 0) {
    if (latestOngoing <= 0) return hold;
    const to = Math.min(config.maxReplicas, Math.max(1, ceil(config.upscaleSmoothingFactor * latestOngoing / config.targetOngoingRequests)));
    return decide(to, 'scale-from-zero', 0);
  }
  // Replicas wanted but none running yet: the samples measure a queue that no replica drains, not the load.
  if (running === 0) return hold;

  const wanted = wantedCount(config, current, rawReplicas);
  if (wanted === current) return hold;
  const want = wanted > current ? 'upscale' : 'downscale';
  const prev = input.state;
  const sinceMs = prev.want === want && prev.from === current ? prev.sinceMs : now;
  const delayMs = want === 'upscale' ? config.upscaleDelayMs : wanted === 0 ? config.downscaleToZeroDelayMs : config.downscaleDelayMs;
  if (now - sinceMs >= delayMs) return decide(wanted, wanted === 0 ? 'downscale-to-zero' : want, now - sinceMs);
  return { desired: current, state: { want, from: current, to: wanted, sinceMs } };
}

/** One log line for a decision, with its numbers: `autoscaling "rec": 2 -> 3 (upscale) average ongoing 5.2 ...`. */
export function formatAutoscalingDecision(deployment: string, d: AutoscalingDecision): string {
  const n = (x: number): string => String(Math.round(x * 100) / 100);
  return `autoscaling "${deployment}": ${d.from} -> ${d.to} (${d.reason}) average ongoing ${n(d.averageOngoing)} over ${d.samples} samples `
    + `(latest ${n(d.latestOngoing)}), ${n(d.perReplica)} per running replica (${d.running} running), target ${n(d.targetOngoingRequests)}, `
    + `wanted for ${Math.round(d.wantedForMs)} ms`;
}
