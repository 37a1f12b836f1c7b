/**
 * Adaptive batching: learns the model's batch-latency curve online and picks the effective max batch size and
 * wait that keep p99 latency (queue wait + service) within an objective at the best throughput.
 *
 * The core is Clipper's AIMD on batch size (additive increase while the objective holds, multiplicative decrease
 * on a violation), with three changes that make it converge where plain AIMD on end-to-end latency does not:
 *  1. Slow start (as TCP): the size doubles until the first violation, then grows by one.
 *  2. Window validation (as TCP's cwnd validation): the size only grows while it is binding, i.e. batches were
 *     full or left items behind. A lightly loaded replica never inflates a limit it does not use.
 *  3. Backlog awareness: a violation while batches are full and items are left behind is a throughput problem
 *     (the queue grows), and shrinking batches would make it worse when batching pays; then the size grows up to
 *     the feasible cap instead. A violation with spare room is a batch-size problem and shrinks it.
 * The learned curve (EWMA of service time per batch size, plus a weighted linear fit service(b) = a + b*slope)
 * gives a feasibility cap (largest b whose service fits half the objective: an item may wait for one running
 * batch and then run in its own) and decides whether batching pays at all: if per-item time does not fall with
 * batch size (a ~ 0), waiting only adds latency, so the wait drops to 0.
 */
import type { LatencyObjective } from './options.ts';

/** One finished batch, as the batch queue reports it. */
export interface BatchObservation {
  /** Items in the batch. */
  size: number;
  /** Time from dispatch to the batch function's answer. */
  serviceMs: number;
  /** Per item: time from submit to the batch's answer (queue wait + service). */
  latenciesMs: readonly number[];
  /** Items still queued right after this batch was dispatched. */
  backlog: number;
  /** {@link AdaptiveBatchController.epoch} when the batch was dispatched; older epochs only teach the curve. */
  epoch: number;
}

/** Whether bigger batches raise throughput, as far as the learned curve tells. */
export type BatchingPays = 'yes' | 'no' | 'unknown';

export interface EffectiveBatchLimits {
  readonly maxBatchSize: number;
  readonly maxWaitMs: number;
}

export interface AdaptiveSnapshot extends EffectiveBatchLimits {
  readonly phase: 'slow-start' | 'steady';
  readonly batchingPays: BatchingPays;
  /** p99 latency of the last decision window; undefined before the first decision. */
  readonly lastP99Ms: number | undefined;
  readonly decisions: number;
  /** Learned service time per batch size. */
  readonly curve: ReadonlyArray<{ size: number; serviceMs: number; samples: number }>;
}

/** Per-item time must fall by at least this factor from the smallest to the largest seen size to call batching worthwhile. */
const MIN_BATCHING_GAIN = 1.15;
/** EWMA weight of a new service-time sample once a size has a few samples (earlier ones average evenly). */
const EWMA_ALPHA = 0.2;
/** Bound on latency samples kept for one decision window. */
const MAX_WINDOW_SAMPLES = 4096;
/** A size's samples count at most this much in the linear fit, so one hot size does not drown the others. */
const MAX_FIT_WEIGHT = 10;

interface CurvePoint {
  serviceMs: number;
  samples: number;
}

export class AdaptiveBatchController {
  private limits: EffectiveBatchLimits;
  private objective: Readonly<Required<LatencyObjective>>;
  private size = 1;
  private waitMs: number;
  private phase: 'slow-start' | 'steady' = 'slow-start';
  private currentEpoch = 0;
  private decisions = 0;
  private lastP99Ms: number | undefined;
  private readonly curve = new Map<number, CurvePoint>();
  private window: number[] = [];
  private windowBatches = 0;
  private windowLimited = 0;
  private windowMaxSize = 0;

  /** `limits` are the configured upper bounds (options.maxBatchSize, options.maxWaitMs). */
  constructor(limits: EffectiveBatchLimits, objective: Readonly<Required<LatencyObjective>>) {
    this.limits = limits;
    this.objective = objective;
    this.waitMs = this.chooseWait();
  }

  /** Changes bounds or objective at run time; the learned curve is kept. */
  reconfigure(limits: EffectiveBatchLimits, objective: Readonly<Required<LatencyObjective>>): void {
    this.limits = limits;
    this.objective = objective;
    this.size = Math.min(this.size, limits.maxBatchSize);
    this.waitMs = this.chooseWait();
    this.startEpoch();
  }

  /** Bumped on every decision; batches dispatched under an older epoch do not vote in the next one. */
  get epoch(): number {
    return this.currentEpoch;
  }

  effective(): EffectiveBatchLimits {
    return { maxBatchSize: this.size, maxWaitMs: this.waitMs };
  }

  observe(obs: BatchObservation): void {
    if (!Number.isInteger(obs.size) || obs.size < 1 || !Number.isFinite(obs.serviceMs) || obs.serviceMs < 0) return;
    this.learn(obs.size, obs.serviceMs);
    if (obs.epoch !== this.currentEpoch) return;
    for (const latency of obs.latenciesMs) {
      if (this.window.length >= MAX_WINDOW_SAMPLES) break;
      this.window.push(latency);
    }
    this.windowBatches++;
    this.windowMaxSize = Math.max(this.windowMaxSize, obs.size);
    if (obs.size >= this.size || obs.backlog > 0) this.windowLimited++;
    if (this.windowBatches >= this.objective.windowBatches) this.decide();
  }

  snapshot(): AdaptiveSnapshot {
    return {
      maxBatchSize: this.size,
      maxWaitMs: this.waitMs,
      phase: this.phase,
      batchingPays: this.batchingPays(),
      lastP99Ms: this.lastP99Ms,
      decisions: this.decisions,
      curve: [...this.curve.entries()].sort(([a], [b]) => a - b).map(([size, p]) => ({ size, serviceMs: p.serviceMs, samples: p.samples })),
    };
  }

  /** Predicted service time of a batch of `size`: the measured EWMA where there is one, else the linear fit. */
  predictServiceMs(size: number): number | undefined {
    const measured = this.curve.get(size);
    if (measured !== undefined) return measured.serviceMs;
    const fit = this.fit();
    if (fit !== undefined) return Math.max(0, fit.intercept + fit.slope * size);
    const only = this.curve.entries().next().value;
    if (only === undefined) return undefined;
    // One size seen: assume no batching gain above it (pessimistic) and none below it.
    const [seenSize, point] = only;
    return size > seenSize ? (point.serviceMs * size) / seenSize : point.serviceMs;
  }

  /** Whether bigger batches raise throughput enough to be worth waiting for. */
  batchingPays(): BatchingPays {
    const fit = this.fit();
    if (fit === undefined) return 'unknown';
    const perItem = (b: number): number => Math.max(1e-9, fit.intercept + fit.slope * b) / b;
    return perItem(fit.minSize) / perItem(fit.maxSize) >= MIN_BATCHING_GAIN ? 'yes' : 'no';
  }

  private learn(size: number, serviceMs: number): void {
    const point = this.curve.get(size);
    if (point === undefined) {
      this.curve.set(size, { serviceMs, samples: 1 });
      return;
    }
    point.samples++;
    const alpha = Math.max(EWMA_ALPHA, 1 / point.samples);
    point.serviceMs += alpha * (serviceMs - point.serviceMs);
  }

  private decide(): void {
    const p99 = quantile(this.window, 0.99);
    this.lastP99Ms = p99;
    this.decisions++;
    const cap = Math.min(this.limits.maxBatchSize, this.feasibleCap());
    const pays = this.batchingPays();
    const limited = this.windowLimited * 2 >= this.windowBatches;
    if (p99 !== undefined && p99 > this.objective.p99Ms) {
      if (limited && pays !== 'no' && this.size < cap) {
        this.grow(cap);
      } else if (!limited || pays === 'no') {
        // Shrink from what was actually used; the limit may be far above the batches that formed.
        const used = Math.min(this.size, this.windowMaxSize);
        this.size = Math.max(1, Math.floor(used * this.objective.decreaseFactor));
        this.phase = 'steady';
      } else {
        // Throughput-bound at the largest feasible size: nothing here helps; shedding is for queue bounds.
        this.phase = 'steady';
      }
    } else if (this.windowLimited > 0) {
      this.grow(cap);
    }
    this.size = Math.max(1, Math.min(this.size, cap));
    this.waitMs = this.chooseWait();
    this.startEpoch();
  }

  private grow(cap: number): void {
    const next = this.phase === 'slow-start' ? this.size * 2 : this.size + 1;
    if (next >= cap) this.phase = 'steady';
    this.size = Math.min(next, cap);
  }

  /** Largest size whose predicted service time fits half the objective (unknown sizes are allowed, to explore). */
  private feasibleCap(): number {
    const budget = this.objective.p99Ms / 2;
    let cap = 1;
    for (let b = 1; b <= this.limits.maxBatchSize; b++) {
      const predicted = this.predictServiceMs(b);
      if (predicted !== undefined && predicted > budget) break;
      cap = b;
    }
    return cap;
  }

  private chooseWait(): number {
    if (this.batchingPays() === 'no') return 0;
    const service = this.predictServiceMs(this.size) ?? 0;
    const slack = this.objective.p99Ms - 2 * service;
    return Math.max(0, Math.min(this.limits.maxWaitMs, slack));
  }

  /** Weighted least squares of service time on batch size; needs two distinct sizes. */
  private fit(): { intercept: number; slope: number; minSize: number; maxSize: number } | undefined {
    if (this.curve.size < 2) return undefined;
    let sw = 0;
    let sx = 0;
    let sy = 0;
    let sxx = 0;
    let sxy = 0;
    let minSize = Infinity;
    let maxSize = 0;
    for (const [size, point] of this.curve) {
      const w = Math.min(point.samples, MAX_FIT_WEIGHT);
      sw += w;
      sx += w * size;
      sy += w * point.serviceMs;
      sxx += w * size * size;
      sxy += w * size * point.serviceMs;
      minSize = Math.min(minSize, size);
      maxSize = Math.max(maxSize, size);
    }
    const denom = sw * sxx - sx * sx;
    if (denom <= 0) return undefined;
    const slope = (sw * sxy - sx * sy) / denom;
    const intercept = (sy - slope * sx) / sw;
    return { intercept, slope, minSize, maxSize };
  }

  private startEpoch(): void {
    this.currentEpoch++;
    this.window = [];
    this.windowBatches = 0;
    this.windowLimited = 0;
    this.windowMaxSize = 0;
  }
}

function quantile(samples: readonly number[], q: number): number | undefined {
  if (samples.length === 0) return undefined;
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}
