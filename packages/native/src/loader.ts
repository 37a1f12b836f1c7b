/**
 * The one loader of the native addon. It tries the built variants in a fixed order, CUDA then host, and
 * logs every fallback with its reason:
 *   1. shoal_native_cuda.node: skipped when not built (no nvcc at build time); loaded first in a child
 *      process (probeCuda) so a crashing driver cannot take this process down (a passed probe is remembered
 *      for the same addon build, Node and driver, beside the addon); once loaded, the runtime
 *      itself falls back to its host backend when no CUDA device or driver works, and says why.
 *   2. shoal_native_host.node.
 * When neither loads, AddonNotBuiltError names the build command.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from '@shoal/core';
import { ADDON_ABI_VERSION, type NativeAddon } from './addon-types.ts';
import { AddonNotBuiltError, BUILD_COMMAND } from './errors.ts';

const require = createRequire(import.meta.url);

/** Where `pnpm --filter @shoal/native build` (cmake-js) puts the addons. */
export const DEFAULT_ADDON_DIR = fileURLToPath(new URL('../build/Release/', import.meta.url));

export type AddonVariant = 'cuda' | 'host';

export interface LoadedAddon {
  addon: NativeAddon;
  variant: AddonVariant;
  path: string;
  /** One line per variant that was skipped or failed, in order, with the reason. */
  fallbacks: string[];
}

export interface LoadAddonOptions {
  addonDir: string;
  /** 'host' skips the CUDA addon entirely. */
  backend: 'auto' | 'cuda' | 'host';
  probeCuda: boolean;
  logger: Logger;
}

const loaded = new Map<string, NativeAddon>();

export function addonPath(dir: string, variant: AddonVariant): string {
  return join(dir, `shoal_native_${variant}.node`);
}

/**
 * What a passed probe of `path` is valid for: the addon file as built, this Node, and the GPU driver (its version
 * file changes when a driver is installed or upgraded). A probe costs a Node process (~140 ms at every worker start,
 * measured by bench/startup's profile); once one passed for the same key, loading is as safe as it was then.
 */
function probeKey(path: string): string | undefined {
  try {
    const st = statSync(path);
    let driver = 'no driver';
    try { driver = readFileSync('/proc/driver/nvidia/version', 'utf8'); } catch { /* no NVIDIA driver here */ }
    return createHash('sha256').update(JSON.stringify([path, st.size, st.mtimeMs, process.version, ADDON_ABI_VERSION, driver])).digest('hex');
  } catch {
    return undefined;
  }
}

/** Where passed probes are remembered: beside the addon (dropped with a rebuild), one key per line. */
const probeCacheFile = (path: string): string => `${path}.probe-ok`;

function probePassedBefore(path: string, key: string | undefined): boolean {
  if (key === undefined) return false;
  try { return readFileSync(probeCacheFile(path), 'utf8').split('\n').includes(key); } catch { return false; }
}

function rememberProbe(path: string, key: string | undefined): void {
  if (key === undefined) return;
  try { appendFileSync(probeCacheFile(path), `${key}\n`); } catch { /* a read-only install probes every time */ }
}

/** Loads the addon in a throwaway process (unless one passed before for the same addon, Node and driver). */
function probe(path: string): string | undefined {
  const key = probeKey(path);
  if (probePassedBefore(path, key)) return undefined;
  const why = probeInChild(path);
  if (why === undefined) rememberProbe(path, key);
  return why;
}

/** Loads the addon in a throwaway process; returns why it failed, or undefined when it loads. */
function probeInChild(path: string): string | undefined {
  const script = `const a = require(${JSON.stringify(path)}); if (a.abiVersion !== ${ADDON_ABI_VERSION}) { console.error('abi ' + a.abiVersion); process.exit(3); }`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30_000 });
  if (r.error !== undefined) return `probe process failed: ${r.error.message}`;
  if (r.status === 0) return undefined;
  const why = r.signal !== null ? `killed by ${r.signal}` : `exit code ${r.status}`;
  return `probe process ${why}: ${(r.stderr ?? '').trim().split('\n').slice(-3).join(' | ')}`;
}

function requireAddon(path: string): NativeAddon {
  const cached = loaded.get(path);
  if (cached !== undefined) return cached;
  const addon = require(path) as NativeAddon;
  if (addon.abiVersion !== ADDON_ABI_VERSION) {
    throw new Error(`addon ABI ${addon.abiVersion} does not match the TypeScript surface (ABI ${ADDON_ABI_VERSION}); rebuild with ${BUILD_COMMAND}`);
  }
  loaded.set(path, addon);
  return addon;
}

export function loadAddon(opts: LoadAddonOptions): LoadedAddon {
  const order: AddonVariant[] = opts.backend === 'host' ? ['host'] : ['cuda', 'host'];
  const fallbacks: string[] = [];
  for (const variant of order) {
    const path = addonPath(opts.addonDir, variant);
    let reason: string | undefined;
    if (!existsSync(path)) {
      reason = variant === 'cuda' ? `not built (no CUDA compiler at build time): ${path}` : `not built: ${path}`;
    } else {
      if (variant === 'cuda' && opts.probeCuda && !loaded.has(path)) reason = probe(path);
      if (reason === undefined) {
        try {
          const addon = requireAddon(path);
          return { addon, variant, path, fallbacks };
        } catch (err) {
          reason = `failed to load: ${err instanceof Error ? err.message : String(err)}`;
        }
      }
    }
    const line = `${variant} addon ${reason}`;
    fallbacks.push(line);
    // A missing CUDA build is an ordinary CPU machine; a CUDA build that fails to load is worth a warning.
    if (variant === 'cuda' && reason.startsWith('not built')) opts.logger.info(`native: ${line}; trying the host addon`);
    else opts.logger.warn(`native: ${line}${variant === 'cuda' ? '; trying the host addon' : ''}`);
  }
  throw new AddonNotBuiltError(
    `the shoal native addon is not built or does not load (${fallbacks.join('; ')}); build it with: ${BUILD_COMMAND}`,
    fallbacks,
  );
}
