/**
 * A quantized variant rolled out as a shadow, then a canary, of the fp32 one, over the Open Inference Protocol on
 * real workers: the shadow phase compares int8's outputs with fp32's on live requests (the max and mean absolute
 * difference it reports are int8's error), passes, and the canary is promoted. No request fails.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Head } from '@shoal/head';
import { loadAppSpec } from '../packages/cli/src/main.ts';
import { writeMlpVariants } from '../bench/quantization/make-variants.ts';
import { startCluster, waitFor } from './helpers.ts';

const HIDDEN = 256;
const dir = mkdtempSync(join(tmpdir(), 'shoal-quant-'));
process.env.SHOAL_TEST_QUANT_DIR = dir;
const MODULE = resolve(import.meta.dirname, 'fixtures/quantized-app.ts');
let head: Head | undefined;
afterAll(async () => { await head?.stop(); rmSync(dir, { recursive: true, force: true }); });

describe('a quantized variant as a shadow, then a canary, of fp32', () => {
  it('compares int8 with fp32 on live traffic, passes, promotes; every request answered', { timeout: 120_000 }, async () => {
    await writeMlpVariants(dir, { hidden: HIDDEN, layers: 2 });
    head = await startCluster();
    await head.deploy(await loadAppSpec(MODULE, { exportName: 'fp32', name: 'q' }));
    await head.waitReady('q', 60_000);
    let running = true;
    let ok = 0;
    const failures: string[] = [];
    const body = JSON.stringify({ inputs: [{ name: 'x', shape: [1, HIDDEN], datatype: 'FP32', data: Array.from({ length: HIDDEN }, (_, i) => Math.sin(i)) }] });
    const loop = async (): Promise<void> => {
      while (running) {
        try {
          const res = await fetch(`${head!.httpAddress}/v2/models/mlp/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
          const text = await res.text();
          if (res.status === 200) ok++; else failures.push(`${res.status} ${text.slice(0, 200)}`);
        } catch (err) {
          failures.push(String(err));
        }
      }
    };
    const loops = [loop(), loop(), loop(), loop()];
    const dep = () => head!.controller.status().applications.find((a) => a.name === 'q')!.deployments[0]!;
    try {
      await head.deploy(await loadAppSpec(MODULE, { exportName: 'int8', name: 'q' }));
      await waitFor('int8 promoted and rolled out', () => dep().decisions.some((d) => d.action === 'done'), 60_000)
        .catch((err: unknown) => { throw new Error(`${String(err)}: ${JSON.stringify(dep())}`); });
    } finally {
      running = false;
      await Promise.all(loops);
    }
    expect(failures).toEqual([]);
    expect(ok).toBeGreaterThan(40);
    const st = dep();
    expect(st.decisions.map((d) => d.action)).toEqual(['start', 'shadow passed', 'promote', 'done']);
    const shadow = Object.values(st.shadow!)[0]!;
    expect(shadow.compared).toBeGreaterThanOrEqual(40);
    // int8 is not fp32 under another name, and it is close.
    expect(shadow.maxAbsDiff).toBeGreaterThan(1e-6);
    expect(shadow.maxAbsDiff).toBeLessThan(0.5);
    expect(shadow.meanAbsDiff).toBeLessThan(shadow.maxAbsDiff);
    expect(shadow.numbers).toBe(shadow.compared * (HIDDEN + 2)); // the output data, and its dims [1, HIDDEN]
  });
});
