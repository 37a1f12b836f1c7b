/**
 * Service level objectives of a deployment: latency objectives ("p99: 200": 99% of requests answer within 200 ms)
 * and an availability objective (0.999: at most 0.1% of requests fail), judged over a compliance period. The head
 * computes attainment, error budget and burn rates from the replicas' heartbeats (docs/slo.md).
 *
 *   deployment(Model, { slo: { latency: { p99: 200, p50: 20 }, availability: 0.999, window: '30d' } })
 */
import { InvalidOptionError } from './errors.ts';
import { bucketUpperMs, LATENCY_BUCKETS } from './latency-histogram.ts';

/** The latency objectives a deployment may declare, and the share of requests each one promises. */
export const LATENCY_OBJECTIVES = { p50: 0.5, p95: 0.95, p99: 0.99, p999: 0.999 } as const;
export type LatencyObjectiveName = keyof typeof LATENCY_OBJECTIVES;
export type SloObjectiveName = LatencyObjectiveName | 'availability';

export interface SloLatencyOptions {
  /** Half of the requests answer within this many ms. @default none */
  p50?: number;
  /** 95% of the requests answer within this many ms. @default none */
  p95?: number;
  /** 99% of the requests answer within this many ms. @default none */
  p99?: number;
  /** 99.9% of the requests answer within this many ms. @default none */
  p999?: number;
}

export interface SloOptions {
  /** Latency objectives, in ms, measured at the replica from a request's arrival to its answer. @default none */
  latency?: SloLatencyOptions;
  /** Share of requests that must succeed (not thrown, not HTTP 5xx), in (0, 1): 0.999 lets 0.1% fail. @default none */
  availability?: number;
  /** The compliance period the error budget spans: ms, or a string such as '30d', '12h', '90m'. @default '30d' */
  window?: number | string;
  /** The compliance period in ms (the compiled form's field; give `window` or this, not both). @default 30 days */
  windowMs?: number;
}

/** Every SLO option validated; the period in ms. A valid input form too, so it recompiles to itself. */
export interface CompiledSlo {
  latency: SloLatencyOptions;
  availability?: number;
  windowMs: number;
}

const DAY_MS = 86_400_000;
/** The default compliance period. */
export const DEFAULT_SLO_WINDOW_MS = 30 * DAY_MS;
/** The shortest compliance period: the burn rate's long window (1 h) must fit in it. */
const MIN_WINDOW_MS = 3_600_000;
/** The longest compliance period. */
const MAX_WINDOW_MS = 400 * DAY_MS;
/** Thresholds are judged on the latency histogram's bucket edges: below its first, nothing could be good. */
const MIN_THRESHOLD_MS = bucketUpperMs(0);
/** Past the last bounded bucket every threshold means the same edge. */
const MAX_THRESHOLD_MS = Math.floor(bucketUpperMs(LATENCY_BUCKETS - 2));
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: DAY_MS };

function parseWindow(path: string, v: unknown): number {
  let ms: number;
  if (typeof v === 'number') ms = v;
  else if (typeof v === 'string') {
    const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(v.trim());
    if (m === null) throw new InvalidOptionError(path, "must be ms or a duration such as '30d', '12h', '90m'", v);
    ms = Number(m[1]) * UNIT_MS[m[2]!]!;
  } else throw new InvalidOptionError(path, "must be ms or a duration such as '30d', '12h', '90m'", v);
  if (!Number.isFinite(ms)) throw new InvalidOptionError(path, 'must be a finite duration', v);
  if (ms < MIN_WINDOW_MS) throw new InvalidOptionError(path, `must be at least 1h (${MIN_WINDOW_MS} ms): the 1 h burn-rate window must fit in the compliance period`, v);
  if (ms > MAX_WINDOW_MS) throw new InvalidOptionError(path, `must be at most 400d (${MAX_WINDOW_MS} ms)`, v);
  return Math.round(ms);
}

export function compileSlo(input: unknown, path: string): CompiledSlo {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) throw new InvalidOptionError(path, 'must be an object', input);
  const keys = ['latency', 'availability', 'window', 'windowMs'];
  for (const k of Object.keys(input)) if (!keys.includes(k)) throw new InvalidOptionError(`${path}.${k}`, `is not an SLO option (${keys.join(', ')})`);
  const s = input as SloOptions;
  const latency: SloLatencyOptions = {};
  if (s.latency !== undefined) {
    const lp = `${path}.latency`;
    if (typeof s.latency !== 'object' || s.latency === null || Array.isArray(s.latency)) throw new InvalidOptionError(lp, 'must be an object of objectives in ms, e.g. { p99: 200 }', s.latency);
    for (const [k, v] of Object.entries(s.latency)) {
      if (!(k in LATENCY_OBJECTIVES)) throw new InvalidOptionError(`${lp}.${k}`, `is not a latency objective (${Object.keys(LATENCY_OBJECTIVES).join(', ')})`);
      if (v === undefined) continue;
      if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new InvalidOptionError(`${lp}.${k}`, 'must be a positive number of milliseconds', v);
      if (v < MIN_THRESHOLD_MS) throw new InvalidOptionError(`${lp}.${k}`, `must be at least ${MIN_THRESHOLD_MS} ms (the latency histogram's first bucket)`, v);
      if (v > MAX_THRESHOLD_MS) throw new InvalidOptionError(`${lp}.${k}`, `must be at most ${MAX_THRESHOLD_MS} ms (the latency histogram's last bounded bucket)`, v);
      latency[k as LatencyObjectiveName] = v;
    }
  }
  const out: CompiledSlo = { latency, windowMs: DEFAULT_SLO_WINDOW_MS };
  if (s.availability !== undefined) {
    const a = s.availability;
    if (typeof a !== 'number' || !Number.isFinite(a) || a <= 0 || a >= 1) throw new InvalidOptionError(`${path}.availability`, 'must be a fraction strictly between 0 and 1 (0.999: 0.1% of requests may fail)', a);
    out.availability = a;
  }
  if (s.window !== undefined && s.windowMs !== undefined) throw new InvalidOptionError(`${path}.window`, 'and windowMs name the same period: give one', s.window);
  if (s.window !== undefined) out.windowMs = parseWindow(`${path}.window`, s.window);
  if (s.windowMs !== undefined) {
    if (typeof s.windowMs !== 'number') throw new InvalidOptionError(`${path}.windowMs`, "must be a number of ms (or give window: '30d')", s.windowMs);
    out.windowMs = parseWindow(`${path}.windowMs`, s.windowMs);
  }
  if (Object.keys(latency).length === 0 && out.availability === undefined) {
    throw new InvalidOptionError(path, 'declares no objective: give latency (e.g. { p99: 200 }) or availability (e.g. 0.999)', input);
  }
  return out;
}
