/**
 * Integration: SLOs, traffic and cost on a real head with real worker processes. A deployment declares
 * p99 <= 50 ms, p50 <= 100 ms and 99% availability; the test sends a known mix (a fifth slow, a fifth failing)
 * and reads attainment, burn rates and alerting (none: the windows are not yet covered) back from /api/status, `shoal status` and /-/metrics, with cost
 * figures at the prices the head was given.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { InvalidOptionError, silentLogger, type AppSpec } from '@shoal/core';
import { Head, type ClusterStatus } from '@shoal/head';
import { deployFixture, samples, startCluster, waitFor } from './helpers.ts';

const SLO_APP = resolve(import.meta.dirname, 'fixtures/slo-app.ts');
const BIN = resolve(import.meta.dirname, '../packages/cli/bin/shoal.mjs');
const PRICES = { coreHour: 0.04, deviceHour: 2.5 };
const SENT = 100;

let head: Head;
let spec: AppSpec;
let deployedAt: number;

beforeAll(async () => {
  head = await startCluster({ prices: PRICES });
  deployedAt = Date.now();
  spec = await deployFixture(head, { module: SLO_APP, name: 'slo', routePrefix: '/' });
});
afterAll(async () => {
  await head?.stop();
});

type Dep = ClusterStatus['applications'][number]['deployments'][number];

async function apiStatus(): Promise<Dep> {
  const res = await fetch(`${head.clusterAddress.replace('ws://', 'http://')}/api/status`, { headers: { authorization: `Bearer ${head.token}` } });
  expect(res.status).toBe(200);
  const s = await res.json() as ClusterStatus;
  return s.applications.find((a) => a.name === spec.name)!.deployments.find((d) => d.name === 'Api')!;
}


function shoal(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; out: string }> {
  const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, SHOAL_LOG_LEVEL: 'warn', ...env }, stdio: 'pipe' });
  let out = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { out += d.toString(); });
  return new Promise((r) => child.once('exit', (code) => r({ code, out })));
}

describe('SLOs and cost on a live cluster', () => {
  it('shows traffic, figures before any request, and no SLO number without requests', async () => {
    await waitFor('the first heartbeats with the replicas', async () => (await apiStatus()).traffic !== undefined);
    const d = await apiStatus();
    expect(d.traffic).toMatchObject({ rps: 0, errorRate: 0, p50Ms: null, p99Ms: null });
    expect(d.slo!.objectives.map((o) => o.name)).toEqual(['p50', 'p99', 'availability']);
    for (const o of d.slo!.objectives) expect(o).toMatchObject({ attainment: { '5m': null, '1h': null, period: null }, budgetRemaining: null, alerting: false });
  });

  it('measures the share of slow and failed requests it was sent, burns the budget, and does not page on seconds of data', async () => {
    // A fifth slow (150 ms, past both latency thresholds), a fifth failing at once, the rest fast; ten at a time.
    for (let i = 0; i < SENT; i += 10) {
      await Promise.all(Array.from({ length: 10 }, async (_, j) => {
        const k = (i + j) % 5;
        const res = await fetch(`${head.httpAddress}/${k === 0 ? 'slow' : k === 1 ? 'fail' : 'fast'}`);
        expect(res.status).toBe(k === 1 ? 500 : 200);
        await res.arrayBuffer();
      }));
    }
    await waitFor('the heartbeats to carry every answer', async () => (await apiStatus()).cost?.requests === SENT);
    const d = await apiStatus();
    const [p50, p99, avail] = d.slo!.objectives;
    // Slow requests are slow whatever the rounding; a fast one may be late on a loaded machine, never early.
    expect(p99!.thresholdMs).toBe(50);
    expect(p99!.edgeMs).toBeLessThanOrEqual(50);
    for (const w of ['5m', '1h', 'period'] as const) {
      expect(p99!.attainment[w]).toBeLessThanOrEqual(0.8 + 1e-9);
      expect(p99!.attainment[w]).toBeGreaterThan(0.6);
    }
    expect(p99!.burn['5m']).toBeGreaterThanOrEqual(20 - 1e-6);
    expect(p99!.burn['1h']).toBeGreaterThanOrEqual(20 - 1e-6);
    expect(p99!.budgetRemaining).toBeLessThanOrEqual(-19 + 1e-6);
    // Burning at 20 over every window, but the series is seconds old: no window is covered, nothing pages
    // (packages/head/test/slo.test.ts pages once the windows are covered, on fake time).
    for (const w of ['5m', '30m', '1h', '6h'] as const) {
      expect(p99!.coveredMs[w]).toBeGreaterThan(0);
      expect(p99!.coveredMs[w]).toBeLessThan(300_000);
    }
    expect(p99!.alerting).toBe(false);
    // p50 <= 100 ms allows half to be slower: a fifth is, which burns 0.4 of its budget's pace.
    expect(p50!.attainment['5m']).toBeGreaterThan(0.6);
    expect(p50!.burn['5m']).toBeLessThan(1);
    expect(p50!.alerting).toBe(false);
    // Exactly the failures sent: 20 of 100 against 1% allowed.
    expect(avail!.attainment['5m']).toBeCloseTo(0.8, 9);
    expect(avail!.burn['5m']).toBeCloseTo(20, 6);
    expect(avail!.burn['1h']).toBeCloseTo(20, 6);
    expect(avail!.budgetRemaining).toBeCloseTo(-19, 6);
    expect(avail!.alerting).toBe(false);
    expect(d.slo!.alerting).toBe(false);

    expect(d.traffic!.windowMs).toBeGreaterThan(0);
    expect(d.traffic!.windowMs).toBeLessThanOrEqual(61_000);
    expect(d.traffic!.rps).toBeCloseTo((SENT / d.traffic!.windowMs) * 1000, 6);
    expect(d.traffic!.errorRate).toBeCloseTo(0.2, 9);
    expect(d.traffic!.p50Ms!).toBeLessThan(50);
    expect(d.traffic!.p99Ms!).toBeGreaterThanOrEqual(150);

    // Cost: two replicas of 0.5 cores each, priced per core-hour, over the requests answered.
    const c = d.cost!;
    const elapsedH = (Date.now() - deployedAt) / 3_600_000;
    expect(c.allocatedCoreHours).toBeGreaterThan(0);
    expect(c.allocatedCoreHours).toBeLessThanOrEqual(2 * 0.5 * elapsedH * 1.05);
    expect(c.allocatedDeviceHours).toBe(0);
    expect(c.cost).toBeCloseTo(c.allocatedCoreHours * PRICES.coreHour, 12);
    expect(c.costPer1kRequests).toBeCloseTo((c.cost! / SENT) * 1000, 12);
    expect(c.busyCostPer1kRequests).toBeCloseTo((c.busyCoreHours * PRICES.coreHour / SENT) * 1000, 12);
    expect(c.busyCostPer1kRequests!).toBeLessThan(c.costPer1kRequests!);
    expect(c.busyCoreHours).toBeGreaterThan(0);
    expect(c.busyCoreHours).toBeLessThanOrEqual(c.allocatedCoreHours);
    expect(c.idleShare!).toBeGreaterThan(0);
    expect(c.idleShare!).toBeLessThan(1);
    expect(c.total.requests).toBe(SENT);
  });

  it('shows the same in `shoal status` and in /-/metrics, which promtool accepts', async () => {
    const st = await shoal(['status', '--address', head.clusterAddress, '--token', head.token]);
    expect(st.code, st.out).toBe(0);
    expect(st.out).toMatch(/^TRAFFIC$/m);
    expect(st.out).toMatch(/^slo\/Api\s+[\d.]+\s+20\.00%\s/m);
    expect(st.out).toMatch(/^SLOS$/m);
    // Every burn is marked as over a window not yet covered, and nothing says ALERT.
    expect(st.out).toMatch(/^slo\/Api\s+p99 <= 50ms\s+99\.000%\s+.*\*$/m);
    expect(st.out).toMatch(/^slo\/Api\s+availability\s+99\.000%\s+80\.000%\s+80\.000%\s+80\.000%\s+-1900\.0%\s+20\.00\*\s+20\.00\*\s+20\.00\*\s+20\.00\*$/m);
    expect(st.out).toMatch(/^ {2}\* window not yet covered/m);
    expect(st.out).not.toMatch(/ALERT/);
    expect(st.out).toMatch(/^slo\/Api\s+p50 <= 100ms\s+50\.000%.*\d\*$/m);
    expect(st.out).toMatch(/^COST \(last hour\)$/m);
    expect(st.out).toMatch(/^slo\/Api\s+\d[\d.e-]*\s+\d[\d.e-]*\s+\d+\.\d%\s/m);

    const text = await (await fetch(`${head.httpAddress}/-/metrics`)).text();
    const l = { app: 'slo', deployment: 'Api' };
    expect(samples(text, 'shoal_slo_objective', { ...l, objective: 'p99' })).toEqual([0.99]);
    expect(samples(text, 'shoal_slo_attainment_ratio', { ...l, objective: 'availability', window: '5m' })[0]).toBeCloseTo(0.8, 9);
    expect(samples(text, 'shoal_slo_attainment_ratio', { ...l, objective: 'p99', window: '1h' })[0]).toBeLessThanOrEqual(0.8 + 1e-9);
    expect(samples(text, 'shoal_slo_burn_rate', { ...l, objective: 'availability', window: '1h' })[0]).toBeCloseTo(20, 6);
    expect(samples(text, 'shoal_slo_error_budget_remaining_ratio', { ...l, objective: 'availability' })[0]).toBeCloseTo(-19, 6);
    expect(samples(text, 'shoal_slo_alerting', { ...l, objective: 'p99' })).toEqual([0]);
    expect(samples(text, 'shoal_slo_alerting', { ...l, objective: 'availability' })).toEqual([0]);
    expect(samples(text, 'shoal_slo_alerting', { ...l, objective: 'p50' })).toEqual([0]);
    expect(samples(text, 'shoal_cost_per_1k_requests', l)[0]).toBeGreaterThan(0);
    const idle = samples(text, 'shoal_idle_capacity_ratio', l)[0]!;
    expect(idle).toBeGreaterThan(0);
    expect(idle).toBeLessThan(1);
    if (spawnSync('promtool', ['--version'], { stdio: 'ignore' }).error === undefined) {
      const lint = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
      expect(`${lint.stdout}${lint.stderr}`.trim()).toBe('');
    }
  });

  it('refuses bad prices, naming the option, flag or variable', async () => {
    expect(() => new Head({ logger: silentLogger, prices: { coreHour: -1 } })).toThrow(InvalidOptionError);
    expect(() => new Head({ logger: silentLogger, prices: { deviceHour: Number.NaN } })).toThrow(/invalid option prices\.deviceHour: must be a non-negative number/);
    const flag = await shoal(['start', '--port', '0', '--http-port', '0', '--workers', '0', '--price-core-hour=-0.5']);
    expect(flag.code).toBe(1);
    expect(flag.out).toMatch(/--price-core-hour: must be a non-negative number \(a price per hour\) \(got "-0\.5"\)/);
    const env = await shoal(['start', '--port', '0', '--http-port', '0', '--workers', '0'], { SHOAL_PRICE_DEVICE_HOUR: 'two' });
    expect(env.code).toBe(1);
    expect(env.out).toMatch(/env SHOAL_PRICE_DEVICE_HOUR: must be a non-negative number/);
  });
});
