/**
 * examples/charrnn/app.ts on real worker processes: the continuous deployment streams through a handle and over
 * HTTP (SSE) across workers, gives the same text as the static deployment and as the model run alone in this
 * process, and a consumer that stops early frees its slot in the running batch.
 */
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AppSpec } from '@shoal/core';
import type { Head } from '@shoal/head';
import { loadAppSpec } from '../../../packages/cli/src/main.ts';
import { handleFor, samples, startCluster, waitFor } from '../../../test/helpers.ts';
import { CharRnn, generateToCompletion, type CharRnnContinuous, type GenerateInput } from '../app.ts';

const APP = resolve(import.meta.dirname, '../app.ts');

let head: Head;
let spec: AppSpec;
let local: CharRnn;

beforeAll(async () => {
  head = await startCluster({ workers: 2 });
  spec = await loadAppSpec(APP, { name: 'charrnn' });
  await head.deploy(spec);
  await head.waitReady('charrnn', 90_000);
  local = await CharRnn.load();
}, 120_000);
afterAll(async () => {
  await local?.close();
  await head?.stop();
});

const expected = async (x: GenerateInput): Promise<string> => (await generateToCompletion(local, [x]))[0] as string;

async function metrics(): Promise<string> {
  const res = await fetch(`${head.httpAddress}/-/metrics`);
  expect(res.status).toBe(200);
  return res.text();
}

/** The SSE events of one streamed answer: each `data:` chunk parsed, and the name of the closing event. */
async function sse(body: GenerateInput): Promise<{ chunks: unknown[]; end: string | undefined; status: number }> {
  const res = await fetch(`${head.httpAddress}/`, { method: 'POST', body: JSON.stringify(body), headers: { accept: 'text/event-stream', 'content-type': 'application/json' } });
  const text = await res.text();
  const chunks: unknown[] = [];
  let end: string | undefined;
  for (const event of text.split('\n\n').filter((e) => e.trim() !== '')) {
    const lines = event.split('\n');
    const name = lines.find((l) => l.startsWith('event: '))?.slice(7);
    const data = lines.filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n');
    if (name !== undefined) { end = name; continue; }
    chunks.push(JSON.parse(data));
  }
  return { chunks, end, status: res.status };
}

describe('examples/charrnn on a cluster', () => {
  it('streams through a handle, one character per chunk, the same text as the model run alone', async () => {
    const h = handleFor<CharRnnContinuous>(head, spec, 'charrnn').withOptions({ stream: true });
    const x = { prompt: 'Once upon a time', maxTokens: 48 };
    const chunks: string[] = [];
    for await (const c of h.generate(x)) chunks.push(c);
    expect(chunks.every((c) => c.length === 1)).toBe(true);
    expect(chunks.join('')).toBe(await expected(x));
  });

  it('a continuousBatch field streams through a plain handle (no withOptions): the replica reported it, the route entry carries it', async () => {
    expect(head.router.streamFieldsOf('charrnn/charrnn')?.has('generate')).toBe(true);
    const h = handleFor<CharRnnContinuous>(head, spec, 'charrnn');
    const x = { prompt: 'The ', maxTokens: 24 };
    const chunks: string[] = [];
    for await (const c of h.generate(x)) chunks.push(c);
    expect(chunks.length).toBe(24);
    expect(chunks.join('')).toBe(await expected(x));
  });

  it('streams over HTTP as SSE, and the static deployment answers the same text', async () => {
    const x = { prompt: 'The ', maxTokens: 64 };
    const streamed = await sse(x);
    expect(streamed.status).toBe(200);
    expect(streamed.end).toBe('end');
    const res = await fetch(`${head.httpAddress}/?mode=static`, { method: 'POST', body: JSON.stringify(x) });
    expect(res.status).toBe(200);
    const { text } = (await res.json()) as { text: string };
    expect(streamed.chunks.join('')).toBe(text);
    expect(text).toBe(await expected(x));
  });

  it('answers 400 naming the field for bad input', async () => {
    const res = await fetch(`${head.httpAddress}/`, { method: 'POST', body: JSON.stringify({ prompt: 'x', maxTokens: 0 }) });
    expect(res.status).toBe(400);
    expect(await res.text()).toContain('input.maxTokens must be in [1, 4096], got 0');
  });

  it('batches concurrent streams into shared steps; each gets its own text', async () => {
    const h = handleFor<CharRnnContinuous>(head, spec, 'charrnn').withOptions({ stream: true });
    const inputs = Array.from({ length: 12 }, (_, i) => ({ prompt: ['', 'a', 'The '][i % 3]!, maxTokens: i % 4 === 0 ? 60 : 6 }));
    const texts = await Promise.all(inputs.map(async (x) => {
      let t = '';
      for await (const c of h.generate(x)) t += c;
      return t;
    }));
    for (let i = 0; i < inputs.length; i++) expect(texts[i]).toBe(await expected(inputs[i]!));
    const m = await metrics();
    const steps = samples(m, 'shoal_batch_releases_total', { app: 'charrnn', deployment: 'charrnn', method: 'generate', reason: 'step' });
    expect(steps.reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
    // Some step held more than one sequence.
    const bySize = m.split('\n').filter((l) => l.startsWith('shoal_batch_batches_total{') && l.includes('method="generate"') && !l.includes('size="1"') && !l.endsWith(' 0'));
    expect(bySize.length).toBeGreaterThan(0);
  });

  it('a consumer that stops early leaves the running batch', async () => {
    const h = handleFor<CharRnnContinuous>(head, spec, 'charrnn').withOptions({ stream: true });
    const got: string[] = [];
    for await (const c of h.generate({ prompt: '', maxTokens: 4096 })) {
      got.push(c);
      if (got.length === 5) break;
    }
    expect(got).toHaveLength(5);
    await waitFor('the abandoned sequence to leave', async () => {
      const m = await metrics();
      const cancelled = samples(m, 'shoal_batch_items_total', { app: 'charrnn', deployment: 'charrnn', method: 'generate', result: 'cancelled' });
      const running = samples(m, 'shoal_batch_running_items', { app: 'charrnn', deployment: 'charrnn', method: 'generate' });
      return cancelled.reduce((a, b) => a + b, 0) >= 1 && running.every((n) => n === 0);
    });
  });
});
