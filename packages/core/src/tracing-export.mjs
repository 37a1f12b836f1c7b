// The span export thread (see tracing.ts): takes the spans the process's event loop recorded, as compact
// arrays, turns them into OpenTelemetry ReadableSpans and exports them with the OTLP/HTTP exporter, one batch at a
// time, so that serializing and sending never run on the thread that serves requests. Plain JavaScript: a worker
// thread cannot load TypeScript by itself on Node 20.
import { parentPort, workerData } from 'node:worker_threads';
import { setPriority } from 'node:os';
import { readlinkSync } from 'node:fs';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';

const { endpoint, headers, serviceName, attributes, timeOrigin, maxExportBatchSize } = workerData;
// Serving comes first: on Linux a priority set from a thread applies to that thread alone, so this thread runs
// at the lowest priority and takes the CPU requests leave. Under sustained saturation its queue then fills, and
// the recording side drops (and counts) spans rather than slow the event loop's work.
if (process.platform === 'linux') {
  try { setPriority(Number(readlinkSync('/proc/thread-self').split('/').pop()), 19); } catch { /* not permitted: normal priority */ }
}
const exporter = new OTLPTraceExporter({ url: endpoint, ...(headers ? { headers } : {}) });
const resource = resourceFromAttributes({ 'service.name': serviceName, ...attributes });
const scope = { name: 'shoal' };
const NO_ATTRIBUTES = Object.freeze({});

/** performance.now() ms of the recording thread -> [seconds, nanoseconds] since the epoch. */
function hrTime(ms) {
  const whole = Math.floor(ms);
  const originMs = Math.floor(timeOrigin);
  let seconds = Math.floor((originMs + whole) / 1000);
  let nanos = ((originMs + whole) - seconds * 1000) * 1e6 + Math.round(((timeOrigin - originMs) + (ms - whole)) * 1e6);
  if (nanos >= 1e9) { seconds += Math.floor(nanos / 1e9); nanos %= 1e9; }
  return [seconds, nanos];
}

function duration(startMs, endMs) {
  const ns = Math.max(0, Math.round((endMs - startMs) * 1e6));
  return [Math.floor(ns / 1e9), ns % 1e9];
}

/** One recorded span: [name, kind, traceId, spanId, parentSpanId, startMs, endMs, attributes, error, links]. */
function toReadable(r) {
  const [name, kind, traceId, spanId, parentSpanId, startMs, endMs, attrs, error, links] = r;
  const endTime = hrTime(endMs);
  const context = { traceId, spanId, traceFlags: 1 };
  return {
    name,
    kind,
    spanContext: () => context,
    parentSpanContext: parentSpanId === '' ? undefined : { traceId, spanId: parentSpanId, traceFlags: 1 },
    startTime: hrTime(startMs),
    endTime,
    duration: duration(startMs, endMs),
    ended: true,
    status: error === null ? { code: 0 } : { code: 2, message: error[1] },
    attributes: attrs ?? NO_ATTRIBUTES,
    links: links === null ? [] : links.map(([t, s]) => ({ context: { traceId: t, spanId: s, traceFlags: 1 }, attributes: NO_ATTRIBUTES })),
    events: error === null ? [] : [{ name: 'exception', time: endTime, attributes: { 'exception.type': error[0], 'exception.message': error[1] }, droppedAttributesCount: 0 }],
    resource,
    instrumentationScope: scope,
    droppedAttributesCount: 0,
    droppedEventsCount: 0,
    droppedLinksCount: 0,
  };
}

let queue = [];
let exporting = false;
const flushes = [];

function pump() {
  if (exporting) return;
  if (queue.length === 0) {
    for (const id of flushes.splice(0)) parentPort.postMessage({ kind: 'flushed', id });
    return;
  }
  const batch = queue.length <= maxExportBatchSize ? queue : queue.slice(0, maxExportBatchSize);
  queue = queue.length <= maxExportBatchSize ? [] : queue.slice(maxExportBatchSize);
  exporting = true;
  let spans;
  try {
    spans = batch.map(toReadable);
  } catch (err) {
    exporting = false;
    parentPort.postMessage({ kind: 'exported', n: batch.length, ok: false, error: `malformed span record: ${err?.message ?? err}` });
    pump();
    return;
  }
  exporter.export(spans, (result) => {
    exporting = false;
    parentPort.postMessage({ kind: 'exported', n: batch.length, ok: result.code === 0, error: result.code === 0 ? undefined : String(result.error?.message ?? result.error ?? 'export failed') });
    pump();
  });
}

parentPort.on('message', (m) => {
  if (m.kind === 'spans') {
    if (queue.length === 0) queue = m.spans;
    else for (const s of m.spans) queue.push(s);
    pump();
  } else if (m.kind === 'flush') {
    flushes.push(m.id);
    pump();
  }
});
