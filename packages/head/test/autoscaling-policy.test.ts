import { describe, expect, it } from 'vitest';
import { compileDeploymentOptions, seededRandom, type DeploymentOptions } from '@shoal/core';
import {
  decideReplicas, formatAutoscalingDecision, INITIAL_AUTOSCALING_STATE, type AutoscalingConfig, type AutoscalingDecision, type AutoscalingPolicyState,
} from '../src/autoscaling-policy.ts';
import { AutoscalingWindow } from '../src/autoscaling-window.ts';

type AutoscalingInputOptions = NonNullable<DeploymentOptions['autoscaling']>;

/** Compiled the way the controller gets it. The window is one sample unless a test says otherwise, so a step in the load is seen on its tick. */
function config(o: AutoscalingInputOptions = {}): AutoscalingConfig {
  return compileDeploymentOptions({ autoscaling: { metricsIntervalMs: 1000, lookBackPeriodMs: 1000, upscaleDelayMs: 10_000, downscaleDelayMs: 60_000, maxReplicas: 10, ...o } }, 'M').autoscaling!;
}

interface Step { at: number; target: number; decision: AutoscalingDecision | undefined; state: AutoscalingPolicyState }

/**
 * Drives the policy as the controller does: every metricsIntervalMs, record the load, decide, and take the decision.
 * Replicas start at once unless `startMs` says how long one takes.
 */
function simulate(cfg: AutoscalingConfig, load: (t: number) => number, opts: { untilMs: number; target?: number; startMs?: number }): Step[] {
  const window = AutoscalingWindow.for(cfg);
  let target = opts.target ?? cfg.initialReplicas;
  let state = INITIAL_AUTOSCALING_STATE;
  const startedAt: number[] = Array.from({ length: target }, () => Number.NEGATIVE_INFINITY);
  const steps: Step[] = [];
  for (let now = 0; now <= opts.untilMs; now += cfg.metricsIntervalMs) {
    window.record(now, load(now));
    const running = startedAt.filter((t) => now - t >= (opts.startMs ?? 0)).length;
    const r = decideReplicas({ config: cfg, currentTarget: target, running, samples: window.samples(now), state, now });
    state = r.state;
    // Plain checks: expect() on each of a simulated day's 86,400 ticks would be most of the test's time.
    if (r.desired !== (r.decision?.to ?? target) || (r.decision && r.decision.from !== target)) throw new Error(`at ${now}: ${JSON.stringify(r)} from ${target}`);
    if (r.decision) {
      while (startedAt.length < r.desired) startedAt.push(now);
      startedAt.length = r.desired;
      target = r.desired;
    }
    steps.push({ at: now, target, decision: r.decision, state });
  }
  return steps;
}

const decisions = (steps: Step[]): AutoscalingDecision[] => steps.flatMap((s) => (s.decision ? [s.decision] : []));
const decisionTimes = (steps: Step[]): number[] => steps.filter((s) => s.decision).map((s) => s.at);
/** How many times the direction of scaling turned around. */
const reversals = (ds: AutoscalingDecision[]): number => ds.filter((d, i) => i > 0 && Math.sign(d.to - d.from) !== Math.sign(ds[i - 1]!.to - ds[i - 1]!.from)).length;

const HOUR = 3_600_000;

describe('decideReplicas', () => {
  it('scales up once the larger count has been wanted for upscaleDelayMs, and not a tick before', () => {
    const steps = simulate(config(), (t) => (t < 60_000 ? 2 : 10), { untilMs: 120_000, target: 1 });
    expect(decisionTimes(steps)).toEqual([70_000]);
    expect(steps.find((s) => s.at === 69_000)).toMatchObject({ target: 1, state: { want: 'upscale', from: 1, to: 5, sinceMs: 60_000 } });
    expect(decisions(steps)[0]).toMatchObject({ from: 1, to: 5, reason: 'upscale', averageOngoing: 10, perReplica: 10, rawReplicas: 5, running: 1, samples: 1, wantedForMs: 10_000 });
  });

  it('scales up on the spot with upscaleDelayMs 0', () => {
    const steps = simulate(config({ upscaleDelayMs: 0 }), (t) => (t < 5000 ? 2 : 7), { untilMs: 10_000, target: 1 });
    expect(decisions(steps).map((d) => [d.to, d.wantedForMs])).toEqual([[4, 0]]);
    expect(decisionTimes(steps)).toEqual([5000]);
  });

  it('scales down only after downscaleDelayMs, to the count the load needs', () => {
    const steps = simulate(config(), (t) => (t < 10_000 ? 10 : 3), { untilMs: 200_000, target: 5 });
    expect(decisionTimes(steps)).toEqual([70_000]);
    expect(decisions(steps)[0]).toMatchObject({ from: 5, to: 2, reason: 'downscale', wantedForMs: 60_000 });
    expect(steps.find((s) => s.at === 69_000)!.target).toBe(5);
  });

  it('restarts a delay when the want stops, and takes the count wanted when the delay runs out', () => {
    // Wanted 2..5 s, gone at 6 s, back from 7 s (and larger from 12 s): the 10 s count from 7 s.
    const load = (t: number): number => (t < 2000 ? 2 : t === 6000 ? 2 : t < 12_000 ? 4 : 12);
    const steps = simulate(config(), load, { untilMs: 30_000, target: 1 });
    expect(decisionTimes(steps)).toEqual([17_000]);
    expect(decisions(steps)[0]).toMatchObject({ from: 1, to: 6, wantedForMs: 10_000 });
  });

  it('averages the samples of the last lookBackPeriodMs', () => {
    const cfg = config({ lookBackPeriodMs: 4000, upscaleDelayMs: 0 });
    const samples = [{ at: 1000, ongoing: 100 }, { at: 2000, ongoing: 2 }, { at: 3000, ongoing: 4 }, { at: 4000, ongoing: 6 }, { at: 5000, ongoing: 8 }, { at: 6000, ongoing: 1000 }];
    const r = decideReplicas({ config: cfg, currentTarget: 1, running: 1, samples, state: INITIAL_AUTOSCALING_STATE, now: 5000 });
    // (1000, 5000]: 2, 4, 6, 8; the first is too old, the last not yet taken.
    expect(r.decision).toMatchObject({ averageOngoing: 5, latestOngoing: 8, samples: 4, rawReplicas: 2.5, to: 3 });
  });

  it('holds, and forgets any want, when the window holds no sample', () => {
    const cfg = config();
    const wanting: AutoscalingPolicyState = { want: 'upscale', from: 1, to: 3, sinceMs: 0 };
    const r = decideReplicas({ config: cfg, currentTarget: 1, running: 1, samples: [{ at: 100, ongoing: 50 }], state: wanting, now: 50_000 });
    expect(r).toEqual({ desired: 1, state: INITIAL_AUTOSCALING_STATE });
  });

  it('voids a want formed against another target (the controller changed it meanwhile)', () => {
    const cfg = config();
    const stale: AutoscalingPolicyState = { want: 'upscale', from: 2, to: 4, sinceMs: 0 };
    const r = decideReplicas({ config: cfg, currentTarget: 3, running: 3, samples: [{ at: 50_000, ongoing: 10 }], state: stale, now: 50_000 });
    expect(r.decision).toBeUndefined();
    expect(r.state).toEqual({ want: 'upscale', from: 3, to: 5, sinceMs: 50_000 });
  });

  describe('no oscillation', () => {
    it('holds a steady load exactly at a threshold for a simulated day', () => {
      // 4 ongoing at target 2 needs exactly 2; 0.3 at target 0.1 is 2.9999999999999996 in floating point, and needs 3.
      expect(decisions(simulate(config({ lookBackPeriodMs: 30_000 }), () => 4, { untilMs: 24 * HOUR, target: 2 }))).toEqual([]);
      expect(decisions(simulate(config({ targetOngoingRequests: 0.1 }), () => 0.3, { untilMs: HOUR, target: 3 }))).toEqual([]);
    });

    it('reaches the count a steady load needs from above or below and stays there', () => {
      for (const start of [1, 2, 3, 5, 10]) {
        const steps = simulate(config({ lookBackPeriodMs: 30_000, smoothingFactor: 0.4 }), () => 5, { untilMs: 24 * HOUR, target: start });
        expect(steps.at(-1)!.target).toBe(3);
        expect(reversals(decisions(steps))).toBe(0);
        expect(steps.filter((s) => s.at > HOUR && s.decision)).toEqual([]);
      }
    });

    it('holds a load just under a threshold within the downscale tolerance, and scales down past it', () => {
      // At 3 replicas, 4 ongoing at target 2 would run exactly at target on 2: within the 10% band, so 3 stay.
      expect(decisions(simulate(config(), () => 4, { untilMs: HOUR, target: 3 }))).toEqual([]);
      expect(decisions(simulate(config(), () => 3.6, { untilMs: HOUR, target: 3 })).map((d) => d.to)).toEqual([2]);
      expect(decisions(simulate(config({ downscaleTolerance: 0 }), () => 4, { untilMs: HOUR, target: 3 })).map((d) => d.to)).toEqual([2]);
    });

    it('does not flap on a noisy load near a threshold even with short delays, thanks to the tolerance', () => {
      // 3.8 to 4.2 ongoing at target 2: the need flips between 2 and 3 every few seconds.
      const noisy = (seed: number) => { const random = seededRandom(seed); return () => 3.8 + 0.4 * random(); };
      const short = { lookBackPeriodMs: 5000, upscaleDelayMs: 3000, downscaleDelayMs: 10_000 };
      for (const seed of [1, 2, 3]) {
        const steps = simulate(config(short), noisy(seed), { untilMs: 24 * HOUR, target: 2 });
        expect(decisions(steps).map((d) => [d.from, d.to])).toEqual([[2, 3]]);
      }
      // Without it, the same load turns the count around hundreds of times a day.
      expect(reversals(decisions(simulate(config({ ...short, downscaleTolerance: 0 }), noisy(1), { untilMs: 24 * HOUR, target: 2 })))).toBeGreaterThan(100);
    });

    it('does not flap on a load that alternates across a threshold every tick', () => {
      // 3.9 and 4.1 at target 2 want 2 and 3 replicas in turn: each flip restarts the delay.
      for (const start of [2, 3]) {
        const steps = simulate(config({ downscaleDelayMs: 5000, upscaleDelayMs: 3000 }), (t) => (t % 2000 === 0 ? 3.9 : 4.1), { untilMs: 24 * HOUR, target: start });
        expect(decisions(steps)).toEqual([]);
      }
    });

    it('makes at most one move on a noisy load centred on a threshold for a simulated day, with the default delays', () => {
      const cfg = config({ lookBackPeriodMs: 30_000, upscaleDelayMs: 30_000, downscaleDelayMs: 600_000 });
      for (const seed of [1, 2, 3, 4, 5]) {
        const random = seededRandom(seed);
        // Ongoing requests are whole: 4 +- 1 at target 2, centred on the 2-replica threshold.
        const steps = simulate(cfg, () => 3 + Math.floor(random() * 3), { untilMs: 24 * HOUR, target: 2 });
        expect(decisions(steps).length).toBeLessThanOrEqual(1);
      }
    });

    it('overshoots at most once with an upscale factor above 1, then settles on the need', () => {
      const steps = simulate(config({ upscaleSmoothingFactor: 2, downscaleSmoothingFactor: 1, downscaleTolerance: 0, upscaleDelayMs: 0 }), () => 8, { untilMs: 4 * HOUR, target: 2 });
      expect(decisions(steps).map((d) => [d.from, d.to])).toEqual([[2, 6], [6, 4]]);
    });
  });

  describe('zero', () => {
    it('goes to one after downscaleDelayMs, and to zero after downscaleToZeroDelayMs more of no load', () => {
      const cfg = config({ minReplicas: 0, downscaleDelayMs: 10_000, downscaleToZeroDelayMs: 30_000 });
      const steps = simulate(cfg, (t) => (t < 5000 ? 6 : 0), { untilMs: 100_000, target: 3 });
      expect(decisions(steps).map((d) => [d.from, d.to, d.reason])).toEqual([[3, 1, 'downscale'], [1, 0, 'downscale-to-zero']]);
      // The first decision at 15 s; the want of zero forms on the next tick, 16 s, and is met 30 s later.
      expect(decisionTimes(steps)).toEqual([15_000, 46_000]);
      expect(steps.find((s) => s.at === 45_000)!.target).toBe(1);
    });

    it('waits downscaleDelayMs for the last replica when downscaleToZeroDelayMs is left to default', () => {
      const cfg = config({ minReplicas: 0, downscaleDelayMs: 20_000 });
      expect(cfg.downscaleToZeroDelayMs).toBe(20_000);
      expect(decisionTimes(simulate(cfg, () => 0, { untilMs: 60_000, target: 1 }))).toEqual([20_000]);
    });

    it('never goes below minReplicas 1', () => {
      expect(decisions(simulate(config(), () => 0, { untilMs: 2 * HOUR, target: 1 }))).toEqual([]);
    });

    it('scales from zero to one on the tick a request waits, without the upscale delay', () => {
      const cfg = config({ minReplicas: 0, upscaleDelayMs: 600_000 });
      const r = decideReplicas({ config: cfg, currentTarget: 0, running: 0, samples: [{ at: 5000, ongoing: 1 }], state: INITIAL_AUTOSCALING_STATE, now: 5000 });
      expect(r.desired).toBe(1);
      expect(r.decision).toMatchObject({ from: 0, to: 1, reason: 'scale-from-zero', latestOngoing: 1, running: 0, wantedForMs: 0 });
      const steps = simulate(cfg, (t) => (t < 30_000 ? 0 : 1), { untilMs: 60_000, target: 0 });
      expect(decisionTimes(steps)).toEqual([30_000]);
    });

    it('scales from zero to what the waiting requests need, within maxReplicas, judged on the newest sample', () => {
      const cfg = config({ minReplicas: 0, maxReplicas: 4, lookBackPeriodMs: 10_000 });
      const at = (n: number) => decideReplicas({ config: cfg, currentTarget: 0, running: 0, samples: [{ at: 1000, ongoing: 0 }, { at: 2000, ongoing: n }], state: INITIAL_AUTOSCALING_STATE, now: 2000 });
      expect(at(5).desired).toBe(3);
      expect(at(50).desired).toBe(4);
      expect(at(0)).toEqual({ desired: 0, state: INITIAL_AUTOSCALING_STATE });
      // A request that waited earlier in the window but no longer does is no reason to start a replica.
      const gone = decideReplicas({ config: cfg, currentTarget: 0, running: 0, samples: [{ at: 1000, ongoing: 3 }, { at: 2000, ongoing: 0 }], state: INITIAL_AUTOSCALING_STATE, now: 2000 });
      expect(gone.desired).toBe(0);
    });

    it('holds while the replicas it wants are still starting, and scales on once they run', () => {
      // One replica takes 20 s to start; the queue that builds meanwhile is no measure of the load.
      const steps = simulate(config({ minReplicas: 0, upscaleDelayMs: 5000 }), () => 9, { untilMs: 60_000, target: 0, startMs: 20_000 });
      expect(decisions(steps).map((d) => [d.from, d.to, d.reason])).toEqual([[0, 5, 'scale-from-zero']]);
      const up = simulate(config({ minReplicas: 0, upscaleDelayMs: 5000 }), (t) => (t < 30_000 ? 1 : 9), { untilMs: 90_000, target: 0, startMs: 20_000 });
      // 0 -> 1 at 0 s, running from 20 s; wants 5 from 30 s, taken at 35 s.
      expect(decisions(up).map((d) => [d.from, d.to])).toEqual([[0, 1], [1, 5]]);
      expect(decisionTimes(up)).toEqual([0, 35_000]);
      const none = decideReplicas({ config: config(), currentTarget: 2, running: 0, samples: [{ at: 0, ongoing: 100 }], state: { want: 'upscale', from: 2, to: 9, sinceMs: -50_000 }, now: 0 });
      expect(none).toEqual({ desired: 2, state: INITIAL_AUTOSCALING_STATE });
    });
  });

  describe('bounds', () => {
    it('never scales past maxReplicas or below minReplicas', () => {
      const cfg = config({ minReplicas: 2, maxReplicas: 6, upscaleDelayMs: 0, downscaleDelayMs: 0 });
      const steps = simulate(cfg, (t) => (t < 10_000 ? 1000 : 0), { untilMs: 20_000, target: 2 });
      expect(decisions(steps).map((d) => [d.from, d.to])).toEqual([[2, 6], [6, 2]]);
      expect(Math.max(...steps.map((s) => s.target))).toBe(6);
      expect(Math.min(...steps.map((s) => s.target))).toBe(2);
    });

    it('brings a target outside the bounds inside on the spot, with or without samples', () => {
      const cfg = config({ minReplicas: 3, maxReplicas: 5 });
      expect(decideReplicas({ config: cfg, currentTarget: 1, running: 1, samples: [], state: INITIAL_AUTOSCALING_STATE, now: 0 }).decision).toMatchObject({ from: 1, to: 3, reason: 'bounds', wantedForMs: 0 });
      expect(decideReplicas({ config: cfg, currentTarget: 9, running: 9, samples: [{ at: 0, ongoing: 100 }], state: INITIAL_AUTOSCALING_STATE, now: 0 }).desired).toBe(5);
    });
  });

  describe('smoothing', () => {
    // downscaleTolerance 0 here, so that the steps are the smoothing's alone.
    it('with factor 1 goes to the need in one step', () => {
      const steps = simulate(config({ upscaleDelayMs: 0, downscaleDelayMs: 0, downscaleTolerance: 0 }), (t) => (t < 10_000 ? 20 : 2), { untilMs: 20_000, target: 1 });
      expect(decisions(steps).map((d) => d.to)).toEqual([10, 1]);
    });

    it('below 1 closes that share of the gap per step, and still reaches the need', () => {
      const steps = simulate(config({ smoothingFactor: 0.5, upscaleDelayMs: 0, downscaleDelayMs: 0, downscaleTolerance: 0 }), (t) => (t < 10_000 ? 20 : 2), { untilMs: 30_000, target: 1 });
      // Up to a need of 10: 1 + 4.5, 6 + 2, 8 + 1, 9 + 0.5. Down to 1: 10 - 4.5, 6 - 2.5, 4 - 1.5, 3 - 1, then 2 - 0.5 rounds back to 2 and moves by one.
      expect(decisions(steps).map((d) => d.to)).toEqual([6, 8, 9, 10, 6, 4, 3, 2, 1]);
    });

    it('applies the upscale and downscale factors separately', () => {
      const steps = simulate(config({ upscaleSmoothingFactor: 1, downscaleSmoothingFactor: 0.25, upscaleDelayMs: 0, downscaleDelayMs: 0, downscaleTolerance: 0 }), (t) => (t < 5000 ? 20 : 2), { untilMs: 30_000, target: 1 });
      expect(decisions(steps).map((d) => d.to)).toEqual([10, 8, 7, 6, 5, 4, 3, 2, 1]);
    });
  });

  it('formats a decision with its numbers', () => {
    const d = decideReplicas({ config: config({ upscaleDelayMs: 0 }), currentTarget: 2, running: 2, samples: [{ at: 0, ongoing: 10.4 }], state: INITIAL_AUTOSCALING_STATE, now: 0 }).decision!;
    expect(formatAutoscalingDecision('rec', d)).toBe('autoscaling "rec": 2 -> 6 (upscale) average ongoing 10.4 over 1 samples (latest 10.4), 5.2 per running replica (2 running), target 2, wanted for 0 ms');
  });
});
