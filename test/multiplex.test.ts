/**
 * Integration (issue 11 item 6): examples/multiplex on a real head and two real worker processes. One deployment,
 * two replicas, at most two models each, models named by the x-shoal-model-id header (through the ingress
 * deployment, whose handle calls inherit it) or by handle.withOptions({ modelId }). Everything is read from the
 * deployment's own answers (which replica, what it holds, its load and unload counts) and from shoal's stats; no
 * assertion on time.
 */
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AppSpec, Handle } from '@shoal/core';
import type { Head } from '@shoal/head';
import { loadAppSpec } from '../packages/cli/src/main.ts';
import type { Embedding, Holdings, Models, Prediction } from '../examples/multiplex/app.ts';
import { handleFor, startCluster, waitFor } from './helpers.ts';

const APP = resolve(import.meta.dirname, '../examples/multiplex/app.ts');
const KEY = 'mx/Models';

describe('model multiplexing on a real cluster', () => {
  let head: Head;
  let spec: AppSpec;
  let models: Handle<Models>;
  /** The latest holdings each replica reported. */
  const seen = new Map<string, Holdings>();

  const note = <T extends Holdings>(h: T): T => { seen.set(h.replica, h); return h; };
  const predict = async (modelId: string, text = 'a good day', holdMs?: number): Promise<Prediction> =>
    note(await models.withOptions({ modelId }).predict({ text, ...(holdMs === undefined ? {} : { holdMs }) }));
  const totalLoads = (modelId?: string): number =>
    [...seen.values()].reduce((n, h) => n + Object.entries(h.loads).reduce((m, [id, k]) => m + (modelId === undefined || id === modelId ? k : 0), 0), 0);
  const holderOf = (modelId: string): string[] => [...seen.values()].filter((h) => h.held.includes(modelId)).map((h) => h.replica).sort();
  const http = async (path: string, body: unknown, headers: Record<string, string>): Promise<{ status: number; json: any }> => {
    const res = await fetch(`${head.httpAddress}/mx${path}`, { method: 'POST', headers, body: JSON.stringify(body) });
    return { status: res.status, json: await res.json() };
  };

  beforeAll(async () => {
    head = await startCluster({ workers: 2 });
    spec = await loadAppSpec(APP, { name: 'mx', routePrefix: '/mx' });
    await head.deploy(spec);
    await head.waitReady('mx', 60_000);
    models = handleFor<Models>(head, spec, 'Models');
  });
  afterAll(async () => {
    await head?.stop();
  });

  it('loads each model where it evicts nothing, then evicts the least recently used one, calling unloadModel', async () => {
    for (const id of ['a', 'b', 'c', 'd']) expect((await predict(id)).model).toBe(id);
    // Four models over two replicas of two slots: each loaded once, nothing evicted.
    expect(seen.size).toBe(2);
    for (const h of seen.values()) { expect(h.held).toHaveLength(2); expect(h.unloads).toEqual({}); }
    expect(totalLoads()).toBe(4);
    // Use one model of each replica, so the other is its least recently used.
    const before = new Map([...seen].map(([r, h]) => [r, [...h.held]]));
    for (const held of before.values()) await predict(held[0]!);
    const lru = new Map([...before].map(([r, held]) => [r, held[1]!]));
    const e = await predict('e');
    const victim = lru.get(e.replica)!;
    expect(e.held).toEqual([before.get(e.replica)![0], 'e']);
    expect(e.unloads).toEqual({ [victim]: 1 });
    expect(totalLoads()).toBe(5);
    const stats = (await head.stats()).workers.flatMap((w) => w.replicas).find((r) => r.replicaId === e.replica)!;
    expect(stats.models).toMatchObject({ models: e.held, maxModels: 2, evictions: 1, loadFailures: 0 });
  });

  it('sends repeated requests, by header and by handle, to the replica holding their model: no new loads', async () => {
    const held = [...seen.values()].flatMap((h) => h.held);
    expect(held).toHaveLength(4);
    // Every router (the workers' too) learns the holders from the route table.
    await waitFor('the route table to list what each replica holds', () => {
      const replicas = head.controller.routeTable()[KEY]?.replicas ?? [];
      return replicas.length === 2 && replicas.every((r) => r.models !== undefined && r.models.ids.length === 2 && r.models.ids.every((id) => seen.get(r.replicaId)?.held.includes(id)));
    });
    // The table is sent to the workers as it is made; give their routers a heartbeat's time to have read it.
    await new Promise((r) => setTimeout(r, 300));
    const loadsBefore = totalLoads();
    for (let i = 0; i < 40; i++) {
      const id = held[i % held.length]!;
      const answer: Prediction = i % 2 === 0
        ? (await http('/predict', { text: 'good' }, { 'x-shoal-model-id': id })).json
        : await predict(id);
      note(answer);
      expect(answer.model).toBe(id);
      expect(holderOf(id)).toEqual([answer.replica]);
    }
    expect(totalLoads()).toBe(loadsBefore);
  });

  it('spreads a hot model: heavy concurrent load on one model ends up with it loaded on both replicas, once each', async () => {
    const [hot] = [...seen.values()][0]!.held;
    expect(holderOf(hot!)).toHaveLength(1);
    const loadsBefore = totalLoads(hot);
    // 24 slow requests at once; each replica runs 8 (maxOngoingRequests), and a holder at 4 (hotOngoingRequests)
    // makes the router send the model's requests to the other replica too.
    const answers = await Promise.all(Array.from({ length: 24 }, () => predict(hot!, 'busy', 150)));
    expect(answers.every((a) => a.model === hot)).toBe(true);
    expect(new Set(answers.map((a) => a.replica)).size).toBe(2);
    expect(holderOf(hot!)).toHaveLength(2);
    // The replica it spread to loaded it once for all its concurrent requests.
    expect(totalLoads(hot)).toBe(loadsBefore + 1);
  });

  it('batches only requests for the same model: every embedding comes from the model asked for', async () => {
    const ids = [...new Set([...seen.values()].flatMap((h) => h.held))];
    const asked = Array.from({ length: 24 }, (_, i) => ids[i % ids.length]!);
    const out: Embedding[] = await Promise.all(asked.map((id, i) => models.withOptions({ modelId: id }).embed(`text ${i}`)));
    out.forEach((e, i) => expect(e.model).toBe(asked[i]));
    expect(out.some((e) => e.batchSize > 1)).toBe(true);
    const viaHeader = await http('/embed', { text: 'guter Kaffee' }, { 'x-shoal-model-id': ids[0]! });
    expect(viaHeader).toMatchObject({ status: 200, json: { model: ids[0] } });
  });

  it('answers 400 naming the header for a bad model id, and for a request that names none', async () => {
    for (const bad of ['', 'x'.repeat(257)]) {
      const r = await http('/predict', { text: 'hi' }, { 'x-shoal-model-id': bad });
      expect(r.status).toBe(400);
      expect(r.json).toMatchObject({ code: 'ERR_INVALID_OPTION' });
      expect(r.json.error).toMatch(/^invalid option header x-shoal-model-id: must be 1-256 characters long, got (0|257)/);
    }
    const none = await http('/predict', { text: 'hi' }, {});
    expect(none.status).toBe(400);
    expect(none.json).toMatchObject({ code: 'ERR_BAD_REQUEST' });
    expect(none.json.error).toContain('names no model: send the x-shoal-model-id header');
    await expect(models.withOptions({ modelId: 'tab\there' }).predict({ text: 'hi' })).rejects.toThrow(/handle.withOptions.modelId: must not contain control characters/);
  });

  it('counts loads, evictions and hits in the cluster metrics', async () => {
    const lines = (await (await fetch(`${head.httpAddress}/-/metrics`)).text()).split('\n');
    const sum = (name: string, ...labels: string[]): number => lines
      .filter((l) => l.startsWith(`${name}{`) && labels.every((x) => l.includes(x)))
      .reduce((n, l) => n + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
    const caches = (await head.stats()).workers.flatMap((w) => w.replicas).flatMap((r) => (r.models === undefined ? [] : [r.models]));
    expect(caches).toHaveLength(2);
    expect(sum('shoal_multiplex_model_events_total', 'deployment="Models"', 'event="load"')).toBe(caches.reduce((n, c) => n + c.loads, 0));
    expect(caches.reduce((n, c) => n + c.loads, 0)).toBeGreaterThanOrEqual(totalLoads());
    expect(sum('shoal_multiplex_model_events_total', 'deployment="Models"', 'event="eviction"')).toBeGreaterThanOrEqual(2);
    expect(sum('shoal_multiplex_model_events_total', 'deployment="Models"', 'event="hit"')).toBeGreaterThan(40);
    expect(sum('shoal_multiplex_models_held', 'deployment="Models"')).toBe(4);
  });
});
