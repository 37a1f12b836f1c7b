import { describe, expect, it } from 'vitest';
import { chooseWorker, explainNoFit, fits, type WorkerCapacity } from '../src/scheduler.ts';

function w(workerId: string, total: Partial<WorkerCapacity['total']>, used: Partial<WorkerCapacity['used']> = {}, sameDeployment = 0): WorkerCapacity {
  return {
    workerId,
    total: { cpus: 0, gpus: 0, memory: 0, ...total },
    used: { cpus: 0, gpus: 0, memory: 0, ...used },
    sameDeployment,
  };
}

describe('scheduler', () => {
  it('fits checks CPU, GPU and memory, and ignores memory when none is asked for', () => {
    const worker = w('a', { cpus: 4, gpus: 1, memory: 1000 }, { cpus: 3, gpus: 0.5, memory: 600 });
    expect(fits(worker, { cpus: 1, gpus: 0.5, memory: 400 })).toBe(true);
    expect(fits(worker, { cpus: 1.5, gpus: 0, memory: 0 })).toBe(false);
    expect(fits(worker, { cpus: 0, gpus: 0.75, memory: 0 })).toBe(false);
    expect(fits(worker, { cpus: 0, gpus: 0, memory: 401 })).toBe(false);
    expect(fits(w('b', { cpus: 1 }), { cpus: 0, gpus: 0, memory: 0 })).toBe(true);
  });

  it('packs fractional GPUs exactly, despite floating point', () => {
    // 0.1 * 10 is 0.9999999999999999 in steps; the tenth replica must still fit and the eleventh not.
    let used = 0;
    for (let i = 0; i < 10; i++) {
      expect(fits(w('g', { cpus: 100, gpus: 1 }, { gpus: used }), { cpus: 0, gpus: 0.1, memory: 0 }), `replica ${i + 1}`).toBe(true);
      used += 0.1;
    }
    expect(fits(w('g', { cpus: 100, gpus: 1 }, { gpus: used }), { cpus: 0, gpus: 0.1, memory: 0 })).toBe(false);
  });

  it('chooses the worker with the fewest replicas of the deployment, then the most free CPU', () => {
    const need = { cpus: 1, gpus: 0, memory: 0 };
    const workers = [w('a', { cpus: 16 }, {}, 2), w('b', { cpus: 4 }, { cpus: 2 }, 1), w('c', { cpus: 8 }, { cpus: 2 }, 1)];
    expect(chooseWorker(workers, need)?.workerId).toBe('c');
    expect(chooseWorker([w('a', { cpus: 16 }, {}, 2), w('b', { cpus: 1 }, { cpus: 1 }, 0)], need)?.workerId).toBe('a');
    expect(chooseWorker([], need)).toBeUndefined();
    expect(chooseWorker([w('a', { cpus: 1 }, { cpus: 1 })], need)).toBeUndefined();
  });

  it('explains a failed placement with the numbers', () => {
    expect(explainNoFit([], { cpus: 1, gpus: 0, memory: 0 })).toBe('no worker has joined the cluster');
    expect(explainNoFit([w('w1', { cpus: 4, gpus: 1, memory: 1024 }, { cpus: 3.5, gpus: 0.25, memory: 24 })], { cpus: 2, gpus: 0.5, memory: 0 }))
      .toBe('needs cpus=2 gpus=0.50 memory=0; free: w1: cpus 0.50/4, gpus 0.75/1, memory 1000/1024');
  });
});
