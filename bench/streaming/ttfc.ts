/**
 * Time to first chunk against time to the whole answer: a generator of CHUNKS chunks with a little CPU work per
 * chunk (WORK_US of hashing), streamed over SSE through a cluster's ingress (a head in this process, one worker
 * process; the client here reads with fetch and eventsource-parser), CLIENTS closed-loop clients at a time, at
 * concurrency 1 and 16. Each figure is a percentile over every request of the level (after a warm-up).
 *
 * The point of streaming: the first chunk arrives after one chunk's work, not CHUNKS chunks'; ttfc_over_full_p50
 * says how much sooner. (The issue sets no target for it: it is reported, not judged.)
 */
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { createParser } from 'eventsource-parser';
import { deployment, silentLogger, type ShoalRequest } from '@shoal/core';
import { percentile, round, type Goal, type Row } from '../lib.ts';

const CHUNKS = 64;
const WORK_US = 200;
const LEVELS = [1, 16] as const;
const REQUESTS: Record<number, number> = { 1: 100, 16: 320 };
const WARMUP = 20;

/** CPU work for about `us` microseconds: sha256 rounds over a small buffer. */
function work(us: number): string {
  const end = performance.now() + us / 1000;
  let h = Buffer.alloc(32, 1);
  while (performance.now() < end) h = createHash('sha256').update(h).digest();
  return h.toString('hex', 0, 4);
}

/** The deployment the bench streams from; workers import it from this module. */
export class Tokens {
  async *fetch(req: ShoalRequest): AsyncGenerator<{ i: number; h: string }> {
    const n = Number(req.query.get('n') ?? CHUNKS);
    for (let i = 0; i < n; i++) {
      const h = work(WORK_US);
      yield { i, h };
      // Between chunks the generator gives the event loop a turn, as a model awaiting its next step would.
      await new Promise<void>((r) => setImmediate(r));
    }
  }
}
export const ttfcApp = deployment(Tokens, { maxOngoingRequests: 64 }).bind();

interface Sample { ttfcMs: number; fullMs: number; chunks: number }

/** One SSE request: when its first data event arrived, and when the stream ended (its `end` event). */
async function one(url: string): Promise<Sample> {
  const t0 = performance.now();
  const res = await fetch(url, { headers: { accept: 'text/event-stream' } });
  if (res.status !== 200 || res.body === null) throw new Error(`ttfc bench: HTTP ${res.status}: ${await res.text()}`);
  let first = -1;
  let chunks = 0;
  let ended = false;
  const parser = createParser({
    onEvent: (e) => {
      if (e.event === undefined) { if (first < 0) first = performance.now(); chunks++; }
      else if (e.event === 'end') ended = true;
      else if (e.event === 'error') throw new Error(`ttfc bench: stream failed: ${e.data}`);
    },
  });
  const decoder = new TextDecoder();
  for await (const part of res.body) parser.feed(decoder.decode(part as Uint8Array, { stream: true }));
  const t1 = performance.now();
  if (!ended || chunks !== CHUNKS) throw new Error(`ttfc bench: stream ended=${ended} after ${chunks} of ${CHUNKS} chunks`);
  return { ttfcMs: first - t0, fullMs: t1 - t0, chunks };
}

async function level(url: string, clients: number, requests: number): Promise<Sample[]> {
  const out: Sample[] = [];
  let next = 0;
  await Promise.all(Array.from({ length: clients }, async () => {
    while (next < requests) { next++; out.push(await one(url)); }
  }));
  return out;
}

export async function section(): Promise<{ rows: Row[]; goals: Goal[] }> {
  // Imported here, not at the top: the worker imports this module for Tokens, and needs neither.
  const { Head } = await import('@shoal/head');
  const { loadAppSpec, localWorkerCommand } = await import('@shoal/cli');
  const head = new Head({ port: 0, httpPort: 0, workers: 1, workerCommand: localWorkerCommand(), workerCpus: 4, logger: silentLogger });
  try {
    await head.start();
    await head.waitForWorkers(1);
    const spec = await loadAppSpec(fileURLToPath(import.meta.url), { exportName: 'ttfcApp', name: 'ttfc', routePrefix: '/ttfc' });
    await head.deploy(spec);
    await head.waitReady(spec.name);
    const url = `${head.httpAddress}/ttfc/?n=${CHUNKS}`;
    await level(url, 4, WARMUP);
    const rows: Row[] = [];
    const goals: Goal[] = [];
    for (const c of LEVELS) {
      const s = await level(url, c, REQUESTS[c]!);
      const ttfc = s.map((x) => x.ttfcMs).sort((a, b) => a - b);
      const full = s.map((x) => x.fullMs).sort((a, b) => a - b);
      const ratio = percentile(ttfc, 50) / percentile(full, 50);
      rows.push({
        concurrency: c, requests: s.length, chunks: CHUNKS, work_us_per_chunk: WORK_US,
        ttfc_p50_ms: round(percentile(ttfc, 50), 2), ttfc_p99_ms: round(percentile(ttfc, 99), 2),
        full_p50_ms: round(percentile(full, 50), 2), full_p99_ms: round(percentile(full, 99), 2),
        ttfc_over_full_p50: round(ratio, 3),
      });
    }
    return { rows, goals };
  } finally {
    await head.stop();
  }
}
