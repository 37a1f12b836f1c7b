/**
 * Integration: a cascade on a real head with real worker processes. Over a fixed input set whose small-model
 * confidence is known, the escalation rate is known exactly (30%), and the counters read the same through the
 * cascade's JSON stats (a handle call and GET /stats) and through the head's merged /-/metrics.
 */
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { env, seededRandom, type AppSpec, type CascadeStatsJson } from '@shoal/core';
import type { Head } from '@shoal/head';
import { deployFixture, handleFor, startCluster, waitFor } from './helpers.ts';
import { AUDIT_SAMPLE_RATE, AUDIT_SEED, LARGE_DELAY_MS, THRESHOLD, largeLabel, smallConfidence, smallLabel, type Input, type Label } from './fixtures/cascade-app.ts';

const CASCADE_APP = resolve(import.meta.dirname, 'fixtures/cascade-app.ts');
const PREFIX = '/classify';

let head: Head;
let spec: AppSpec;

beforeAll(async () => {
  head = await startCluster({ workerTimeoutMs: 30_000 });
  spec = await deployFixture(head, { module: CASCADE_APP, name: 'cascade', routePrefix: PREFIX });
});
afterAll(async () => {
  await head?.stop();
});

/** Sum of the values of the series of `name` whose labels include every one of `labels`. */
function total(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m === null || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) sum += Number(m[3]);
  }
  return sum;
}

describe('cascade escalation rate (real head and workers)', () => {
  it('escalates exactly the inputs under the threshold and counts them, the audits and the agreements', async () => {
    const inputs = Array.from({ length: 20 }, (_, x) => x);
    const escalate = (x: number): boolean => smallConfidence(x) < THRESHOLD;
    expect(inputs.filter(escalate).length / inputs.length).toBe(0.3);

    // First over HTTP: POST the JSON body, which is the models' one argument; a header says who answered.
    for (const x of inputs) {
      const res = await fetch(`${head.httpAddress}${PREFIX}`, { method: 'POST', body: JSON.stringify({ x } satisfies Input), headers: { 'content-type': 'application/json' } });
      expect(res.status).toBe(200);
      const body = await res.json() as Label;
      const model = escalate(x) ? 'large' : 'small';
      expect(res.headers.get('x-shoal-cascade-model')).toBe(model);
      expect(res.headers.get('x-shoal-cascade-escalation')).toBe(escalate(x) ? 'low_confidence' : null);
      expect(body).toEqual({ label: escalate(x) ? largeLabel(x) : smallLabel(x), score: escalate(x) ? 1 : smallConfidence(x), by: model });
    }
    // Then through a handle, as another deployment would call it.
    const cascade = handleFor<{ predict(i: Input): Label; cascadeStats(): CascadeStatsJson }>(head, spec, 'classify');
    for (const x of inputs) expect((await cascade.predict({ x })).by).toBe(escalate(x) ? 'large' : 'small');

    // The audit samples: one seeded draw per confident answer, in request order, on the cascade's one replica.
    const confident = [...inputs, ...inputs].filter((x) => !escalate(x));
    const draw = seededRandom(AUDIT_SEED);
    const audited = confident.filter(() => draw() < AUDIT_SAMPLE_RATE);
    const agreements = audited.filter((x) => smallLabel(x) === largeLabel(x)).length;
    expect(audited.length).toBeGreaterThan(0);
    expect(agreements).toBeLessThan(audited.length);
    // Audits run in the background: wait for them to end.
    await waitFor('the audits to end', async () => (await cascade.cascadeStats()).audits.compared >= audited.length);

    const stats = await cascade.cascadeStats();
    expect(stats).toMatchObject({
      app: 'cascade', deployment: 'classify', threshold: THRESHOLD, auditSampleRate: AUDIT_SAMPLE_RATE,
      requests: 40, answered: { small: 28, large: 12 }, errors: { small: 0, large: 0 },
      escalations: { total: 12, lowConfidence: 12, smallError: 0, invalidConfidence: 0 }, escalationRate: 0.3,
      audits: { compared: audited.length, agreements, agreementRate: agreements / audited.length, lostBusy: 0, lostError: 0, inflight: 0 },
      // Low-confidence small answers that were right anyway (x mod 5 is not 4: inputs 0, 1, 2, 10, 11, 12 twice).
      escalationAgreements: { compared: 12, agreements: 12 },
    });
    expect(stats.latency.large.count).toBe(12 + audited.length);
    expect(stats.latencySaved.largeMeanMs).toBeGreaterThanOrEqual(LARGE_DELAY_MS);
    expect(stats.latencySaved.savedMs).toBeGreaterThan(0);
    expect(stats.latencySaved.netMs).toBeCloseTo(stats.latencySaved.savedMs - stats.latencySaved.addedMs, 6);

    // GET <prefix>/stats answers the same counters.
    const viaHttp = await (await fetch(`${head.httpAddress}${PREFIX}/stats`)).json() as CascadeStatsJson;
    expect(viaHttp).toMatchObject({ requests: 40, escalationRate: 0.3, audits: { compared: audited.length, agreements } });

    // And the head's merged exposition carries the Prometheus series of the cascade's worker.
    const text = await (await fetch(`${head.httpAddress}/-/metrics`)).text();
    const l = { app: 'cascade', deployment: 'classify' };
    const requests = total(text, 'shoal_cascade_requests_total', l);
    const escalations = total(text, 'shoal_cascade_escalations_total', l);
    expect([requests, escalations, escalations / requests]).toEqual([40, 12, 0.3]);
    expect(total(text, 'shoal_cascade_escalations_total', { ...l, reason: 'low_confidence' })).toBe(12);
    expect(total(text, 'shoal_cascade_audits_total', l)).toBe(audited.length);
    expect(total(text, 'shoal_cascade_audit_agreements_total', l)).toBe(agreements);
    expect(total(text, 'shoal_cascade_request_duration_seconds_count', { ...l, answered_by: 'large' })).toBe(12);
    expect(total(text, 'shoal_cascade_model_duration_seconds_count', { ...l, model: 'large', call: 'audit' })).toBe(audited.length);
    expect(total(text, 'shoal_cascade_latency_saved_seconds_total', l)).toBeCloseTo(stats.latencySaved.savedMs / 1e3, 6);
  });

  it('keeps /-/metrics valid for `promtool check metrics` with the cascade series in it', async (ctx) => {
    if (spawnSync('promtool', ['--version'], { stdio: 'ignore' }).error !== undefined) {
      if (env.requirePromtool()) throw new Error('promtool is not on PATH and SHOAL_REQUIRE_PROMTOOL=1: install it (Debian: apt-get install prometheus)');
      ctx.skip();
    }
    const text = await (await fetch(`${head.httpAddress}/-/metrics`)).text();
    expect(text).toContain('shoal_cascade_requests_total');
    const lint = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect(`${lint.stdout}${lint.stderr}`.trim()).toBe('');
    expect(lint.status).toBe(0);
  });
});
