/**
 * Adaptive batching: learns the model's batch-latency curve online and picks the effective max batch size and
 * wait that keep a latency percentile (queue wait + service, e.g. p99) within an objective at the best throughput.
 *
 * The core is Clipper's AIMD on batch size (additive increase while the objective holds, multiplicative decrease
 * on a violation), with changes that make it converge where plain AIMD on end-to-end latency does not:
 *  1. Slow start (as TCP): the size doubles until the first violation, then grows by one.
 *  2. Window validation (as TCP's cwnd validation): the size only grows while it is binding, i.e. batches were
 *     full or left items behind. A lightly loaded replica never inflates a limit it does not use.
 *  3. Cause of a violation: when batching pays, a violation with full batches is queueing (smaller batches would
 *     lower throughput and lengthen the queue), so the size grows up to the feasible cap; one with batches not
 *     full is time spent waiting, so the wait shrinks (AIMD on a wait scale). Only when batching does not pay
 *     does the size shrink.
 * The learned curve (EWMA of service time per batch size, plus a weighted linear fit service(b) = a + b*slope)
 * gives a feasibility cap (largest b whose service alone fits the objective) and decides whether batching pays
 * at all: if per-item time does not fall with batch size (a ~ 0), waiting only adds latency, so the wait is 0.
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
  /** Latency at the objective's percentile over the last decision window; undefined before the first decision. */
  readonly lastTailMs: number | undefined;
  readonly decisions: number;
  /** Learned service time per batch size. */
  readonly curve: ReadonlyArray<{ size: number; serviceMs: number; samples: number }>;
}

/** Per-item time must fall by at least this factor from the smallest to the largest seen size to call batching worthwhile. */
const MIN_BATCHING_GAIN = 1.15;
/** EWMA weight of a new service-time sample once a size has a few samples (earlier ones average evenly). */
const EWMA_ALPHA = 0.2;
/** Additive step of the wait scale per decision that met the objective. */
const WAIT_SCALE_STEP = 0.1;
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
  private lastTailMs: number | undefined;
  /** Mean size of the last decision window's batches. */
  private typicalSize: number | undefined;
  private windowSizeSum = 0;
  /** Fraction of the objective's slack spent waiting for a batch to fill; AIMD like the size. */
  private waitScale = 1;
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
    this.windowSizeSum += obs.size;
    if (obs.size >= this.size || obs.backlog > 0) this.windowLimited++;
    if (this.windowBatches >= this.objective.windowBatches) this.decide();
  }

  snapshot(): AdaptiveSnapshot {
    return {
      maxBatchSize: this.size,
      maxWaitMs: this.waitMs,
      phase: this.phase,
      batchingPays: this.batchingPays(),
      lastTailMs: this.lastTailMs,
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
    const tail = quantile(this.window, this.objective.percentile / 100);
    this.lastTailMs = tail;
    this.decisions++;
    this.typicalSize = this.windowSizeSum / this.windowBatches;
    const cap = Math.min(this.limits.maxBatchSize, this.feasibleCap());
    const pays = this.batchingPays();
    const limited = this.windowLimited * 2 >= this.windowBatches;
    if (tail !== undefined && tail > this.objective.ms) {
      this.phase = 'steady';
      if (pays === 'no') {
        // Without a batching gain a big batch only delays its first items: shrink from what was actually used
        // (the limit may be far above the batches that formed).
        const used = Math.min(this.size, this.windowMaxSize);
        this.size = Math.max(1, Math.floor(used * this.objective.decreaseFactor));
      } else if (limited) {
        // Queueing: smaller batches would lower throughput and lengthen the queue. At the cap nothing here helps;
        // shedding load is the queue bounds' job.
        if (this.size < cap) this.grow(cap);
      } else {
        // Batches are not full, so the time spent waiting for them is what to cut.
        this.waitScale *= this.objective.decreaseFactor;
      }
    } else {
      if (this.windowLimited > 0) this.grow(cap);
      this.waitScale = Math.min(1, this.waitScale + WAIT_SCALE_STEP);
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

  /**
   * Largest size whose predicted service time alone fits the objective. A tighter cap would split a backlog into
   * more batches and serve it later, which a burst's tail pays for. Where not even one item fits, the objective
   * cannot be met by sizing, so batches may take up to twice a single item's time, for throughput.
   */
  private feasibleCap(): number {
    const single = this.predictServiceMs(1);
    const budget = Math.max(this.objective.ms, 2 * (single ?? 0));
    let cap = 1;
    for (let b = 1; b <= this.limits.maxBatchSize; b++) {
      const predicted = this.predictServiceMs(b);
      if (predicted !== undefined && predicted > budget) break;
      cap = b;
    }
    return cap;
  }

  /**
   * Wait only while batching pays, and only as long as the objective leaves room for after a running batch and
   * this item's own (waitScale, AIMD, trims it when waiting itself breaks the objective).
   */
  private chooseWait(): number {
    if (this.batchingPays() === 'no') return 0;
    // Sized on the batches that actually form (the cap is only reached under a backlog, when nobody waits).
    const typical = this.typicalSize === undefined ? this.size : Math.max(1, Math.round(this.typicalSize));
    const service = this.predictServiceMs(Math.min(this.size, typical)) ?? 0;
    const slack = this.objective.ms - 2 * service;
    return Math.max(0, Math.min(this.limits.maxWaitMs, slack) * this.waitScale);
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
    this.windowSizeSum = 0;
  }
}

function quantile(samples: readonly number[], q: number): number | undefined {
  if (samples.length === 0) return undefined;
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}
