/**
 * The worker's Prometheus registry, labelled worker=<workerId>: per replica gauges (requests running and queued,
 * lifecycle state), per batched method its queue and counters, a multiplexed replica's model cache, this worker's router, the event loop's delay, and
 * the native addon's device, blob and pool gauges when the addon is loaded, and the shoal_cascade_* series that
 * cascade replicas record (see @shoal/core's cascade/metrics.ts). Per deployment (no replica label, so their
 * number stays bounded) the latency histograms its replicas and router feed: queue wait, compute, batch wait, run
 * and size, batch release reasons, model load time, and end-to-end time (see docs/METRICS.md). The head asks for it
 * with a `metrics` message and merges every worker's answer into one exposition (see the head's metrics.ts).
 */
import { Counter, Gauge, Histogram, Registry } from '@shoal/core/prom';
import { EventLoopDelayGauge, FastCounter, FastHistogram, type CounterChild, type HistogramChild, registerCascadeMetrics, registerProcessMetrics, type BatchObserver, type BatchReleaseReason, type Logger, type MetricsJson } from '@shoal/core';
import type { ReplicaState, WorkerStats } from '@shoal/protocol';
import { DURATION_BUCKETS, HttpMetrics, RouterMetrics, WebSocketMetrics } from '@shoal/ingress';
import type { ReplicaObserver } from './replica.ts';
import { CacheMetrics } from './cache-metrics.ts';
import { SemanticCacheMetrics } from './semantic-cache-metrics.ts';
import { BrokerMetrics } from './broker-metrics.ts';
import type { ConsumerSample } from '@shoal/broker';
import type { SemanticCacheSize } from '@shoal/cache';
import type { CacheStats } from '@shoal/router';

/** A gauge sample as the native addon reports it (`NativeRuntime.metrics()`). */
export interface NativeGaugeSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface WorkerMetricsOptions {
  /** The worker's id (known once the head welcomed it). */
  workerId: () => string;
  stats: () => WorkerStats;
  /** The native addon's gauges; absent when the addon is not loaded. */
  native?: () => NativeGaugeSample[];
  logger: Logger;
  /** The router's response caches, for their size gauges. @default none */
  cacheStats?: () => CacheStats[];
  /** The replicas' semantic caches, for their entries gauge. @default none */
  semanticCaches?: () => SemanticCacheSize[];
  /** The broker consumers, for their lag and in-flight gauges. @default none */
  brokerConsumers?: () => ConsumerSample[];
  /** Event-loop sampling period (Node's minimum is 1). @default 10 */
  eventLoopResolutionMs?: number;
}

export type { MetricsJson };

const STATES: readonly ReplicaState[] = ['STARTING', 'RUNNING', 'DRAINING', 'STOPPED', 'FAILED'];
const REPLICA = ['app', 'deployment', 'replica'] as const;
const METHOD = [...REPLICA, 'method'] as const;
const DEPLOYMENT = ['app', 'deployment'] as const;
const DEPLOYMENT_METHOD = [...DEPLOYMENT, 'method'] as const;
/** Batch sizes: powers of two up to the largest maxBatchSize worth batching. */
const BATCH_SIZE_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];
/** Model load times, in seconds: from a small model in the page cache to a large one from a slow disk. */
const LOAD_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

/** Help lines of the addon's samples; a sample not listed gets a generic one. */
const NATIVE_HELP: Record<string, string> = {
  shoal_native_device_total_bytes: 'Device memory, in bytes.',
  shoal_native_device_free_bytes: 'Free device memory, in bytes.',
  shoal_native_blob_resident_bytes: 'Shared weight blobs resident on the device, in bytes.',
  shoal_native_blob_idle_bytes: 'Resident weight blobs that nothing references (evictable), in bytes.',
  shoal_native_blob_evicted_bytes: 'Weight blobs evicted to host memory, in bytes.',
  shoal_native_blob_refs: 'References held on weight blobs.',
  shoal_native_pool_budget_bytes: 'Byte budget of a memory pool.',
  shoal_native_pool_used_bytes: 'Bytes a memory pool has handed out.',
  shoal_native_pool_cached_bytes: 'Bytes a memory pool keeps cached for reuse.',
  shoal_native_pool_peak_bytes: 'Highest bytes a memory pool has handed out.',
  shoal_native_pool_cache_hits: 'Allocations a memory pool served from its cache.',
  shoal_native_pool_cache_misses: 'Allocations a memory pool took from the device.',
};

export class WorkerMetrics {
  readonly registry = new Registry();
  private readonly loop: EventLoopDelayGauge;
  private readonly native = new Map<string, Gauge>();
  private nativeFailed = false;
  private readonly http: HttpMetrics;
  /** The ingress's WebSocket series (connections, messages). */
  readonly websocket: WebSocketMetrics;
  /** This worker's router's series (end-to-end time, wait for a slot): Router's onAnswered and onQueued. */
  readonly routes: RouterMetrics;
  /** The response caches' series: the router's CacheObserver. */
  readonly cache: CacheMetrics;
  /** The semantic caches' series: each replica's SemanticCacheObserver. */
  readonly semantic: SemanticCacheMetrics;
  /** The broker consumers' series: each consumer's ConsumerObserver. */
  readonly broker: BrokerMetrics;
  private readonly h: {
    queueWait: FastHistogram<typeof DEPLOYMENT[number]>;
    compute: FastHistogram<typeof DEPLOYMENT[number]>;
    batchWait: FastHistogram<typeof DEPLOYMENT_METHOD[number]>;
    batchSize: FastHistogram<typeof DEPLOYMENT_METHOD[number]>;
    batchRun: FastHistogram<typeof DEPLOYMENT_METHOD[number]>;
    releases: FastCounter<typeof DEPLOYMENT_METHOD[number] | 'reason'>;
    modelLoad: Histogram<typeof DEPLOYMENT[number] | 'result'>;
  };
  /** Cascade replicas of this process record their shoal_cascade_* series into this registry. */
  private readonly cascades: { close(): void };
  readonly contentType = Registry.PROMETHEUS_CONTENT_TYPE;
  private readonly g: {
    ongoing: Gauge<typeof REPLICA[number]>;
    queued: Gauge<typeof REPLICA[number]>;
    state: Gauge<typeof REPLICA[number] | 'state'>;
    batchQueued: Gauge<typeof METHOD[number]>;
    batchRunning: Gauge<typeof METHOD[number]>;
    batchMaxSize: Gauge<typeof METHOD[number]>;
    batches: Counter<typeof METHOD[number] | 'size'>;
    items: Counter<typeof METHOD[number] | 'result'>;
    modelsHeld: Gauge<typeof REPLICA[number]>;
    modelEvents: Counter<typeof REPLICA[number] | 'event'>;
    routerInflight: Gauge<'deployment'>;
    routerWaiting: Gauge<'deployment'>;
    loopP50: Gauge;
    loopP99: Gauge;
    loopMax: Gauge;
  };

  constructor(private readonly opts: WorkerMetricsOptions) {
    const registers = [this.registry];
    this.g = {
      ongoing: new Gauge({ name: 'shoal_replica_ongoing_requests', help: 'Requests running in a replica\'s user code.', labelNames: REPLICA, registers }),
      queued: new Gauge({ name: 'shoal_replica_queued_requests', help: 'Requests waiting in a replica for a slot.', labelNames: REPLICA, registers }),
      state: new Gauge({ name: 'shoal_replica_state', help: 'Replica lifecycle state: 1 for the current state, 0 for the others.', labelNames: [...REPLICA, 'state'], registers }),
      batchQueued: new Gauge({ name: 'shoal_batch_queued_items', help: 'Items waiting in a batched method\'s queue.', labelNames: METHOD, registers }),
      batchRunning: new Gauge({ name: 'shoal_batch_running_items', help: 'Items in a batched method\'s running batches.', labelNames: METHOD, registers }),
      batchMaxSize: new Gauge({ name: 'shoal_batch_max_size', help: 'Largest batch a batched method forms now (its option, or the adaptive controller\'s choice).', labelNames: METHOD, registers }),
      batches: new Counter({ name: 'shoal_batch_batches_total', help: 'Batches a batched method dispatched, by batch size.', labelNames: [...METHOD, 'size'], registers }),
      items: new Counter({ name: 'shoal_batch_items_total', help: 'Items through a batched method, by what became of them.', labelNames: [...METHOD, 'result'], registers }),
      modelsHeld: new Gauge({ name: 'shoal_multiplex_models_held', help: 'Models a multiplexed replica holds (loaded or being loaded).', labelNames: REPLICA, registers }),
      modelEvents: new Counter({ name: 'shoal_multiplex_model_events_total', help: 'A multiplexed replica\'s model cache: hit and miss (getModel found its model held or not), load, load_failure, eviction.', labelNames: [...REPLICA, 'event'], registers }),
      routerInflight: new Gauge({ name: 'shoal_worker_router_inflight_requests', help: 'Handle calls this worker\'s replicas have in flight, per target deployment.', labelNames: ['deployment'], registers }),
      routerWaiting: new Gauge({ name: 'shoal_worker_router_waiting_requests', help: 'Handle calls waiting in this worker\'s router for a replica slot, per target deployment.', labelNames: ['deployment'], registers }),
      // One gauge per percentile: promtool refuses a `quantile` label on anything but a summary.
      loopP50: new Gauge({ name: 'shoal_worker_event_loop_delay_p50_seconds', help: 'Median event-loop delay since the previous scrape.', registers }),
      loopP99: new Gauge({ name: 'shoal_worker_event_loop_delay_p99_seconds', help: '99th percentile of event-loop delay since the previous scrape.', registers }),
      loopMax: new Gauge({ name: 'shoal_worker_event_loop_delay_max_seconds', help: 'Largest event-loop delay since the previous scrape.', registers }),
    };
    this.h = {
      queueWait: new FastHistogram({ name: 'shoal_request_queue_wait_seconds', help: 'Time a request waited in a replica for a slot (maxOngoingRequests), 0 when one was free, per deployment.', labelNames: DEPLOYMENT, buckets: DURATION_BUCKETS, registers }),
      // A batched method's time in user code is its batch's run (shoal_batch_run_seconds): counting it here too would
      // count twice a request whose method (fetch, say) calls a batched field itself.
      compute: new FastHistogram({ name: 'shoal_request_compute_seconds', help: 'Time a request to an unbatched method spent in user code, from getting its replica slot to its answer, per deployment (batched methods: shoal_batch_run_seconds).', labelNames: DEPLOYMENT, buckets: DURATION_BUCKETS, registers }),
      batchWait: new FastHistogram({ name: 'shoal_batch_wait_seconds', help: 'Time an item waited in a batched method\'s queue until its batch was dispatched.', labelNames: DEPLOYMENT_METHOD, buckets: DURATION_BUCKETS, registers }),
      batchSize: new FastHistogram({ name: 'shoal_batch_size', help: 'Items per dispatched batch of a batched method.', labelNames: DEPLOYMENT_METHOD, buckets: BATCH_SIZE_BUCKETS, registers }),
      batchRun: new FastHistogram({ name: 'shoal_batch_run_seconds', help: 'Time a batched method\'s batch function took per batch (answered or failed): the compute time of each request in it.', labelNames: DEPLOYMENT_METHOD, buckets: DURATION_BUCKETS, registers }),
      releases: new FastCounter({ name: 'shoal_batch_releases_total', help: 'Batches dispatched, by why: full (maxBatchSize), preferred (a preferredBatchSizes size), timeout (maxWaitMs), adaptive (the adaptive controller\'s smaller limits), idle (it came to an idle queue).', labelNames: [...DEPLOYMENT_METHOD, 'reason'], registers }),
      modelLoad: new Histogram({ name: 'shoal_multiplex_model_load_seconds', help: 'Time a multiplexed replica\'s loadModel hook took, per deployment and result (ok or error).', labelNames: [...DEPLOYMENT, 'result'], buckets: LOAD_BUCKETS, registers }),
    };
    this.routes = new RouterMetrics(this.registry);
    this.cache = new CacheMetrics(this.registry);
    this.semantic = new SemanticCacheMetrics(this.registry);
    this.broker = new BrokerMetrics(this.registry);
    registerProcessMetrics(this.registry);
    this.http = new HttpMetrics(this.registry);
    this.websocket = new WebSocketMetrics(this.registry);
    this.cascades = registerCascadeMetrics(this.registry, { buckets: DURATION_BUCKETS });
    this.loop = new EventLoopDelayGauge(opts.eventLoopResolutionMs ?? 10);
  }

  /** Records one HTTP request this worker's ingress answered. */
  observeHttp(app: string, code: number, seconds: number): void {
    this.http.observeHttp(app, code, seconds);
  }

  /**
   * What a replica of `app`/`deployment` reports its per-request times to (ReplicaInit.observer). Label objects are
   * made here once, so an observation allocates none.
   */
  replicaObserver(app: string, deployment: string): ReplicaObserver {
    const labels = { app, deployment };
    const { batchWait, batchSize, batchRun, releases, modelLoad } = this.h;
    // Bound on first use: a deployment whose requests all go to batched methods has no compute series.
    let queueWait: HistogramChild | undefined;
    let compute: HistogramChild | undefined;
    const loadOk = { ...labels, result: 'ok' };
    const loadError = { ...labels, result: 'error' };
    return {
      queueWaited: (waitMs) => (queueWait ??= this.h.queueWait.child(labels)).observe(waitMs / 1e3),
      computed: (computeMs) => (compute ??= this.h.compute.child(labels)).observe(computeMs / 1e3),
      modelLoaded: (loadMs, ok) => modelLoad.observe(ok ? loadOk : loadError, loadMs / 1e3),
      batch: (method): BatchObserver => {
        const ml = { ...labels, method };
        const size = batchSize.child(ml);
        const wait = batchWait.child(ml);
        const run = batchRun.child(ml);
        const byReason = new Map<BatchReleaseReason, CounterChild>();
        return {
          released: (n, reason) => {
            size.observe(n);
            let rl = byReason.get(reason);
            if (rl === undefined) { rl = releases.child({ ...ml, reason }); byReason.set(reason, rl); }
            rl.inc();
          },
          waited: (waitMs) => wait.observe(waitMs / 1e3),
          ran: (runMs) => run.observe(runMs / 1e3),
        };
      },
    };
  }

  /** This worker's registry alone as Prometheus text (what /-/metrics answers when the head cannot). */
  async text(): Promise<string> {
    this.refresh();
    this.registry.setDefaultLabels({ worker: this.opts.workerId() });
    return this.registry.metrics();
  }

  /** The registry as JSON (prom-client's getMetricsAsJSON), every series labelled with this worker's id. */
  async json(): Promise<MetricsJson> {
    this.refresh();
    this.registry.setDefaultLabels({ worker: this.opts.workerId() });
    return await this.registry.getMetricsAsJSON() as MetricsJson;
  }

  close(): void {
    this.loop.close();
    this.cascades.close();
  }

  /** Sets every gauge from one snapshot; series of replicas and methods that are gone disappear. */
  private refresh(): void {
    const g = this.g;
    for (const m of [g.ongoing, g.queued, g.state, g.batchQueued, g.batchRunning, g.batchMaxSize, g.batches, g.items, g.modelsHeld, g.modelEvents, g.routerInflight, g.routerWaiting]) m.reset();
    const stats = this.opts.stats();
    if (this.opts.cacheStats !== undefined) this.cache.refresh(this.opts.cacheStats());
    if (this.opts.semanticCaches !== undefined) this.semantic.refresh(this.opts.semanticCaches());
    if (this.opts.brokerConsumers !== undefined) this.broker.refresh(this.opts.brokerConsumers());
    for (const r of stats.replicas) {
      const labels = { app: r.app, deployment: r.deployment, replica: r.replicaId };
      g.ongoing.set(labels, r.ongoing);
      g.queued.set(labels, r.queued);
      for (const s of STATES) g.state.set({ ...labels, state: s }, s === r.state ? 1 : 0);
      if (r.models !== undefined) {
        const m = r.models;
        g.modelsHeld.set(labels, m.models.length);
        const events: Record<string, number> = { hit: m.hits, miss: m.misses, load: m.loads, load_failure: m.loadFailures, eviction: m.evictions };
        for (const [event, n] of Object.entries(events)) g.modelEvents.inc({ ...labels, event }, n);
      }
      for (const [method, b] of Object.entries(r.batch)) {
        const ml = { ...labels, method };
        g.batchQueued.set(ml, b.queued);
        g.batchRunning.set(ml, b.running);
        g.batchMaxSize.set(ml, b.effective.maxBatchSize);
        for (const [size, n] of Object.entries(b.batchSizeCounts)) g.batches.inc({ ...ml, size }, n);
        const t = b.totals;
        const results: Record<string, number> = {
          submitted: t.submitted, succeeded: t.succeeded, failed: t.failed, cancelled: t.cancelled,
          deadline_exceeded: t.deadlineExceeded, queue_timed_out: t.queueTimedOut, delayed: t.delayed, rejected_queue_full: t.rejectedQueueFull,
        };
        for (const [result, n] of Object.entries(results)) g.items.inc({ ...ml, result }, n);
      }
    }
    for (const [deployment, s] of Object.entries(stats.router)) {
      g.routerInflight.set({ deployment }, s.inflight);
      g.routerWaiting.set({ deployment }, s.waiting);
    }
    // The window since the previous scrape, less the sampling period itself (an idle loop reads 0, not 10 ms).
    const loop = this.loop.snapshot(true);
    g.loopP50.set(loop.p50Ms / 1e3);
    g.loopP99.set(loop.p99Ms / 1e3);
    g.loopMax.set(loop.maxMs / 1e3);
    this.refreshNative();
  }

  private refreshNative(): void {
    if (this.opts.native === undefined || this.nativeFailed) return;
    let samples: NativeGaugeSample[];
    try {
      samples = this.opts.native();
    } catch (err) {
      // A broken addon must not break every later scrape's log too: report once, then leave its gauges out.
      this.nativeFailed = true;
      this.opts.logger.warn('native metrics failed; leaving them out of this worker\'s metrics', { reason: (err as Error).message });
      for (const name of this.native.keys()) this.registry.removeSingleMetric(name);
      this.native.clear();
      return;
    }
    for (const gauge of this.native.values()) gauge.reset();
    for (const s of samples) {
      let gauge = this.native.get(s.name);
      if (gauge === undefined) {
        gauge = new Gauge({ name: s.name, help: NATIVE_HELP[s.name] ?? 'Gauge reported by the native addon.', labelNames: Object.keys(s.labels), registers: [this.registry] });
        this.native.set(s.name, gauge);
      }
      gauge.set(s.labels, s.value);
    }
  }
}
