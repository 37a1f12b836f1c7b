import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { InvalidOptionError } from '@shoal/core';
import { describe, expect, it } from 'vitest';
import { AddonNotBuiltError, openNativeRuntime } from '../src/index.ts';
import { DEFAULT_ADDON_DIR } from '../src/loader.ts';
import { addonBuilt, recordingLogger, skipReason, tempDir } from './helpers.ts';

describe('loader without a build', () => {
  it('names the build command when no addon is built', () => {
    const logger = recordingLogger();
    const err = (() => {
      try {
        openNativeRuntime({ addonDir: tempDir('empty'), logger });
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(AddonNotBuiltError);
    expect((err as Error).message).toContain('pnpm --filter @shoal/native build');
    expect((err as Error).message).toContain('cuda addon not built');
    expect(logger.lines.some((l) => l.includes('cuda addon not built'))).toBe(true);
  });

  it('logs a broken CUDA build and names both failures', () => {
    const dir = tempDir('broken');
    writeFileSync(join(dir, 'shoal_native_cuda.node'), 'not an ELF file');
    const logger = recordingLogger();
    expect(() => openNativeRuntime({ addonDir: dir, logger })).toThrow(AddonNotBuiltError);
    expect(logger.lines.find((l) => l.startsWith('warn') && l.includes('cuda addon'))).toContain('probe process');
  });

  it('rejects bad options naming the option', () => {
    expect(() => openNativeRuntime({ backend: 'tpu' as never })).toThrow(InvalidOptionError);
    expect(() => openNativeRuntime({ backend: 'tpu' as never })).toThrow(/native\.backend/);
    expect(() => openNativeRuntime({ hostCapacityBytes: -1 })).toThrow(/native\.hostCapacityBytes/);
    expect(() => openNativeRuntime({ threads: 1.5 })).toThrow(/native\.threads/);
    expect(() => openNativeRuntime({ nope: 1 } as never)).toThrow(/native\.nope/);
  });
});

describe.skipIf(!addonBuilt)(`loader with a build${skipReason}`, () => {
  it('reports the active backend and every fallback', () => {
    const logger = recordingLogger();
    const rt = openNativeRuntime({ logger, hostCapacityBytes: 1 << 20 });
    expect(['cuda', 'host']).toContain(rt.backend);
    if (rt.backend === 'host') {
      // Either the CUDA addon was not built, or it was and found no device: both are logged with a reason.
      expect(rt.report.fallbacks.length).toBeGreaterThan(0);
      expect(logger.lines.some((l) => l.includes('cuda'))).toBe(true);
      const [dev] = rt.devices();
      expect(dev).toMatchObject({ index: 0, backend: 'host', computeCapability: null, totalBytes: 1 << 20 });
    } else {
      // A GPU host (not run where these tests were written, which has no GPU): the CUDA addon with its devices,
      // and no fallback taken. hostCapacityBytes does not apply to GPU memory.
      expect(rt.report).toMatchObject({ active: 'cuda', addon: 'cuda', cudaCompiledIn: true, fallbacks: [] });
      const devices = rt.devices();
      expect(devices.length).toBeGreaterThan(0);
      devices.forEach((d, i) => {
        expect(d).toMatchObject({ index: i, backend: 'cuda', computeCapability: expect.stringMatching(/^\d+\.\d+$/) });
        expect(d.totalBytes).toBeGreaterThan(1 << 20);
      });
    }
    expect(logger.lines.some((l) => l.includes(`${rt.backend} backend active`))).toBe(true);
  });

  it('falls back to the host addon when only it is built', () => {
    const dir = tempDir('hostonly');
    copyFileSync(join(DEFAULT_ADDON_DIR, 'shoal_native_host.node'), join(dir, 'shoal_native_host.node'));
    const logger = recordingLogger();
    const rt = openNativeRuntime({ addonDir: dir, logger });
    expect(rt.backend).toBe('host');
    expect(rt.report.addon).toBe('host');
    expect(rt.report.cudaCompiledIn).toBe(false);
    expect(rt.report.fallbacks[0]).toMatch(/cuda addon not built/);
  });

  it("backend 'host' skips CUDA; backend 'cuda' without a device fails instead of falling back", () => {
    const rt = openNativeRuntime({ backend: 'host', logger: recordingLogger() });
    expect(rt.backend).toBe('host');
    expect(rt.report.fallbacks).toEqual([]);
    const auto = openNativeRuntime({ logger: recordingLogger() });
    if (auto.backend === 'host') {
      expect(() => openNativeRuntime({ backend: 'cuda', logger: recordingLogger() })).toThrow(/CUDA/);
    } else {
      // A GPU host (untested where these tests were written): asking for CUDA gets it, with nothing to fall back from.
      const cuda = openNativeRuntime({ backend: 'cuda', logger: recordingLogger() });
      expect(cuda.report).toMatchObject({ active: 'cuda', addon: 'cuda', fallbacks: [] });
      expect(cuda.devices().map((d) => d.backend)).toEqual(auto.devices().map(() => 'cuda'));
    }
  });
});

const cudaBuilt = existsSync(join(DEFAULT_ADDON_DIR, 'shoal_native_cuda.node'));
describe.skipIf(!cudaBuilt)(`the CUDA probe${cudaBuilt ? '' : ' (skipped: no CUDA addon was built here, nvcc missing at install)'}`, () => {
  it('runs once per addon build, Node and driver: a passed probe is remembered, a rebuilt addon is probed again', () => {
    const dir = tempDir('probe');
    const addon = join(dir, 'shoal_native_cuda.node');
    copyFileSync(join(DEFAULT_ADDON_DIR, 'shoal_native_cuda.node'), addon);
    copyFileSync(join(DEFAULT_ADDON_DIR, 'shoal_native_host.node'), join(dir, 'shoal_native_host.node'));
    // Each load in a process of its own (a process loads an addon once); every probe that passes appends its key.
    const loader = new URL('../dist/loader.js', import.meta.url).href;
    const script = `const m = await import(${JSON.stringify(loader)}); const r = m.loadAddon({ addonDir: ${JSON.stringify(dir)}, backend: 'auto', probeCuda: true, logger: { info() {}, warn() {}, error() {}, debug() {} } }); console.log(r.variant);`;
    const load = (): string => execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' }).trim();
    const probes = (): number => (existsSync(`${addon}.probe-ok`) ? readFileSync(`${addon}.probe-ok`, 'utf8').split('\n').filter(Boolean).length : 0);
    expect(load()).toBe('cuda');
    expect(probes()).toBe(1);
    expect(load()).toBe('cuda');
    expect(probes()).toBe(1); // remembered: a second probe would have appended the same key again
    utimesSync(addon, new Date(), new Date(Date.now() + 5_000)); // a rebuild changes the file
    expect(load()).toBe('cuda');
    expect(probes()).toBe(2);
  });
});
