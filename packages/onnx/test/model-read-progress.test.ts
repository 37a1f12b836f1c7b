/** The model file read alongside the sessions' load: bytes read of the file's size, as load progress. */
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { clearLoadProgress, contextStorage, loadProgressOf, type RequestContext } from '@shoal/core';
import { reportModelRead } from '../src/model-read-progress.ts';

const dir = mkdtempSync(join(tmpdir(), 'shoal-read-progress-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const ctxOf = (replicaId: string): RequestContext => ({ signal: new AbortController().signal, deadline: undefined, app: 'a', deployment: 'M', replicaId });

describe('reportModelRead', () => {
  it('reports each chunk read, ending at the file size', async () => {
    const file = join(dir, 'm.onnx');
    writeFileSync(file, Buffer.alloc(95, 1));
    const seen: Array<readonly [number, number]> = [];
    await contextStorage.run(ctxOf('mr-1'), async () => {
      const read = reportModelRead(file, 10);
      // Sample between reads: every report the loop made is visible here in turn.
      while (loadProgressOf('mr-1')?.[0] !== 95) {
        const p = loadProgressOf('mr-1');
        if (p !== undefined && seen.at(-1)?.[0] !== p[0]) seen.push([p[0], p[1]]);
        await new Promise((r) => setImmediate(r));
      }
      await read.done;
    });
    expect(loadProgressOf('mr-1')).toEqual([95, 95]);
    expect(seen.length).toBeGreaterThan(1);
    for (const [loaded, total] of seen) { expect(total).toBe(95); expect(loaded % 10).toBe(0); }
    clearLoadProgress('mr-1');
  });

  it('stops reading when told to (the sessions finished first)', async () => {
    const file = join(dir, 'big.onnx');
    writeFileSync(file, Buffer.alloc(1000));
    await contextStorage.run(ctxOf('mr-2'), async () => {
      const read = reportModelRead(file, 10);
      read.stop();
      await read.done;
    });
    expect(loadProgressOf('mr-2')).toEqual([0, 1000]);
    clearLoadProgress('mr-2');
  });

  it('reports nothing for a file it cannot open (the session load names the error)', async () => {
    await contextStorage.run(ctxOf('mr-3'), () => reportModelRead(join(dir, 'missing.onnx')).done);
    expect(loadProgressOf('mr-3')).toBeUndefined();
  });
});

describe('onnxModel() load progress', () => {
  it('reports the model file\'s bytes read while a replica constructs it and init() loads the sessions', async () => {
    const { buildTinyModel, onnxModel } = await import('../src/index.ts');
    const file = join(dir, 'tiny.onnx');
    const bytes = buildTinyModel();
    writeFileSync(file, bytes);
    const Tiny = onnxModel({ model: file, warmup: false });
    const m = contextStorage.run(ctxOf('mr-4'), () => new Tiny());
    await contextStorage.run(ctxOf('mr-4'), () => m.init());
    // The read ran alongside the load: it reported the file's size as the total (and stopped once the pool was up).
    for (let i = 0; i < 500 && loadProgressOf('mr-4') === undefined; i++) await new Promise((r) => setTimeout(r, 10));
    const p = loadProgressOf('mr-4');
    expect(p?.[1]).toBe(bytes.byteLength);
    expect(p![0]).toBeGreaterThanOrEqual(0);
    expect(p![0]).toBeLessThanOrEqual(bytes.byteLength);
    await m.shutdown();
    clearLoadProgress('mr-4');
  });
});
