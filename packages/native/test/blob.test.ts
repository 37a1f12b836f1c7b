import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { NotFoundError } from '@shoal/core';
import { describe, expect, it } from 'vitest';
import { encodeSafetensors, InvalidHandleError, MemoryBudgetError, openNativeRuntime } from '../src/index.ts';
import { addonBuilt, recordingLogger, skipReason, tempDir } from './helpers.ts';

const image = (fill: number, floats = 1000): Uint8Array => encodeSafetensors({ w: { shape: [floats], data: new Float32Array(floats).fill(fill) } });

describe.skipIf(!addonBuilt)(`shared weight blobs${skipReason}`, () => {
  it('loads a name once per device however many replicas reference it', async () => {
    const rt = openNativeRuntime({ backend: 'host', hostCapacityBytes: 1 << 20, logger: recordingLogger() });
    const img = image(1);
    await rt.loadBlob('base', img);
    await rt.loadBlob('base', img);
    const refs = await Promise.all(Array.from({ length: 8 }, () => rt.acquireBlob('base')));
    expect(rt.blobStats()).toMatchObject({ blobs: 1, refs: 8, residentBytes: img.length, dedupedLoads: 1 });
    expect(rt.devices()[0]!.freeBytes).toBe((1 << 20) - img.length);
    for (const r of refs) r.release();
    expect(rt.blobInfo('base')).toMatchObject({ refs: 0, state: 'resident', tensors: 1 });
  });

  it('double release and unknown names are JS errors', async () => {
    const rt = openNativeRuntime({ backend: 'host', logger: recordingLogger() });
    await rt.loadBlob('b', image(2, 10));
    const ref = await rt.acquireBlob('b');
    ref.release();
    expect(() => ref.release()).toThrow(InvalidHandleError);
    await expect(rt.acquireBlob('missing')).rejects.toBeInstanceOf(NotFoundError);
    expect(() => rt.blobInfo('missing')).toThrow(NotFoundError);
    await expect(rt.loadBlob('f', { path: '/nonexistent.safetensors' })).rejects.toThrow(/cannot open weights file/);
  });

  it('evicts idle blobs LRU-first to host memory and restores them on acquire', async () => {
    const one = image(0);
    const rt = openNativeRuntime({ backend: 'host', hostCapacityBytes: one.length * 3, logger: recordingLogger() });
    for (let i = 0; i < 3; i++) await rt.loadBlob(`b${i}`, image(i));
    const held = await rt.acquireBlob('b0');
    await rt.loadBlob('b3', image(3));  // device full: b1, the least recently used idle blob, goes to host memory
    expect(rt.blobInfo('b1').state).toBe('evicted');
    expect(rt.blobInfo('b2').state).toBe('resident');
    expect(rt.blobStats().evictedBytes).toBe(one.length);
    const r1 = await rt.acquireBlob('b1');
    expect(rt.blobInfo('b1')).toMatchObject({ state: 'resident', restores: 1 });
    expect(rt.blobInfo('b2').state).toBe('evicted');
    const r3 = await rt.acquireBlob('b3');
    await expect(rt.loadBlob('b4', image(4))).rejects.toBeInstanceOf(MemoryBudgetError);  // everything is held
    for (const r of [held, r1, r3]) r.release();
    expect(rt.evictBlob('b3')).toBe(true);
    expect(rt.evictBlob('b3')).toBe(false);
    rt.dropBlob('b3');
    expect(() => rt.blobInfo('b3')).toThrow(NotFoundError);
  });

  it('loads safetensors files and shares blobs with another process', async () => {
    const dir = tempDir('blob');
    const file = join(dir, 'w.safetensors');
    writeFileSync(file, encodeSafetensors({ x: { shape: [2, 2], data: new Float32Array([1, 2, 3, 4]) } }));
    const rt = openNativeRuntime({ backend: 'host', logger: recordingLogger() });
    expect(await rt.loadBlob('file', { path: file })).toMatchObject({ tensors: 1, state: 'resident' });
    const name = `vitest-shared-${process.pid}`;
    expect(await rt.loadBlob(name, image(7, 16), { shared: true })).toMatchObject({ shared: true, attached: false });
    // A second process maps the same bytes by name instead of copying them.
    const script = `
      const a = require(${JSON.stringify(rt.report.addonPath)});
      const rt = new a.Runtime({ backend: 'host', hostCapacityBytes: 1 << 20, threads: 1 });
      rt.attachBlob(${JSON.stringify(name)}, 0).then((info) => console.log(JSON.stringify(info)));`;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout.trim())).toMatchObject({ name, attached: true, shared: true, tensors: 1 });
    rt.dropBlob(name);
  });
});
