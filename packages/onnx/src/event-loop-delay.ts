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

function stats(h: IntervalHistogram): EventLoopDelayStats {
  const ms = (ns: number): number => (Number.isFinite(ns) ? ns / 1e6 : 0);
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
      if (done === undefined) { h.disable(); done = stats(h); }
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
