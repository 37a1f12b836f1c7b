import { describe, expect, it } from 'vitest';
import { AggregatorRegistry, Counter, Histogram, Registry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import { FastCounter, FastHistogram } from '../src/index.ts';

const BUCKETS = [0.001, 0.01, 0.1, 1];
const VALUES = [0.0005, 0.001, 0.002, 0.05, 0.05, 0.7, 3, 0];

/** Series lines of an exposition, sorted, so label order inside a line is the only difference left to normalize. */
function lines(text: string): string[] {
  return text.split('\n').filter((l) => l !== '' && !l.startsWith('#')).map((l) => {
    const m = /^(\w+)(?:\{(.*)\})? (\S+)$/.exec(l)!;
    const labels = (m[2] ?? '').split(',').filter(Boolean).sort().join(',');
    return `${m[1]}{${labels}} ${m[3]}`;
  }).sort();
}

describe('FastHistogram', () => {
  it('exposes what prom-client\'s Histogram exposes for the same observations', async () => {
    const a = new Registry();
    const b = new Registry();
    const slow = new Histogram({ name: 'x_seconds', help: 'h', labelNames: ['app', 'deployment'], buckets: BUCKETS, registers: [a] });
    const fast = new FastHistogram({ name: 'x_seconds', help: 'h', labelNames: ['app', 'deployment'], buckets: BUCKETS, registers: [b] });
    const child = fast.child({ app: 'a', deployment: 'd' });
    for (const v of VALUES) {
      slow.observe({ app: 'a', deployment: 'd' }, v);
      child.observe(v);
      slow.observe({ app: 'a', deployment: 'e' }, v * 2);
      fast.observe({ app: 'a', deployment: 'e' }, v * 2);
    }
    expect(lines(await b.metrics())).toEqual(lines(await a.metrics()));
    expect((await b.metrics())).toContain('# TYPE x_seconds histogram');
    // The JSON the head merges is the same too, and merges like prom-client's.
    const ja = await a.getMetricsAsJSON();
    const jb = await b.getMetricsAsJSON();
    const norm = (j: typeof ja): unknown => j.map((m) => ({ ...m, values: [...(m as MetricObjectWithValues<MetricValue<string>>).values].map((v) => ({ labels: v.labels, value: v.value, metricName: (v as { metricName?: string }).metricName })) }));
    expect(norm(jb)).toEqual(norm(ja));
    const merged = AggregatorRegistry.aggregate([jb, jb] as Array<Array<MetricObjectWithValues<MetricValue<string>>>>);
    expect(await merged.metrics()).toMatch(/x_seconds_count\{app="a",deployment="d"\} 16/);
  });

  it('binds a label set once and checks labels and buckets', () => {
    const r = new Registry();
    const h = new FastHistogram({ name: 'y_seconds', help: 'h', labelNames: ['app'], buckets: [1, 0.5], registers: [r] });
    expect(h.child({ app: 'a' })).toBe(h.child({ app: 'a' }));
    expect(h.child({ app: 'a' })).not.toBe(h.child({ app: 'b' }));
    expect(() => h.child({} as { app: string })).toThrow(/label "app" must be a string/);
    expect(() => new FastHistogram({ name: 'z', help: 'h', labelNames: [], buckets: [], registers: [r] })).toThrow(/buckets/);
    expect(() => new FastHistogram({ name: 'bad name', help: 'h', labelNames: [], buckets: [1], registers: [r] })).toThrow(/invalid metric name/);
    // A second metric of one name in a registry is refused, as prom-client refuses it.
    expect(() => new FastHistogram({ name: 'y_seconds', help: 'h', labelNames: ['app'], buckets: [1], registers: [r] })).toThrow(/already been registered/);
    // Unsorted buckets are sorted; NaN is not counted.
    const c = h.child({ app: 'c' });
    c.observe(0.7);
    c.observe(Number.NaN);
    expect([...c.counts]).toEqual([0, 1, 0]);
    expect(c.count).toBe(1);
  });
});

describe('FastCounter', () => {
  it('exposes what prom-client\'s Counter exposes', async () => {
    const a = new Registry();
    const b = new Registry();
    const slow = new Counter({ name: 'r_total', help: 'h', labelNames: ['app', 'code'], registers: [a] });
    const fast = new FastCounter({ name: 'r_total', help: 'h', labelNames: ['app', 'code'], registers: [b] });
    for (let i = 0; i < 5; i++) { slow.inc({ app: 'a', code: '200' }); fast.child({ app: 'a', code: '200' }).inc(); }
    slow.inc({ app: 'a', code: '500' }, 3);
    fast.inc({ app: 'a', code: '500' }, 3);
    fast.inc({ app: 'a', code: '500' }, -1); // a counter never goes down
    expect(lines(await b.metrics())).toEqual(lines(await a.metrics()));
    expect(() => new FastCounter({ name: 'r', help: 'h', labelNames: [], registers: [b] })).toThrow(/_total/);
  });
});
