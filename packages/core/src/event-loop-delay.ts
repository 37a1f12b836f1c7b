/** Event-loop delay measurement (perf_hooks.monitorEventLoopDelay), for benchmarks, metrics and tests. */
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';

export interface EventLoopDelayStats {
  /** Samples taken. */
  count: number;
  meanMs: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

export interface EventLoopDelayMonitor {
  /** Stops sampling and returns what was seen since start. */
  stop(): EventLoopDelayStats;
}

/**
 * Node's histogram records the whole interval between timer ticks, resolution included (an idle loop sampled
 * every 10 ms reads 10.1 ms); the delay is what exceeds the resolution.
 */
function stats(h: IntervalHistogram, resolutionMs: number): EventLoopDelayStats {
  const ms = (ns: number): number => (Number.isFinite(ns) && h.count > 0 ? Math.max(0, ns / 1e6 - resolutionMs) : 0);
  return { count: h.count, meanMs: ms(h.mean), p50Ms: ms(h.percentile(50)), p99Ms: ms(h.percentile(99)), maxMs: ms(h.max) };
}

/** Starts sampling the event loop every `resolutionMs` (Node's minimum is 1; @default 10). */
export function startEventLoopDelayMonitor(resolutionMs = 10): EventLoopDelayMonitor {
  if (!Number.isInteger(resolutionMs) || resolutionMs < 1) throw new RangeError(`resolutionMs must be an integer >= 1, got ${resolutionMs}`);
  const h = monitorEventLoopDelay({ resolution: resolutionMs });
  h.enable();
  let done: EventLoopDelayStats | undefined;
  return {
    stop(): EventLoopDelayStats {
      if (done === undefined) { h.disable(); done = stats(h, resolutionMs); }
      return done;
    },
  };
}

/** Runs `fn` while sampling event-loop delay; returns its result and the delay seen meanwhile. */
export async function measureEventLoopDelay<T>(fn: () => Promise<T>, resolutionMs = 10): Promise<{ result: T; delay: EventLoopDelayStats }> {
  const monitor = startEventLoopDelayMonitor(resolutionMs);
  try {
    const result = await fn();
    return { result, delay: monitor.stop() };
  } finally {
    monitor.stop();
  }
}

/**
 * A long-lived event-loop delay gauge for metrics: samples from construction until close(), and reports the
 * window since the last reset, so a scraper reading `snapshot(true)` every N seconds sees recent behaviour.
 */
export class EventLoopDelayGauge {
  private readonly h: IntervalHistogram;
  private readonly resolutionMs: number;
  private closed = false;

  /** `resolutionMs`: sampling period (Node's minimum is 1). @default 10 */
  constructor(resolutionMs = 10) {
    if (!Number.isInteger(resolutionMs) || resolutionMs < 1) throw new RangeError(`resolutionMs must be an integer >= 1, got ${resolutionMs}`);
    this.resolutionMs = resolutionMs;
    this.h = monitorEventLoopDelay({ resolution: resolutionMs });
    this.h.enable();
  }

  /** Delay seen since construction or the last reset; `reset` starts a new window. */
  snapshot(reset = false): EventLoopDelayStats {
    const s = stats(this.h, this.resolutionMs);
    if (reset) this.h.reset();
    return s;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.h.disable();
  }
}
