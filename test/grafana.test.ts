/**
 * docs/grafana/shoal.json, the Grafana dashboard over shoal's metrics: its model is sound (every panel has the
 * datasource variable, targets with expressions, a unique id and a place on the grid that no other panel takes),
 * every PromQL expression parses (`promtool check rules`, offline), and every metric name an expression, an
 * annotation or a template variable reads exists in a live cluster's /-/metrics exposition, so no panel can
 * stay empty for want of a metric that was renamed or never existed. Where Debian's `prometheus` is installed, a
 * real server scrapes that cluster and evaluates every expression, and the core panels must return series.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { env } from '@shoal/core';
import type { Head } from '@shoal/head';
import { spawn, type ChildProcess } from 'node:child_process';
import { deployFixture, freePort, startCluster, waitFor } from './helpers.ts';

const DASHBOARD = resolve(import.meta.dirname, '../docs/grafana/shoal.json');

interface Target { refId: string; expr: string; datasource?: { type?: string; uid?: string }; legendFormat?: string }
interface Panel {
  id: number; type: string; title: string; description?: string;
  datasource?: { type?: string; uid?: string };
  gridPos: { h: number; w: number; x: number; y: number };
  targets?: Target[];
  panels?: Panel[];
}
interface Variable { name: string; type: string; query?: unknown; definition?: string; datasource?: { uid?: string } }
interface Dashboard {
  schemaVersion: number; title: string; uid: string;
  __inputs?: Array<{ name: string; type: string; pluginId: string }>;
  annotations: { list: Array<{ name: string; expr?: string; datasource?: { uid?: string } }> };
  templating: { list: Variable[] };
  panels: Panel[];
}

const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Dashboard;
/** Panels with their rows' nested panels (a collapsed row keeps its panels inside it). */
const allPanels: Panel[] = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
const queryPanels = allPanels.filter((p) => p.type !== 'row');

/** Every PromQL expression of the dashboard, with where it is. */
function expressions(): Array<{ where: string; expr: string }> {
  const out: Array<{ where: string; expr: string }> = [];
  for (const p of queryPanels) for (const t of p.targets ?? []) out.push({ where: `panel ${p.id} "${p.title}" target ${t.refId}`, expr: t.expr });
  for (const a of dashboard.annotations.list) if (a.expr !== undefined) out.push({ where: `annotation "${a.name}"`, expr: a.expr });
  return out;
}

/** The series selector inside each template variable's label_values(SELECTOR, label) query. */
function variableSelectors(): Array<{ where: string; expr: string }> {
  return dashboard.templating.list.filter((v) => v.type === 'query').map((v) => {
    const q = typeof v.query === 'string' ? v.query : (v.query as { query: string }).query;
    const m = /^label_values\((.+),\s*\w+\)$/.exec(q);
    if (m === null) throw new Error(`variable ${v.name}: expected label_values(SELECTOR, LABEL), got ${q}`);
    return { where: `variable ${v.name}`, expr: m[1]! };
  });
}

/** Grafana's variables replaced by values Prometheus takes: intervals for the built-ins, match-all for ours. */
function substitute(expr: string): string {
  return expr
    .replace(/\$__rate_interval|\$__interval|\$\{__interval\}/g, '1m')
    .replace(/\$__range/g, '1h')
    .replace(/\$\{?(app|deployment)\}?/g, '.*');
}

const KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'offset', 'and', 'or', 'unless', 'inf', 'nan']);

/**
 * The metric names an expression reads: identifiers that are not functions (followed by `(`), keywords, label
 * names inside {...} or by/on/ignoring/group_*(...) lists, strings, durations or numbers.
 */
function metricNames(expr: string): string[] {
  const s = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, '')
    .replace(/\[[^\]]*\]/g, '')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const names = new Set<string>();
  for (const m of s.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const word = m[0];
    const after = s.slice(m.index! + word.length).trimStart();
    if (after.startsWith('(') || KEYWORDS.has(word.toLowerCase())) continue;
    const before = s[m.index! - 1];
    if (before !== undefined && /[0-9.]/.test(before)) continue; // 1e3, 0.5
    names.add(word);
  }
  return [...names];
}

describe('the Grafana dashboard model', () => {
  it('is a Grafana 10 dashboard with a Prometheus datasource input and variable, and app and deployment variables', () => {
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(38);
    expect(dashboard.uid).toMatch(/^[\w-]{1,40}$/);
    expect(dashboard.__inputs).toContainEqual(expect.objectContaining({ name: 'DS_PROMETHEUS', type: 'datasource', pluginId: 'prometheus' }));
    const vars = new Map(dashboard.templating.list.map((v) => [v.name, v]));
    expect(vars.get('DS_PROMETHEUS')).toMatchObject({ type: 'datasource', query: 'prometheus' });
    for (const name of ['app', 'deployment']) {
      const v = vars.get(name);
      expect(v, name).toMatchObject({ type: 'query', datasource: { uid: '${DS_PROMETHEUS}' } });
      expect(v!.definition, name).toMatch(new RegExp(`^label_values\\(.+, ${name}\\)$`));
    }
  });

  it('gives every panel a unique id, a place on the grid no other panel takes, the datasource and targets with an expression', () => {
    const ids = allPanels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(queryPanels.length).toBeGreaterThan(20);
    const taken = new Map<string, number>();
    for (const p of allPanels) {
      const g = p.gridPos;
      expect([g.h, g.w, g.x, g.y].every((n) => Number.isInteger(n) && n >= 0), `panel ${p.id} gridPos`).toBe(true);
      expect(g.w >= 1 && g.h >= 1 && g.x + g.w <= 24, `panel ${p.id} "${p.title}" fits the 24-column grid`).toBe(true);
      for (let x = g.x; x < g.x + g.w; x++) for (let y = g.y; y < g.y + g.h; y++) {
        const other = taken.get(`${x},${y}`);
        expect(other, `panel ${p.id} "${p.title}" overlaps panel ${other} at ${x},${y}`).toBeUndefined();
        taken.set(`${x},${y}`, p.id);
      }
    }
    for (const p of queryPanels) {
      expect(p.datasource, `panel ${p.id}`).toEqual({ type: 'prometheus', uid: '${DS_PROMETHEUS}' });
      expect(p.title, `panel ${p.id}`).not.toBe('');
      expect(p.description, `panel ${p.id} "${p.title}" says what it shows`).toMatch(/\S/);
      expect(p.targets?.length, `panel ${p.id} "${p.title}" targets`).toBeGreaterThan(0);
      const refIds = p.targets!.map((t) => t.refId);
      expect(new Set(refIds).size, `panel ${p.id} refIds`).toBe(refIds.length);
      for (const t of p.targets!) {
        expect(t.expr, `panel ${p.id} target ${t.refId}`).toMatch(/\S/);
        expect(t.datasource, `panel ${p.id} target ${t.refId}`).toEqual({ type: 'prometheus', uid: '${DS_PROMETHEUS}' });
      }
    }
  });

  it('reads metric names out of expressions (the check below relies on it)', () => {
    expect(metricNames('histogram_quantile(0.99, sum by (app, le) (rate(shoal_x_bucket{app=~"$app", code="5.."}[$__rate_interval])))')).toEqual(['shoal_x_bucket']);
    expect(metricNames('a_total / ignoring (reason) group_left sum by (m) (rate(b_total[5m])) > 0.5e3')).toEqual(['a_total', 'b_total']);
    expect(metricNames('label_replace(process_cpu_seconds_total, "worker", "head", "worker", "") and on (app) up')).toEqual(['process_cpu_seconds_total', 'up']);
  });

  it('has expressions that parse (promtool check rules)', (ctx) => {
    if (spawnSync('promtool', ['--version'], { stdio: 'ignore' }).error !== undefined) {
      if (env.requirePromtool()) throw new Error('promtool is not on PATH and SHOAL_REQUIRE_PROMTOOL=1: install it (Debian: apt-get install prometheus)');
      ctx.skip();
    }
    const dir = mkdtempSync(join(tmpdir(), 'shoal-grafana-'));
    try {
      // One recording rule per expression: promtool parses and type-checks each, and names the bad one.
      const all = [...expressions(), ...variableSelectors()];
      const rules = all.map((e, i) => `      - record: grafana:expr_${i}\n        expr: ${JSON.stringify(substitute(e.expr))}`).join('\n');
      const file = join(dir, 'rules.yml');
      writeFileSync(file, `groups:\n  - name: grafana\n    rules:\n${rules}\n`);
      const r = spawnSync('promtool', ['check', 'rules', file], { encoding: 'utf8' });
      const out = `${r.stdout}${r.stderr}`;
      const bad = /expr_(\d+)/.exec(out);
      expect(r.status, bad !== null ? `${all[Number(bad[1])]!.where}: ${out}` : out).toBe(0);
      expect(out).toContain(`SUCCESS: ${all.length} rules found`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('metrics the dashboard reads, against a live cluster', () => {
  let head: Head;
  let families: Map<string, string>;

  beforeAll(async () => {
    head = await startCluster({ workerTimeoutMs: 30_000 });
    // Batched and unbatched methods and a handle call between deployments: every latency histogram has series.
    await deployFixture(head, { module: resolve(import.meta.dirname, 'fixtures/metrics-app.ts'), name: 'graf' });
    for (let i = 0; i < 5; i++) expect((await fetch(`${head.httpAddress}/?x=${i}`)).status).toBe(200);
    families = await scrapeFamilies();
    // Memory pool gauges exist once some replica holds a pool: deploy one where the workers loaded the addon.
    if (families.has('shoal_native_device_total_bytes')) {
      await deployFixture(head, { module: resolve(import.meta.dirname, 'fixtures/native-pool-app.ts'), name: 'pooled', routePrefix: '/pooled' });
      families = await scrapeFamilies();
    }
  }, 90_000);
  afterAll(async () => { await head?.stop(); });

  /** Metric families of the exposition (one per `# TYPE` line), name to type. */
  async function scrapeFamilies(): Promise<Map<string, string>> {
    const text = await (await fetch(`${head.clusterAddress.replace('ws://', 'http://')}/-/metrics`)).text();
    return new Map([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1]!, m[2]!]));
  }

  /** The family a name belongs to: itself, or a histogram's for its _bucket, _sum and _count series. */
  function familyOf(name: string): string | undefined {
    if (families.has(name)) return name;
    const m = /^(.+)_(bucket|sum|count)$/.exec(name);
    return m !== null && families.get(m[1]!) === 'histogram' ? m[1] : undefined;
  }

  it('finds every metric name of every expression in the exposition', () => {
    // Where the native addon is not built the workers export no shoal_native_* series at all (docs/METRICS.md);
    // those panels then show nothing, rightly. SHOAL_REQUIRE_NATIVE=1 (CI with the addon) makes them required.
    const nativeLoaded = families.has('shoal_native_device_total_bytes');
    if (env.requireNative()) expect(nativeLoaded, 'SHOAL_REQUIRE_NATIVE=1 but the workers export no native series').toBe(true);
    const missing: string[] = [];
    let checked = 0;
    for (const { where, expr } of [...expressions(), ...variableSelectors()]) {
      for (const name of metricNames(expr)) {
        if (!nativeLoaded && name.startsWith('shoal_native_')) continue;
        checked++;
        if (familyOf(name) === undefined) missing.push(`${where}: ${name}`);
      }
    }
    expect(missing).toEqual([]);
    expect(checked).toBeGreaterThan(50);
  });

  it('evaluates every expression in a real Prometheus scraping the cluster, and the core panels have data', async (ctx) => {
    if (spawnSync('prometheus', ['--version'], { stdio: 'ignore' }).error !== undefined) {
      if (env.requirePromtool()) throw new Error('prometheus is not on PATH and SHOAL_REQUIRE_PROMTOOL=1: install it (Debian: apt-get install prometheus)');
      ctx.skip();
    }
    const dir = mkdtempSync(join(tmpdir(), 'shoal-grafana-prom-'));
    let prom: ChildProcess | undefined;
    let log = '';
    try {
      const target = new URL(head.clusterAddress.replace('ws://', 'http://')).host;
      writeFileSync(join(dir, 'prometheus.yml'), `global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: shoal\n    metrics_path: /-/metrics\n    static_configs:\n      - targets: ['${target}']\n`);
      const port = await freePort();
      const url = `http://127.0.0.1:${port}`;
      prom = spawn('prometheus', [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'], { stdio: ['ignore', 'ignore', 'pipe'] });
      prom.stderr!.on('data', (b: Buffer) => { log = (log + b.toString()).slice(-4000); });
      const query = async (promql: string): Promise<{ status: string; error?: string; data?: { result: unknown[] } }> =>
        await (await fetch(`${url}/api/v1/query?${new URLSearchParams({ query: promql })}`)).json() as { status: string; error?: string; data?: { result: unknown[] } };
      // Three scrapes at least, so that rate() over a minute has points to work with.
      await waitFor(`prometheus to scrape the head three times (${log})`, async () => {
        const r = await query('count_over_time(up{job="shoal"}[1m]) >= 3').catch(() => undefined);
        return (r?.data?.result.length ?? 0) === 1;
      }, 45_000);
      for (let i = 0; i < 5; i++) await fetch(`${head.httpAddress}/?x=${i}`);
      const empty = new Set<string>();
      for (const { where, expr } of expressions()) {
        const r = await query(substitute(expr));
        expect(r.status, `${where}: ${r.error ?? ''}`).toBe('success');
        if ((r.data?.result.length ?? 0) === 0) empty.add(where);
      }
      // Series the test cluster has for certain: these panels must show something (their selectors match real labels).
      const core = ['Request rate per application', 'End-to-end latency p50 / p99 per deployment', 'Replicas by state', 'Batch release reasons', 'Batch size', 'Cold start p50 / p90', 'Event-loop delay p99', 'Resident memory', 'Workers'];
      if (families.has('shoal_native_device_total_bytes')) core.push('Device memory used', 'Memory pool usage');
      for (const title of core) {
        const p = queryPanels.find((x) => x.title === title);
        expect(p, title).toBeDefined();
        expect([...empty].filter((w) => w.startsWith(`panel ${p!.id} `) && w.endsWith(' target A')), `${title} has data`).toEqual([]);
      }
    } finally {
      if (prom !== undefined && prom.exitCode === null && prom.signalCode === null) {
        const gone = new Promise((r) => prom!.once('exit', r));
        prom.kill('SIGTERM');
        await Promise.race([gone, new Promise((r) => setTimeout(r, 10_000))]);
      }
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);

  it('uses rate() and increase() on counters and histogram series only, and quantiles on histogram buckets', () => {
    const misuse: string[] = [];
    for (const { where, expr } of expressions()) {
      for (const m of expr.matchAll(/\b(rate|increase|changes)\(\s*([a-zA-Z_:][\w:]*)/g)) {
        const fam = familyOf(m[2]!);
        if (fam === undefined) continue; // reported by the test above
        const type = families.get(fam);
        if (m[1] !== 'changes' && type !== 'counter' && type !== 'histogram') misuse.push(`${where}: ${m[1]}(${m[2]}) of a ${type}`);
      }
      for (const m of expr.matchAll(/histogram_quantile\([^,]+,[^]*?\b([a-zA-Z_:][\w:]*_bucket)\b/g)) {
        if (families.get(m[1]!.replace(/_bucket$/, '')) !== 'histogram') misuse.push(`${where}: histogram_quantile over ${m[1]}, not a histogram's buckets`);
      }
    }
    expect(misuse).toEqual([]);
  });
});
