/**
 * Integration: the semantic cache on a real head with a real worker process (one, so the replica of every version
 * lands where the previous one's cache lives): a paraphrase of an earlier question is answered without running
 * the method, over HTTP and through a handle; a dissimilar question is computed; x-shoal-cache: bypass and a handle's
 * cache: 'bypass' compute; each method has its own entries;
 * a new version and a changed userConfig never serve the old entries; the metrics count hits, misses and bypasses.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolve } from 'node:path';
import type { AppSpec } from '@shoal/core';
import type { Head } from '@shoal/head';
import { loadAppSpec } from '../packages/cli/src/main.ts';
import { handleFor, samples, startCluster, waitFor } from './helpers.ts';

const MODULE = resolve(import.meta.dirname, 'fixtures/semantic-app.ts');

interface Answer { answer: string; version: string; run: number; prefix: string }
interface Answerer { answer(q: string): Answer; runs(): number }

let head: Head;

beforeAll(async () => {
  head = await startCluster({ workers: 1 });
});
afterAll(async () => {
  await head?.stop();
});

async function spec(exportName: string, userConfig?: unknown): Promise<AppSpec> {
  const s = await loadAppSpec(MODULE, { exportName, name: 'qa', routePrefix: '/' });
  if (userConfig === undefined) return s;
  return { ...s, deployments: s.deployments.map((d) => ({ ...d, options: { ...d.options, userConfig } })) };
}

async function ask(q: string, headers: Record<string, string> = {}): Promise<Answer> {
  const res = await fetch(`${head.httpAddress}/?q=${encodeURIComponent(q)}`, { headers });
  expect(res.status).toBe(200);
  return await res.json() as Answer;
}

function running(version: string): boolean {
  const d = head.controller.status().applications.find((a) => a.name === 'qa')?.deployments[0];
  return d !== undefined && d.version === version && d.running === 1 && d.versions.find((v) => v.id === version)?.running === 1;
}

async function scrape(): Promise<string> {
  const res = await fetch(`${head.httpAddress}/-/metrics`);
  expect(res.status).toBe(200);
  return await res.text();
}

const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);

describe('semantic cache on a cluster', () => {
  let s1: AppSpec;

  it('answers a paraphrase from the cache without running the method; a dissimilar question is computed', { timeout: 60_000 }, async () => {
    s1 = await spec('v1');
    await head.deploy(s1);
    await head.waitReady('qa', 30_000);
    const h = handleFor<Answerer>(head, s1, 'Answerer');

    const first = await ask('How do I reset my password?');
    expect(first).toMatchObject({ version: 'v1', run: 1 });
    // Case and punctuation, then a reordering: the answer of run 1, and the method did not run again.
    expect(await ask('how do i reset my password')).toEqual(first);
    expect(await ask('Reset my password: how do I do it?')).toEqual(first);
    expect(await h.runs()).toBe(1);
    // A hard negative (one word differs) and an unrelated question are computed.
    expect(await ask('How do I reset my router?')).toMatchObject({ answer: 'how do i reset my router?', run: 2 });
    expect(await ask('What is the capital of Australia?')).toMatchObject({ run: 3 });
    expect(await h.runs()).toBe(3);
    // Through a handle (its own method's entries: `answer` is cached too, under the same embedding).
    const viaHandle = await h.answer('How tall is Mount Everest?');
    expect(viaHandle.run).toBe(4);
    expect(await h.answer('how tall is mount everest')).toEqual(viaHandle);
    expect(await h.runs()).toBe(4);
    // Asked to bypass, it computes even a question it holds.
    expect(await ask('How do I reset my password?', { 'x-shoal-cache': 'bypass' })).toMatchObject({ run: 5 });
    expect(await h.runs()).toBe(5);

    const text = await scrape();
    const labels = { app: 'qa', deployment: 'Answerer' };
    expect(sum(samples(text, 'shoal_semantic_cache_requests_total', { ...labels, result: 'hit' }))).toBe(3);
    expect(sum(samples(text, 'shoal_semantic_cache_requests_total', { ...labels, result: 'miss' }))).toBe(4);
    expect(sum(samples(text, 'shoal_semantic_cache_requests_total', { ...labels, result: 'bypass' }))).toBe(1);
    expect(sum(samples(text, 'shoal_semantic_cache_lookup_seconds_count', labels))).toBe(7);
    expect(sum(samples(text, 'shoal_semantic_cache_embed_seconds_count', labels))).toBe(7);
    // password, router, Australia, Everest (the bypassed call stores nothing).
    expect(sum(samples(text, 'shoal_semantic_cache_entries', labels))).toBe(4);
  });

  it('each method has its own entries, and a handle with cache: "bypass" computes and stores nothing', { timeout: 60_000 }, async () => {
    const h = handleFor<Answerer>(head, s1, 'Answerer');
    const runs = await h.runs();
    // fetch holds this question; answer does not: it computes.
    expect(await h.answer('What is the capital of Australia?')).toMatchObject({ run: runs + 1 });
    const held = await h.answer('how tall is mount everest');
    expect(await h.runs()).toBe(runs + 1);
    // The bypass reaches the replica: a question the cache holds is computed, and the answer is not stored.
    const bypassing = h.withOptions({ cache: 'bypass' });
    expect(await bypassing.answer('How tall is Mount Everest?')).toMatchObject({ run: runs + 2 });
    expect(await bypassing.answer('Why is the sky blue?')).toMatchObject({ run: runs + 3 });
    expect(await h.answer('How tall is Mount Everest?')).toEqual(held);
    expect(await h.answer('why is the sky blue')).toMatchObject({ run: runs + 4 });
    expect(await h.runs()).toBe(runs + 4);
    const text = await scrape();
    expect(sum(samples(text, 'shoal_semantic_cache_requests_total', { app: 'qa', deployment: 'Answerer', result: 'bypass' }))).toBe(3);
  });

  it('a changed userConfig (reconfigured in place) does not serve the entries made under the old one', { timeout: 60_000 }, async () => {
    await head.deploy(await spec('v1', { prefix: 'A: ' }));
    const h = handleFor<Answerer>(head, s1, 'Answerer');
    // The same replica, reconfigured: its run count goes on.
    await waitFor('the reconfigure', async () => (await ask('How do I boil an egg?', { 'x-shoal-cache': 'bypass' })).prefix === 'A: ');
    const runs = await h.runs();
    const again = await ask('how do i reset my password');
    expect(again).toMatchObject({ prefix: 'A: ', run: runs + 1, answer: 'A: how do i reset my password' });
    expect(await ask('How do I reset my password?')).toEqual(again);
  });

  it('a redeployed version does not serve the old version\'s entries', { timeout: 60_000 }, async () => {
    const s2 = await spec('v2', { prefix: 'A: ' });
    await head.deploy(s2);
    const v2 = head.controller.status().applications.find((a) => a.name === 'qa')!.deployments[0]!.version;
    await waitFor('v2 alone to run', () => running(v2), 30_000);
    const h = handleFor<Answerer>(head, s2, 'Answerer');
    expect(await h.runs()).toBe(0);
    // Asked under v1 (and cached there, on this same worker); v2 computes it.
    const a = await ask('How do I reset my password?');
    expect(a).toMatchObject({ version: 'v2', run: 1 });
    expect(await ask('how do i reset my password')).toEqual(a);
    expect(await h.runs()).toBe(1);
  });
});
