/**
 * What an experiment reports (JSON-able: numbers are finite or null), and its text table for the CLI. The
 * formatter takes the JSON form, so a CLI that fetched GET /api/experiments/NAME prints the same table as
 * Experiment.format() in the head.
 *
 *   console.log(formatExperimentReport(await (await fetch(`${head}/api/experiments/checkout`)).json()));
 */
import type { ExperimentMode, MetricKind } from './experiment-options.ts';

export type Verdict = 'insufficient data (n < minSamples)' | 'waiting for horizon' | 'significant' | 'not significant';
export type TestName = 'two-proportion z' | 'welch t';

export interface VariantReport {
  readonly name: string;
  readonly weight: number;
  /** Requests assigned to it (recordAssignment calls taken, duplicates not counted). */
  readonly assigned: number;
  /** Outcomes counted for it. */
  readonly outcomes: number;
  /** With metric 'conversion': successes / outcomes; null without outcomes. */
  readonly rate?: number | null;
  /** With metric 'numeric': the mean outcome; null without outcomes. */
  readonly mean?: number | null;
  /** Standard deviation of one outcome (sqrt(p (1 - p)) for a rate); null while undefined. */
  readonly sd: number | null;
  /** 95% interval of the rate (Wilson) or the mean (t); null while undefined. Always 95%, whatever alpha is. */
  readonly ci95: readonly [number, number] | null;
}

export interface ComparisonReport {
  /** The treatment variant. */
  readonly variant: string;
  /** The control: the first variant. */
  readonly control: string;
  /** Treatment minus control; null until both have outcomes. In fixed mode, at the horizon: the tested difference. */
  readonly difference: number | null;
  /** difference / control's rate or mean; null when that is 0 or unknown. */
  readonly relativeDifference: number | null;
  /**
   * The (1 - alpha) interval of the difference, null while there is no verdict. Sequential: the confidence sequence
   * (intersected over time), valid at any peek. Fixed: the interval at the horizon.
   */
  readonly ci: readonly [number, number] | null;
  /** 1 - alpha. */
  readonly ciLevel: number;
  /** Null while there is no verdict. Sequential: the always-valid p-value. Fixed: the test's p-value at the horizon. */
  readonly pValue: number | null;
  readonly test: TestName;
  /** Welch–Satterthwaite degrees of freedom, with the Welch test in fixed mode at the horizon. */
  readonly df?: number;
  readonly verdict: Verdict;
  /** How peeking is accounted for, in one sentence. */
  readonly correction: string;
}

export interface SampleSizeHint {
  /** The difference to detect (option minEffect); null when not set. */
  readonly minEffect: number | null;
  readonly alpha: number;
  readonly power: number;
  /** Outcomes per variant a fixed-horizon test needs; null until it can be estimated (see basis). */
  readonly perVariant: number | null;
  /** What the estimate stands on: 'observed control rate 0.1', or why there is none. */
  readonly basis: string;
  /** Fixed mode: the power the horizon has against minEffect; null when unknown. */
  readonly powerAtHorizon?: number | null;
}

export interface ExperimentReport {
  readonly name: string;
  readonly metric: MetricKind;
  readonly mode: ExperimentMode;
  readonly alpha: number;
  readonly minSamples: number;
  /** Fixed mode: outcomes per variant at the one test; null in sequential mode. */
  readonly horizon: number | null;
  /** Sequential mode: the mSPRT mixture's standard deviation; null in fixed mode. */
  readonly tau: number | null;
  /** The correction sentence every comparison carries. */
  readonly correction: string;
  readonly variants: readonly VariantReport[];
  /** Each variant after the first against the first. */
  readonly comparisons: readonly ComparisonReport[];
  readonly sampleSize: SampleSizeHint;
  readonly bookkeeping: {
    /** Assignments waiting for (or holding) their outcome. */
    readonly tracked: number;
    readonly maxAssignments: number;
    /** Assignments forgotten because the table was full. */
    readonly evicted: number;
    /** Assignments dropped after assignmentTtlMs. */
    readonly expired: number;
    /** Outcomes refused, by reason. */
    readonly refused: { readonly unknown: number; readonly expired: number; readonly duplicate: number; readonly invalid: number };
  };
}

/** 4 significant digits, no exponent for everyday magnitudes; '-' for null. */
function num(x: number | null | undefined, signed = false): string {
  if (x === null || x === undefined) return '-';
  const s = Math.abs(x) >= 1e-4 || x === 0 ? String(Number(x.toPrecision(4))) : x.toExponential(2);
  return signed && x > 0 ? `+${s}` : s;
}

function interval(ci: readonly [number, number] | null, signed = false): string {
  return ci === null ? '-' : `[${num(ci[0], signed)}, ${num(ci[1], signed)}]`;
}

function pValue(p: number | null): string {
  if (p === null) return '-';
  return p < 1e-4 ? '<0.0001' : p.toFixed(4);
}

function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => r.map((cell, c) => cell.padEnd(widths[c]!)).join('  ').trimEnd());
}

/** The report as a small text table: the variants, the comparisons, the sample-size hint. */
export function formatExperimentReport(report: ExperimentReport): string {
  const value = report.metric === 'conversion' ? 'rate' : 'mean';
  const lines = [`experiment ${report.name}: ${report.metric}, alpha ${report.alpha}, min ${report.minSamples} outcomes per variant; ${report.correction}`];
  lines.push(...table([
    ['variant', 'weight', 'assigned', 'outcomes', value, 'sd', '95% CI'],
    ...report.variants.map((v) => [v.name, num(v.weight), String(v.assigned), String(v.outcomes), num(report.metric === 'conversion' ? v.rate : v.mean), num(v.sd), interval(v.ci95)]),
  ]));
  lines.push('');
  const level = `${num(100 * (1 - report.alpha))}% CI`;
  lines.push(...table([
    ['comparison', 'difference', 'relative', level, 'p-value', 'test', 'verdict'],
    ...report.comparisons.map((c) => [
      `${c.variant} vs ${c.control}`, num(c.difference, true), c.relativeDifference === null ? '-' : `${num(100 * c.relativeDifference, true)}%`,
      interval(c.ci, true), pValue(c.pValue), c.df === undefined ? c.test : `${c.test} (df ${num(c.df)})`, c.verdict,
    ]),
  ]));
  const h = report.sampleSize;
  const at = h.powerAtHorizon === undefined || h.powerAtHorizon === null ? '' : `; the horizon has power ${num(h.powerAtHorizon)}`;
  lines.push('', h.minEffect === null
    ? `sample size: ${h.basis}`
    : `sample size to detect ${num(h.minEffect, true)} at alpha ${h.alpha}, power ${h.power}: ${h.perVariant === null ? '-' : h.perVariant.toLocaleString('en-US')} per variant (fixed horizon; ${h.basis})${at}`);
  const b = report.bookkeeping;
  const refused = b.refused.unknown + b.refused.expired + b.refused.duplicate + b.refused.invalid;
  lines.push(`assignments tracked ${b.tracked}/${b.maxAssignments}, evicted ${b.evicted}, expired ${b.expired}; outcomes refused ${refused}`
    + (refused > 0 ? ` (unknown ${b.refused.unknown}, expired ${b.refused.expired}, duplicate ${b.refused.duplicate}, invalid ${b.refused.invalid})` : ''));
  return lines.join('\n');
}
