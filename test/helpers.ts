/** Starts a real head in the test process with real worker processes on 127.0.0.1, port 0. */
import { createServer } from 'node:net';
import { resolve } from 'node:path';
import { createLogger, silentLogger, type AppSpec, type Handle } from '@shoal/core';
import { Head, type HeadOptions } from '@shoal/head';
import { createHandle } from '@shoal/router';
import { loadAppSpec, localWorkerCommand } from '../packages/cli/src/main.ts';

export const FIXTURE_APP = resolve(import.meta.dirname, 'fixtures/apps.ts');

export async function startCluster(opts: Partial<HeadOptions> & { workers?: number } = {}): Promise<Head> {
  const logger = process.env.SHOAL_TEST_LOGS === '1' ? createLogger('test-head', 'debug') : silentLogger;
  const head = new Head({ port: 0, httpPort: 0, workers: 2, workerCommand: localWorkerCommand(), workerCpus: 4, heartbeatMs: 200, workerTimeoutMs: 1500, logger, ...opts });
  await head.start();
  await head.waitForWorkers(opts.workers ?? 2);
  return head;
}

/** Deploys an application of a fixture module (test/fixtures/apps.ts unless `module` names another) and waits for it. */
export async function deployFixture(head: Head, opts: { exportName?: string; name?: string; routePrefix?: string; module?: string } = {}): Promise<AppSpec> {
  const { module = FIXTURE_APP, ...rest } = opts;
  const spec = await loadAppSpec(module, rest);
  await head.deploy(spec);
  await head.waitReady(spec.name, 30_000);
  return spec;
}

export function handleFor<T>(head: Head, spec: AppSpec, deployment: string): Handle<T> {
  const d = spec.deployments.find((x) => x.name === deployment);
  if (d === undefined) throw new Error(`no deployment ${deployment}`);
  return createHandle({ router: head.router, key: `${spec.name}/${deployment}`, methods: d.methods }) as Handle<T>;
}

export async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A port free on 127.0.0.1 right now (for a process that needs a fixed port: a head that restarts on it). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolveP, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolveP(port));
    });
  });
}

export function isAlive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch { return false; }
}

/** Values of the series of `name` in a Prometheus text exposition whose labels include every one of `labels`. */
export function samples(text: string, name: string, labels: Record<string, string> = {}): number[] {
  const out: number[] = [];
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m === null || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) out.push(Number(m[3]));
  }
  return out;
}
