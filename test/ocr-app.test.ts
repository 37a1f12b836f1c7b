/**
 * examples/ocr/app.ts on real worker processes: the ingress and the det, cls and rec deployments each run as
 * replicas, every model call crosses the cluster's data path, and the text read from the committed fixtures
 * must equal what they say (see examples/ocr/test/fixtures/README.md).
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Head } from '@shoal/head';
import { loadAppSpec } from '../packages/cli/src/main.ts';
import { startCluster } from './helpers.ts';
import { EXPECTED_TEXT as EXPECTED } from '../examples/ocr/test/expected.ts';

const APP = resolve(import.meta.dirname, '../examples/ocr/app.ts');
const FIXTURES = resolve(import.meta.dirname, '../examples/ocr/test/fixtures');


interface Line { text: string; score: number; box: Array<[number, number]> }

let head: Head;

beforeAll(async () => {
  head = await startCluster({ workers: 2 });
  const spec = await loadAppSpec(APP, { name: 'ocr' });
  expect(spec.deployments.map((d) => [d.name, d.dependencies]).sort()).toEqual([['cls', []], ['det', []], ['ocr', ['det', 'cls', 'rec']], ['rec', []]]);
  await head.deploy(spec);
  await head.waitReady('ocr', 90_000);
}, 120_000);
afterAll(async () => { await head?.stop(); });

const post = async (body: Uint8Array): Promise<{ status: number; json: any }> => {
  const res = await fetch(`${head.httpAddress}/`, { method: 'POST', body, headers: { 'content-type': 'application/octet-stream' } });
  return { status: res.status, json: await res.json() };
};

describe('examples/ocr/app.ts on a cluster', () => {
  for (const [file, texts] of Object.entries(EXPECTED)) {
    it(`reads ${file} as ${JSON.stringify(texts)}`, async () => {
      const r = await post(readFileSync(resolve(FIXTURES, file)));
      expect(r.status).toBe(200);
      const lines = r.json.lines as Line[];
      expect(lines.map((l) => l.text)).toEqual(texts);
      for (const l of lines) {
        expect(l.score).toBeGreaterThan(0.9);
        expect(l.box).toHaveLength(4);
      }
    });
  }

  it('serves concurrent requests (batched on the model replicas) with the same answers', async () => {
    const files = Object.keys(EXPECTED);
    const results = await Promise.all([...files, ...files].map(async (f) => ({ f, r: await post(readFileSync(resolve(FIXTURES, f))) })));
    for (const { f, r } of results) expect((r.json.lines as Line[]).map((l) => l.text)).toEqual(EXPECTED[f]);
  });

  it('answers 400 with a message for bytes that are not an image, and usage on GET', async () => {
    const bad = await post(Buffer.from('not an image'));
    expect(bad.status).toBe(400);
    expect(bad.json.error).toMatch(/PNG|JPEG|image/i);
    const usage = await fetch(`${head.httpAddress}/`);
    expect(await usage.text()).toMatch(/POST a PNG or JPEG image/);
  });
});
