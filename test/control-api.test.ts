/**
 * Integration: the head re-validates every AppSpec that reaches POST /api/apps, whatever built it. A bad one is
 * refused with 400 naming the option's full path and value and is not stored; a good one, even with options left
 * out, is compiled as deployment() compiles them and runs on a real worker.
 */
import { dirname } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AppSpec } from '@shoal/core';
import type { Head } from '@shoal/head';
import { loadAppSpec } from '../packages/cli/src/main.ts';
import { FIXTURE_APP, startCluster } from './helpers.ts';

interface Status { applications: Array<{ name: string; deployments: Array<{ name: string; numReplicas: number; running: number }> }> }

let head: Head;
let control: string;
beforeAll(async () => {
  head = await startCluster({ workers: 1 });
  control = head.clusterAddress.replace('ws://', 'http://');
});
afterAll(async () => { await head?.stop(); });

function post(spec: unknown, query = ''): Promise<Response> {
  return fetch(`${control}/api/apps${query}`, { method: 'POST', headers: { authorization: `Bearer ${head.token}`, 'content-type': 'application/json' }, body: JSON.stringify(spec) });
}

async function status(): Promise<Status> {
  return await (await fetch(`${control}/api/status`, { headers: { authorization: `Bearer ${head.token}` } })).json() as Status;
}

/** The fixture app as the CLI builds it, after the JSON round trip, loosely typed so tests can break it. */
async function fixture(name: string): Promise<Record<string, any>> {
  const spec: AppSpec = await loadAppSpec(FIXTURE_APP, { name, routePrefix: `/${name}` });
  return JSON.parse(JSON.stringify(spec)) as Record<string, any>;
}

describe('POST /api/apps', () => {
  it('refuses a spec with a bad option with 400, naming its path and value, and stores nothing', async () => {
    const bad = await fixture('bad');
    const i = bad.deployments.findIndex((d: { name: string }) => d.name === 'Counter');
    bad.deployments[i].options.maxOngoingRequests = -3;
    const res = await post(bad);
    expect(res.status).toBe(400);
    const body = await res.json() as { error: string; code: string };
    expect(body.code).toBe('ERR_INVALID_OPTION');
    expect(body.error).toContain(`app.deployments[${i}].options.maxOngoingRequests`);
    expect(body.error).toContain('(got -3)');

    const noIngress = await fixture('bad');
    noIngress.ingress = 'Missing';
    const res2 = await post(noIngress);
    expect(res2.status).toBe(400);
    expect((await res2.json() as { error: string }).error).toContain('invalid option app.ingress: must name one of the deployments');

    expect((await status()).applications.map((a) => a.name)).not.toContain('bad');
  });

  it('deploys a good spec, filling the options it leaves out as deployment() would', async () => {
    const good = await fixture('good');
    for (const d of good.deployments) d.options = d.name === 'Counter' ? { numReplicas: 1 } : {};
    const res = await post(good, '?wait=30000');
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ ok: true, app: 'good' });
    const app = (await status()).applications.find((a) => a.name === 'good');
    expect(app?.deployments.map((d) => [d.name, d.numReplicas, d.running]).sort()).toEqual([['Counter', 1, 1], ['Front', 1, 1]]);
  });

  it('refuses a modulePath that is not a regular file on the head, naming app.modulePath and the value', async () => {
    const cases: Array<[string, string]> = [
      ['data:text/javascript,process.exit(1)', 'must be an absolute file path or a file: URL, not a data: URL'],
      ['https://example.com/app.js', 'not a https: URL'],
      ['node:child_process', 'not a node: URL'],
      ['test/fixtures/apps.ts', 'not a relative path or a package name'],
      ['/no/such/dir/app.ts', 'no such file on the head'],
      [dirname(FIXTURE_APP), 'is not a regular file'],
      [pathToFileURL('/no/such/app.ts').href, 'no such file on the head'],
    ];
    for (const [modulePath, problem] of cases) {
      const spec = await fixture('mod');
      spec.modulePath = modulePath;
      const res = await post(spec);
      const body = await res.json() as { error: string; code: string };
      expect({ modulePath, status: res.status, code: body.code }).toEqual({ modulePath, status: 400, code: 'ERR_INVALID_OPTION' });
      expect(body.error).toContain(`invalid option app.modulePath: ${problem.startsWith('not') ? 'must be an absolute file path or a file: URL, ' : ''}${problem}`);
      expect(body.error).toContain(JSON.stringify(modulePath.length > 80 ? `${modulePath.slice(0, 77)}...` : modulePath));
    }
    expect((await status()).applications.map((a) => a.name)).not.toContain('mod');
    // A file: URL of a real file is a module path too (accepted; the worker has no room left to run it, so remove it).
    const byUrl = await fixture('byurl');
    byUrl.modulePath = pathToFileURL(FIXTURE_APP).href;
    expect((await post(byUrl)).status).toBe(200);
    const del = await fetch(`${control}/api/apps/byurl`, { method: 'DELETE', headers: { authorization: `Bearer ${head.token}` } });
    expect(del.status).toBe(200);
  });
});
