/**
 * The dashboard end to end, on a real head with two real workers serving test/fixtures/dashboard-app.ts (an HTTP
 * ingress calling a batched deployment):
 *  - sign-in and the event stream over plain HTTP: the token sets a dashboard-only cookie, the stream sends
 *    snapshots only while someone reads it;
 *  - the page in headless Chromium (Debian's chromium, driven by playwright-core): it shows the application, its
 *    deployments and replica states, and its numbers (request rates, latency, batch sizes, SLO) change under load.
 * Without chromium the browser part is skipped, or fails with SHOAL_REQUIRE_CHROMIUM=1 (CI sets it).
 * SHOAL_UPDATE_SCREENSHOTS=1 writes the screenshots to docs/screenshots/ (otherwise to a temporary directory).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Head } from '@shoal/head';
import type { Browser, Page } from 'playwright-core';
import { deployFixture, startCluster, waitFor } from './helpers.ts';

const APP = resolve(import.meta.dirname, 'fixtures/dashboard-app.ts');
/** Debian's chromium (apt-get install chromium): /usr/bin/chromium, or wherever PATH has it. */
const CHROMIUM = ['/usr/bin/chromium', ...(process.env.PATH ?? '').split(':').filter((d) => d !== '').map((d) => join(d, 'chromium'))].find((p) => existsSync(p)) ?? '/usr/bin/chromium';
const chromiumMissing = !existsSync(CHROMIUM);
const REQUIRE_CHROMIUM = process.env.SHOAL_REQUIRE_CHROMIUM === '1';
const UPDATE_SCREENSHOTS = process.env.SHOAL_UPDATE_SCREENSHOTS === '1';
const SCREENSHOTS = UPDATE_SCREENSHOTS ? resolve(import.meta.dirname, '../docs/screenshots') : mkdtempSync(join(tmpdir(), 'shoal-dashboard-'));
if (chromiumMissing && !REQUIRE_CHROMIUM) process.stderr.write(`dashboard.test.ts: the Chromium part is skipped: no chromium on PATH (Debian: apt-get install chromium; SHOAL_REQUIRE_CHROMIUM=1 makes this a failure)\n`);

let head: Head;
let base: string;

beforeAll(async () => {
  head = await startCluster({ workers: 2 });
  await deployFixture(head, { module: APP, name: 'shop' });
  base = head.dashboardUrl().replace(/\/dashboard$/, '');
}, 90_000);
afterAll(async () => {
  await head?.stop();
  if (!UPDATE_SCREENSHOTS) rmSync(SCREENSHOTS, { recursive: true, force: true });
});

/** Requests from `concurrency` loops until stopped; counts the answers. */
function load(concurrency: number): { stop: () => Promise<number> } {
  let running = true;
  let answered = 0;
  const loops = Array.from({ length: concurrency }, async (_, i) => {
    for (let n = 0; running; n++) {
      const res = await fetch(`${head.httpAddress}/embed?x=${i * 1000 + n}`);
      await res.arrayBuffer();
      if (res.status === 200) answered++;
    }
  });
  return { stop: async () => { running = false; await Promise.all(loops); return answered; } };
}

async function signIn(): Promise<string> {
  const res = await fetch(`${base}/dashboard?token=${encodeURIComponent(head.token)}`, { redirect: 'manual' });
  expect(res.status).toBe(303);
  expect(res.headers.get('location')).toBe('/dashboard');
  const cookie = res.headers.get('set-cookie') ?? '';
  expect(cookie).toMatch(/^shoal_dashboard=\d+\.[\w-]+; HttpOnly; SameSite=Strict; Path=\//);
  // The cookie carries a value derived from the token, not the token.
  expect(cookie).not.toContain(head.token);
  return cookie.split(';')[0]!;
}

/** Reads `count` snapshots from the event stream, then closes it. */
async function readSnapshots(cookie: string, count: number): Promise<Array<Record<string, any>>> {
  const ctl = new AbortController();
  const res = await fetch(`${base}/api/dashboard/events`, { headers: { cookie }, signal: ctl.signal });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let text = '';
  const out: Array<Record<string, any>> = [];
  while (out.length < count) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`the event stream ended after ${out.length} snapshots`);
    text += decoder.decode(value, { stream: true });
    let end;
    while ((end = text.indexOf('\n\n')) >= 0) {
      const frame = text.slice(0, end);
      text = text.slice(end + 2);
      const data = frame.split('\n').find((l) => l.startsWith('data: '));
      if (frame.includes('event: snapshot') && data !== undefined) out.push(JSON.parse(data.slice(6)) as Record<string, any>);
    }
  }
  ctl.abort();
  await reader.cancel().catch(() => undefined);
  return out;
}

describe('dashboard: sign-in and the event stream', () => {
  it('asks for the token, refuses a wrong one, and sets a cookie that opens the dashboard only', async () => {
    const bare = await fetch(`${base}/dashboard`);
    expect(bare.status).toBe(401);
    expect(await bare.text()).toContain('/dashboard?token=');
    const wrong = await fetch(`${base}/dashboard?token=nope`, { redirect: 'manual' });
    expect([wrong.status, wrong.headers.get('set-cookie')]).toEqual([401, null]);
    const events = await fetch(`${base}/api/dashboard/events`);
    expect(events.status).toBe(401);
    expect(await events.json()).toMatchObject({ code: 'ERR_UNAUTHORIZED' });

    const cookie = await signIn();
    const page = await fetch(`${base}/dashboard`, { headers: { cookie } });
    expect(page.status).toBe(200);
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect(await page.text()).toContain('<script src="/dashboard/app.js"></script>');
    const js = await fetch(`${base}/dashboard/app.js`);
    expect([js.status, js.headers.get('content-type')]).toEqual([200, 'text/javascript; charset=utf-8']);
    expect(await js.text()).toContain("new EventSource('/api/dashboard/events')");
    // The session cookie opens nothing of the control API.
    expect((await fetch(`${base}/api/status`, { headers: { cookie } })).status).toBe(401);
    expect((await fetch(`${base}/dashboard`, { method: 'POST', headers: { cookie } })).status).toBe(405);
    const probe = await fetch(`${base}/api/dashboard/events`, { method: 'HEAD', headers: { cookie } });
    expect([probe.status, probe.headers.get('content-type'), head.dashboard.feed.watching]).toEqual([200, 'text/event-stream; charset=utf-8', 0]);
  });

  it('streams snapshots of the cluster while a client reads, and stops when it leaves', async () => {
    const cookie = await signIn();
    expect(head.dashboard.feed.active).toBe(false);
    const [first, second] = await readSnapshots(cookie, 2);
    expect(first!.intervalMs).toBeNull();
    expect(second!.intervalMs).toBeGreaterThan(0);
    const app = second!.applications.find((a: { name: string }) => a.name === 'shop');
    expect(app.deployments.map((d: { name: string }) => d.name).sort()).toEqual(['Embedder', 'Gateway']);
    const gateway = app.deployments.find((d: { name: string }) => d.name === 'Gateway');
    expect(gateway).toMatchObject({ key: 'shop/Gateway', status: 'HEALTHY', numReplicas: 2, running: 2, states: { RUNNING: 2 } });
    const embedder = app.deployments.find((d: { name: string }) => d.name === 'Embedder');
    expect(embedder.batch).toEqual([expect.objectContaining({ method: 'embed', maxBatchSize: 8 })]);
    expect(second!.workers).toHaveLength(2);
    expect(second!.workers.every((w: { state: string; ingressRps: number | null }) => w.state === 'ALIVE' && w.ingressRps === 0)).toBe(true);
    expect(second!.replicas.filter((r: { state: string }) => r.state === 'RUNNING')).toHaveLength(3);
    // Nobody watches now: no snapshot is taken.
    await waitFor('the feed to stop once its reader left', () => !head.dashboard.feed.active && head.dashboard.feed.watching === 0);
  });
});

describe.skipIf(chromiumMissing && !REQUIRE_CHROMIUM)('dashboard in headless Chromium', () => {
  let browser: Browser | undefined;
  afterAll(async () => { await browser?.close(); });

  const text = (page: Page, selector: string): Promise<string> => page.locator(selector).first().innerText();
  const numberIn = async (page: Page, selector: string): Promise<number | null> => {
    const t = (await text(page, selector)).replace(/,/g, '');
    const m = /-?\d+(\.\d+)?/.exec(t);
    return m === null ? null : Number(m[0]);
  };

  it('shows the application, its deployments and replicas, and its numbers change under load', async () => {
    if (chromiumMissing) throw new Error(`SHOAL_REQUIRE_CHROMIUM=1 but chromium is not on PATH (Debian: apt-get install chromium)`);
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    page.on('response', (r) => { if (r.status() >= 400) errors.push(`${r.status()} ${r.url()}`); });

    await page.goto(head.dashboardUrl(true));
    // The redirect took the token out of the address; the cookie keeps the session.
    expect(new URL(page.url()).search).toBe('');
    await page.locator('[data-testid="conn"]', { hasText: 'live' }).waitFor({ timeout: 20_000 });
    await page.locator('[data-app="shop"]').waitFor({ timeout: 20_000 });
    const gatewayRow = '[data-app="shop"] tr[data-deployment="shop/Gateway"]';
    const embedderRow = '[data-app="shop"] tr[data-deployment="shop/Embedder"]';
    expect(await text(page, `${gatewayRow} [data-field="status"]`)).toBe('HEALTHY');
    expect(await text(page, `${gatewayRow} [data-field="replicas"]`)).toBe('2/2');
    expect(await text(page, `${embedderRow} [data-field="replicas"]`)).toBe('1/1');
    expect(await page.locator('[data-testid="replicas"] [data-testid="replica-row"][data-state="RUNNING"]').count()).toBe(3);
    expect(await page.locator('[data-testid="workers"] [data-worker]').count()).toBe(2);
    expect(await text(page, '[data-testid="workers-alive"]')).toBe('2 / 2');
    // Idle: nothing counted yet.
    const before = {
      ingress: await numberIn(page, '[data-testid="ingress-rps"]'),
      rps: await numberIn(page, `${gatewayRow} [data-field="rps"]`),
      batchMean: await numberIn(page, `${embedderRow} [data-field="batch-mean"]`),
    };
    expect(before.ingress ?? 0).toBe(0);
    expect(before.rps ?? 0).toBe(0);
    expect(before.batchMean).toBeNull();

    const traffic = load(16);
    try {
      await waitFor('the page to show requests, latency, batches and SLO attainment under load', async () => {
        const ingress = await numberIn(page, '[data-testid="ingress-rps"]');
        const rps = await numberIn(page, `${gatewayRow} [data-field="rps"]`);
        const p99 = await numberIn(page, `${gatewayRow} [data-field="p99"]`);
        const mean = await numberIn(page, `${embedderRow} [data-field="batch-mean"]`);
        const slo = await text(page, `${gatewayRow} [data-field="slo"]`);
        return ingress !== null && ingress > 0 && rps !== null && rps > 0 && p99 !== null && p99 > 0 && mean !== null && mean >= 1 && /\d+(\.\d+)?%/.test(slo);
      }, 60_000);
      // Sparklines have drawn a line from the history the page keeps.
      expect(await page.locator(`${gatewayRow} svg[data-chart="spark"] polyline`).count()).toBeGreaterThan(0);
      await page.screenshot({ path: join(SCREENSHOTS, 'dashboard.png'), fullPage: true });

      // The deployment's detail: time series and the batch-size distribution of the last minute.
      await page.locator(`${embedderRow} a`).click();
      await page.locator('[data-testid="detail"][data-deployment="shop/Embedder"]').waitFor({ timeout: 10_000 });
      await waitFor('batch-size bars in the detail', async () => (await page.locator('[data-testid="detail"] [data-batch="embed"] svg[data-chart="batch-sizes"] rect[height]:not([height="0.0"])').count()) > 0, 20_000);
      await page.screenshot({ path: join(SCREENSHOTS, 'dashboard-batching.png'), fullPage: true });
      await page.locator(`${gatewayRow} a`).click();
      await page.locator('[data-testid="detail"][data-deployment="shop/Gateway"]').waitFor({ timeout: 10_000 });
      await waitFor('latency lines in the detail', async () => (await page.locator('[data-testid="detail"] svg[data-chart="time"] polyline').count()) >= 2, 20_000);
      expect(await page.locator('[data-testid="detail"] tr[data-objective]').count()).toBe(3);
      await page.screenshot({ path: join(SCREENSHOTS, 'dashboard-deployment.png'), fullPage: true });
    } finally {
      expect(await traffic.stop()).toBeGreaterThan(0);
    }
    for (const f of ['dashboard.png', 'dashboard-batching.png', 'dashboard-deployment.png']) expect(statSync(join(SCREENSHOTS, f)).size).toBeGreaterThan(10_000);
    expect(errors).toEqual([]);
    await context.close();
  }, 120_000);
});
