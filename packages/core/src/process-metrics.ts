/**
 * A few process metrics under their usual Prometheus names, for the head's and every worker's registry.
 * Written here rather than prom-client's collectDefaultMetrics: several of those are gauges whose names end in
 * `_total`, which `promtool check metrics` rejects, and they would start a second event-loop monitor.
 */
import type { MetricObjectWithValues, MetricValue, Registry } from 'prom-client';
import { Counter, Gauge } from './prom.ts';

/** What a registry's getMetricsAsJSON() gives: what a worker sends the head, and what the head merges. */
export type MetricsJson = Array<MetricObjectWithValues<MetricValue<string>>>;

export function registerProcessMetrics(registry: Registry): void {
  const startSeconds = Math.round(Date.now() / 1000 - process.uptime());
  new Counter({
    name: 'process_cpu_seconds_total', help: 'User and system CPU time spent, in seconds.', registers: [registry],
    collect() {
      const { user, system } = process.cpuUsage();
      this.reset();
      this.inc((user + system) / 1e6);
    },
  });
  new Gauge({
    name: 'process_start_time_seconds', help: 'Start time of the process since the Unix epoch, in seconds.', registers: [registry],
    collect() { this.set(startSeconds); },
  });
  new Gauge({
    name: 'process_resident_memory_bytes', help: 'Resident memory size, in bytes.', registers: [registry],
    collect() { this.set(process.memoryUsage.rss()); },
  });
  new Gauge({
    name: 'nodejs_heap_size_used_bytes', help: 'V8 heap in use, in bytes.', registers: [registry],
    collect() { this.set(process.memoryUsage().heapUsed); },
  });
}
