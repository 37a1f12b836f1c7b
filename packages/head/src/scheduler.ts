/**
 * Placement: which worker gets a new replica. A pure policy over resource counts: the replica goes where it
 * fits, preferring the worker with the fewest replicas of the same deployment (spread), then the most free CPU.
 */
import type { CompiledResources } from '@shoal/core';

export interface WorkerCapacity {
  workerId: string;
  total: { cpus: number; gpus: number; memory: number };
  used: { cpus: number; gpus: number; memory: number };
  /** Replicas of the deployment being placed that already run there. */
  sameDeployment: number;
}

const EPS = 1e-9;

export function fits(w: WorkerCapacity, need: CompiledResources): boolean {
  return w.used.cpus + need.cpus <= w.total.cpus + EPS
    && w.used.gpus + need.gpus <= w.total.gpus + EPS
    && (need.memory === 0 || w.used.memory + need.memory <= w.total.memory);
}

export function chooseWorker(workers: readonly WorkerCapacity[], need: CompiledResources): WorkerCapacity | undefined {
  let best: WorkerCapacity | undefined;
  for (const w of workers) {
    if (!fits(w, need)) continue;
    if (best === undefined
      || w.sameDeployment < best.sameDeployment
      || (w.sameDeployment === best.sameDeployment && w.total.cpus - w.used.cpus > best.total.cpus - best.used.cpus)) best = w;
  }
  return best;
}

/** Why nothing fits, with the numbers: for the deployment's status and for deploy refusals. */
export function explainNoFit(workers: readonly WorkerCapacity[], need: CompiledResources): string {
  if (workers.length === 0) return 'no worker has joined the cluster';
  const free = workers.map((w) => `${w.workerId}: cpus ${fmt(w.total.cpus - w.used.cpus)}/${fmt(w.total.cpus)}, gpus ${fmt(w.total.gpus - w.used.gpus)}/${fmt(w.total.gpus)}, memory ${w.total.memory - w.used.memory}/${w.total.memory}`);
  return `needs cpus=${fmt(need.cpus)} gpus=${fmt(need.gpus)} memory=${need.memory}; free: ${free.join('; ')}`;
}

function fmt(n: number): string {
  return Number.isInteger(n) ? String(n) : n.toFixed(2);
}
