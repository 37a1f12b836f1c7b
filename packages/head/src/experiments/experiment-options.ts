/**
 * An A/B experiment's options: the documented input form, and the compiled form with every default filled in.
 * Compiled once, when the experiment is made; every error is an InvalidOptionError that names the option path.
 *
 *   compileExperimentOptions({ name: 'checkout', variants: [{ name: 'A' }, { name: 'B' }], metric: 'conversion' });
 *   // a rollout's experiment keeps the statistical options under `stats`, so their errors name that path:
 *   compileExperimentOptions({ name, variants, metric, ...stats }, 'rollout.experiment', 'rollout.experiment.stats');
 */
import { InvalidOptionError, checkInt, checkName } from '@shoal/core';

/** One arm of the experiment. The first variant is the control every other one is compared with. */
export interface VariantOptions {
  /** Unique within the experiment: letters, digits, _ . - (as deployment names). */
  name: string;
  /** Relative share of keys assigned to it (weights need not sum to 1 or 100); 0 assigns none. @default 1 */
  weight?: number;
}

export type MetricKind = 'conversion' | 'numeric';
export type ExperimentMode = 'fixed' | 'sequential';

export interface ExperimentOptions {
  /** The experiment's name: outcomes are reported to it, and it salts the sticky hash. */
  name: string;
  /** Two or more variants, the control first. */
  variants: VariantOptions[];
  /** 'conversion': each outcome is 0 or 1 (false or true); 'numeric': each is a finite number. */
  metric: MetricKind;
  /** Two-sided significance level of each comparison with the control (no correction across variants). @default 0.05 */
  alpha?: number;
  /** Power the sample-size hint is computed for. @default 0.8 */
  power?: number;
  /** Outcomes every compared variant needs before any verdict. @default 100 */
  minSamples?: number;
  /**
   * 'sequential': the mSPRT, valid however often the report is read. 'fixed': one test when every variant has
   * `horizon` outcomes, nothing before. @default 'sequential'
   */
  mode?: ExperimentMode;
  /** With mode 'fixed' (required there, and only there): outcomes per variant at which the one test is made. */
  horizon?: number;
  /**
   * Smallest absolute difference (treatment - control) worth detecting, in the metric's units (rate points for a
   * conversion: 0.01 is one percentage point). Sets the sample-size hint and the default tau. Required for a numeric
   * metric in sequential mode unless tau is given. @default 0.01 for 'conversion'; none for 'numeric'
   */
  minEffect?: number;
  /** With mode 'sequential': the standard deviation of the mSPRT's normal mixture over the difference. @default minEffect */
  tau?: number;
  /** Request ids remembered between their assignment and their outcome; past it, the oldest is forgotten. @default 1,000,000 */
  maxAssignments?: number;
  /** How long an assignment waits for its outcome; later, the outcome is refused as expired. @default 7 days */
  assignmentTtlMs?: number;
}

export interface CompiledVariant {
  readonly name: string;
  readonly weight: number;
}

export interface CompiledExperimentOptions {
  readonly name: string;
  readonly variants: readonly CompiledVariant[];
  readonly metric: MetricKind;
  readonly alpha: number;
  readonly power: number;
  readonly minSamples: number;
  readonly mode: ExperimentMode;
  /** Set with mode 'fixed', undefined with 'sequential'. */
  readonly horizon: number | undefined;
  readonly minEffect: number | undefined;
  /** Set with mode 'sequential', undefined with 'fixed'. */
  readonly tau: number | undefined;
  readonly maxAssignments: number;
  readonly assignmentTtlMs: number;
}

/** Variants an experiment may have: each one is another comparison, and another table row. */
export const MAX_VARIANTS = 16;
export const DEFAULT_ALPHA = 0.05;
export const DEFAULT_POWER = 0.8;
export const DEFAULT_MIN_SAMPLES = 100;
export const DEFAULT_CONVERSION_MIN_EFFECT = 0.01;
export const DEFAULT_MAX_ASSIGNMENTS = 1_000_000;
export const DEFAULT_ASSIGNMENT_TTL_MS = 7 * 24 * 3600 * 1000;

const IDENTITY_KEYS = ['name', 'variants', 'metric'];
const TUNABLE_KEYS = ['alpha', 'power', 'minSamples', 'mode', 'horizon', 'minEffect', 'tau', 'maxAssignments', 'assignmentTtlMs'];

/** A finite number in the open interval (lo, hi), or the fallback when undefined. */
function openInterval<F extends number | undefined>(path: string, value: unknown, lo: number, hi: number, fallback: F): number | F {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new InvalidOptionError(path, 'must be a finite number', value);
  if (!(value > lo && value < hi)) throw new InvalidOptionError(path, `must be > ${lo} and < ${hi}`, value);
  return value;
}

function compileVariants(path: string, input: unknown): CompiledVariant[] {
  if (!Array.isArray(input)) throw new InvalidOptionError(path, 'must be an array of { name, weight? }, the control first', input);
  if (input.length < 2 || input.length > MAX_VARIANTS) throw new InvalidOptionError(path, `must have 2 to ${MAX_VARIANTS} variants`, input);
  const seen = new Set<string>();
  const variants = input.map((v: unknown, i): CompiledVariant => {
    const p = `${path}[${i}]`;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new InvalidOptionError(p, 'must be an object { name, weight? }', v);
    for (const k of Object.keys(v)) if (k !== 'name' && k !== 'weight') throw new InvalidOptionError(`${p}.${k}`, 'is not an option here (name, weight)');
    const { name, weight } = v as { name?: unknown; weight?: unknown };
    const n = checkName(`${p}.name`, name);
    if (seen.has(n)) throw new InvalidOptionError(`${p}.name`, 'is the name of an earlier variant', n);
    seen.add(n);
    if (weight !== undefined && (typeof weight !== 'number' || !Number.isFinite(weight) || weight < 0)) {
      throw new InvalidOptionError(`${p}.weight`, 'must be a finite number >= 0', weight);
    }
    return { name: n, weight: weight ?? 1 };
  });
  if (!variants.some((v) => v.weight > 0)) throw new InvalidOptionError(path, 'needs a variant with a weight > 0 (every weight is 0)');
  return variants;
}

/**
 * Fills in the defaults and checks every option. `path` names name, variants and metric in errors; `tunablesPath`
 * (default `path`) names the others, for callers that keep them in a sub-object.
 */
export function compileExperimentOptions(input: unknown, path = 'experiment', tunablesPath = path): CompiledExperimentOptions {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) throw new InvalidOptionError(path, 'must be an object', input);
  const o = input as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (!IDENTITY_KEYS.includes(k) && !TUNABLE_KEYS.includes(k)) {
      throw new InvalidOptionError(`${tunablesPath}.${k}`, `is not an option (${[...IDENTITY_KEYS, ...TUNABLE_KEYS].join(', ')})`);
    }
  }
  const t = (key: string): string => `${tunablesPath}.${key}`;
  const name = checkName(`${path}.name`, o.name);
  const variants = compileVariants(`${path}.variants`, o.variants);
  if (o.metric !== 'conversion' && o.metric !== 'numeric') throw new InvalidOptionError(`${path}.metric`, "must be 'conversion' or 'numeric'", o.metric);
  const metric: MetricKind = o.metric;

  const alpha = openInterval(t('alpha'), o.alpha, 0, 1, DEFAULT_ALPHA);
  if (alpha > 0.5) throw new InvalidOptionError(t('alpha'), 'must be <= 0.5 (a two-sided level above it rejects more often than chance)', alpha);
  const power = openInterval(t('power'), o.power, 0, 1, DEFAULT_POWER);
  // Welch's test needs two outcomes per variant, so the floor is 2.
  const minSamples = checkInt(t('minSamples'), o.minSamples, 2, DEFAULT_MIN_SAMPLES);

  if (o.mode !== undefined && o.mode !== 'fixed' && o.mode !== 'sequential') throw new InvalidOptionError(t('mode'), "must be 'fixed' or 'sequential'", o.mode);
  const mode: ExperimentMode = (o.mode as ExperimentMode | undefined) ?? 'sequential';

  let horizon: number | undefined;
  if (mode === 'fixed') {
    if (o.horizon === undefined) throw new InvalidOptionError(t('horizon'), "is required with mode 'fixed': the outcomes per variant at which the one test is made");
    horizon = checkInt(t('horizon'), o.horizon, 2, 0);
    if (horizon < minSamples) throw new InvalidOptionError(t('horizon'), `must be >= minSamples (${minSamples}); lower minSamples with it`, horizon);
    if (o.tau !== undefined) throw new InvalidOptionError(t('tau'), "is the sequential test's mixture and has no meaning with mode 'fixed'", o.tau);
  } else if (o.horizon !== undefined) {
    throw new InvalidOptionError(t('horizon'), "is only for mode 'fixed' (a sequential experiment has no horizon)", o.horizon);
  }

  const minEffect = metric === 'conversion'
    ? openInterval(t('minEffect'), o.minEffect, 0, 1, DEFAULT_CONVERSION_MIN_EFFECT)
    : openInterval(t('minEffect'), o.minEffect, 0, Number.POSITIVE_INFINITY, undefined);

  let tau: number | undefined;
  if (mode === 'sequential') {
    tau = openInterval(t('tau'), o.tau, 0, Number.POSITIVE_INFINITY, minEffect);
    if (tau === undefined) {
      throw new InvalidOptionError(t('minEffect'), "is required for a numeric metric in mode 'sequential' (tau defaults to it), unless tau is given");
    }
  }

  const maxAssignments = checkInt(t('maxAssignments'), o.maxAssignments, 1, DEFAULT_MAX_ASSIGNMENTS, 100_000_000);
  const assignmentTtlMs = openInterval(t('assignmentTtlMs'), o.assignmentTtlMs, 0, Number.POSITIVE_INFINITY, DEFAULT_ASSIGNMENT_TTL_MS);

  return { name, variants, metric, alpha, power, minSamples, mode, horizon, minEffect, tau, maxAssignments, assignmentTtlMs };
}
