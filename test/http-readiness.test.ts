/**
 * /-/ready on the head's control port and on the workers' ingress while a replica is still being constructed, and
 * the 499 an ingress counts for a client that leaves mid-request: one real worker process.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Head } from '@shoal/head';
import { loadAppSpec } from '../packages/cli/src/main.ts';
import { samples, startCluster, waitFor } from './helpers.ts';

const GATED = resolve(import.meta.dirname, 'fixtures/gated-app.ts');
const dir = mkdtempSync(join(tmpdir(), 'shoal-ready-'));
const gate = join(dir, 'open');

let head: Head;
let control: string;
beforeAll(async () => {
  // Read by the fixture in the worker process, which inherits this environment.
  process.env.READY_GATE_FILE = gate;
  head = await startCluster({ workers: 1 });
  control = head.clusterAddress.replace(/^ws/, 'http');
});
afterAll(async () => {
  delete process.env.READY_GATE_FILE;
  await head?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function readyStatus(base: string): Promise<[number, unknown]> {
  const res = await fetch(`${base}/-/ready`);
  return [res.status, await res.json()];
}

describe('readiness and client disconnects', () => {
  it('/-/ready answers 503 on the head and the ingress while a replica is constructing, 200 once it runs', async () => {
    expect(await readyStatus(control)).toEqual([200, { status: 'ready' }]);
    await head.deploy(await loadAppSpec(GATED, { name: 'gated' }));
    await waitFor('the replica to be constructing', () => head.controller.status().replicas.some((r) => r.app === 'gated' && r.state === 'STARTING'));
    // Held at the gate for as long as the test likes: every answer meanwhile is 503, from both.
    for (let i = 0; i < 5; i++) {
      expect(await readyStatus(control)).toEqual([503, { status: 'not ready' }]);
      expect(await readyStatus(head.httpAddress)).toEqual([503, { status: 'not ready' }]);
      await new Promise((r) => setTimeout(r, 40));
    }
    expect(head.controller.status().replicas.filter((r) => r.app === 'gated').map((r) => r.state)).toEqual(['STARTING']);
    writeFileSync(gate, '');
    await waitFor('the head to be ready', async () => (await readyStatus(control))[0] === 200);
    await waitFor('the ingress to be ready', async () => (await readyStatus(head.httpAddress))[0] === 200);
    expect(await readyStatus(control)).toEqual([200, { status: 'ready' }]);
    expect(await readyStatus(head.httpAddress)).toEqual([200, { status: 'ready' }]);
  });

  it('a client that disconnects mid-request aborts the replica\'s signal and is counted as 499', async () => {
    await head.waitReady('gated', 20_000);
    const count = async (): Promise<{ started: number; aborted: number }> => (await fetch(`${head.httpAddress}/count`)).json() as Promise<{ started: number; aborted: number }>;
    const scrape = async (): Promise<string> => (await fetch(`${control}/-/metrics`)).text();
    const total499 = async (): Promise<number> => samples(await scrape(), 'shoal_http_requests_total', { app: 'gated', code: '499' }).reduce((a, b) => a + b, 0);
    expect(await total499()).toBe(0);
    expect(await count()).toEqual({ started: 0, aborted: 0 });

    const url = new URL(`${head.httpAddress}/hang`);
    const req = request({ host: url.hostname, port: url.port, path: url.pathname });
    const failed = new Promise<Error>((r) => req.on('error', r));
    req.end();
    await waitFor('the request to reach the replica', async () => (await count()).started === 1);
    req.destroy();
    expect((await failed).message).toMatch(/socket hang up|aborted/);
    await waitFor('the replica to see the abort', async () => (await count()).aborted === 1);
    await waitFor('the 499 to be counted', async () => (await total499()) === 1);
    expect(await count()).toEqual({ started: 1, aborted: 1 });
    // The answered requests of this test (/count) are there beside it, under their own code.
    expect(samples(await scrape(), 'shoal_http_requests_total', { app: 'gated', code: '200' }).reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(4);
  });
});
