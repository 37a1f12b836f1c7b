/**
 * Request ids and W3C trace context (always on: cheap), and OpenTelemetry spans (only once startTracing() ran,
 * which the head and workers do when an OTLP endpoint is configured).
 *
 * Propagation: the ingress reads `traceparent` and `x-request-id` (and makes them when absent); routers carry the
 * context in every call and http message; a replica runs user code with requestContext().trace set to its compute
 * span, so handle calls made from it are children of that span, and logs carry its trace id.
 *
 * Spans are started with explicit parents (no OpenTelemetry context manager, which would add an async hook to
 * every promise): the parent is whatever TraceContext the caller holds. The SDK is imported only when tracing
 * starts, so a process that never traces never loads it.
 */
import { randomFillSync, randomUUID } from 'node:crypto';
import type { Attributes, Link, Span, SpanContext, Tracer } from '@opentelemetry/api';
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
  /** How often the batch processor exports, ms. @default 1000 */
  exportIntervalMs?: number;
  /** Spans kept waiting for export; past it new ones are dropped (the SDK counts them). @default 16384 */
  maxQueueSize?: number;
  /** Extra headers sent with every export (an API key). */
  headers?: Record<string, string>;
}

interface Active {
  tracer: Tracer;
  provider: { forceFlush(): Promise<void>; shutdown(): Promise<void> };
  api: typeof import('@opentelemetry/api');
}

let active: Active | undefined;

/** Whether spans are being recorded (startTracing ran and did not stop). */
export function tracingActive(): boolean {
  return active !== undefined;
}

/**
 * Starts exporting spans over OTLP/HTTP (JSON) with the OpenTelemetry SDK: a batch processor, a parent-based
 * ratio sampler, and this process's resource. Idempotent for one process: a second call replaces the first.
 */
export async function startTracing(opts: TracingOptions): Promise<void> {
  checkTracingOptions(opts);
  const [api, sdk, otlp, resources] = await Promise.all([
    import('@opentelemetry/api'),
    import('@opentelemetry/sdk-trace-node'),
    import('@opentelemetry/exporter-trace-otlp-http'),
    import('@opentelemetry/resources'),
  ]);
  if (active !== undefined) await stopTracing();
  const exporter = new otlp.OTLPTraceExporter({ url: opts.endpoint, ...(opts.headers === undefined ? {} : { headers: opts.headers }) });
  const ratio = opts.sampleRatio ?? 1;
  const provider = new sdk.NodeTracerProvider({
    resource: resources.resourceFromAttributes({ 'service.name': opts.serviceName, ...opts.attributes }),
    sampler: new sdk.ParentBasedSampler({ root: ratio >= 1 ? new sdk.AlwaysOnSampler() : new sdk.TraceIdRatioBasedSampler(ratio) }),
    spanProcessors: [new sdk.BatchSpanProcessor(exporter, {
      scheduledDelayMillis: opts.exportIntervalMs ?? 1000,
      maxQueueSize: opts.maxQueueSize ?? 16_384,
      maxExportBatchSize: 2048,
    })],
  });
  active = { tracer: provider.getTracer('shoal'), provider, api };
}

/** Exports what is buffered and stops recording. */
export async function stopTracing(): Promise<void> {
  const a = active;
  active = undefined;
  if (a !== undefined) await a.provider.shutdown();
}

/** Exports what is buffered now (tests, and a process about to exit). */
export async function flushTracing(): Promise<void> {
  await active?.provider.forceFlush();
}

export function checkTracingOptions(opts: TracingOptions): void {
  let url: URL;
  try { url = new URL(opts.endpoint); } catch { throw new InvalidOptionError('tracing.endpoint', 'must be an http:// or https:// URL', opts.endpoint); }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new InvalidOptionError('tracing.endpoint', 'must be an http:// or https:// URL', opts.endpoint);
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
  let endpoint = e.SHOAL_OTLP_ENDPOINT || e.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || undefined;
  if (endpoint === undefined && e.OTEL_EXPORTER_OTLP_ENDPOINT) endpoint = `${e.OTEL_EXPORTER_OTLP_ENDPOINT.replace(/\/+$/, '')}/v1/traces`;
  if (endpoint === undefined) return undefined;
  const ratioText = e.SHOAL_TRACE_SAMPLE_RATIO ?? e.OTEL_TRACES_SAMPLER_ARG;
  let sampleRatio: number | undefined;
  if (ratioText !== undefined && ratioText !== '') {
    sampleRatio = Number(ratioText);
    const name = e.SHOAL_TRACE_SAMPLE_RATIO !== undefined ? 'SHOAL_TRACE_SAMPLE_RATIO' : 'OTEL_TRACES_SAMPLER_ARG';
    if (!Number.isFinite(sampleRatio) || sampleRatio < 0 || sampleRatio > 1) throw new InvalidOptionError(name, 'must be a number from 0 to 1', ratioText);
  }
  const name = e.OTEL_SERVICE_NAME || serviceName;
  const opts: TracingOptions = { endpoint, serviceName: name, attributes, ...(sampleRatio === undefined ? {} : { sampleRatio }) };
  checkTracingOptions(opts);
  return opts;
}

/** A span that records nothing: it carries its parent's context on, so propagation works with tracing off. */
class PassSpan implements ShoalSpan {
  constructor(readonly context: TraceContext) {}
  setAttribute(): void {}
  end(): void {}
}

class OtelSpan implements ShoalSpan {
  readonly context: TraceContext;
  constructor(private readonly span: Span, private readonly api: Active['api']) {
    const sc = span.spanContext();
    this.context = { traceId: sc.traceId, spanId: sc.spanId, sampled: (sc.traceFlags & 1) === 1 };
  }

  setAttribute(key: string, value: string | number | boolean): void { this.span.setAttribute(key, value); }

  end(error?: unknown, endTime?: number): void {
    if (error !== undefined) {
      const message = error instanceof Error ? error.message : String(error);
      this.span.setStatus({ code: this.api.SpanStatusCode.ERROR, message });
      if (error instanceof Error) this.span.recordException(error);
    }
    this.span.end(endTime);
  }
}

function spanContextOf(tc: TraceContext): SpanContext {
  return { traceId: tc.traceId, spanId: tc.spanId, traceFlags: tc.sampled ? 1 : 0, isRemote: true };
}

/**
 * Starts a span under `parent`. With tracing off it records nothing and its context is the parent's (so ids still
 * travel); with no parent it starts a new trace. `startTime`: performance.now() ms (default now). `links`: spans
 * it relates to outside its own trace (the requests of one batch).
 */
export function startSpan(
  name: string, parent: TraceContext | undefined, kind: ShoalSpanKind = SpanKinds.INTERNAL,
  attributes?: Attributes, startTime?: number, links?: readonly TraceContext[],
): ShoalSpan {
  const a = active;
  if (a === undefined) return new PassSpan(parent ?? { traceId: newTraceId(), spanId: newSpanId(), sampled: false });
  const ctx = parent === undefined ? a.api.ROOT_CONTEXT : a.api.trace.setSpanContext(a.api.ROOT_CONTEXT, spanContextOf(parent));
  const l: Link[] | undefined = links === undefined || links.length === 0 ? undefined : links.map((t) => ({ context: spanContextOf(t) }));
  const span = a.tracer.startSpan(name, {
    kind,
    ...(attributes === undefined ? {} : { attributes }),
    ...(startTime === undefined ? {} : { startTime }),
    ...(l === undefined ? {} : { links: l }),
  }, ctx);
  return new OtelSpan(span, a.api);
}

/** A new root context, for a request that arrived without (a valid) traceparent. Sampled when tracing records. */
export function newTraceContext(): TraceContext {
  return { traceId: newTraceId(), spanId: newSpanId(), sampled: false };
}
