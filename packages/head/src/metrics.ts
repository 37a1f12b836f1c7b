/**
 * Prometheus metrics of the whole cluster, served by the ingress at GET /-/metrics: the head's own registry
 * (HTTP requests per application and status code, their latency, the head router's gauges and latency
 * histograms, workers alive, replicas by state, the head's event-loop delay) merged with every live worker's
 * registry, fetched as JSON over the worker's connection. docs/METRICS.md lists every series.
 * A worker that does not answer within workerTimeoutMs is left out of that scrape (and logged): a scrape
 * never waits on a stuck worker.
 */
import { AggregatorRegistry, Counter, Gauge, Histogram, Registry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import { HttpMetrics, RouterMetrics, WebSocketMetrics } from '@shoal/ingress';
import { EventLoopDelayGauge, registerProcessMetrics, type Logger, type MetricsJson } from '@shoal/core';
import type { ReplicaState } from '@shoal/protocol';
import type { ClusterStatus } from './controller.ts';

export interface WorkerMetricsSource {
  workerId: string;
  /** Asks the worker for its registry as JSON; `abandon` forgets the request, so a late answer is dropped. */
  request(): { reply: Promise<unknown>; abandon(): void };
}

export interface HeadMetricsOptions {
  status: () => Pick<ClusterStatus, 'applications' | 'replicas' | 'workers'>;
  /** The head router's gauges, per deployment key (`Router.stats()`). */
  router: () => Record<string, { inflight: number; waiting: number; replicas: number }>;
  /** Workers to scrape (the live connections). */
  workers: () => WorkerMetricsSource[];
  logger: Logger;
  /** How long a scrape waits for a worker's answer. @default 1000 */
  workerTimeoutMs?: number;
  /** Event-loop sampling period (Node's minimum is 1). @default 10 */
  eventLoopResolutionMs?: number;
}

export const METRICS_CONTENT_TYPE = Registry.PROMETHEUS_CONTENT_TYPE;

const STATES: readonly ReplicaState[] = ['STARTING', 'RUNNING', 'DRAINING', 'STOPPED', 'FAILED'];

/**
 * One exposition from several registries' JSON (the head's and each worker's): one HELP and TYPE per name,
 * series kept apart by their labels (every worker's carry worker=<id>).
 */
export function mergeMetrics(parts: readonly MetricsJson[]): Registry {
  return AggregatorRegistry.aggregate(parts as Array<Array<MetricObjectWithValues<MetricValue<string>>>>);
}

/**
 * SLO and cost gauges, read from status on each scrape (docs/slo.md). A figure status reports as null (a window
 * without requests, no prices) has no series rather than a made-up value.
 */
function registerSloMetrics(status: HeadMetricsOptions['status'], registers: Registry[]): void {
  type Dep = ClusterStatus['applications'][number]['deployments'][number];
  const each = (g: Gauge, f: (labels: { app: string; deployment: string }, d: Dep) => void): void => {
    g.reset();
    for (const a of status().applications) for (const d of a.deployments) f({ app: a.name, deployment: d.name }, d);
  };
  const set = (g: Gauge, labels: Record<string, string>, v: number | null | undefined): void => { if (v !== null && v !== undefined) g.set(labels, v); };
  const objective = ['app', 'deployment', 'objective'];
  new Gauge({
    name: 'shoal_slo_objective', help: 'Target share of good requests of each SLO objective of a deployment (options.slo).', labelNames: objective, registers,
    collect() { each(this, (l, d) => { for (const o of d.slo?.objectives ?? []) this.set({ ...l, objective: o.name }, o.target); }); },
  });
  new Gauge({
    name: 'shoal_slo_attainment_ratio', help: 'Share of good requests of an SLO objective over a window (5m, 1h, period); absent without requests.', labelNames: [...objective, 'window'], registers,
    collect() { each(this, (l, d) => { for (const o of d.slo?.objectives ?? []) for (const [window, v] of Object.entries(o.attainment)) set(this, { ...l, objective: o.name, window }, v); }); },
  });
  new Gauge({
    name: 'shoal_slo_error_budget_remaining_ratio', help: 'Share of the error budget of an SLO objective left over its compliance period (below 0: overspent).', labelNames: objective, registers,
    collect() { each(this, (l, d) => { for (const o of d.slo?.objectives ?? []) set(this, { ...l, objective: o.name }, o.budgetRemaining); }); },
  });
  new Gauge({
    name: 'shoal_slo_burn_rate', help: 'Error budget burn rate of an SLO objective over a window (5m, 30m, 1h, 6h): 1 spends the budget exactly over the period.', labelNames: [...objective, 'window'], registers,
    collect() { each(this, (l, d) => { for (const o of d.slo?.objectives ?? []) for (const [window, v] of Object.entries(o.burn)) set(this, { ...l, objective: o.name, window }, v); }); },
  });
  new Gauge({
    name: 'shoal_slo_alerting', help: 'Whether an SLO objective pages: 1 when the 1h and 5m burn rates both exceed 14.4, or the 6h and 30m ones both exceed 6, each window covered in full by the data (docs/slo.md).', labelNames: objective, registers,
    collect() { each(this, (l, d) => { for (const o of d.slo?.objectives ?? []) this.set({ ...l, objective: o.name }, o.alerting ? 1 : 0); }); },
  });
  new Gauge({
    name: 'shoal_cost_per_1k_requests', help: 'Cost of a deployment\'s allocated cores and devices over the last hour per 1,000 requests answered, at the head\'s prices.', labelNames: ['app', 'deployment'], registers,
    collect() { each(this, (l, d) => set(this, l, d.cost?.costPer1kRequests)); },
  });
  new Gauge({
    name: 'shoal_busy_cost_per_1k_requests', help: 'Cost of the core and device time a deployment\'s replicas were busy (a request in user code) over the last hour per 1,000 requests answered, at the head\'s prices.', labelNames: ['app', 'deployment'], registers,
    collect() { each(this, (l, d) => set(this, l, d.cost?.busyCostPer1kRequests)); },
  });
  new Gauge({
    name: 'shoal_idle_capacity_ratio', help: 'Share of a deployment\'s replica time over the last hour with no request in user code.', labelNames: ['app', 'deployment'], registers,
    collect() { each(this, (l, d) => set(this, l, d.cost?.idleShare)); },
  });
}

export class HeadMetrics {
  readonly registry = new Registry();
  private readonly http: HttpMetrics;
  /** The WebSocket series of the head's own ingress (no local workers). */
  readonly websocket: WebSocketMetrics;
  /** The head router's series (end-to-end time, wait for a slot): Router's onAnswered and onQueued. */
  readonly routes: RouterMetrics;
  private readonly timeoutMs: number;
  private readonly loop: EventLoopDelayGauge;
  private readonly loopGauges: { p50: Gauge; p99: Gauge; max: Gauge };

  /**
   * The status of the scrape in progress: computed once per scrape and shared by every gauge that reads it (a
   * ClusterStatus is built from the whole controller, with SLO and cost figures; ten gauges each building one was
   * ten times the work). Outside a scrape (a bare registry read) each read takes status afresh.
   */
  private scrapeStatus: ReturnType<HeadMetricsOptions['status']> | undefined;

  constructor(private readonly opts: HeadMetricsOptions) {
    this.timeoutMs = opts.workerTimeoutMs ?? 1000;
    const registers = [this.registry];
    const status = (): ReturnType<HeadMetricsOptions['status']> => this.scrapeStatus ?? opts.status();
    this.http = new HttpMetrics(this.registry);
    this.websocket = new WebSocketMetrics(this.registry);
    this.routes = new RouterMetrics(this.registry);
    this.loop = new EventLoopDelayGauge(opts.eventLoopResolutionMs ?? 10);
    // The head's own names (the workers' are shoal_worker_event_loop_delay_*): one gauge per percentile, as there.
    this.loopGauges = {
      p50: new Gauge({ name: 'shoal_head_event_loop_delay_p50_seconds', help: 'Median event-loop delay of the head process since the previous scrape.', registers }),
      p99: new Gauge({ name: 'shoal_head_event_loop_delay_p99_seconds', help: '99th percentile of the head process\'s event-loop delay since the previous scrape.', registers }),
      max: new Gauge({ name: 'shoal_head_event_loop_delay_max_seconds', help: 'Largest event-loop delay of the head process since the previous scrape.', registers }),
    };
    new Gauge({
      name: 'shoal_router_inflight_requests', help: 'Requests the head\'s router has in flight to replicas, per deployment.', labelNames: ['deployment'], registers,
      collect() { this.reset(); for (const [deployment, s] of Object.entries(opts.router())) this.set({ deployment }, s.inflight); },
    });
    new Gauge({
      name: 'shoal_router_waiting_requests', help: 'Requests waiting in the head\'s router for a replica slot, per deployment.', labelNames: ['deployment'], registers,
      collect() { this.reset(); for (const [deployment, s] of Object.entries(opts.router())) this.set({ deployment }, s.waiting); },
    });
    new Gauge({
      name: 'shoal_workers_alive', help: 'Workers connected and heartbeating.', registers,
      collect() { this.set(status().workers.filter((w) => w.state === 'ALIVE').length); },
    });
    new Gauge({
      name: 'shoal_replicas', help: 'Replicas per deployment and lifecycle state, as the controller records them.', labelNames: ['app', 'deployment', 'state'], registers,
      collect() {
        this.reset();
        const st = status();
        for (const a of st.applications) for (const d of a.deployments) for (const state of STATES) this.set({ app: a.name, deployment: d.name, state }, 0);
        for (const r of st.replicas) this.inc({ app: r.app, deployment: r.deployment, state: r.state });
      },
    });
    new Gauge({
      name: 'shoal_autoscaling_target_replicas', help: 'Replica count autoscaling keeps now, per autoscaled deployment.', labelNames: ['app', 'deployment'], registers,
      collect() {
        this.reset();
        for (const a of status().applications) for (const d of a.deployments) if (d.autoscaling !== undefined) this.set({ app: a.name, deployment: d.name }, d.autoscaling.target);
      },
    });
    this.decisions = new Counter({ name: 'shoal_autoscaling_decisions_total', help: 'Autoscaling decisions, per deployment and reason (upscale, downscale, downscale-to-zero, scale-from-zero, bounds).', labelNames: ['deployment', 'reason'], registers });
    this.coldStart = new Histogram({ name: 'shoal_replica_start_seconds', help: 'Time from the head asking a worker to start a replica to the replica running (cold start), per deployment.', labelNames: ['deployment'], buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120], registers });
    this.workersLost = new Counter({ name: 'shoal_workers_lost_total', help: 'Workers declared dead (silent past the timeout, disconnected and not back, or their process exited), with the reason kind.', labelNames: ['reason'], registers });
    this.rollouts = new Counter({ name: 'shoal_rollout_decisions_total', help: 'Rollout decisions, per deployment and action (start, shadow passed, step, promote, rollback, failed, abort, done).', labelNames: ['deployment', 'action'], registers });
    new Gauge({
      name: 'shoal_rollout_traffic_percent', help: 'Share of live traffic the new version of a deployment gets while a canary or experiment runs (mirrored share for a shadow).', labelNames: ['app', 'deployment', 'phase'], registers,
      collect() {
        this.reset();
        for (const a of status().applications) for (const d of a.deployments) if (d.rollout !== undefined) this.set({ app: a.name, deployment: d.name, phase: d.rollout.phase }, d.rollout.percent);
      },
    });
    registerSloMetrics(status, registers);
    registerProcessMetrics(this.registry);
  }

  private readonly rollouts: Counter;
  private readonly decisions: Counter;
  private readonly coldStart: Histogram;
  private readonly workersLost: Counter;

  observeRollout(deployment: string, action: string): void {
    this.rollouts.inc({ deployment, action });
  }

  observeAutoscale(deployment: string, reason: string): void {
    this.decisions.inc({ deployment, reason });
  }

  observeReplicaStart(deployment: string, seconds: number): void {
    this.coldStart.observe({ deployment }, seconds);
  }

  observeWorkerLost(reason: 'timeout' | 'disconnected' | 'exited' | 'other'): void {
    this.workersLost.inc({ reason });
  }

  /** Records one answered HTTP request of an application. */
  observeHttp(app: string, code: number, seconds: number): void {
    this.http.observeHttp(app, code, seconds);
  }

  /** Stops sampling the event loop. */
  close(): void {
    this.loop.close();
  }

  /** The merged exposition: this head's registry and every worker that answered in time. */
  async scrape(): Promise<string> {
    // The window since the previous scrape, less the sampling period itself (an idle loop reads 0, as a worker's).
    const loop = this.loop.snapshot(true);
    this.loopGauges.p50.set(loop.p50Ms / 1e3);
    this.loopGauges.p99.set(loop.p99Ms / 1e3);
    this.loopGauges.max.set(loop.maxMs / 1e3);
    const workers = await Promise.all(this.opts.workers().map((w) => this.fetchWorker(w)));
    const mine = this.opts.status();
    this.scrapeStatus = mine;
    let own: MetricsJson;
    try {
      own = await this.registry.getMetricsAsJSON() as MetricsJson;
    } finally {
      // An overlapping scrape may have set its own since: leave that one for it.
      if (this.scrapeStatus === mine) this.scrapeStatus = undefined;
    }
    return mergeMetrics([own, ...workers.filter((w): w is MetricsJson => w !== undefined)]).metrics();
  }

  private async fetchWorker(w: WorkerMetricsSource): Promise<MetricsJson | undefined> {
    const { reply, abandon } = w.request();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), this.timeoutMs); });
    try {
      const value = await Promise.race([reply, timeout]);
      if (value === 'timeout') {
        abandon();
        this.opts.logger.warn('worker left out of this metrics scrape: no answer in time', { workerId: w.workerId, timeoutMs: this.timeoutMs });
        return undefined;
      }
      if (!Array.isArray(value)) {
        this.opts.logger.warn('worker left out of this metrics scrape: its answer is not a metrics array', { workerId: w.workerId, type: typeof value });
        return undefined;
      }
      return value as MetricsJson;
    } catch (err) {
      this.opts.logger.warn('worker left out of this metrics scrape', { workerId: w.workerId, reason: (err as Error).message });
      return undefined;
    } finally {
      clearTimeout(timer);
    }
  }
}
