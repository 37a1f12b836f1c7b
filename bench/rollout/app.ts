/**
 * The deployment bench/rollout rolls out: "Model", 2 replicas, each version a different class (so a different
 * version). The model is a 10 ms asynchronous wait (no CPU): what the bench measures is shoal's data path and
 * rollout machinery, not a model's compute. GET /?x=N answers { version, label, y }.
 */
import { deployment, type RolloutOptions, type ShoalRequest } from '@shoal/core';

const MODEL_MS = 10;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const x = (req: ShoalRequest): number => Number(req.query.get('x') ?? 0);
const answer = (version: string, n: number, offset = 0) => ({ version, label: n % 2 === 0 ? 'even' : 'odd', y: 2 * n + offset });

class V1 { async fetch(req: ShoalRequest) { await sleep(MODEL_MS); return answer('v1', x(req)); } }
class V2 { async fetch(req: ShoalRequest) { await sleep(MODEL_MS); return answer('v2', x(req)); } }
/** A near copy of v1 (numbers 0.001 off): what a quantized variant looks like to a shadow comparison. */
class Near { async fetch(req: ShoalRequest) { await sleep(MODEL_MS); return answer('v1', x(req), 0.001); } }
/** Crashes on odd inputs (the bench sends x=1: every request). */
class Faulty {
  async fetch(req: ShoalRequest) {
    await sleep(MODEL_MS);
    if (x(req) % 2 === 1) throw new Error('faulty version: odd inputs crash');
    return answer('faulty', x(req));
  }
}

// A quarter of a core each, so two applications and their shadows fit on the bench's two workers.
const base = { name: 'Model', numReplicas: 2, maxOngoingRequests: 64, resources: { cpus: 0.25 } } as const;
const rolling: RolloutOptions = { maxSurge: 1, maxUnavailable: 0 };
const canary: RolloutOptions = { canary: { steps: [25, 50], stepIntervalMs: 4000, minRequests: 200 } };
/** Stays in the shadow phase for the whole measurement. */
const shadow: RolloutOptions = { shadow: { percent: 100, minComparisons: 100_000_000 } };

export const rollingV1 = deployment(V1, { ...base, rollout: rolling }).bind();
export const rollingV2 = deployment(V2, { ...base, rollout: rolling }).bind();
export const canaryV1 = deployment(V1, { ...base, rollout: canary }).bind();
export const canaryFaulty = deployment(Faulty, { ...base, rollout: canary }).bind();
export const shadowV1 = deployment(V1, { ...base, rollout: shadow }).bind();
export const shadowNear = deployment(Near, { ...base, rollout: shadow }).bind();
