/** The shoal_cascade_* series a cascade records into a registered Prometheus registry. */
import { afterEach, describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { cascade, registerCascadeMetrics, type CascadeInstance } from '../../src/cascade/index.ts';
import { FakeClock, flushMicrotasks } from '../../src/clock.ts';
import { contextStorage } from '../../src/context.ts';
import { deployment } from '../../src/deployment.ts';
import { FakeHandle, Model, type Answer } from './fakes.ts';

const closers: Array<{ close(): void }> = [];
afterEach(() => { for (const c of closers.splice(0)) c.close(); });

async function value(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === name.replace(/_(bucket|sum|count)$/, ''));
  if (metric === undefined) return Number.NaN;
  const hits = metric.values.filter((v) => (v as { metricName?: string }).metricName === undefined || (v as { metricName?: string }).metricName === name)
    .filter((v) => Object.entries(labels).every(([k, want]) => String((v.labels as Record<string, unknown>)[k]) === want));
  return hits.reduce((s, v) => s + v.value, 0);
}

describe('cascade Prometheus series', () => {
  it('counts requests, escalations by reason, audits and agreements, latency saved, and observes latencies', async () => {
    const registry = new Registry();
    closers.push(registerCascadeMetrics(registry, { buckets: [0.01, 0.1, 1] }));
    const clock = new FakeClock();
    const app = cascade({
      name: 'classify', small: deployment(Model, { name: 'small' }).bind(), large: deployment(Model, { name: 'large' }).bind(), method: 'predict',
      confidence: (a) => a.score, threshold: 0.8, auditSampleRate: 1, agree: (a, b) => a.label === b.label, clock,
    });
    const small = new FakeHandle(async (x) => { await clock.sleep(10); return { label: 'pos', score: x }; });
    const large = new FakeHandle(async () => { await clock.sleep(100); return { label: x2label(), score: 1 }; });
    let largeLabel = 'pos';
    function x2label(): string { return largeLabel; }
    const Factory = app.deployment.factory as unknown as new (s: FakeHandle, l: FakeHandle) => CascadeInstance<'predict', [number], Answer>;
    // Built in its replica's context, as a worker builds it: that context's app and deployment label the series.
    const ctx = { signal: new AbortController().signal, deadline: undefined, app: 'shop', deployment: 'classify', replicaId: 'r1' };
    const inst = contextStorage.run(ctx, () => new Factory(small, large));
    const l = { app: 'shop', deployment: 'classify' };

    // Before any event, nothing: a process without a cascade exposes no cascade series.
    expect(await value(registry, 'shoal_cascade_requests_total', l)).toBeNaN();
    const step = async (x: number): Promise<void> => {
      const p = inst.predict(x);
      await clock.advanceAsync(500);
      await p;
      await flushMicrotasks();
      await clock.advanceAsync(500);
    };
    await step(0.1);  // escalation: large 100 ms known from here on
    await step(0.9);  // confident, audited, agrees; saved 100 - 10
    largeLabel = 'neg';
    await step(0.9);  // confident, audited, disagrees
    expect(await value(registry, 'shoal_cascade_requests_total', l)).toBe(3);
    expect(await value(registry, 'shoal_cascade_escalations_total', { ...l, reason: 'low_confidence' })).toBe(1);
    expect(await value(registry, 'shoal_cascade_escalations_total', { ...l, reason: 'small_error' })).toBe(0);
    expect(await value(registry, 'shoal_cascade_audits_total', l)).toBe(2);
    expect(await value(registry, 'shoal_cascade_audit_agreements_total', l)).toBe(1);
    expect(await value(registry, 'shoal_cascade_audits_lost_total', l)).toBe(0);
    expect(await value(registry, 'shoal_cascade_errors_total', l)).toBe(0);
    expect(await value(registry, 'shoal_cascade_latency_saved_seconds_total', l)).toBeCloseTo(0.18, 9);
    expect(await value(registry, 'shoal_cascade_latency_added_seconds_total', l)).toBeCloseTo(0.01, 9);
    expect(await value(registry, 'shoal_cascade_request_duration_seconds_count', { ...l, answered_by: 'small' })).toBe(2);
    expect(await value(registry, 'shoal_cascade_request_duration_seconds_count', { ...l, answered_by: 'large' })).toBe(1);
    expect(await value(registry, 'shoal_cascade_model_duration_seconds_count', { ...l, model: 'large', call: 'audit', result: 'ok' })).toBe(2);
    expect(await value(registry, 'shoal_cascade_model_duration_seconds_count', { ...l, model: 'large', call: 'serve' })).toBe(1);
    expect(await value(registry, 'shoal_cascade_model_duration_seconds_sum', { ...l, model: 'small' })).toBeCloseTo(0.03, 9);
    const text = await registry.metrics();
    expect(text).toContain('shoal_cascade_model_duration_seconds_bucket{le="0.01",app="shop",deployment="classify",model="small",call="serve",result="ok"} 3');
    // The JSON answer of the same replica says the same.
    expect(inst.cascadeStats()).toMatchObject({ requests: 3, escalations: { total: 1 }, audits: { compared: 2, agreements: 1 } });
  });

  it('records nothing into a registry once closed', async () => {
    const registry = new Registry();
    const reg = registerCascadeMetrics(registry);
    reg.close();
    const app = cascade({ small: deployment(Model, { name: 'small' }).bind(), large: deployment(Model, { name: 'large' }).bind(), method: 'predict', confidence: (a) => a.score, threshold: 0.5 });
    const Factory = app.deployment.factory as unknown as new (s: FakeHandle, l: FakeHandle) => CascadeInstance<'predict', [number], Answer>;
    await new Factory(new FakeHandle((x) => ({ label: 'a', score: x })), new FakeHandle(() => ({ label: 'a', score: 1 }))).predict(0.9);
    expect(registry.getMetricsAsArray()).toHaveLength(0);
  });
});
