/**
 * The consumers of one worker: one per `consume` source of every deployment in the applications the head pushed,
 * started and stopped as those change. Each calls its deployment through the worker's own router, so messages
 * spread over every replica, and a call that dies with its replica is retried like any other call.
 */
import type { AppSpec, CompiledConsumeSource, Logger } from '@shoal/core';
import { Consumer, type ConsumerObserver } from './consumer.ts';
import { commonOf, createSource } from './create-source.ts';
import type { Source } from './source.ts';

/** One consumer's gauges, for the worker's metrics. */
export interface ConsumerSample {
  app: string;
  deployment: string;
  source: string;
  /** undefined until sampled, and while the broker cannot be reached. */
  lag: number | undefined;
  inflight: number;
}

export interface ConsumerSetOptions {
  /** This worker's name: its consumer name in every group. */
  consumerName: string;
  logger: Logger;
  /** Calls `method` of the deployment `key` (`app/deployment`) with one argument, within timeoutMs. */
  call: (key: string, method: string, arg: unknown, opts: { timeoutMs: number; signal: AbortSignal }) => Promise<unknown>;
  /** Where each consumer reports its outcomes. @default none */
  observer?: (app: string, deployment: string, source: string) => ConsumerObserver;
  /** How a source is made (tests pass fakes). @default createSource */
  createSource?: (spec: CompiledConsumeSource, consumer: string, logger: Logger, path: string) => Source;
  /** How long a consumer whose source was removed or changed may finish its messages. @default 10000 */
  drainMs?: number;
  /** Whether the deployment `key` has a running replica (see ConsumerOptions.ready). @default always */
  ready?: (key: string) => boolean;
}

interface Entry {
  app: string;
  deployment: string;
  /** The compiled source, as JSON: a changed one is a new consumer. */
  config: string;
  consumer: Consumer;
}

export class ConsumerSet {
  private readonly entries = new Map<string, Entry>();
  private readonly stopping = new Set<Promise<void>>();
  private closed = false;

  constructor(private readonly opts: ConsumerSetOptions) {}

  /** Starts the consumers the applications declare and are not running; stops those no longer declared or changed. */
  update(apps: readonly AppSpec[]): void {
    if (this.closed) return;
    const want = new Map<string, { app: string; deployment: string; spec: CompiledConsumeSource; path: string }>();
    for (const app of apps) {
      for (const d of app.deployments) {
        const list = d.options.consume ?? [];
        list.forEach((spec, i) => {
          // The option path in warnings: `app/deployment consume[1].nats`, as the user wrote it when one source.
          const path = `${app.name}/${d.name} consume${list.length === 1 ? '' : `[${i}]`}.${'redis' in spec ? 'redis' : 'nats'}`;
          want.set(`${app.name}/${d.name}#${commonOf(spec).name}`, { app: app.name, deployment: d.name, spec, path });
        });
      }
    }
    for (const [id, e] of this.entries) {
      const w = want.get(id);
      if (w !== undefined && JSON.stringify(w.spec) === e.config) continue;
      this.entries.delete(id);
      this.retire(e.consumer);
    }
    for (const [id, w] of want) {
      if (this.entries.has(id)) continue;
      const c = commonOf(w.spec);
      const logger = this.opts.logger.child('broker');
      const key = `${w.app}/${w.deployment}`;
      const consumer = new Consumer({
        source: (this.opts.createSource ?? createSource)(w.spec, this.opts.consumerName, logger, w.path),
        concurrency: c.concurrency,
        maxDeliveries: c.maxDeliveries,
        encoding: c.encoding,
        call: (arg, signal) => this.opts.call(key, c.method, arg, { timeoutMs: c.timeoutMs, signal }),
        logger,
        method: c.method,
        methodOption: `${w.path}.method`,
        ...(this.opts.ready !== undefined ? { ready: () => this.opts.ready!(key) } : {}),
        ...(this.opts.observer !== undefined ? { observer: this.opts.observer(w.app, w.deployment, c.name) } : {}),
      });
      this.entries.set(id, { app: w.app, deployment: w.deployment, config: JSON.stringify(w.spec), consumer });
      consumer.start();
    }
  }

  /** Stops every consumer (a worker's graceful stop): each finishes or hands back its messages within drainMs. */
  async stop(drainMs: number): Promise<void> {
    this.closed = true;
    const all = [...this.entries.values()].map((e) => e.consumer.stop(drainMs));
    this.entries.clear();
    await Promise.all([...all, ...this.stopping]);
  }

  samples(): ConsumerSample[] {
    return [...this.entries.values()].map((e) => ({ app: e.app, deployment: e.deployment, source: e.consumer.name, lag: e.consumer.lag, inflight: e.consumer.inflight }));
  }

  private retire(c: Consumer): void {
    const p = c.stop(this.opts.drainMs ?? 10_000).finally(() => this.stopping.delete(p));
    this.stopping.add(p);
  }
}
