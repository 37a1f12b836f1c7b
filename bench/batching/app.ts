/**
 * The application bench/batching serves: one batched method over a synthetic model whose batch of n items takes
 * fixedMs + n * perItemMs on its own thread. userConfig sets the curve (`model`) and the batch options (`batch.infer`).
 */
import { Worker } from 'node:worker_threads';
import { batch, deployment } from '@shoal/core';

export interface Curve {
  /** Cost of a batch whatever its size (kernel launch, weights read). */
  fixedMs: number;
  /** Added cost of each item. */
  perItemMs: number;
}

class ModelThread {
  private readonly thread = new Worker(new URL('./model-thread.mjs', import.meta.url));
  private readonly pending = new Map<number, () => void>();
  private nextId = 0;

  constructor() {
    this.thread.on('message', (id: number) => {
      this.pending.get(id)?.();
      this.pending.delete(id);
    });
    this.thread.unref();
  }

  run(ms: number): Promise<void> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      this.thread.postMessage({ id, ms });
    });
  }

  close(): Promise<number> {
    return this.thread.terminate();
  }
}

export class Synthetic {
  private curve: Curve = { fixedMs: 8, perItemMs: 1 };
  private readonly model = new ModelThread();
  /** Answers each item with the size of the batch it ran in. */
  infer = batch(async (xs: number[]) => {
    await this.model.run(this.curve.fixedMs + xs.length * this.curve.perItemMs);
    return xs.map(() => xs.length);
  }, { maxBatchSize: 1, maxWaitMs: 0 });

  reconfigure(userConfig: { model?: Curve }): void {
    if (userConfig.model !== undefined) this.curve = userConfig.model;
  }

  async shutdown(): Promise<void> {
    await this.model.close();
  }
}

export default deployment(Synthetic, { maxOngoingRequests: 128, maxQueuedRequests: 128 }).bind();
