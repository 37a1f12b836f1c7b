/**
 * Counters and histograms for the data path, registered in prom-client registries. prom-client's own observe()
 * and inc() validate and hash their label object on every call (about 1.5 us each, several per request); here a
 * label set is bound once (`child(labels)`), and an observation is a bucket search and two additions. prom-client
 * still does everything else: the registry asks these for their values (get()) when it is scraped or merged, in
 * the shape its own Histogram and Counter give, so the exposition, the JSON merge and promtool see no difference.
 */
import type { Registry } from 'prom-client';

interface MetricValue { labels: Record<string, string | number>; value: number; metricName?: string }
interface MetricData { name: string; help: string; type: 'histogram' | 'counter'; values: MetricValue[]; aggregator: 'sum' }

export interface FastMetricOptions<L extends string> {
  name: string;
  help: string;
  labelNames: readonly L[];
  registers: readonly Registry[];
}

/** Cached children, keyed by their label values in labelNames order. */
abstract class Labelled<L extends string, C> {
  readonly name: string;
  readonly help: string;
  readonly aggregator = 'sum' as const;
  protected readonly children = new Map<string, { labels: Record<L, string>; child: C }>();

  constructor(protected readonly opts: FastMetricOptions<L>) {
    if (!/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(opts.name)) throw new TypeError(`invalid metric name ${JSON.stringify(opts.name)}`);
    this.name = opts.name;
    this.help = opts.help;
    // prom-client's Registry takes any object with a name and get(); it keeps one per name.
    for (const r of opts.registers) r.registerMetric(this as unknown as Parameters<Registry['registerMetric']>[0]);
  }

  protected abstract make(): C;

  /** The child for one label set, made on first use; keep it and call it on the hot path. */
  child(labels: Record<L, string>): C {
    let key = '';
    for (const n of this.opts.labelNames) {
      const v = labels[n];
      if (typeof v !== 'string') throw new TypeError(`metric ${this.name}: label "${n}" must be a string, got ${typeof v}`);
      key += `${v}\u0000`;
    }
    let entry = this.children.get(key);
    if (entry === undefined) {
      const copy = {} as Record<L, string>;
      for (const n of this.opts.labelNames) copy[n] = labels[n];
      entry = { labels: copy, child: this.make() };
      this.children.set(key, entry);
    }
    return entry.child;
  }
}

export class HistogramChild {
  /** Count per bucket (not cumulative); the last is +Inf. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(private readonly bounds: Float64Array) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    if (!Number.isFinite(value)) return;
    const b = this.bounds;
    let i = 0;
    while (i < b.length && value > b[i]!) i++;
    this.counts[i]!++;
    this.sum += value;
    this.count++;
  }
}

export class FastHistogram<L extends string = string> extends Labelled<L, HistogramChild> {
  readonly type = 'histogram' as const;
  private readonly bounds: Float64Array;

  constructor(opts: FastMetricOptions<L> & { buckets: readonly number[] }) {
    super(opts);
    const sorted = [...opts.buckets].sort((a, b) => a - b);
    if (sorted.length === 0 || sorted.some((b) => !Number.isFinite(b))) throw new TypeError(`metric ${opts.name}: buckets must be finite numbers, at least one`);
    this.bounds = Float64Array.from(sorted);
  }

  protected make(): HistogramChild { return new HistogramChild(this.bounds); }

  /** Convenience for cold paths: finds (or makes) the child, then observes. */
  observe(labels: Record<L, string>, value: number): void {
    this.child(labels).observe(value);
  }

  /** What prom-client's Histogram.get() answers: cumulative `_bucket` series with `le`, then `_sum` and `_count`. */
  async get(): Promise<MetricData> {
    const values: MetricValue[] = [];
    const bucket = `${this.name}_bucket`;
    for (const { labels, child } of this.children.values()) {
      let acc = 0;
      for (let i = 0; i < this.bounds.length; i++) {
        acc += child.counts[i]!;
        values.push({ labels: { ...labels, le: this.bounds[i]! }, value: acc, metricName: bucket });
      }
      values.push({ labels: { ...labels, le: '+Inf' }, value: child.count, metricName: bucket });
      values.push({ labels: { ...labels }, value: child.sum, metricName: `${this.name}_sum` });
      values.push({ labels: { ...labels }, value: child.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }
}

export class CounterChild {
  value = 0;
  inc(by = 1): void {
    if (by >= 0) this.value += by;
  }
}

export class FastCounter<L extends string = string> extends Labelled<L, CounterChild> {
  readonly type = 'counter' as const;

  constructor(opts: FastMetricOptions<L>) {
    if (!opts.name.endsWith('_total')) throw new TypeError(`counter ${opts.name} must end in _total`);
    super(opts);
  }

  protected make(): CounterChild { return new CounterChild(); }

  inc(labels: Record<L, string>, by = 1): void {
    this.child(labels).inc(by);
  }

  async get(): Promise<MetricData> {
    const values: MetricValue[] = [];
    for (const { labels, child } of this.children.values()) values.push({ labels: { ...labels }, value: child.value });
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }
}
