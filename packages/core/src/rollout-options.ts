/**
 * How a deployment's new version replaces the old one: a rolling update bounded by maxSurge and maxUnavailable,
 * optionally preceded by a shadow phase (mirrored traffic, answers compared) and a canary (a share of live traffic,
 * promoted in steps, rolled back on worse errors or latency), or held as an A/B experiment between the two.
 *
 *   deployment(Model, { numReplicas: 4, rollout: { maxSurge: 1, canary: { steps: [10, 50], minRequests: 200 } } })
 */
import { InvalidOptionError } from './errors.ts';

export interface ShadowOptions {
  /** Share of live requests mirrored to the new version, in percent (0, 100]. @default 100 */
  percent?: number;
  /** Compared answers needed before the shadow phase may end. @default 100 */
  minComparisons?: number;
  /** Shortest time the shadow phase lasts. @default 0 */
  minDurationMs?: number;
  /** Lowest share of answers that must agree (labels and structure) for the phase to pass, in [0, 1]. @default none */
  minAgreement?: number;
  /** Largest mean absolute difference of numbers (tensors) allowed for the phase to pass. @default none */
  maxMeanAbsDiff?: number;
  /** Largest absolute difference of any number allowed for the phase to pass. @default none */
  maxAbsDiff?: number;
  /** Largest share of requests the shadow may fail where the live version answered. @default 0.01 */
  maxErrorRate?: number;
}

export interface CanaryOptions {
  /** Shares of live traffic (percent, increasing, each in (0, 100]) the new version gets, step by step. @default [10, 50] */
  steps?: number[];
  /** Shortest time a step lasts before the next. @default 30000 */
  stepIntervalMs?: number;
  /** Requests the canary must have answered in a step before it is judged. @default 100 */
  minRequests?: number;
  /** Rolled back when its error rate exceeds the stable version's by more than this (absolute, 0.01 = 1 point). @default 0.01 */
  maxErrorRateIncrease?: number;
  /** Rolled back when its p99 latency exceeds the stable version's by more than this share (0.5 = 1.5x). @default 0.5 */
  maxP99Increase?: number;
  /** p99 latencies both under this are not compared (noise at the bucket resolution). @default 5 */
  p99FloorMs?: number;
}

export interface ExperimentRolloutOptions {
  /** The experiment's name (outcomes are reported to it). @default '<app>.<deployment>' */
  name?: string;
  /** Request header whose value is the sticky key (hashed to a variant). @default 'x-user-id' */
  header?: string;
  /** Share of keys assigned to the new version (variant B), in percent (0, 100). @default 50 */
  percent?: number;
  /** The outcome callers report: 'conversion' (0 or 1) or 'numeric'. @default 'conversion' */
  metric?: 'conversion' | 'numeric';
  /** Statistical options checked by the head's experiment (alpha, minSamples, mode, horizon...). @default its defaults */
  stats?: Record<string, unknown>;
}

export interface RolloutOptions {
  /** Replicas of the new version a rolling update may run above the count: a number, or a percent of it ('25%', rounded up). @default '25%' */
  maxSurge?: number | string;
  /** Replicas a rolling update may take below the count: a number, or a percent ('25%', rounded down). @default 0 */
  maxUnavailable?: number | string;
  /** Failed starts or health checks of the new version after which the rollout stops and the old version stays. @default 3 */
  maxFailures?: number;
  /** Mirror traffic to the new version first, callers never see its answers. @default none */
  shadow?: ShadowOptions;
  /** Give the new version a growing share of live traffic, judged against the stable one at each step. @default none */
  canary?: CanaryOptions;
  /** Keep both versions live, split by a sticky key, until an operator promotes or rolls back. @default none */
  experiment?: ExperimentRolloutOptions;
}

export interface CompiledShadow { percent: number; minComparisons: number; minDurationMs: number; minAgreement: number | undefined; maxMeanAbsDiff: number | undefined; maxAbsDiff: number | undefined; maxErrorRate: number }
export interface CompiledCanary { steps: number[]; stepIntervalMs: number; minRequests: number; maxErrorRateIncrease: number; maxP99Increase: number; p99FloorMs: number }
export interface CompiledExperimentRollout { name: string | undefined; header: string; percent: number; metric: 'conversion' | 'numeric'; stats: Record<string, unknown> }
export interface CompiledRollout {
  maxSurge: number | string;
  maxUnavailable: number | string;
  maxFailures: number;
  shadow: CompiledShadow | undefined;
  canary: CompiledCanary | undefined;
  experiment: CompiledExperimentRollout | undefined;
}

function obj(path: string, value: unknown, keys: readonly string[]): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new InvalidOptionError(path, 'must be an object', value);
  for (const k of Object.keys(value)) if (!keys.includes(k)) throw new InvalidOptionError(`${path}.${k}`, `is not an option here (${keys.join(', ')})`);
  return value as Record<string, unknown>;
}

function num(path: string, v: unknown, fallback: number | undefined, min: number, max: number, opts: { int?: boolean; minOpen?: boolean } = {}): number | undefined {
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || (opts.int === true && !Number.isInteger(v))) throw new InvalidOptionError(path, opts.int === true ? 'must be an integer' : 'must be a finite number', v);
  if (opts.minOpen === true ? v <= min : v < min) throw new InvalidOptionError(path, `must be ${opts.minOpen === true ? '>' : '>='} ${min}`, v);
  if (v > max) throw new InvalidOptionError(path, `must be <= ${max}`, v);
  return v;
}

/** A count or a percent string ('25%'), kept as given; resolved against a replica count by resolveCount(). */
function countOrPercent(path: string, v: unknown, fallback: number | string): number | string {
  if (v === undefined) return fallback;
  if (typeof v === 'number') return num(path, v, 0, 0, 10_000, { int: true })!;
  if (typeof v === 'string' && /^\d{1,3}%$/.test(v) && Number(v.slice(0, -1)) <= 100) return v;
  throw new InvalidOptionError(path, "must be a whole number of replicas or a percent such as '25%'", v);
}

/** maxSurge (rounded up) or maxUnavailable (rounded down) of `n` replicas. */
export function resolveCount(value: number | string, n: number, round: 'up' | 'down'): number {
  if (typeof value === 'number') return value;
  const share = (Number(value.slice(0, -1)) / 100) * n;
  return round === 'up' ? Math.ceil(share) : Math.floor(share);
}

const HEADER_RE = /^[a-z0-9!#$%&'*+.^_`|~-]{1,64}$/;

export function compileRollout(input: unknown, path: string): CompiledRollout {
  const r = obj(path, input ?? {}, ['maxSurge', 'maxUnavailable', 'maxFailures', 'shadow', 'canary', 'experiment']);
  const maxSurge = countOrPercent(`${path}.maxSurge`, r.maxSurge, '25%');
  const maxUnavailable = countOrPercent(`${path}.maxUnavailable`, r.maxUnavailable, 0);
  if ((maxSurge === 0 || maxSurge === '0%') && (maxUnavailable === 0 || maxUnavailable === '0%')) {
    throw new InvalidOptionError(`${path}.maxSurge`, 'and maxUnavailable cannot both be 0: a rolling update could then neither add nor remove a replica', maxSurge);
  }
  let shadow: CompiledShadow | undefined;
  if (r.shadow !== undefined) {
    const p = `${path}.shadow`;
    const s = obj(p, r.shadow, ['percent', 'minComparisons', 'minDurationMs', 'minAgreement', 'maxMeanAbsDiff', 'maxAbsDiff', 'maxErrorRate']);
    shadow = {
      percent: num(`${p}.percent`, s.percent, 100, 0, 100, { minOpen: true })!,
      minComparisons: num(`${p}.minComparisons`, s.minComparisons, 100, 0, 1e9, { int: true })!,
      minDurationMs: num(`${p}.minDurationMs`, s.minDurationMs, 0, 0, 1e9, { int: true })!,
      minAgreement: num(`${p}.minAgreement`, s.minAgreement, undefined, 0, 1),
      maxMeanAbsDiff: num(`${p}.maxMeanAbsDiff`, s.maxMeanAbsDiff, undefined, 0, Number.MAX_VALUE),
      maxAbsDiff: num(`${p}.maxAbsDiff`, s.maxAbsDiff, undefined, 0, Number.MAX_VALUE),
      maxErrorRate: num(`${p}.maxErrorRate`, s.maxErrorRate, 0.01, 0, 1)!,
    };
  }
  let canary: CompiledCanary | undefined;
  if (r.canary !== undefined) {
    const p = `${path}.canary`;
    const c = obj(p, r.canary, ['steps', 'stepIntervalMs', 'minRequests', 'maxErrorRateIncrease', 'maxP99Increase', 'p99FloorMs']);
    let steps = [10, 50];
    if (c.steps !== undefined) {
      if (!Array.isArray(c.steps) || c.steps.length === 0) throw new InvalidOptionError(`${p}.steps`, 'must be a non-empty array of percents', c.steps);
      steps = c.steps.map((v: unknown, i) => num(`${p}.steps[${i}]`, v, undefined, 0, 100, { minOpen: true })!);
      steps.forEach((v, i) => { if (i > 0 && v <= steps[i - 1]!) throw new InvalidOptionError(`${p}.steps[${i}]`, `must be above the step before it (${steps[i - 1]})`, v); });
    }
    canary = {
      steps,
      stepIntervalMs: num(`${p}.stepIntervalMs`, c.stepIntervalMs, 30_000, 0, 1e9, { int: true })!,
      minRequests: num(`${p}.minRequests`, c.minRequests, 100, 1, 1e9, { int: true })!,
      maxErrorRateIncrease: num(`${p}.maxErrorRateIncrease`, c.maxErrorRateIncrease, 0.01, 0, 1)!,
      maxP99Increase: num(`${p}.maxP99Increase`, c.maxP99Increase, 0.5, 0, 1e6)!,
      p99FloorMs: num(`${p}.p99FloorMs`, c.p99FloorMs, 5, 0, 1e9)!,
    };
  }
  let experiment: CompiledExperimentRollout | undefined;
  if (r.experiment !== undefined) {
    const p = `${path}.experiment`;
    if (shadow !== undefined || canary !== undefined) throw new InvalidOptionError(p, 'cannot be combined with shadow or canary: an experiment holds both versions live until an operator decides');
    const e = obj(p, r.experiment, ['name', 'header', 'percent', 'metric', 'stats']);
    if (e.name !== undefined && (typeof e.name !== 'string' || !/^[A-Za-z0-9_.-]{1,128}$/.test(e.name))) throw new InvalidOptionError(`${p}.name`, 'must be 1-128 letters, digits, _ . -', e.name);
    const header = e.header ?? 'x-user-id';
    if (typeof header !== 'string' || !HEADER_RE.test(header.toLowerCase())) throw new InvalidOptionError(`${p}.header`, 'must be an HTTP header name', header);
    if (e.metric !== undefined && e.metric !== 'conversion' && e.metric !== 'numeric') throw new InvalidOptionError(`${p}.metric`, "must be 'conversion' or 'numeric'", e.metric);
    if (e.stats !== undefined && (typeof e.stats !== 'object' || e.stats === null || Array.isArray(e.stats))) throw new InvalidOptionError(`${p}.stats`, 'must be an object', e.stats);
    const percent = num(`${p}.percent`, e.percent, 50, 0, 100, { minOpen: true })!;
    if (percent >= 100) throw new InvalidOptionError(`${p}.percent`, 'must be below 100 (both variants need traffic)', percent);
    experiment = { name: e.name as string | undefined, header: header.toLowerCase(), percent, metric: (e.metric as 'conversion' | 'numeric' | undefined) ?? 'conversion', stats: (e.stats as Record<string, unknown> | undefined) ?? {} };
  }
  return { maxSurge, maxUnavailable, maxFailures: num(`${path}.maxFailures`, r.maxFailures, 3, 1, 1000, { int: true })!, shadow, canary, experiment };
}
