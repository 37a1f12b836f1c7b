import { afterEach, describe, expect, it } from 'vitest';
import {
  applyTracingFlags, formatTraceparent, newSpanId, newTraceId, parseTraceparent, requestIdOf, startSpan, startTracing, stopTracing, traceContextOf, tracingActive, tracingFromEnv, InvalidOptionError,
} from '../src/index.ts';

const TP = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

describe('traceparent', () => {
  it('parses a valid version-00 header and formats it back', () => {
    const tc = parseTraceparent(TP);
    expect(tc).toEqual({ traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', sampled: true });
    expect(formatTraceparent(tc!)).toBe(TP);
    expect(parseTraceparent(TP.replace(/01$/, '00'))?.sampled).toBe(false);
    // Other flag bits do not make it sampled; only bit 0 does.
    expect(parseTraceparent(TP.replace(/01$/, '02'))?.sampled).toBe(false);
    expect(parseTraceparent(` ${TP} `)?.traceId).toBe('4bf92f3577b34da6a3ce929d0e0e4736');
  });

  it('refuses what the W3C spec says to drop', () => {
    const bad = [
      undefined, '', 'garbage', TP.slice(0, 54),
      `ff${TP.slice(2)}`, // version ff is invalid
      `00-${'0'.repeat(32)}-00f067aa0ba902b7-01`, // all-zero trace id
      `00-4bf92f3577b34da6a3ce929d0e0e4736-${'0'.repeat(16)}-01`, // all-zero span id
      TP.toUpperCase(), // hex must be lower case
      `${TP}-extra`, // version 00 has exactly four fields
      TP.replace(/-/g, '_'),
      '00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01',
    ];
    for (const v of bad) expect(parseTraceparent(v), String(v)).toBeUndefined();
    expect(parseTraceparent([TP, TP])).toBeUndefined();
  });

  it('accepts a future version with extra fields, keeping the known ones', () => {
    expect(parseTraceparent(`01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-whatever`)?.spanId).toBe('00f067aa0ba902b7');
    expect(parseTraceparent(`01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x`)).toBeUndefined();
  });

  it('makes distinct, well-formed ids', () => {
    const traces = new Set(Array.from({ length: 2000 }, () => newTraceId()));
    expect(traces.size).toBe(2000);
    for (const t of traces) expect(t).toMatch(/^[0-9a-f]{32}$/);
    expect(newSpanId()).toMatch(/^[0-9a-f]{16}$/);
  });
});

describe('applyTracingFlags', () => {
  it('checks the flags, naming them, and sets the environment the local workers inherit', () => {
    const e: NodeJS.ProcessEnv = {};
    applyTracingFlags('http://c:4318/v1/traces', '0.25', e);
    expect(e).toEqual({ SHOAL_OTLP_ENDPOINT: 'http://c:4318/v1/traces', SHOAL_TRACE_SAMPLE_RATIO: '0.25' });
    expect(() => applyTracingFlags('ftp://x', undefined, {})).toThrow(/--otlp-endpoint.*http/);
    for (const bad of ['', '2', '-0.1', 'half']) expect(() => applyTracingFlags(undefined, bad, {}), bad).toThrow(/--trace-sample-ratio.*from 0 to 1/);
  });
});

describe('traceContextOf (a trace context from another process\'s message)', () => {
  it('keeps a well-formed one and drops the rest', () => {
    const ok = { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', sampled: true };
    expect(traceContextOf(ok)).toEqual(ok);
    expect(traceContextOf({ ...ok, sampled: 'yes' })?.sampled).toBe(false);
    for (const bad of [undefined, null, 'x', { ...ok, traceId: 'z'.repeat(32) }, { ...ok, spanId: 'ABCDEF0123456789' }, { ...ok, traceId: '0'.repeat(32) }, { ...ok, spanId: 5 }]) {
      expect(traceContextOf(bad), JSON.stringify(bad)).toBeUndefined();
    }
  });
});

describe('request ids', () => {
  it('keeps a usable client id and replaces the rest with a UUID', () => {
    expect(requestIdOf('abc-123')).toBe('abc-123');
    const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
    expect(requestIdOf(undefined)).toMatch(uuid);
    expect(requestIdOf('')).toMatch(uuid);
    expect(requestIdOf('x'.repeat(201))).toMatch(uuid);
    expect(requestIdOf('bad\nid')).toMatch(uuid); // no control characters into logs and headers
    expect(requestIdOf(['a', 'b'])).toMatch(uuid);
  });
});

describe('tracingFromEnv', () => {
  it('is off without an endpoint, and when OTEL_SDK_DISABLED', () => {
    expect(tracingFromEnv('svc', {}, {})).toBeUndefined();
    expect(tracingFromEnv('svc', {}, { SHOAL_OTLP_ENDPOINT: 'http://c:4318/v1/traces', OTEL_SDK_DISABLED: 'true' })).toBeUndefined();
  });

  it('takes the endpoint from SHOAL_OTLP_ENDPOINT, then the OpenTelemetry variables', () => {
    expect(tracingFromEnv('svc', {}, { SHOAL_OTLP_ENDPOINT: 'http://a:4318/v1/traces', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://b:4318' })?.endpoint).toBe('http://a:4318/v1/traces');
    expect(tracingFromEnv('svc', {}, { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://t:1/x' })?.endpoint).toBe('http://t:1/x');
    expect(tracingFromEnv('svc', {}, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://b:4318/' })?.endpoint).toBe('http://b:4318/v1/traces');
    expect(tracingFromEnv('svc', { role: 'w' }, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://b:4318', OTEL_SERVICE_NAME: 'mine' })).toMatchObject({ serviceName: 'mine', attributes: { role: 'w' } });
  });

  it('reads the sample ratio and names a bad one', () => {
    expect(tracingFromEnv('s', {}, { SHOAL_OTLP_ENDPOINT: 'http://a:1/v1/traces', SHOAL_TRACE_SAMPLE_RATIO: '0.25' })?.sampleRatio).toBe(0.25);
    expect(() => tracingFromEnv('s', {}, { SHOAL_OTLP_ENDPOINT: 'http://a:1/v1/traces', SHOAL_TRACE_SAMPLE_RATIO: '2' })).toThrow(/SHOAL_TRACE_SAMPLE_RATIO.*from 0 to 1/);
    expect(() => tracingFromEnv('s', {}, { SHOAL_OTLP_ENDPOINT: 'http://a:1/v1/traces', OTEL_TRACES_SAMPLER_ARG: 'half' })).toThrow(InvalidOptionError);
    // Each error names the variable the value came from.
    expect(() => tracingFromEnv('s', {}, { SHOAL_OTLP_ENDPOINT: 'ftp://a/v1/traces' })).toThrow(/SHOAL_OTLP_ENDPOINT.*http/);
    expect(() => tracingFromEnv('s', {}, { OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318' })).toThrow(/OTEL_EXPORTER_OTLP_ENDPOINT.*http/);
    // An empty variable is unset, so the next one counts.
    expect(tracingFromEnv('s', {}, { SHOAL_OTLP_ENDPOINT: '', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://b:1', SHOAL_TRACE_SAMPLE_RATIO: '', OTEL_TRACES_SAMPLER_ARG: '0.5' })).toMatchObject({ endpoint: 'http://b:1/v1/traces', sampleRatio: 0.5 });
    expect(() => tracingFromEnv('s', {}, { SHOAL_OTLP_ENDPOINT: 'http://a:1/v1/traces', SHOAL_TRACE_SAMPLE_RATIO: ' ' })).toThrow(/SHOAL_TRACE_SAMPLE_RATIO/);
  });
});

describe('spans', () => {
  afterEach(async () => { await stopTracing(); });

  it('with tracing off, a span records nothing and carries its parent on', () => {
    expect(tracingActive()).toBe(false);
    const parent = parseTraceparent(TP)!;
    const s = startSpan('x', parent);
    expect(s.context).toBe(parent);
    s.end();
    const root = startSpan('y', undefined);
    expect(root.context.traceId).toMatch(/^[0-9a-f]{32}$/);
  });

  it('with tracing on, a child keeps its parent\'s trace and gets its own span id; the sampled flag is followed', async () => {
    await startTracing({ endpoint: 'http://127.0.0.1:9/v1/traces', serviceName: 'unit', exportIntervalMs: 60_000 });
    expect(tracingActive()).toBe(true);
    const parent = parseTraceparent(TP)!;
    const child = startSpan('child', parent);
    expect(child.context.traceId).toBe(parent.traceId);
    expect(child.context.spanId).not.toBe(parent.spanId);
    expect(child.context.sampled).toBe(true);
    const unsampled = startSpan('u', { ...parent, sampled: false });
    expect(unsampled.context.sampled).toBe(false);
    expect(unsampled.context.traceId).toBe(parent.traceId);
    const root = startSpan('root', undefined);
    expect(root.context.traceId).not.toBe(parent.traceId);
    expect(root.context.sampled).toBe(true);
  });

  it('a ratio of 0 records no new trace', async () => {
    await startTracing({ endpoint: 'http://127.0.0.1:9/v1/traces', serviceName: 'unit', sampleRatio: 0, exportIntervalMs: 60_000 });
    expect(startSpan('root', undefined).context.sampled).toBe(false);
    // A caller's sampled traceparent still wins.
    expect(startSpan('child', parseTraceparent(TP)).context.sampled).toBe(true);
  });
});
