/**
 * Every deployment's series, fed by the controller on each heartbeat, and the figures status shows of each:
 * traffic (every deployment), SLOs (those that declare objectives) and cost (replica time, priced when the head
 * was given prices). Time is the controller's monotonic ms.
 */
import { DEFAULT_SLO_WINDOW_MS, type CompiledSlo } from '@shoal/core';
import { DeploymentSeries, type ReplicaResources, type ReplicaSample } from './series.ts';
import { edgesOf, objectivesOf, sloStatusOf, type Objective, type SloStatus } from './objectives.ts';
import { costOf, type CostFigures, type Prices } from './cost.ts';
import { trafficOf, type TrafficFigures } from './traffic.ts';

/** The window the cost figures are over, besides since the head began watching. */
export const COST_WINDOW_MS = 3_600_000;

export interface DeploymentCost extends CostFigures {
  /** The same figures since the head began watching the deployment. */
  total: CostFigures;
}

export interface DeploymentFigures {
  traffic: TrafficFigures;
  slo?: SloStatus;
  cost: DeploymentCost;
}

interface Tracked { series: DeploymentSeries; objectives: Objective[]; sloKey: string }

export class SloTracker {
  private readonly deployments = new Map<string, Tracked>();
  /** Replicas adopted after a head restart: their first report is a baseline (see DeploymentSeries.observe). */
  private readonly adopted = new Set<string>();

  constructor(private readonly prices?: Prices) {}

  /** A replica this head did not start (it found it running): what it counted before is of unknown times. */
  markAdopted(replicaId: string): void {
    this.adopted.add(replicaId);
  }

  /** One replica's heartbeat report. `startedAt`: when this head asked for it to start (monotonic ms). */
  observe(now: number, key: string, slo: CompiledSlo | undefined, replicaId: string, sample: ReplicaSample, res: ReplicaResources, startedAt: number): void {
    const t = this.tracked(now, key, slo);
    t.series.observe(now, replicaId, sample, res, this.adopted.delete(replicaId) ? undefined : startedAt);
  }

  /** Drops deployments and replicas that no longer exist (what they answered stays in their deployment's totals). */
  retain(deploymentExists: (key: string) => boolean, replicaExists: (replicaId: string) => boolean): void {
    for (const [key, t] of this.deployments) {
      if (!deploymentExists(key)) { this.deployments.delete(key); continue; }
      for (const id of [...t.series.replicaIds()]) if (!replicaExists(id)) t.series.forget(id);
    }
    for (const id of this.adopted) if (!replicaExists(id)) this.adopted.delete(id);
  }

  /** A deployment's figures now; undefined before any of its replicas reported. */
  figures(now: number, key: string, slo: CompiledSlo | undefined): DeploymentFigures | undefined {
    if (!this.deployments.has(key)) return undefined;
    const t = this.tracked(now, key, slo);
    const hour = t.series.window(now, COST_WINDOW_MS) ?? t.series.sinceStart(now);
    return {
      traffic: trafficOf(t.series, now),
      ...(slo !== undefined ? { slo: sloStatusOf(t.series, t.objectives, slo.windowMs, now) } : {}),
      cost: { ...costOf(hour, this.prices), total: costOf(t.series.sinceStart(now), this.prices) },
    };
  }

  /** The series of a deployment, made or reconfigured to its objectives. */
  private tracked(now: number, key: string, slo: CompiledSlo | undefined): Tracked {
    const sloKey = slo === undefined ? '' : JSON.stringify(slo);
    let t = this.deployments.get(key);
    if (t !== undefined && t.sloKey === sloKey) return t;
    const objectives = slo === undefined ? [] : objectivesOf(slo);
    const periodMs = slo?.windowMs ?? DEFAULT_SLO_WINDOW_MS;
    if (t === undefined) {
      t = { series: new DeploymentSeries(now, edgesOf(objectives), periodMs), objectives, sloKey };
      this.deployments.set(key, t);
    } else {
      t.series.configure(edgesOf(objectives), periodMs);
      t.objectives = objectives;
      t.sloKey = sloKey;
    }
    return t;
  }
}
