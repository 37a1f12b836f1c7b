/**
 * Broker ingress series (docs/broker.md): each consumer's outcomes through its ConsumerObserver, and its lag and
 * in-flight messages, read at each scrape from the lag the consumer samples every second. Label objects are bound
 * once per source.
 */
import type { Registry } from 'prom-client';
import { Gauge } from '@shoal/core/prom';
import { FastCounter, type CounterChild } from '@shoal/core';
import { MESSAGE_RESULTS, type ConsumerObserver, type ConsumerSample, type MessageResult } from '@shoal/broker';

const LABELS = ['app', 'deployment', 'source'] as const;

export class BrokerMetrics {
  private readonly messages: FastCounter<typeof LABELS[number] | 'result'>;
  private readonly lag: Gauge<typeof LABELS[number]>;
  private readonly inflight: Gauge<typeof LABELS[number]>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.messages = new FastCounter({ name: 'shoal_broker_messages_total', help: 'Broker messages this worker settled, by result: answered (answer written, message acknowledged), duplicate (an answer for its idempotency key was already written), dead_lettered (written to the dead-letter output), failed (left for redelivery).', labelNames: [...LABELS, 'result'], registers });
    this.lag = new Gauge({ name: 'shoal_broker_lag', help: 'Messages of a consumed stream not answered yet: not delivered, plus delivered and unacknowledged (sampled every second; the same value from every worker consuming it).', labelNames: LABELS, registers });
    this.inflight = new Gauge({ name: 'shoal_broker_inflight', help: 'Broker messages this worker has taken and not yet settled (at most the source\'s concurrency).', labelNames: LABELS, registers });
  }

  observer(app: string, deployment: string, source: string): ConsumerObserver {
    const labels = { app, deployment, source };
    const byResult = new Map<MessageResult, CounterChild>(MESSAGE_RESULTS.map((r) => [r, this.messages.child({ ...labels, result: r })]));
    return { settled: (r) => byResult.get(r)!.inc() };
  }

  /** Sets the gauges from the worker's consumers (called at each scrape); a lag not sampled yet is left out. */
  refresh(samples: readonly ConsumerSample[]): void {
    this.lag.reset();
    this.inflight.reset();
    for (const s of samples) {
      const labels = { app: s.app, deployment: s.deployment, source: s.source };
      if (s.lag !== undefined) this.lag.set(labels, s.lag);
      this.inflight.set(labels, s.inflight);
    }
  }
}
