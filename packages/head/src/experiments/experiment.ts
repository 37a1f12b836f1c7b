/**
 * One A/B experiment in the head: sticky assignment of keys to weighted variants, the request id → variant
 * table, outcomes counted per variant, and a report of each variant against the control (the first) with a
 * verdict that peeking cannot inflate.
 *
 *   const exp = new Experiment({ name: 'checkout', variants: [{ name: 'A' }, { name: 'B' }], metric: 'conversion' });
 *   const variant = exp.assign(userId);            // the router does the same with stickyBucket/pickWeighted
 *   exp.recordAssignment(requestId, variant);      // as traffic is served
 *   exp.recordOutcome({ requestId, value: true }); // POST /api/experiments/checkout/outcomes
 *   exp.report();                                  // GET /api/experiments/checkout
 *
 * Two ways to keep peeking honest (option `mode`):
 * - 'sequential' (default): the mSPRT (see sequential.ts), updated after every outcome once both arms have
 *   minSamples; its p-value is the running minimum, valid whenever the report is read.
 * - 'fixed': one test when every variant (with a weight > 0) has `horizon` outcomes, on exactly the first `horizon`
 *   outcomes of each, so reading the report later (with more outcomes in the variant rows) never retests; nothing
 *   before.
 */
import { BadRequestError, NotFoundError, describe, pickWeighted, realClock, stickyBucket, type Clock } from '@shoal/core';
import { MeanAccumulator, RateAccumulator } from './accumulators.ts';
import { AssignmentTable } from './assignment-table.ts';
import { DuplicateOutcomeError } from './errors.ts';
import { compileExperimentOptions, type CompiledExperimentOptions, type ExperimentOptions } from './experiment-options.ts';
import {
  formatExperimentReport, type ComparisonReport, type ExperimentReport, type SampleSizeHint, type TestName, type VariantReport, type Verdict,
} from './experiment-report.ts';
import { powerForMean, powerForRate, sampleSizeForMean, sampleSizeForRate } from './sample-size.ts';
import { SequentialComparison } from './sequential.ts';
import { meanInterval, twoProportionZTest, welchTTest, wilsonInterval, type TestResult } from './stats.ts';

/** Longest request id taken: ids are table keys, and the table's memory bound assumes short ones. */
export const MAX_REQUEST_ID_CHARS = 256;

export interface ExperimentDeps {
  /** Wall time for assignment ages. @default realClock */
  clock?: Clock;
  /** Option path of name, variants and metric in errors. @default 'experiment' */
  path?: string;
  /** Option path of the other options in errors. @default path */
  tunablesPath?: string;
}

/** An outcome as callers report it. */
export interface OutcomeInput {
  requestId: string;
  /** 'conversion': true/false or 1/0. 'numeric': a finite number. */
  value: unknown;
}

/** What recordOutcome counted. */
export interface OutcomeReceipt {
  readonly requestId: string;
  readonly variant: string;
}

type Accumulator = RateAccumulator | MeanAccumulator;

interface Arm {
  readonly name: string;
  readonly weight: number;
  assigned: number;
  /** Every outcome counted. */
  readonly all: Accumulator;
  /** Fixed mode: the first `horizon` outcomes, which the one test uses. */
  readonly atHorizon: Accumulator | undefined;
}

export class Experiment {
  readonly options: CompiledExperimentOptions;
  /** The variants' names, the control first. */
  readonly variants: readonly string[];
  private readonly clock: Clock;
  private readonly arms: Arm[];
  private readonly weights: number[];
  private readonly byName = new Map<string, number>();
  private readonly table: AssignmentTable;
  /** Sequential mode: the mSPRT of variant i against the control at index i (index 0 unused). */
  private readonly sequential: (SequentialComparison | undefined)[];
  private readonly refused = { unknown: 0, expired: 0, duplicate: 0, invalid: 0 };

  constructor(options: ExperimentOptions, deps: ExperimentDeps = {}) {
    const path = deps.path ?? 'experiment';
    this.options = compileExperimentOptions(options, path, deps.tunablesPath ?? path);
    this.clock = deps.clock ?? realClock;
    const o = this.options;
    const make = (): Accumulator => (o.metric === 'conversion' ? new RateAccumulator() : new MeanAccumulator());
    this.arms = o.variants.map((v) => ({ name: v.name, weight: v.weight, assigned: 0, all: make(), atHorizon: o.mode === 'fixed' ? make() : undefined }));
    this.arms.forEach((a, i) => this.byName.set(a.name, i));
    this.variants = Object.freeze(this.arms.map((a) => a.name));
    this.weights = o.variants.map((v) => v.weight);
    this.table = new AssignmentTable(o.maxAssignments, o.assignmentTtlMs);
    this.sequential = this.arms.map((_, i) => (i > 0 && o.mode === 'sequential' ? new SequentialComparison(o.tau!, o.alpha) : undefined));
  }

  get name(): string {
    return this.options.name;
  }

  /** The variant of a sticky key (a user id): the same for the same key while the weights stay the same, in any process. */
  assign(key: string): string {
    if (typeof key !== 'string') throw new BadRequestError(`experiment "${this.name}": the sticky key must be a string (got ${typeof key})`);
    return this.arms[pickWeighted(this.weights, stickyBucket(this.name, key))]!.name;
  }

  /**
   * Remembers that a request went to a variant, so its outcome can be counted there. A request id seen before is
   * ignored (false); past maxAssignments the oldest id is forgotten. `at` is wall ms. @default clock.wallNow()
   */
  recordAssignment(requestId: string, variant: string, at: number = this.clock.wallNow()): boolean {
    this.checkRequestId(requestId);
    const index = this.byName.get(variant);
    if (index === undefined) {
      throw new BadRequestError(`experiment "${this.name}": no variant ${JSON.stringify(variant)} (variants: ${this.variants.join(', ')})`, { experiment: this.name, variant });
    }
    if (!Number.isFinite(at)) throw new BadRequestError(`experiment "${this.name}": assignment time must be finite wall ms (got ${at})`);
    if (!this.table.add(requestId, index, at, this.clock.wallNow())) return false;
    this.arms[index]!.assigned += 1;
    return true;
  }

  /**
   * Counts a request's outcome for the variant it was assigned. Throws BadRequestError for a value of the wrong
   * kind, NotFoundError for an id never assigned, forgotten or expired, DuplicateOutcomeError for a second outcome
   * (the first counts); nothing is counted then.
   */
  recordOutcome(outcome: OutcomeInput): OutcomeReceipt {
    // The HTTP API passes a parsed body: anything may arrive.
    if (typeof outcome !== 'object' || outcome === null) {
      throw new BadRequestError(`experiment "${this.name}": an outcome must be an object { requestId, value } (got ${describe(outcome)})`);
    }
    const { requestId, value } = outcome;
    this.checkRequestId(requestId);
    const x = this.outcomeValue(value, requestId);
    const now = this.clock.wallNow();
    const found = this.table.lookup(requestId, now);
    if (found.kind === 'unknown') {
      this.refused.unknown += 1;
      throw new NotFoundError(`experiment "${this.name}": no assignment for request id ${JSON.stringify(requestId)} (never assigned, or forgotten past maxAssignments=${this.options.maxAssignments})`);
    }
    if (found.kind === 'expired') {
      this.refused.expired += 1;
      throw new NotFoundError(`experiment "${this.name}": the assignment of request id ${JSON.stringify(requestId)} expired (${now - found.entry.at} ms old, assignmentTtlMs=${this.options.assignmentTtlMs})`);
    }
    const arm = this.arms[found.entry.variant]!;
    if (found.entry.outcome) {
      this.refused.duplicate += 1;
      throw new DuplicateOutcomeError(this.name, requestId, arm.name);
    }
    found.entry.outcome = true;
    addTo(arm.all, x);
    if (arm.atHorizon !== undefined && arm.atHorizon.n < this.options.horizon!) addTo(arm.atHorizon, x);
    this.observeSequential(found.entry.variant);
    return { requestId, variant: arm.name };
  }

  /** Per-variant counts, rates or means, and each variant against the control with its verdict. JSON-able. */
  report(): ExperimentReport {
    const o = this.options;
    return {
      name: o.name,
      metric: o.metric,
      mode: o.mode,
      alpha: o.alpha,
      minSamples: o.minSamples,
      horizon: o.horizon ?? null,
      tau: o.tau ?? null,
      correction: this.correction(),
      variants: this.arms.map((a) => this.variantReport(a)),
      comparisons: this.arms.slice(1).map((_, i) => this.comparison(i + 1)),
      sampleSize: this.sampleSizeHint(),
      bookkeeping: {
        tracked: this.table.size, maxAssignments: o.maxAssignments, evicted: this.table.evicted, expired: this.table.expired, refused: { ...this.refused },
      },
    };
  }

  /** The report as a text table for the CLI. */
  format(): string {
    return formatExperimentReport(this.report());
  }

  private checkRequestId(requestId: unknown): asserts requestId is string {
    if (typeof requestId !== 'string' || requestId.length === 0 || requestId.length > MAX_REQUEST_ID_CHARS) {
      throw new BadRequestError(`experiment "${this.name}": requestId must be a string of 1-${MAX_REQUEST_ID_CHARS} characters (got ${typeof requestId === 'string' ? `${requestId.length} characters` : typeof requestId})`);
    }
  }

  private outcomeValue(value: unknown, requestId: string): number {
    if (this.options.metric === 'conversion') {
      if (value === true || value === 1) return 1;
      if (value === false || value === 0) return 0;
      this.refused.invalid += 1;
      throw new BadRequestError(`experiment "${this.name}": a conversion outcome must be true, false, 1 or 0 (got ${describe(value)} for request id ${JSON.stringify(requestId)})`, { experiment: this.name, requestId });
    }
    if (typeof value === 'number' && Number.isFinite(value)) return value;
    this.refused.invalid += 1;
    throw new BadRequestError(`experiment "${this.name}": a numeric outcome must be a finite number (got ${describe(value)} for request id ${JSON.stringify(requestId)})`, { experiment: this.name, requestId });
  }

  private correction(): string {
    const o = this.options;
    return o.mode === 'fixed'
      ? `fixed horizon ${o.horizon!} per variant; verdict only at the horizon`
      : `sequential (mSPRT, tau=${o.tau!}), valid at any peek`;
  }

  /** After an outcome of variant `index`: the mSPRT updates of the comparisons it is part of. */
  private observeSequential(index: number): void {
    if (this.options.mode !== 'sequential') return;
    if (index > 0) {
      this.observeComparison(index);
      return;
    }
    for (let i = 1; i < this.arms.length; i++) this.observeComparison(i);
  }

  private observeComparison(i: number): void {
    const control = this.arms[0]!.all;
    const treatment = this.arms[i]!.all;
    if (control.n < this.options.minSamples || treatment.n < this.options.minSamples) return;
    const { difference, variance } = differenceAndVariance(control, treatment);
    this.sequential[i]!.observe(difference, variance);
  }

  private variantReport(arm: Arm): VariantReport {
    const base = { name: arm.name, weight: arm.weight, assigned: arm.assigned, outcomes: arm.all.n };
    if (arm.all instanceof RateAccumulator) {
      const has = arm.all.trials > 0;
      return { ...base, rate: has ? arm.all.rate : null, sd: has ? arm.all.sd : null, ci95: has ? wilsonInterval(arm.all.sample()) : null };
    }
    const has = arm.all.n > 0;
    return { ...base, mean: has ? arm.all.mean : null, sd: finiteOrNull(arm.all.sd), ci95: meanInterval(arm.all.sample()) };
  }

  private comparison(i: number): ComparisonReport {
    const o = this.options;
    const control = this.arms[0]!;
    const treatment = this.arms[i]!;
    const test: TestName = o.metric === 'conversion' ? 'two-proportion z' : 'welch t';
    const estimate = (c: Accumulator, t: Accumulator): { difference: number | null; relativeDifference: number | null } => {
      if (c.n === 0 || t.n === 0) return { difference: null, relativeDifference: null };
      const { difference } = differenceAndVariance(c, t);
      const base = valueOf(c);
      return { difference, relativeDifference: base === 0 ? null : finiteOrNull(difference / base) };
    };
    const common = { variant: treatment.name, control: control.name, ciLevel: 1 - o.alpha, test, correction: this.correction() };
    const noVerdict = (verdict: Verdict): ComparisonReport => ({ ...common, ...estimate(control.all, treatment.all), ci: null, pValue: null, verdict });

    if (control.all.n < o.minSamples || treatment.all.n < o.minSamples) return noVerdict('insufficient data (n < minSamples)');

    if (o.mode === 'fixed') {
      // A variant with weight 0 gets no traffic, so it would hold every verdict back for ever: only the others count.
      if (this.arms.some((a) => a.weight > 0 && a.atHorizon!.n < o.horizon!)) return noVerdict('waiting for horizon');
      const c = control.atHorizon!;
      const t = treatment.atHorizon!;
      const result: TestResult & { df?: number } = c instanceof RateAccumulator
        ? twoProportionZTest(c.sample(), (t as RateAccumulator).sample(), o.alpha)
        : welchTTest(c.sample(), (t as MeanAccumulator).sample(), o.alpha);
      return {
        ...common, ...estimate(c, t), ci: result.ci, pValue: result.pValue,
        ...(result.df === undefined ? {} : { df: result.df }), verdict: result.pValue <= o.alpha ? 'significant' : 'not significant',
      };
    }

    const seq = this.sequential[i]!;
    return { ...common, ...estimate(control.all, treatment.all), ci: seq.interval, pValue: seq.pValue, verdict: seq.significant ? 'significant' : 'not significant' };
  }

  private sampleSizeHint(): SampleSizeHint {
    const o = this.options;
    const common = { minEffect: o.minEffect ?? null, alpha: o.alpha, power: o.power };
    const control = this.arms[0]!.all;
    const withHorizon = (powerAtHorizon: number | null): { powerAtHorizon?: number | null } => (o.mode === 'fixed' ? { powerAtHorizon } : {});
    if (o.minEffect === undefined) return { ...common, perVariant: null, basis: 'set minEffect for a sample-size hint', ...withHorizon(null) };
    if (control instanceof RateAccumulator) {
      if (control.trials === 0) return { ...common, perVariant: null, basis: 'waiting for control outcomes (the estimate needs its rate)', ...withHorizon(null) };
      const p = control.rate;
      return {
        ...common, perVariant: sampleSizeForRate(p, o.minEffect, o.alpha, o.power), basis: `observed control rate ${Number(p.toPrecision(4))}`,
        ...withHorizon(o.horizon === undefined ? null : powerForRate(p, o.minEffect, o.alpha, o.horizon)),
      };
    }
    const sd = control.sd;
    if (!(sd > 0)) return { ...common, perVariant: null, basis: 'waiting for control outcomes with some spread (the estimate needs their sd)', ...withHorizon(null) };
    return {
      ...common, perVariant: sampleSizeForMean(sd, o.minEffect, o.alpha, o.power), basis: `observed control sd ${Number(sd.toPrecision(4))}`,
      ...withHorizon(o.horizon === undefined ? null : powerForMean(sd, o.minEffect, o.alpha, o.horizon)),
    };
  }
}

function addTo(acc: Accumulator, x: number): void {
  if (acc instanceof RateAccumulator) acc.add(x === 1);
  else acc.add(x);
}

function valueOf(acc: Accumulator): number {
  return acc instanceof RateAccumulator ? acc.rate : acc.mean;
}

/** Treatment minus control, and that difference's variance from each arm's own spread (σ1²/n1 + σ2²/n2). */
function differenceAndVariance(control: Accumulator, treatment: Accumulator): { difference: number; variance: number } {
  if (control instanceof RateAccumulator) {
    const t = treatment as RateAccumulator;
    const p1 = control.rate;
    const p2 = t.rate;
    return { difference: p2 - p1, variance: (p1 * (1 - p1)) / control.trials + (p2 * (1 - p2)) / t.trials };
  }
  const t = treatment as MeanAccumulator;
  return { difference: t.mean - control.mean, variance: control.variance / control.n + t.variance / t.n };
}

function finiteOrNull(x: number): number | null {
  return Number.isFinite(x) ? x : null;
}
