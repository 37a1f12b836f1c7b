/**
 * /-/ready/worker, a worker's own readiness (what a pod's readinessProbe asks): 200 once the worker has joined a head
 * and has the applications and a route table, whatever the rest of the cluster is doing, and still 200 while the
 * head is away; /-/ready (the cluster's: every deployment has a running replica) keeps its meaning. Real processes:
 * `shoal worker`, started before its head, and `shoal start --workers 0`.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { resolve } from 'node:path';
import { loadAppSpec } from '../packages/cli/src/main.ts';
import { freePort, waitFor } from './helpers.ts';
import { httpStatus, ShoalProcesses } from './fixtures/cli-process.ts';

const APP = resolve(import.meta.dirname, 'fixtures/worker-readiness-app.ts');
const TOKEN = 'worker-readiness-token-0123456789';

const cli = new ShoalProcesses({ SHOAL_TOKEN: TOKEN, SHOAL_HEARTBEAT_MS: '200' });
afterEach(() => cli.stopAll());

async function control(port: number, method: string, path: string, body?: unknown): Promise<unknown> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, {
    method, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: HTTP ${res.status}: ${text}`);
  return JSON.parse(text) as unknown;
}

describe('a worker\'s own readiness, /-/ready/worker', () => {
  it('is not ready before joining, ready once joined while an application cannot start (/-/ready: 503), and stays ready while the head is away', async () => {
    const headPort = await freePort();
    const httpPort = await freePort();
    const worker = cli.start(['worker', '--address', `ws://127.0.0.1:${headPort}`, '--http-port', String(httpPort), '--data-port', '0']);
    const base = `http://127.0.0.1:${httpPort}`;
    await waitFor('the worker to wait for its head', () => worker.out().includes('cannot reach the head yet; retrying'));
    // Before it has joined, a worker has no applications and no route table: its HTTP port is not open yet.
    expect(await httpStatus(`${base}/-/ready/worker`)).toBe(0);

    const dir = cli.tempDir('shoal-worker-readiness-');
    const headHttp = await freePort();
    const head = cli.start(['start', '--workers', '0', '--port', String(headPort), '--http-port', String(headHttp), '--data-dir', dir, '--on-sigterm', 'keep-workers']);
    await waitFor(`the worker to be ready once joined\n${worker.out()}`, async () => (await httpStatus(`${base}/-/ready/worker`)) === 200, 30_000);
    expect(await (await fetch(`${base}/-/ready/worker`)).json()).toEqual({ status: 'ready' });
    // A worker's endpoint: the head's own ingress has no worker readiness to give.
    await waitFor('the head\'s ingress to listen', async () => (await httpStatus(`http://127.0.0.1:${headHttp}/-/healthz`)) === 200);
    expect(await httpStatus(`http://127.0.0.1:${headHttp}/-/ready/worker`)).toBe(404);

    await control(headPort, 'POST', '/api/apps?wait=30000', await loadAppSpec(APP, { exportName: 'ok', name: 'ok', routePrefix: '/ok' }));
    expect(await httpStatus(`${base}/-/ready`)).toBe(200);
    // No wait: its one deployment never starts.
    await control(headPort, 'POST', '/api/apps', await loadAppSpec(APP, { exportName: 'broken', name: 'broken', routePrefix: '/broken' }));
    await waitFor('the broken deployment to have failed to start', () => worker.out().includes('this deployment never starts'), 30_000);
    await waitFor('the worker to have the broken application', async () => ((await (await fetch(`${base}/-/routes`)).json()) as Record<string, string>)['/broken'] === 'broken');
    // The cluster is not ready (a deployment has no running replica anywhere); this worker is, and serves `ok`.
    for (let i = 0; i < 3; i++) {
      expect(await httpStatus(`${base}/-/ready`)).toBe(503);
      expect(await httpStatus(`http://127.0.0.1:${headPort}/-/ready`)).toBe(503);
      expect(await httpStatus(`${base}/-/ready/worker`)).toBe(200);
      const res = await fetch(`${base}/ok/x`);
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ ok: true, path: '/x' });
      await new Promise((r) => setTimeout(r, 100));
    }

    // The head stops alone (as kubelet stops its pod): the worker keeps serving, and says it is ready to.
    head.child.kill('SIGTERM');
    expect(await head.exited).toBe(0);
    await waitFor('the worker to notice the head is gone', () => worker.out().includes('lost the head; still serving'), 20_000);
    expect(await httpStatus(`${base}/-/ready/worker`)).toBe(200);
    expect(await httpStatus(`${base}/ok/y`)).toBe(200);

    worker.child.kill('SIGTERM');
    expect(await worker.exited).toBe(0);
  }, 120_000);
});
