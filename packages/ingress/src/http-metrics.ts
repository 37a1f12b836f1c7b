/**
 * The HTTP series every ingress records (the head's when it serves HTTP itself, every worker's): answered
 * requests per application and status code, and their latency; and the series every router records (the head's
 * and every worker's): each routed request's end-to-end time and its wait for a replica slot. One definition,
 * registered in whichever registry the process exposes, so the merged exposition has one HELP and TYPE per name.
 */
import type { Registry } from 'prom-client';
import { FastCounter, FastHistogram, type CounterChild, type HistogramChild, type StreamEndReason } from '@shoal/core';

/** Request latency buckets, in seconds: from a cache hit to a slow generation. */
export const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** One application's series: its latency child, and its counter child per status code (a handful). */
interface AppSeries { duration: HistogramChild; codes: Map<number, CounterChild> }

export class HttpMetrics {
  private readonly requests: FastCounter<'app' | 'code'>;
  private readonly duration: FastHistogram<'app'>;
  /** Bounded by the applications (and their status codes) this ingress answered for. */
  private readonly apps = new Map<string, AppSeries>();

  constructor(registry: Registry) {
    const registers = [registry];
    this.requests = new FastCounter({ name: 'shoal_http_requests_total', help: 'HTTP requests the ingress answered, per application and status code (499: the client left first).', labelNames: ['app', 'code'], registers });
    this.duration = new FastHistogram({ name: 'shoal_http_request_duration_seconds', help: 'Time from an HTTP request\'s arrival at the ingress to its answer, per application.', labelNames: ['app'], buckets: DURATION_BUCKETS, registers });
  }

  /** Records one answered HTTP request of an application. */
  observeHttp(app: string, code: number, seconds: number): void {
    let a = this.apps.get(app);
    if (a === undefined) { a = { duration: this.duration.child({ app }), codes: new Map() }; this.apps.set(app, a); }
    let c = a.codes.get(code);
    if (c === undefined) { c = this.requests.child({ app, code: String(code) }); a.codes.set(code, c); }
    c.inc();
    a.duration.observe(seconds);
  }
}

/** The series of one deployment key (`app/deployment`), bound once per key. */
interface KeyLabels {
  ok: HistogramChild;
  error: HistogramChild;
  wait: HistogramChild;
}

/** A deployment's stream series, bound on its first stream. */
interface StreamLabels {
  firstChunk: HistogramChild;
  chunks: CounterChild;
  ended: Record<StreamEndReason, CounterChild>;
}

/**
 * A router's series, fed by its onAnswered and onQueued hooks: `shoal_request_duration_seconds` (from the router
 * taking a request to its answer, per deployment and outcome) and `shoal_router_queue_wait_seconds` (the wait of
 * requests that found every replica full).
 */
export class RouterMetrics {
  private readonly duration: FastHistogram<'app' | 'deployment' | 'outcome'>;
  private readonly wait: FastHistogram<'app' | 'deployment'>;
  /** Bounded by the deployments this router has routed to. */
  private readonly keys = new Map<string, KeyLabels>();
  private readonly firstChunk: FastHistogram<'app' | 'deployment'>;
  private readonly chunks: FastCounter<'app' | 'deployment'>;
  private readonly streams: FastCounter<'app' | 'deployment' | 'reason'>;
  private readonly streamKeys = new Map<string, StreamLabels>();

  constructor(registry: Registry) {
    const registers = [registry];
    this.duration = new FastHistogram({
      name: 'shoal_request_duration_seconds', help: 'Time from a router taking a request to its answer (waits for a slot and retries included), per deployment and outcome (ok: a replica answered; error: it failed).',
      labelNames: ['app', 'deployment', 'outcome'], buckets: DURATION_BUCKETS, registers,
    });
    this.wait = new FastHistogram({
      name: 'shoal_router_queue_wait_seconds', help: 'Time a request waited in a router for a replica slot, counted only for requests that found every replica full, per deployment.',
      labelNames: ['app', 'deployment'], buckets: DURATION_BUCKETS, registers,
    });
    this.firstChunk = new FastHistogram({
      name: 'shoal_stream_first_chunk_seconds', help: 'Time from a router taking a streamed request to its first chunk arriving (waits and retries included), per deployment.',
      labelNames: ['app', 'deployment'], buckets: DURATION_BUCKETS, registers,
    });
    this.chunks = new FastCounter({ name: 'shoal_stream_chunks_total', help: 'Chunks of streamed answers a router delivered, counted when each stream ends, per deployment.', labelNames: ['app', 'deployment'], registers });
    this.streams = new FastCounter({ name: 'shoal_streams_total', help: 'Streamed answers a router saw end, per deployment and reason (complete, error, cancelled: the consumer left or the deadline passed).', labelNames: ['app', 'deployment', 'reason'], registers });
  }

  /** RouterOptions.onStream.started. */
  observeStreamStarted(key: string, firstChunkMs: number): void {
    this.streamLabelsOf(key).firstChunk.observe(firstChunkMs / 1e3);
  }

  /** RouterOptions.onStream.ended. */
  observeStreamEnded(key: string, reason: StreamEndReason, chunks: number): void {
    const l = this.streamLabelsOf(key);
    l.ended[reason].inc();
    if (chunks > 0) l.chunks.inc(chunks);
  }

  private streamLabelsOf(key: string): StreamLabels {
    let l = this.streamKeys.get(key);
    if (l === undefined) {
      const { app, deployment } = splitKey(key);
      l = {
        firstChunk: this.firstChunk.child({ app, deployment }), chunks: this.chunks.child({ app, deployment }),
        ended: { complete: this.streams.child({ app, deployment, reason: 'complete' }), error: this.streams.child({ app, deployment, reason: 'error' }), cancelled: this.streams.child({ app, deployment, reason: 'cancelled' }) },
      };
      this.streamKeys.set(key, l);
    }
    return l;
  }

  /** RouterOptions.onAnswered. */
  observeAnswered(key: string, elapsedMs: number, ok: boolean): void {
    const l = this.labelsOf(key);
    (ok ? l.ok : l.error).observe(elapsedMs / 1e3);
  }

  /** RouterOptions.onQueued. */
  observeQueued(key: string, waitedMs: number): void {
    this.labelsOf(key).wait.observe(waitedMs / 1e3);
  }

  private labelsOf(key: string): KeyLabels {
    let l = this.keys.get(key);
    if (l === undefined) {
      const { app, deployment } = splitKey(key);
      l = { ok: this.duration.child({ app, deployment, outcome: 'ok' }), error: this.duration.child({ app, deployment, outcome: 'error' }), wait: this.wait.child({ app, deployment }) };
      this.keys.set(key, l);
    }
    return l;
  }
}

function splitKey(key: string): { app: string; deployment: string } {
  const slash = key.indexOf('/');
  return { app: slash < 0 ? '' : key.slice(0, slash), deployment: slash < 0 ? key : key.slice(slash + 1) };
}
