/**
 * The pure half of a rollout: its phases, and the judgements that move it on or roll it back, computed from
 * numbers the controller gathers (replica outcomes from heartbeats, routers' shadow comparisons). No timers, no
 * I/O: the controller calls these on every pass and acts on what they return.
 *
 *   shadow (mirrored, answers compared)  ->  canary steps (live share, judged vs stable)  ->  rolling  ->  done
 *   experiment (sticky split)  ->  an operator promotes (rolling) or rolls back
 */
import { quantileMs, type CompiledCanary, type CompiledShadow, type OutcomeCounts } from '@shoal/core';
import type { ShadowCounts } from '@shoal/protocol';

export type RolloutPhase = 'shadow' | 'canary' | 'experiment' | 'rolling';

/** One decision of a rollout, with the numbers it was made on (logged, and shown in status). */
export interface RolloutDecision {
  /** Wall ms (epoch). */
  atMs: number;
  deployment: string;
  from: string;
  to: string;
  action: 'start' | 'shadow passed' | 'step' | 'promote' | 'rollback' | 'failed' | 'done' | 'abort';
  reason: string;
  numbers?: Record<string, number>;
}

/** A window of one version's answers. */
export interface VersionWindow { requests: number; errors: number; errorRate: number; p99Ms: number; p50Ms: number }

export function windowOf(c: OutcomeCounts): VersionWindow {
  return { requests: c.requests, errors: c.errors, errorRate: c.requests === 0 ? 0 : c.errors / c.requests, p99Ms: quantileMs(c.counts, 0.99), p50Ms: quantileMs(c.counts, 0.5) };
}

export type Verdict = { verdict: 'wait'; reason: string } | { verdict: 'pass'; reason: string } | { verdict: 'fail'; reason: string };

/**
 * A canary step's verdict: wait until the canary has answered minRequests in this step; fail when its error
 * rate or p99 is worse than the stable version's (same window) by more than the margins; pass once the step has
 * also lasted stepIntervalMs.
 */
export function judgeCanary(cfg: CompiledCanary, canary: VersionWindow, stable: VersionWindow, stepElapsedMs: number): Verdict {
  if (canary.requests < cfg.minRequests) return { verdict: 'wait', reason: `canary has answered ${canary.requests} of the ${cfg.minRequests} requests a verdict needs` };
  const errDelta = canary.errorRate - stable.errorRate;
  if (errDelta > cfg.maxErrorRateIncrease) {
    return { verdict: 'fail', reason: `canary error rate ${pct(canary.errorRate)} (${canary.errors}/${canary.requests}) exceeds stable's ${pct(stable.errorRate)} (${stable.errors}/${stable.requests}) by ${pct(errDelta)}, over the allowed ${pct(cfg.maxErrorRateIncrease)}` };
  }
  const p99Limit = stable.p99Ms * (1 + cfg.maxP99Increase);
  if (canary.p99Ms > cfg.p99FloorMs && stable.requests > 0 && canary.p99Ms > p99Limit) {
    return { verdict: 'fail', reason: `canary p99 ${ms(canary.p99Ms)} exceeds stable's ${ms(stable.p99Ms)} by more than ${Math.round(cfg.maxP99Increase * 100)}% (limit ${ms(p99Limit)})` };
  }
  const healthy = `canary error rate ${pct(canary.errorRate)} vs stable ${pct(stable.errorRate)}, p99 ${ms(canary.p99Ms)} vs ${ms(stable.p99Ms)}, over ${canary.requests} requests`;
  if (stepElapsedMs < cfg.stepIntervalMs) return { verdict: 'wait', reason: `${healthy}; the step lasts ${cfg.stepIntervalMs} ms (${Math.round(stepElapsedMs)} so far)` };
  return { verdict: 'pass', reason: healthy };
}

/** a - b for the additive fields; maxAbsDiff is a's (a maximum cannot be subtracted). */
export function shadowSince(a: ShadowCounts, b: ShadowCounts | undefined): ShadowCounts {
  if (b === undefined) return { ...a };
  return {
    mirrored: Math.max(0, a.mirrored - b.mirrored), dropped: Math.max(0, a.dropped - b.dropped), compared: Math.max(0, a.compared - b.compared),
    agreed: Math.max(0, a.agreed - b.agreed), shadowErrors: Math.max(0, a.shadowErrors - b.shadowErrors), numbers: Math.max(0, a.numbers - b.numbers),
    sumAbsDiff: Math.max(0, a.sumAbsDiff - b.sumAbsDiff), maxAbsDiff: a.maxAbsDiff,
  };
}

export function addShadow(into: ShadowCounts, x: ShadowCounts): void {
  into.mirrored += x.mirrored; into.dropped += x.dropped; into.compared += x.compared; into.agreed += x.agreed;
  into.shadowErrors += x.shadowErrors; into.numbers += x.numbers; into.sumAbsDiff += x.sumAbsDiff;
  if (x.maxAbsDiff > into.maxAbsDiff) into.maxAbsDiff = x.maxAbsDiff;
}

/** What a shadow comparison shows, as reported per version. */
export interface ShadowSummary extends ShadowCounts { agreement: number; meanAbsDiff: number; shadowErrorRate: number }

export function summarizeShadow(c: ShadowCounts): ShadowSummary {
  const answered = c.compared + c.shadowErrors;
  return { ...c, agreement: c.compared === 0 ? 1 : c.agreed / c.compared, meanAbsDiff: c.numbers === 0 ? 0 : c.sumAbsDiff / c.numbers, shadowErrorRate: answered === 0 ? 0 : c.shadowErrors / answered };
}

/** The shadow phase's verdict: wait for minComparisons and minDurationMs, fail on any threshold it breaks. */
export function judgeShadow(cfg: CompiledShadow, c: ShadowCounts, elapsedMs: number): Verdict {
  const s = summarizeShadow(c);
  if (s.compared < cfg.minComparisons) return { verdict: 'wait', reason: `${s.compared} of the ${cfg.minComparisons} comparisons a verdict needs (${s.mirrored} mirrored, ${s.dropped} dropped)` };
  if (s.shadowErrorRate > cfg.maxErrorRate) return { verdict: 'fail', reason: `shadow failed ${s.shadowErrors} of ${s.compared + s.shadowErrors} requests the live version answered (${pct(s.shadowErrorRate)}, allowed ${pct(cfg.maxErrorRate)})` };
  if (cfg.minAgreement !== undefined && s.agreement < cfg.minAgreement) return { verdict: 'fail', reason: `shadow agrees with live on ${pct(s.agreement)} of ${s.compared} answers, under the ${pct(cfg.minAgreement)} required` };
  if (cfg.maxMeanAbsDiff !== undefined && s.meanAbsDiff > cfg.maxMeanAbsDiff) return { verdict: 'fail', reason: `shadow's mean absolute difference ${s.meanAbsDiff.toPrecision(3)} over ${s.numbers} numbers exceeds ${cfg.maxMeanAbsDiff}` };
  if (cfg.maxAbsDiff !== undefined && s.maxAbsDiff > cfg.maxAbsDiff) return { verdict: 'fail', reason: `shadow's largest absolute difference ${s.maxAbsDiff.toPrecision(3)} exceeds ${cfg.maxAbsDiff}` };
  const ok = `agreement ${pct(s.agreement)}, mean abs diff ${s.meanAbsDiff.toPrecision(3)}, max abs diff ${s.maxAbsDiff.toPrecision(3)} over ${s.compared} comparisons`;
  if (elapsedMs < cfg.minDurationMs) return { verdict: 'wait', reason: `${ok}; the phase lasts ${cfg.minDurationMs} ms (${Math.round(elapsedMs)} so far)` };
  return { verdict: 'pass', reason: ok };
}

/** New-version replicas a phase runs beside the stable ones, for a deployment of `n` replicas. */
export function sideReplicas(n: number, percent: number): number {
  return Math.max(1, Math.ceil((n * percent) / 100));
}

function pct(x: number): string {
  return `${(x * 100).toFixed(2)}%`;
}

function ms(x: number): string {
  return `${x.toFixed(1)} ms`;
}
