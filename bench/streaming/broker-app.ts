/**
 * The applications bench/streaming/broker.ts deploys: one deployment per broker that consumes a stream and does a
 * small fixed amount of work per message (WORK_MS, awaited, as a model call on an accelerator would be), so that a
 * worker can be killed while messages are in flight. The brokers' addresses come from the bench's environment,
 * which its local workers inherit (SHOAL_BENCH_BROKER_REDIS, SHOAL_BENCH_BROKER_NATS).
 *
 * The short claimIdleMs / ackWaitMs (2 s) keep the redelivery of a killed worker's messages within the bench's
 * run time; maxDeliveries is generous, as a message whose call died with its replica is delivered again, and must
 * not run out of deliveries while the cluster replaces that worker.
 */
import { deployment } from '@shoal/core';

export const WORK_MS = 10;
export const CONCURRENCY = 16;
export const REDELIVER_MS = 2000;

export class BenchScorer {
  async call(x: { i: number }): Promise<{ i: number; score: number; pid: number }> {
    await new Promise((r) => setTimeout(r, WORK_MS));
    return { i: x.i, score: x.i * 2, pid: process.pid };
  }
}

const common = { concurrency: CONCURRENCY, maxDeliveries: 10 } as const;

export const redisBenchApp = deployment(BenchScorer, {
  name: 'bench_redis',
  numReplicas: 2,
  maxOngoingRequests: 2 * CONCURRENCY,
  consume: { redis: { url: process.env.SHOAL_BENCH_BROKER_REDIS ?? 'redis://127.0.0.1:6379', stream: 'bench:jobs', output: 'bench:answers', claimIdleMs: REDELIVER_MS, ...common } },
}).bind();

export const natsBenchApp = deployment(BenchScorer, {
  name: 'bench_nats',
  numReplicas: 2,
  maxOngoingRequests: 2 * CONCURRENCY,
  consume: { nats: { servers: process.env.SHOAL_BENCH_BROKER_NATS ?? 'nats://127.0.0.1:4222', stream: 'BENCHJOBS', output: 'bench.answers', ackWaitMs: REDELIVER_MS, ...common } },
}).bind();
