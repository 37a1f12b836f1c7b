/**
 * The rolling window of load samples one autoscaled deployment keeps for the policy: samples older than
 * lookBackPeriodMs are dropped as new ones arrive, and the count is bounded besides, so a caller that records too
 * often cannot grow it without limit.
 *
 *   const window = AutoscalingWindow.for(config);
 *   window.record(clock.monoNow(), ongoing);                  // every metricsIntervalMs
 *   decideReplicas({ ..., samples: window.samples(now), now });
 */
import type { AutoscalingConfig, AutoscalingSample } from './autoscaling-policy.ts';

export interface AutoscalingWindowOptions {
  /** How far back samples are kept, in ms. */
  lookBackPeriodMs: number;
  /** Most samples kept; past it the oldest goes. @default 10000 */
  maxSamples?: number;
}

export class AutoscalingWindow {
  readonly lookBackPeriodMs: number;
  readonly maxSamples: number;
  /** Oldest first, `at` never decreasing. */
  private readonly buf: AutoscalingSample[] = [];

  constructor(opts: AutoscalingWindowOptions) {
    if (!Number.isFinite(opts.lookBackPeriodMs) || opts.lookBackPeriodMs <= 0) throw new RangeError(`lookBackPeriodMs must be > 0 (got ${opts.lookBackPeriodMs})`);
    const maxSamples = opts.maxSamples ?? 10_000;
    if (!Number.isInteger(maxSamples) || maxSamples < 1) throw new RangeError(`maxSamples must be an integer >= 1 (got ${maxSamples})`);
    this.lookBackPeriodMs = opts.lookBackPeriodMs;
    this.maxSamples = maxSamples;
  }

  /** A window for a deployment's compiled autoscaling options. */
  static for(config: AutoscalingConfig, maxSamples?: number): AutoscalingWindow {
    return new AutoscalingWindow({ lookBackPeriodMs: config.lookBackPeriodMs, maxSamples });
  }

  /** Adds a sample taken at `at` (monotonic ms, not before the previous one) and drops what fell out of the window. */
  record(at: number, ongoing: number): void {
    if (!Number.isFinite(ongoing) || ongoing < 0) throw new RangeError(`ongoing must be a finite number >= 0 (got ${ongoing})`);
    const last = this.buf[this.buf.length - 1];
    if (!Number.isFinite(at) || (last !== undefined && at < last.at)) throw new RangeError(`at must be monotonic ms, not before the previous sample's ${last?.at} (got ${at})`);
    this.buf.push({ at, ongoing });
    if (this.buf.length > this.maxSamples) this.buf.splice(0, this.buf.length - this.maxSamples);
    this.trim(at);
  }

  /** The samples in (now - lookBackPeriodMs, now], oldest first; drops the older ones. */
  samples(now: number): readonly AutoscalingSample[] {
    this.trim(now);
    let end = this.buf.length;
    while (end > 0 && this.buf[end - 1]!.at > now) end--;
    return this.buf.slice(0, end);
  }

  get size(): number {
    return this.buf.length;
  }

  /** Forgets every sample (the deployment was redeployed, or its autoscaling options changed). */
  clear(): void {
    this.buf.length = 0;
  }

  private trim(now: number): void {
    const from = now - this.lookBackPeriodMs;
    let drop = 0;
    while (drop < this.buf.length && this.buf[drop]!.at <= from) drop++;
    if (drop > 0) this.buf.splice(0, drop);
  }
}
