/**
 * The dashboard's parts without a cluster: the snapshot's rates from two sets of cumulative counters (ingress
 * requests per worker, batches per size per replica, a replica restarted or gone), the session cookie, the page's
 * script being valid JavaScript and, run on a small fake DOM, forgetting deleted deployments and marking partial
 * burn windows, and the feed taking snapshots only while a page is connected (fake clock, real
 * HTTP server on 127.0.0.1 port 0).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createServer, get, type IncomingMessage, type Server } from 'node:http';
import { Script } from 'node:vm';
import { FakeClock, silentLogger, type BatchQueueStats } from '@shoal/core';
import type { ReplicaStats, WorkerStats } from '@shoal/protocol';
import { buildSnapshot, type DashboardStatsInput, type DashboardStatusInput } from '../../packages/head/src/dashboard/snapshot.ts';
import {
  DASHBOARD_COOKIE_MAX_AGE_S, DASHBOARD_COOKIE_SKEW_S, cookieValue, dashboardCredential, dashboardSession, sessionCookie, sessionValid,
} from '../../packages/head/src/dashboard/auth.ts';
import { DashboardFeed } from '../../packages/head/src/dashboard/feed.ts';
import { DASHBOARD_JS } from '../../packages/head/src/dashboard/page-js.ts';

function queue(batchSizeCounts: Record<number, number>, over: Partial<BatchQueueStats> = {}): BatchQueueStats {
  return {
    state: 'open', queued: 0, queuedByPriority: [0], running: 0, runningBatches: 0, inFlight: 0, batchSizeCounts,
    totals: { submitted: 0, succeeded: 0, failed: 0, cancelled: 0, deadlineExceeded: 0, queueTimedOut: 0, delayed: 0, rejectedQueueFull: 0 },
    effective: { maxBatchSize: 8, maxWaitMs: 5 }, adaptive: undefined, ...over,
  };
}

function replica(replicaId: string, deployment: string, batch: Record<string, BatchQueueStats> = {}, over: Partial<ReplicaStats> = {}): ReplicaStats {
  return { replicaId, app: 'shop', deployment, state: 'RUNNING', ongoing: 0, queued: 0, batch, ...over };
}

function status(replicaIds: Array<[string, string, string]>): DashboardStatusInput {
  const dep = (name: string, n: number): DashboardStatusInput['applications'][number]['deployments'][number] => ({
    name, status: 'HEALTHY', message: '', numReplicas: n, running: n, failures: 0, version: 'v1', versions: [{ id: 'v1', createdAtMs: 0, current: true, running: n }], decisions: [],
  });
  const worker = (workerId: string): DashboardStatusInput['workers'][number] => ({
    workerId, name: `host-${workerId}`, state: 'ALIVE', pid: 100, dataAddress: 'ws://127.0.0.1:1', replicas: 1,
    resources: { cpus: 4, memory: 8 * 2 ** 30, gpus: 0, devices: [{ index: 0, name: 'host', kind: 'host', totalBytes: 2 ** 30, freeBytes: 2 ** 29 }] },
    used: { cpus: 1, gpus: 0, memory: 0 },
  });
  return {
    applications: [{ name: 'shop', routePrefix: '/', ingress: 'Gateway', deployments: [dep('Gateway', 1), dep('Embedder', 2)] }],
    replicas: replicaIds.map(([replicaId, deployment, workerId]) => ({ replicaId, app: 'shop', deployment, version: 'v1', state: 'RUNNING', workerId })),
    workers: [worker('w1'), worker('w2')],
    cluster: 'ws://127.0.0.1:7450', http: 'http://127.0.0.1:8000',
  };
}

function stats(workers: Array<{ id: string; ingress: number; replicas: ReplicaStats[]; waiting?: number }>): DashboardStatsInput {
  return {
    router: { 'shop/Embedder': { inflight: 0, waiting: 1, replicas: 2 } },
    workers: workers.map((w): WorkerStats => ({
      workerId: w.id, replicas: w.replicas, router: { 'shop/Embedder': { inflight: 0, waiting: w.waiting ?? 0, replicas: 2 } },
      traffic: { ingressRequests: w.ingress, dataIn: { call: 0, http: 0 } },
    })),
  };
}

describe('buildSnapshot', () => {
  const st = status([['g1', 'Gateway', 'w1'], ['e1', 'Embedder', 'w1'], ['e2', 'Embedder', 'w2']]);

  it('has no rates in the first snapshot, and rates from the counters\' differences in the next', () => {
    const first = buildSnapshot(st, stats([
      { id: 'w1', ingress: 100, replicas: [replica('g1', 'Gateway'), replica('e1', 'Embedder', { embed: queue({ 1: 10, 4: 5 }) })] },
      { id: 'w2', ingress: 50, replicas: [replica('e2', 'Embedder', { embed: queue({ 8: 1 }) })] },
    ]), undefined, { wallMs: 1_000_000, monoMs: 0 });
    const emb0 = first.snapshot.applications[0]!.deployments.find((d) => d.name === 'Embedder')!;
    expect(first.snapshot.intervalMs).toBeNull();
    expect(first.snapshot.totals.ingressRps).toBeNull();
    expect(first.snapshot.workers.map((w) => w.ingressRps)).toEqual([null, null]);
    expect(emb0.batch).toEqual([expect.objectContaining({ method: 'embed', meanBatchSize: null, batchesPerSec: null, itemsPerSec: null, sizes: {} })]);

    // Two seconds on: w1 answered 30 more, w2 10 more; e1 ran 2 batches of 4 and 2 of 8, e2 2 of 8.
    const second = buildSnapshot(st, stats([
      { id: 'w1', ingress: 130, replicas: [replica('g1', 'Gateway', {}, { ongoing: 2 }), replica('e1', 'Embedder', { embed: queue({ 1: 10, 4: 7, 8: 2 }, { queued: 3 }) }, { ongoing: 1 })], waiting: 2 },
      { id: 'w2', ingress: 60, replicas: [replica('e2', 'Embedder', { embed: queue({ 8: 3 }) })] },
    ]), first.counters, { wallMs: 1_002_000, monoMs: 2000 });
    const s = second.snapshot;
    expect(s.intervalMs).toBe(2000);
    expect(s.workers.map((w) => w.ingressRps)).toEqual([15, 5]);
    expect(s.totals.ingressRps).toBe(20);
    const emb = s.applications[0]!.deployments.find((d) => d.name === 'Embedder')!;
    expect(emb.batch).toHaveLength(1);
    // e1: 2 of 4 and 2 of 8, e2: 2 of 8: 6 batches, 40 items in 2 s.
    expect(emb.batch[0]).toMatchObject({ method: 'embed', queued: 3, sizes: { 4: 2, 8: 4 }, batchesPerSec: 3, itemsPerSec: 20, meanBatchSize: 40 / 6 });
    expect(emb).toMatchObject({ key: 'shop/Embedder', ongoing: 1, states: { RUNNING: 2, STARTING: 0 }, routerWaiting: 3, traffic: null, slo: null, cost: null });
    expect(s.applications[0]!.deployments.find((d) => d.name === 'Gateway')).toMatchObject({ ongoing: 2, batch: [] });
    expect(s.replicas.find((r) => r.replicaId === 'g1')).toMatchObject({ ongoing: 2, queued: 0, workerId: 'w1', devices: [], error: null, load: null });
    expect(s.workers[0]).toMatchObject({ name: 'host-w1', cpus: 4, devices: [{ index: 0, totalBytes: 2 ** 30, freeBytes: 2 ** 29 }] });
  });

  it('counts a restarted worker\'s or replica\'s counters from zero, and leaves out what did not answer', () => {
    const first = buildSnapshot(st, stats([
      { id: 'w1', ingress: 500, replicas: [replica('e1', 'Embedder', { embed: queue({ 2: 100 }) })] },
      { id: 'w2', ingress: 50, replicas: [] },
    ]), undefined, { wallMs: 0, monoMs: 0 });
    // w1 restarted (its counter fell to 12) and its replica with it; w2 did not answer stats this time.
    const second = buildSnapshot(st, stats([
      { id: 'w1', ingress: 12, replicas: [replica('e1', 'Embedder', { embed: queue({ 2: 3 }) })] },
    ]), first.counters, { wallMs: 1000, monoMs: 1000 });
    expect(second.snapshot.workers.map((w) => w.ingressRps)).toEqual([12, null]);
    expect(second.snapshot.totals.ingressRps).toBe(12);
    const emb = second.snapshot.applications[0]!.deployments.find((d) => d.name === 'Embedder')!;
    expect(emb.batch[0]).toMatchObject({ sizes: { 2: 3 }, meanBatchSize: 2 });
    expect(second.snapshot.replicas.find((r) => r.replicaId === 'e2')).toMatchObject({ ongoing: null, queued: null });
  });

  it('takes a replica\'s batch counters as a baseline when its worker missed the last stats call, then counts again', () => {
    const one = (counts: Record<number, number>): Array<{ id: string; ingress: number; replicas: ReplicaStats[] }> => [
      { id: 'w1', ingress: 0, replicas: [replica('e1', 'Embedder', { embed: queue({ 2: 1 }) })] },
      { id: 'w2', ingress: 0, replicas: [replica('e2', 'Embedder', { embed: queue(counts) })] },
    ];
    const first = buildSnapshot(st, stats(one({ 8: 1000 })), undefined, { wallMs: 0, monoMs: 0 });
    // w2 misses a stats call: its replica's counters are not in this snapshot's.
    const missed = buildSnapshot(st, stats([one({})[0]!]), first.counters, { wallMs: 1000, monoMs: 1000 });
    // It answers again with 2 more batches of 8: its 1,002 since it started are a baseline, not one second's worth.
    const back = buildSnapshot(st, stats(one({ 8: 1002 })), missed.counters, { wallMs: 2000, monoMs: 2000 });
    const emb = back.snapshot.applications[0]!.deployments.find((d) => d.name === 'Embedder')!;
    expect(emb.batch[0]).toMatchObject({ sizes: {}, meanBatchSize: null, batchesPerSec: 0 });
    // The next answer is counted against that baseline.
    const next = buildSnapshot(st, stats(one({ 8: 1005 })), back.counters, { wallMs: 3000, monoMs: 3000 });
    expect(next.snapshot.applications[0]!.deployments.find((d) => d.name === 'Embedder')!.batch[0]).toMatchObject({ sizes: { 8: 3 }, meanBatchSize: 8, batchesPerSec: 3 });
  });

  it('passes on the status\'s traffic, SLO and cost figures, the cost without its since-start totals', () => {
    const withFigures = status([['g1', 'Gateway', 'w1']]);
    const g = withFigures.applications[0]!.deployments[0]!;
    g.traffic = { windowMs: 60_000, rps: 12.5, errorRate: 0.01, p50Ms: 4, p95Ms: 9, p99Ms: 20 };
    const figures = { windowMs: 3_600_000, requests: 10, allocatedCoreHours: 1, allocatedDeviceHours: 0, busyCoreHours: 0.5, busyDeviceHours: 0, cost: 2, costPer1kRequests: 200, busyCostPer1kRequests: 100, idleShare: 0.5 };
    g.cost = { ...figures, total: figures };
    const { snapshot } = buildSnapshot(withFigures, stats([]), undefined, { wallMs: 0, monoMs: 0 });
    const d = snapshot.applications[0]!.deployments[0]!;
    expect(d.traffic).toEqual(g.traffic);
    expect(d.cost).toEqual({ windowMs: 3_600_000, cost: 2, costPer1kRequests: 200, busyCostPer1kRequests: 100, idleShare: 0.5 });
    expect(d.slo).toBeNull();
  });
});

describe('dashboard session', () => {
  const token = 'secret-token';
  const req = (headers: Record<string, string>): IncomingMessage => ({ headers } as unknown as IncomingMessage);

  it('derives the cookie from the token and its issue time, and accepts it or the Bearer token only', () => {
    const clock = new FakeClock();
    const now = clock.wallNow();
    const session = dashboardSession(token, now);
    expect(session).not.toContain(token);
    expect(session).toMatch(new RegExp(`^${Math.floor(now / 1000)}\\.[\\w-]+$`));
    expect(session).not.toBe(dashboardSession('other', now));
    expect(sessionCookie(token, now)).toBe(`shoal_dashboard=${session}; HttpOnly; SameSite=Strict; Path=/; Max-Age=43200`);
    expect(cookieValue('a=1; shoal_dashboard=xyz ; b=2', 'shoal_dashboard')).toBe('xyz');
    expect(cookieValue('a=1', 'shoal_dashboard')).toBeUndefined();
    expect(dashboardCredential(req({ cookie: `x=1; shoal_dashboard=${session}` }), token, now)).toBe('cookie');
    expect(dashboardCredential(req({ authorization: `Bearer ${token}` }), token, now)).toBe('bearer');
    expect(dashboardCredential(req({ cookie: `shoal_dashboard=${token}` }), token, now)).toBeUndefined();
    expect(dashboardCredential(req({ cookie: `shoal_dashboard=${dashboardSession('other', now)}` }), token, now)).toBeUndefined();
    expect(dashboardCredential(req({ authorization: 'Bearer nope' }), token, now)).toBeUndefined();
    expect(dashboardCredential(req({}), token, now)).toBeUndefined();
  });

  it('refuses a cookie past its max age, issued in the future, or with its issue time changed', () => {
    const clock = new FakeClock();
    const session = dashboardSession(token, clock.wallNow());
    const [iat, mac] = session.split('.') as [string, string];
    const valid = (value: string): boolean => sessionValid(token, value, clock.wallNow());
    expect(valid(session)).toBe(true);
    // A later issue time under the same HMAC (to stretch its life) is refused; so is a leading zero.
    expect(valid(`${Number(iat) + 3600}.${mac}`)).toBe(false);
    expect(valid(`0${iat}.${mac}`)).toBe(false);
    expect(valid(`${iat}.`)).toBe(false);
    expect(valid('garbage')).toBe(false);
    // Good until 12 h have passed, refused a second after, whatever the browser keeps.
    clock.advance(DASHBOARD_COOKIE_MAX_AGE_S * 1000);
    expect(valid(session)).toBe(true);
    clock.advance(1000);
    expect(valid(session)).toBe(false);
    expect(dashboardCredential(req({ cookie: `shoal_dashboard=${session}` }), token, clock.wallNow())).toBeUndefined();
    // Issued within the skew ahead of the head's clock: accepted; further ahead: refused.
    const t = clock.wallNow();
    expect(valid(dashboardSession(token, t + DASHBOARD_COOKIE_SKEW_S * 1000))).toBe(true);
    expect(valid(dashboardSession(token, t + (DASHBOARD_COOKIE_SKEW_S + 2) * 1000))).toBe(false);
  });

  it('serves a script that is valid JavaScript', () => {
    expect(() => new Script(DASHBOARD_JS, { filename: 'app.js' })).not.toThrow();
  });
});

/** Just enough DOM for the page's script: elements with attributes, children and text. */
class FakeNode {
  readonly attrs: Record<string, string> = {};
  children: FakeNode[] = [];
  className = '';
  title = '';
  readonly style: Record<string, string> = {};
  private text: string | undefined;
  constructor(readonly tag: string, text?: string) { this.text = text; }
  get textContent(): string { return this.text ?? this.children.map((c) => c.textContent).join(''); }
  set textContent(v: string) { this.text = v; this.children = []; }
  setAttribute(k: string, v: string): void { this.attrs[k] = v; }
  appendChild(c: FakeNode): FakeNode { this.children.push(c); return c; }
  replaceChildren(...c: FakeNode[]): void { this.children = c; }
  addEventListener(): void { /* no clicks here */ }
  find(k: string, v: string): FakeNode[] {
    return [...(this.attrs[k] === v ? [this as FakeNode] : []), ...this.children.flatMap((c) => c.find(k, v))];
  }
}

/** Runs the page's script in a sandbox; returns a function that hands it a snapshot event, and the page's main. */
function runPage(hash = ''): { send: (snap: unknown) => void; main: FakeNode } {
  const byId = new Map<string, FakeNode>();
  const listeners = new Map<string, (e: { data: string }) => void>();
  const document = {
    createElement: (tag: string) => new FakeNode(tag),
    createElementNS: (_ns: string, tag: string) => new FakeNode(tag),
    createTextNode: (text: string) => new FakeNode('#text', text),
    getElementById: (id: string) => { let n = byId.get(id); if (n === undefined) { n = new FakeNode('div'); byId.set(id, n); } return n; },
  };
  class EventSource {
    static readonly CLOSED = 2;
    readyState = 1;
    addEventListener(type: string, f: (e: { data: string }) => void): void { listeners.set(type, f); }
  }
  const context = { document, EventSource, window: { addEventListener: () => undefined }, location: { hash } };
  new Script(DASHBOARD_JS, { filename: 'app.js' }).runInNewContext(context);
  return { send: (snap) => listeners.get('snapshot')!({ data: JSON.stringify(snap) }), main: document.getElementById('main') };
}

describe('dashboard page', () => {
  it('forgets the history of a deployment gone from the snapshot: one deployed again under its name starts afresh', () => {
    const st = status([['g1', 'Gateway', 'w1'], ['e1', 'Embedder', 'w1']]);
    const app = st.applications[0]!;
    const without: DashboardStatusInput = { ...st, applications: [{ ...app, deployments: app.deployments.filter((d) => d.name !== 'Embedder') }], replicas: st.replicas.filter((r) => r.deployment !== 'Embedder') };
    const withBatches = (counts: Record<number, number>): DashboardStatsInput => stats([{ id: 'w1', ingress: 0, replicas: [replica('e1', 'Embedder', { embed: queue(counts) })] }]);
    const page = runPage();
    const mean = (): string[] => page.main.find('data-field', 'batch-mean').map((n) => n.textContent);
    let prev: ReturnType<typeof buildSnapshot>['counters'] | undefined;
    const step = (sIn: DashboardStatusInput, stIn: DashboardStatsInput, at: number): void => {
      const b = buildSnapshot(sIn, stIn, prev, { wallMs: at, monoMs: at });
      prev = b.counters;
      page.send(b.snapshot);
    };
    // Batches of 8 in the first life of Embedder.
    step(st, withBatches({ 8: 10 }), 1000);
    step(st, withBatches({ 8: 12 }), 2000);
    expect(mean()).toEqual(['8.0']);
    // Deleted, then deployed again within the minute: its batches are of 1 now, and only those count.
    step(without, stats([{ id: 'w1', ingress: 0, replicas: [] }]), 3000);
    expect(mean()).toEqual([]);
    step(st, withBatches({ 1: 5 }), 4000);
    step(st, withBatches({ 1: 7 }), 5000);
    expect(mean()).toEqual(['1.0']);
  });
});

describe('dashboard page SLO table', () => {
  it('marks a burn over a window not yet covered, and says it does not page', () => {
    const st = status([['g1', 'Gateway', 'w1']]);
    const g = st.applications[0]!.deployments[0]!;
    g.slo = {
      periodMs: 2_592_000_000, alerting: false,
      objectives: [{ name: 'availability', target: 0.99, attainment: { '5m': 0.8, '1h': 0.8, period: 0.8 }, periodCoveredMs: 400_000, budgetRemaining: -19,
        burn: { '5m': 20, '30m': 20, '1h': 20, '6h': 20 }, coveredMs: { '5m': 300_000, '30m': 400_000, '1h': 400_000, '6h': 400_000 }, alerting: false }],
    };
    const page = runPage('#/shop%2FGateway');
    page.send(buildSnapshot(st, stats([]), undefined, { wallMs: 0, monoMs: 0 }).snapshot);
    const row = page.main.find('data-objective', 'availability');
    expect(row).toHaveLength(1);
    const cells = row[0]!.children.map((c) => c.textContent);
    // 5m is covered: no mark; the longer windows are not.
    expect(cells.filter((t) => t.startsWith('20.00x'))).toEqual(['20.00x', '20.00x*', '20.00x*', '20.00x*']);
    expect(row[0]!.find('data-partial', 'true')).toHaveLength(3);
    expect(page.main.find('data-field', 'burn-partial')[0]!.textContent).toMatch(/not yet covered .* does not page/);
  });
});

describe('DashboardFeed', () => {
  let server: Server | undefined;
  afterEach(async () => {
    server?.closeAllConnections();
    await new Promise<void>((r) => (server === undefined ? r() : server.close(() => r())));
    server = undefined;
  });

  it('takes snapshots only while a page is connected, and refuses pages past maxClients', async () => {
    const clock = new FakeClock();
    let calls = 0;
    const st = status([]);
    const feed = new DashboardFeed({ source: async () => { calls++; return { status: st, stats: stats([]) }; }, logger: silentLogger, clock, intervalMs: 1000, maxClients: 1 });
    server = createServer((req, res) => { try { feed.attach(req, res); } catch (err) { res.writeHead(503).end((err as Error).message); } });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', () => r()));
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/`;

    await clock.advanceAsync(5000);
    expect([calls, clock.pendingTimers(), feed.active]).toEqual([0, 0, false]);

    const frames: string[] = [];
    const res = await new Promise<IncomingMessage>((r) => get(url, r));
    expect(res.headers['content-type']).toBe('text/event-stream; charset=utf-8');
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => frames.push(...chunk.split('\n\n').filter((f) => f.startsWith('event: snapshot'))));
    const until = async (what: string, cond: () => boolean): Promise<void> => {
      for (let i = 0; i < 400 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
      if (!cond()) throw new Error(`timed out waiting for ${what}`);
    };
    await until('the first snapshot', () => frames.length === 1);
    expect(calls).toBe(1);
    const first = JSON.parse(frames[0]!.slice(frames[0]!.indexOf('data: ') + 6)) as { intervalMs: number | null };
    expect(first.intervalMs).toBeNull();
    await clock.advanceAsync(1000);
    await until('the second snapshot', () => frames.length === 2);
    expect(JSON.parse(frames[1]!.slice(frames[1]!.indexOf('data: ') + 6))).toMatchObject({ intervalMs: 1000 });

    // A second page is one over maxClients.
    const refused = await new Promise<IncomingMessage>((r) => get(url, r));
    expect(refused.statusCode).toBe(503);
    refused.resume();

    res.destroy();
    await until('the page to leave', () => feed.watching === 0);
    expect([feed.active, clock.pendingTimers()]).toEqual([false, 0]);
    const before = calls;
    await clock.advanceAsync(5000);
    expect(calls).toBe(before);
    feed.close();
  });
});
