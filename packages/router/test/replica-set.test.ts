import { describe, expect, it } from 'vitest';
import { ReplicaSet } from '../src/index.ts';
import { entry, seeded } from './fakes.ts';

function setWithLoads(loads: number[], max = 100, random = seeded(42)): ReplicaSet {
  const set = new ReplicaSet('app/d', random);
  set.update(entry(loads.map((_, i) => [`r${i}`, `w${i}`]), { maxOngoingRequests: max }));
  set.replicas.forEach((r, i) => { r.inflight = loads[i]!; });
  return set;
}

describe('ReplicaSet power of two choices', () => {
  it('of the two sampled replicas, always takes the less loaded one', () => {
    // With two replicas both are always sampled, in either order.
    for (const [i, j] of [[0, 0.9], [0.9, 0]]) {
      const seq = [i!, j!];
      const set = setWithLoads([5, 1], 100, () => seq.shift() ?? 0);
      expect(set.choose()?.replicaId).toBe('r1');
    }
  });

  it('prefers less loaded replicas in proportion to their rank (seeded, 20,000 draws)', () => {
    const n = 10;
    const set = setWithLoads(Array.from({ length: n }, (_, k) => k)); // r0 lightest ... r9 heaviest
    const counts = new Array<number>(n).fill(0);
    const draws = 20_000;
    for (let i = 0; i < draws; i++) counts[Number(set.choose()!.replicaId.slice(1))]!++;
    // Rank k (0 = lightest) wins when it is sampled with a heavier one: P = 2 (n-1-k) / (n (n-1)).
    for (let k = 0; k < n; k++) {
      const expected = (2 * (n - 1 - k)) / (n * (n - 1));
      expect(Math.abs(counts[k]! / draws - expected), `rank ${k}: ${counts[k]}`).toBeLessThan(0.02);
    }
    expect(counts[n - 1]).toBe(0); // the most loaded never wins a comparison
    expect(counts[0]! / draws).toBeGreaterThan(1.8 / n); // about twice what a uniform choice would give it
  });

  it('counts load reported by other callers, not only its own in-flight requests', () => {
    const set = setWithLoads([0, 2]);
    set.report(set.replicas[0]!, 10); // r0 is busy with other callers' work
    for (let i = 0; i < 100; i++) expect(set.choose()?.replicaId).toBe('r1');
    set.report(set.replicas[0]!, 0);
    for (let i = 0; i < 100; i++) expect(set.choose()?.replicaId).toBe('r0');
  });

  it('skips full replicas, scans when both samples are full, and says undefined when all are', () => {
    const set = setWithLoads([3, 3, 3, 1], 3);
    for (let i = 0; i < 200; i++) expect(set.choose()?.replicaId).toBe('r3');
    set.replicas[3]!.inflight = 3;
    expect(set.choose()).toBeUndefined();
    const single = setWithLoads([1], 1);
    expect(single.choose()).toBeUndefined();
    single.replicas[0]!.inflight = 0;
    expect(single.choose()?.replicaId).toBe('r0');
    expect(new ReplicaSet('x').choose()).toBeUndefined();
  });

  it('report keeps others non-negative and relative to its own in-flight count', () => {
    const set = setWithLoads([2]);
    const r = set.replicas[0]!;
    set.report(r, 5);
    expect(r.others).toBe(3);
    set.report(r, 1);
    expect(r.others).toBe(0);
    set.report(r, undefined);
    expect(r.others).toBe(0);
  });

  it('update keeps the counters of replicas that stay and drops those that left', () => {
    const set = setWithLoads([4, 2]);
    set.replicas[0]!.others = 7;
    set.update(entry([['r0', 'w0'], ['r9', 'w9']], { maxOngoingRequests: 8, maxQueuedRequests: 3, requestTimeoutMs: 50 }));
    expect(set.replicas.map((r) => [r.replicaId, r.inflight, r.others])).toEqual([['r0', 4, 7], ['r9', 0, 0]]);
    expect([set.maxOngoingRequests, set.maxQueuedRequests, set.requestTimeoutMs]).toEqual([8, 3, 50]);
    set.remove('r0');
    expect(set.replicas.map((r) => r.replicaId)).toEqual(['r9']);
  });
});

describe('ReplicaSet prefers a replica in its own worker', () => {
  function localSet(loads: number[], local: string, max = 100): ReplicaSet {
    const set = new ReplicaSet('app/d', seeded(7), () => local);
    set.update(entry(loads.map((_, i) => [`r${i}`, `w${i}`]), { maxOngoingRequests: max }));
    set.replicas.forEach((r, i) => { r.inflight = loads[i]!; });
    return set;
  }

  it('takes the local replica while its queue is no longer than the best remote choice', () => {
    const set = localSet([2, 2, 2, 2], 'w3');
    for (let i = 0; i < 200; i++) expect(set.choose()?.replicaId).toBe('r3');
  });

  it('goes remote when the local replica is busier than the remote choice, or full', () => {
    const busier = localSet([0, 0, 0, 3], 'w3');
    for (let i = 0; i < 200; i++) expect(busier.choose()?.replicaId).not.toBe('r3');
    const full = localSet([5, 5, 5, 2], 'w3', 2);
    for (let i = 0; i < 200; i++) expect(full.choose()?.replicaId).toBeUndefined();
    const roomElsewhere = localSet([1, 1, 1, 2], 'w3', 2);
    for (let i = 0; i < 200; i++) expect(roomElsewhere.choose()?.replicaId).not.toBe('r3');
  });

  it('with no local replica (the head, or a worker hosting none) it is plain power of two choices', () => {
    const set = localSet([0, 4], 'w9');
    for (let i = 0; i < 100; i++) expect(set.choose()?.replicaId).toBe('r0');
  });
});
