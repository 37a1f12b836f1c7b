/**
 * Request ids and W3C trace context (always on: cheap), and OpenTelemetry spans (only once startTracing() ran,
 * which the head and workers do when an OTLP endpoint is configured).
 *
 * Propagation: the ingress reads `traceparent` and `x-request-id` (and makes them when absent); routers carry the
 * context in every call and http message; a replica runs user code with requestContext().trace set to its compute
 * span, so handle calls made from it are children of that span, and logs carry its trace id.
 *
 * Spans are started with explicit parents (no OpenTelemetry context manager, which would add an async hook to
 * every promise): the parent is whatever TraceContext the caller holds. A span costs a small object until it
 * ends; the OpenTelemetry exporter turns the records into OTLP in a worker thread (tracing-export.mjs). The
 * packages are imported only when tracing starts, so a process that never traces never loads them.
 */
import { randomFillSync, randomUUID } from 'node:crypto';
import type { Attributes } from '@opentelemetry/api';
import type { TraceContext } from './context.ts';
import { InvalidOptionError } from './errors.ts';

export type { TraceContext };

/** Header names, lower case as node:http gives them. */
export const REQUEST_ID_HEADER = 'x-request-id';
export const TRACEPARENT_HEADER = 'traceparent';
/** The longest X-Request-ID taken from a client; a longer one is replaced by a fresh id. */
export const MAX_REQUEST_ID_LENGTH = 200;

const POOL_BYTES = 4096;
const pool = Buffer.allocUnsafe(POOL_BYTES);
let poolOffset = POOL_BYTES;

/** `bytes` random bytes as lower-case hex, from a pool refilled 4 KiB at a time (one syscall per ~170 ids). */
function randomHex(bytes: number): string {
  if (poolOffset + bytes > POOL_BYTES) { randomFillSync(pool); poolOffset = 0; }
  const s = pool.toString('hex', poolOffset, poolOffset + bytes);
  poolOffset += bytes;
  return s;
}

const ZERO_TRACE = '0'.repeat(32);
const ZERO_SPAN = '0'.repeat(16);

export function newTraceId(): string {
  let id = randomHex(16);
  while (id === ZERO_TRACE) id = randomHex(16);
  return id;
}

export function newSpanId(): string {
  let id = randomHex(8);
  while (id === ZERO_SPAN) id = randomHex(8);
  return id;
}

/** A request id: the client's X-Request-ID when it is a usable one, else a new UUID. */
export function requestIdOf(given: string | string[] | undefined): string {
  if (typeof given === 'string' && given.length > 0 && given.length <= MAX_REQUEST_ID_LENGTH && isPrintable(given)) return given;
  return randomUUID();
}

function isPrintable(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

function isHex(s: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 102))) return false;
  }
  return true;
}

/**
 * Parses a W3C traceparent (`00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`); undefined when absent or
 * invalid (the spec says to start a new trace then). A future version's extra fields are ignored, as the spec asks.
 */
export function parseTraceparent(value: string | string[] | undefined): TraceContext | undefined {
  if (typeof value !== 'string') return undefined;
  const v = value.trim();
  if (v.length < 55 || v[2] !== '-' || v[35] !== '-' || v[52] !== '-') return undefined;
  if (!isHex(v, 0, 2) || v.startsWith('ff')) return undefined;
  if (v.startsWith('00') && v.length !== 55) return undefined;
  if (v.length > 55 && v[55] !== '-') return undefined;
  if (!isHex(v, 3, 35) || !isHex(v, 36, 52) || !isHex(v, 53, 55)) return undefined;
  const traceId = v.slice(3, 35);
  const spanId = v.slice(36, 52);
  if (traceId === ZERO_TRACE || spanId === ZERO_SPAN) return undefined;
  return { traceId, spanId, sampled: (parseInt(v.slice(53, 55), 16) & 1) === 1 };
}

export function formatTraceparent(tc: TraceContext): string {
  return `00-${tc.traceId}-${tc.spanId}-${tc.sampled ? '01' : '00'}`;
}

/** A trace context from a message field; anything malformed is dropped (the request still runs, untraced). */
export function traceContextOf(value: unknown): TraceContext | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const v = value as Record<string, unknown>;
  if (typeof v.traceId !== 'string' || v.traceId.length !== 32 || typeof v.spanId !== 'string' || v.spanId.length !== 16) return undefined;
  if (!isHex(v.traceId, 0, 32) || !isHex(v.spanId, 0, 16) || v.traceId === ZERO_TRACE || v.spanId === ZERO_SPAN) return undefined;
  return { traceId: v.traceId, spanId: v.spanId, sampled: v.sampled === true };
}

/** The kinds of span shoal makes (OpenTelemetry's SpanKind values). */
export const SpanKinds = { INTERNAL: 0, SERVER: 1, CLIENT: 2 } as const;
export type ShoalSpanKind = typeof SpanKinds[keyof typeof SpanKinds];

/** One span: its context (children's parent) and end(); a cheap no-op object when tracing is off. */
export interface ShoalSpan {
  readonly context: TraceContext;
  setAttribute(key: string, value: string | number | boolean): void;
  /** `error`: the span's status becomes ERROR with the error's message. `endTime`: performance.now() ms. */
  end(error?: unknown, endTime?: number): void;
}

export interface TracingOptions {
  /** OTLP/HTTP traces endpoint, the full URL (e.g. http://collector:4318/v1/traces). */
  endpoint: string;
  /** service.name of every span this process exports. */
  serviceName: string;
  /** Extra resource attributes (worker id, role). */
  attributes?: Record<string, string>;
  /** Share of new traces recorded (0..1); a request that arrives with a traceparent follows its sampled flag. @default 1 */
  sampleRatio?: number;
  /** How long recorded spans wait before they go to the export thread (1,024 go at once), ms. @default 1000 */
  exportIntervalMs?: number;
  /** Spans recorded and not yet exported; past it new ones are dropped and counted (tracingCounts()). @default 65536 */
  maxQueueSize?: number;
  /** Extra headers sent with every export (an API key). */
  headers?: Record<string, string>;
}

/** A recorded span, as it travels to the export thread: [name, kind, traceId, spanId, parentSpanId ('' for a root), startMs, endMs, attributes, error ([type, message]) or null, links ([traceId, spanId][]) or null]. */
type SpanRecord = [string, number, string, string, string, number, number, Attributes | undefined, [string, string] | null, Array<[string, string]> | null];

/**
 * Spans this process records go in batches to one export thread (tracing-export.mjs), which builds the
 * OpenTelemetry ReadableSpans and exports them with the OTLP/HTTP exporter: serializing thousands of spans a second
 * would otherwise stall the event loop that serves requests. Bounded: past maxQueueSize spans not yet exported,
 * new ones are dropped and counted.
 */
class Recorder {
  private buffer: SpanRecord[] = [];
  private timer: NodeJS.Timeout | undefined;
  /** Spans handed to the thread and not yet exported (or failed). */
  private outstanding = 0;
  private nextFlushId = 0;
  private readonly flushes = new Map<number, () => void>();
  readonly counts = { recorded: 0, exported: 0, failed: 0, dropped: 0 };
  private lastError: string | undefined;
  private warnedAt = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly thread: import('node:worker_threads').Worker,
    private readonly sampler: { shouldSample(traceId: string): boolean },
    private readonly opts: { intervalMs: number; maxQueueSize: number; batch: number; warn: (msg: string, fields: Record<string, unknown>) => void },
  ) {
    thread.on('message', (m: { kind: string; n?: number; ok?: boolean; error?: string; id?: number }) => {
      if (m.kind === 'exported') {
        this.outstanding -= m.n!;
        if (m.ok === true) this.counts.exported += m.n!;
        else { this.counts.failed += m.n!; this.lastError = m.error; this.warn(); }
      } else if (m.kind === 'flushed') {
        this.flushes.get(m.id!)?.();
        this.flushes.delete(m.id!);
      }
    });
    thread.unref();
  }

  sampleRoot(traceId: string): boolean { return this.sampler.shouldSample(traceId); }

  /** The thread is gone: nothing will answer the flushes waiting, so they end now. */
  threadGone(): void {
    for (const resolve of this.flushes.values()) resolve();
    this.flushes.clear();
  }

  record(r: SpanRecord): void {
    if (this.outstanding + this.buffer.length >= this.opts.maxQueueSize) { this.counts.dropped++; this.warn(); return; }
    this.counts.recorded++;
    this.buffer.push(r);
    if (this.buffer.length >= this.opts.batch) this.send();
    else if (this.timer === undefined) { this.timer = setTimeout(() => this.send(), this.opts.intervalMs); this.timer.unref(); }
  }

  private send(): void {
    if (this.timer !== undefined) { clearTimeout(this.timer); this.timer = undefined; }
    if (this.buffer.length === 0) return;
    const spans = this.buffer;
    this.buffer = [];
    this.outstanding += spans.length;
    this.thread.postMessage({ kind: 'spans', spans });
  }

  /** Resolves once every span recorded so far was exported (or failed). */
  flush(): Promise<void> {
    this.send();
    const id = this.nextFlushId++;
    return new Promise((resolve) => {
      this.flushes.set(id, resolve);
      this.thread.postMessage({ kind: 'flush', id });
    });
  }

  private warn(): void {
    const now = performance.now();
    if (now - this.warnedAt < 10_000) return;
    this.warnedAt = now;
    this.opts.warn('spans not exported', { ...this.counts, lastError: this.lastError ?? null });
  }
}

let active: Recorder | undefined;
let activeThread: import('node:worker_threads').Worker | undefined;

/** Whether spans are being recorded (startTracing ran and did not stop). */
export function tracingActive(): boolean {
  return active !== undefined;
}

/** Spans recorded, exported, failed (the collector refused or was unreachable) and dropped (queue full). */
export function tracingCounts(): { recorded: number; exported: number; failed: number; dropped: number } | undefined {
  return active === undefined ? undefined : { ...active.counts };
}

/**
 * Starts recording spans and exporting them over OTLP/HTTP (JSON) from a worker thread, with a parent-based
 * ratio sampler (OpenTelemetry's TraceIdRatioBasedSampler decides new traces). A second call replaces the first.
 */
export function startTracing(opts: TracingOptions, warn?: (msg: string, fields: Record<string, unknown>) => void): Promise<void> {
  // One at a time: two overlapping starts would each make a thread, and one would be orphaned.
  const next = starting.then(() => startTracingNow(opts, warn));
  starting = next.catch(() => undefined);
  return next;
}

let starting: Promise<unknown> = Promise.resolve();

async function startTracingNow(opts: TracingOptions, warn: (msg: string, fields: Record<string, unknown>) => void = (m, f) => process.stderr.write(`${JSON.stringify({ level: 'warn', msg: m, ...f })}\n`)): Promise<void> {
  checkTracingOptions(opts);
  const [api, sdk, threads] = await Promise.all([import('@opentelemetry/api'), import('@opentelemetry/sdk-trace-node'), import('node:worker_threads')]);
  if (active !== undefined) await stopTracing();
  const ratio = opts.sampleRatio ?? 1;
  const ratioSampler = new sdk.TraceIdRatioBasedSampler(ratio);
  const sampler = {
    shouldSample: ratio >= 1 ? () => true : ratio <= 0 ? () => false
      : (traceId: string) => ratioSampler.shouldSample(api.ROOT_CONTEXT, traceId).decision === sdk.SamplingDecision.RECORD_AND_SAMPLED,
  };
  const thread = new threads.Worker(new URL('./tracing-export.mjs', import.meta.url), {
    name: 'shoal-span-export',
    workerData: {
      endpoint: opts.endpoint, headers: opts.headers, serviceName: opts.serviceName, attributes: opts.attributes ?? {},
      timeOrigin: performance.timeOrigin, maxExportBatchSize: 2048,
    },
  });
  thread.on('error', (err) => warn('span export thread failed: tracing stops', { error: err.message }));
  const recorder = new Recorder(thread, sampler, { intervalMs: opts.exportIntervalMs ?? 1000, maxQueueSize: opts.maxQueueSize ?? 65_536, batch: 1024, warn });
  thread.on('exit', () => {
    recorder.threadGone();
    if (activeThread === thread) { active = undefined; activeThread = undefined; }
  });
  active = recorder;
  activeThread = thread;
}

/** Exports what is recorded and stops recording. */
export async function stopTracing(): Promise<void> {
  const a = active;
  const t = activeThread;
  active = undefined;
  activeThread = undefined;
  if (a === undefined || t === undefined) return;
  await Promise.race([a.flush(), new Promise((r) => setTimeout(r, 5000).unref())]);
  await t.terminate();
}

/** Exports what is recorded now (tests, and a process about to exit). */
export async function flushTracing(): Promise<void> {
  await active?.flush();
}

/**
 * The --otlp-endpoint and --trace-sample-ratio flags of `shoal start|run|serve|worker`: checked (an error names
 * the flag), then put in this process's environment, where tracingFromEnv reads them and local workers inherit them.
 */
export function applyTracingFlags(endpoint: string | undefined, ratio: string | undefined, e: NodeJS.ProcessEnv = process.env): void {
  if (endpoint !== undefined) {
    if (!isHttpUrl(endpoint)) throw new InvalidOptionError('--otlp-endpoint', 'must be an http:// or https:// URL (an OTLP/HTTP traces endpoint, e.g. http://localhost:4318/v1/traces)', endpoint);
    e.SHOAL_OTLP_ENDPOINT = endpoint;
  }
  if (ratio !== undefined) {
    const r = Number(ratio);
    if (ratio.trim() === '' || !(r >= 0 && r <= 1)) throw new InvalidOptionError('--trace-sample-ratio', 'must be a number from 0 to 1', ratio);
    e.SHOAL_TRACE_SAMPLE_RATIO = ratio;
  }
}

function isHttpUrl(text: string): boolean {
  try {
    const url = new URL(text);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch {
    return false;
  }
}

export function checkTracingOptions(opts: TracingOptions): void {
  if (!isHttpUrl(opts.endpoint)) throw new InvalidOptionError('tracing.endpoint', 'must be an http:// or https:// URL', opts.endpoint);
  const r = opts.sampleRatio;
  if (r !== undefined && (typeof r !== 'number' || !(r >= 0 && r <= 1))) throw new InvalidOptionError('tracing.sampleRatio', 'must be a number from 0 to 1', r);
}

/**
 * Tracing options from the environment: SHOAL_OTLP_ENDPOINT, else OpenTelemetry's own
 * OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (a full URL) or OTEL_EXPORTER_OTLP_ENDPOINT (a base: /v1/traces is added);
 * sampling from SHOAL_TRACE_SAMPLE_RATIO or OTEL_TRACES_SAMPLER_ARG. Undefined when no endpoint is set or
 * OTEL_SDK_DISABLED=true.
 */
export function tracingFromEnv(serviceName: string, attributes: Record<string, string> = {}, e: NodeJS.ProcessEnv = process.env): TracingOptions | undefined {
  if (e.OTEL_SDK_DISABLED?.toLowerCase() === 'true') return undefined;
  const from = ['SHOAL_OTLP_ENDPOINT', 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', 'OTEL_EXPORTER_OTLP_ENDPOINT'].find((n) => (e[n] ?? '') !== '');
  if (from === undefined) return undefined;
  const given = e[from]!;
  const endpoint = from === 'OTEL_EXPORTER_OTLP_ENDPOINT' ? `${given.replace(/\/+$/, '')}/v1/traces` : given;
  if (!isHttpUrl(endpoint)) throw new InvalidOptionError(from, 'must be an http:// or https:// URL (an OTLP/HTTP endpoint)', given);
  const ratioName = ['SHOAL_TRACE_SAMPLE_RATIO', 'OTEL_TRACES_SAMPLER_ARG'].find((n) => (e[n] ?? '') !== '');
  let sampleRatio: number | undefined;
  if (ratioName !== undefined) {
    const text = e[ratioName]!;
    sampleRatio = Number(text);
    if (text.trim() === '' || !Number.isFinite(sampleRatio) || sampleRatio < 0 || sampleRatio > 1) throw new InvalidOptionError(ratioName, 'must be a number from 0 to 1', text);
  }
  const name = e.OTEL_SERVICE_NAME || serviceName;
  return { endpoint, serviceName: name, attributes, ...(sampleRatio === undefined ? {} : { sampleRatio }) };
}

/** A span that records nothing: it carries its parent's context on, so propagation works with tracing off. */
class PassSpan implements ShoalSpan {
  constructor(readonly context: TraceContext) {}
  setAttribute(): void {}
  end(): void {}
}

/** A sampled span: a few fields until end() hands its record to the recorder. */
class RecordedSpan implements ShoalSpan {
  readonly context: TraceContext;
  private attrs: Attributes | undefined;
  private ended = false;

  constructor(
    private readonly recorder: Recorder,
    private readonly name: string,
    private readonly kind: ShoalSpanKind,
    private readonly parentSpanId: string,
    traceId: string,
    attributes: Attributes | undefined,
    private readonly start: number,
    private readonly links: readonly TraceContext[] | undefined,
  ) {
    this.context = { traceId, spanId: newSpanId(), sampled: true };
    this.attrs = attributes;
  }

  setAttribute(key: string, value: string | number | boolean): void {
    (this.attrs ??= {})[key] = value;
  }

  end(error?: unknown, endTime?: number): void {
    if (this.ended) return;
    this.ended = true;
    const err: [string, string] | null = error === undefined ? null
      : error instanceof Error ? [(error as { code?: unknown }).code !== undefined ? String((error as { code?: unknown }).code) : error.name, error.message] : ['Error', String(error)];
    const links = this.links === undefined || this.links.length === 0 ? null : this.links.map((l): [string, string] => [l.traceId, l.spanId]);
    this.recorder.record([this.name, this.kind, this.context.traceId, this.context.spanId, this.parentSpanId, this.start, endTime ?? performance.now(), this.attrs, err, links]);
  }
}

/**
 * Starts a span under `parent`. With tracing off, or under an unsampled parent (a parent-based sampler records
 * nothing below it), it records nothing and its context is the parent's, so ids still travel; with no parent it
 * starts a new trace, which the ratio sampler records or not. `startTime`: performance.now() ms (default now).
 * `links`: spans it relates to outside its parentage (the requests of one batch).
 */
export function startSpan(
  name: string, parent: TraceContext | undefined, kind: ShoalSpanKind = SpanKinds.INTERNAL,
  attributes?: Attributes, startTime?: number, links?: readonly TraceContext[],
): ShoalSpan {
  const r = active;
  if (r === undefined) return new PassSpan(parent ?? newTraceContext());
  if (parent !== undefined && !parent.sampled) return new PassSpan(parent);
  if (parent === undefined) {
    const traceId = newTraceId();
    if (!r.sampleRoot(traceId)) return new PassSpan({ traceId, spanId: newSpanId(), sampled: false });
    return new RecordedSpan(r, name, kind, '', traceId, attributes, startTime ?? performance.now(), links);
  }
  return new RecordedSpan(r, name, kind, parent.spanId, parent.traceId, attributes, startTime ?? performance.now(), links);
}

/** A new root context, for a request that arrived without (a valid) traceparent while tracing is off. */
export function newTraceContext(): TraceContext {
  return { traceId: newTraceId(), spanId: newSpanId(), sampled: false };
}
