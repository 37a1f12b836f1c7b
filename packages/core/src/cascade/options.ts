/**
 * Options of a cascade: the documented input form, and the compiled form with defaults filled in. Compiled once,
 * when the cascade is declared; every error names the option (`cascade.threshold`).
 */
import { Application, LIFECYCLE_HOOKS } from '../deployment.ts';
import { InvalidOptionError } from '../errors.ts';
import { checkInt, checkName, type DeploymentOptions } from '../options.ts';
import { realClock, type Clock } from '../clock.ts';

/** Why a request went on to the large model. */
export type EscalationReason = 'low_confidence' | 'small_error' | 'invalid_confidence';

/** What the cascade does when the small model's call fails. */
export type SmallErrorPolicy = 'escalate' | 'fail';

export interface CascadeOptions<A extends readonly unknown[] = unknown[], SR = unknown, LR = unknown, E extends boolean = boolean> {
  /** Name of the generated deployment (the cascade's ingress). @default 'cascade' */
  name?: string;
  /** The small (cheap) model, asked first: a bound deployment. */
  small: Application;
  /** The large model, asked when the small one is not confident enough: a bound deployment. */
  large: Application;
  /** Method the cascade calls on both models, and the name of the generated deployment's own method. */
  method: string;
  /** The small model's confidence in its answer, a number in `confidenceRange`. Called with the call's arguments too. */
  confidence: (answer: SR, ...args: A) => number;
  /** The small answer is returned when its confidence is at least this; below it, the large model is asked. */
  threshold: number;
  /** The range confidence values lie in (inclusive); threshold must lie in it too. @default [0, 1] */
  confidenceRange?: readonly [number, number];
  /**
   * Share of the small model's confident answers also asked of the large model in the background (never delaying
   * the caller) and compared with `agree`: the small model's accuracy against the large one. In [0, 1]. @default 0
   */
  auditSampleRate?: number;
  /**
   * Whether two answers agree (same label, say). Required when auditSampleRate > 0. When given, escalations for low
   * confidence are compared too (both answers are at hand, at no extra cost). @default undefined
   */
  agree?: (small: SR, large: LR, ...args: A) => boolean;
  /**
   * A failed small-model call: 'escalate' asks the large model instead (unless the caller's request was cancelled or
   * is past its deadline, which fails at once), 'fail' fails the call with the small model's error. @default 'escalate'
   */
  onSmallError?: SmallErrorPolicy;
  /**
   * Deadline of a small-model call, in ms; past it the call counts as a small-model error (and so escalates under
   * 'escalate'). 0 = only the caller's deadline. @default 0
   */
  smallTimeoutMs?: number;
  /**
   * Return `{ answer, model, confidence, escalation }` (a CascadeAnswer) instead of the bare answer, so the caller
   * sees which model answered. HTTP answers always carry the x-shoal-cascade-model header. @default false
   */
  envelope?: E;
  /** Deadline of a background audit call to the large model, in ms. @default 30000 */
  auditTimeoutMs?: number;
  /** Audits one replica runs at once; an audit sampled past it is skipped, counted as lost (busy). @default 8 */
  maxConcurrentAudits?: number;
  /** Options of the generated deployment (replicas, resources, timeouts, ...); its name is `name`. @default {} */
  deployment?: Omit<DeploymentOptions, 'name'>;
  /** Source of the audit sampling's random numbers in [0, 1) (a seeded one in tests). @default Math.random */
  random?: () => number;
  /** Where latencies are measured (a FakeClock in tests). @default realClock */
  clock?: Clock;
}

export interface CompiledCascadeOptions {
  name: string;
  method: string;
  confidence: (answer: unknown, ...args: unknown[]) => number;
  threshold: number;
  confidenceRange: readonly [number, number];
  auditSampleRate: number;
  agree: ((small: unknown, large: unknown, ...args: unknown[]) => boolean) | undefined;
  onSmallError: SmallErrorPolicy;
  smallTimeoutMs: number;
  envelope: boolean;
  auditTimeoutMs: number;
  maxConcurrentAudits: number;
  deployment: Omit<DeploymentOptions, 'name'>;
  random: () => number;
  clock: Clock;
}

const KNOWN = new Set([
  'name', 'small', 'large', 'method', 'confidence', 'threshold', 'confidenceRange', 'auditSampleRate', 'agree', 'onSmallError',
  'smallTimeoutMs', 'envelope', 'auditTimeoutMs', 'maxConcurrentAudits', 'deployment', 'random', 'clock',
]);

/** Methods the generated deployment defines itself, so `method` cannot take their names. */
export const CASCADE_OWN_METHODS: readonly string[] = ['fetch', 'cascadeStats'];

function checkFunction<F>(path: string, value: unknown, required: boolean): F | undefined {
  if (value === undefined && !required) return undefined;
  if (typeof value !== 'function') throw new InvalidOptionError(path, required ? 'is required: a function' : 'must be a function', value);
  return value as F;
}

function checkFinite(path: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new InvalidOptionError(path, 'must be a finite number', value);
  return value;
}

function checkRange(path: string, value: unknown): readonly [number, number] {
  if (value === undefined) return [0, 1];
  if (!Array.isArray(value) || value.length !== 2) throw new InvalidOptionError(path, 'must be [min, max]', value);
  const min = checkFinite(`${path}[0]`, value[0]);
  const max = checkFinite(`${path}[1]`, value[1]);
  if (min >= max) throw new InvalidOptionError(path, `must have min < max (min=${min}, max=${max})`, value);
  return [min, max];
}

function checkRate(path: string, value: unknown): number {
  if (value === undefined) return 0;
  const rate = checkFinite(path, value);
  if (rate < 0 || rate > 1) throw new InvalidOptionError(path, 'must be between 0 and 1', rate);
  return rate;
}

function checkApplication(path: string, value: unknown): Application {
  if (!Application.isApplication(value)) throw new InvalidOptionError(path, 'must be a bound deployment (call .bind() on it)', value);
  return value;
}

export function compileCascadeOptions(input: CascadeOptions, path = 'cascade'): CompiledCascadeOptions {
  if (typeof input !== 'object' || input === null) throw new InvalidOptionError(path, 'must be an object', input);
  for (const key of Object.keys(input)) if (!KNOWN.has(key)) throw new InvalidOptionError(`${path}.${key}`, 'is not a cascade option');
  const name = checkName(`${path}.name`, input.name ?? 'cascade');
  const small = checkApplication(`${path}.small`, input.small);
  const large = checkApplication(`${path}.large`, input.large);
  for (const [which, app] of [['small', small], ['large', large]] as const) {
    if (app.deployment.options.name === name) throw new InvalidOptionError(`${path}.name`, `is the name of the ${which} deployment too; give the cascade another name`, name);
  }
  const method = checkName(`${path}.method`, input.method);
  if (method.startsWith('_') || LIFECYCLE_HOOKS.includes(method) || CASCADE_OWN_METHODS.includes(method)) {
    throw new InvalidOptionError(`${path}.method`, `cannot be a lifecycle hook, start with _, or be one of the cascade's own methods (${CASCADE_OWN_METHODS.join(', ')})`, method);
  }
  const confidence = checkFunction<CompiledCascadeOptions['confidence']>(`${path}.confidence`, input.confidence, true)!;
  const confidenceRange = checkRange(`${path}.confidenceRange`, input.confidenceRange);
  if (input.threshold === undefined) throw new InvalidOptionError(`${path}.threshold`, 'is required: the confidence from which the small answer is kept');
  const threshold = checkFinite(`${path}.threshold`, input.threshold);
  if (threshold < confidenceRange[0] || threshold > confidenceRange[1]) {
    throw new InvalidOptionError(`${path}.threshold`, `must be within confidenceRange [${confidenceRange[0]}, ${confidenceRange[1]}]`, threshold);
  }
  const auditSampleRate = checkRate(`${path}.auditSampleRate`, input.auditSampleRate);
  const agree = checkFunction<NonNullable<CompiledCascadeOptions['agree']>>(`${path}.agree`, input.agree, auditSampleRate > 0);
  const onSmallError = input.onSmallError ?? 'escalate';
  if (onSmallError !== 'escalate' && onSmallError !== 'fail') throw new InvalidOptionError(`${path}.onSmallError`, "must be 'escalate' or 'fail'", onSmallError);
  if (input.envelope !== undefined && typeof input.envelope !== 'boolean') throw new InvalidOptionError(`${path}.envelope`, 'must be a boolean', input.envelope);
  const deployment = input.deployment ?? {};
  if (typeof deployment !== 'object' || deployment === null) throw new InvalidOptionError(`${path}.deployment`, 'must be an object', deployment);
  if ('name' in deployment) throw new InvalidOptionError(`${path}.deployment.name`, `is set by ${path}.name`, (deployment as { name?: unknown }).name);
  if ('multiplex' in deployment) throw new InvalidOptionError(`${path}.deployment.multiplex`, 'does not apply: a cascade loads no models of its own (multiplex the small or large deployment)');
  const clock = input.clock ?? realClock;
  if (typeof clock !== 'object' || clock === null || typeof clock.monoNow !== 'function') throw new InvalidOptionError(`${path}.clock`, 'must be a Clock', clock);
  return {
    name,
    method,
    confidence,
    threshold,
    confidenceRange,
    auditSampleRate,
    agree,
    onSmallError,
    smallTimeoutMs: checkInt(`${path}.smallTimeoutMs`, input.smallTimeoutMs, 0, 0),
    envelope: input.envelope ?? false,
    auditTimeoutMs: checkInt(`${path}.auditTimeoutMs`, input.auditTimeoutMs, 1, 30_000),
    maxConcurrentAudits: checkInt(`${path}.maxConcurrentAudits`, input.maxConcurrentAudits, 1, 8),
    deployment,
    random: checkFunction<() => number>(`${path}.random`, input.random, false) ?? Math.random,
    clock,
  };
}
