import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { env, type Logger } from '@shoal/core';
import { DEFAULT_ADDON_DIR } from '../src/loader.ts';

/** Addon tests need a build; CI builds it (pnpm install runs cmake-js). */
export const addonBuilt = ['cuda', 'host'].some((v) => existsSync(join(DEFAULT_ADDON_DIR, `shoal_native_${v}.node`)));
if (!addonBuilt && env.requireNative()) {
  throw new Error(`SHOAL_REQUIRE_NATIVE=1 but the addon is not built in ${DEFAULT_ADDON_DIR}: run \`pnpm --filter @shoal/native build\` and read its output`);
}
export const skipReason = addonBuilt ? '' : ' (SKIPPED: addon not built; run `pnpm --filter @shoal/native build`)';

export function tempDir(tag: string): string {
  return mkdtempSync(join(tmpdir(), `shoal-native-${tag}-`));
}

/** A logger that records lines, for asserting what the loader reported. */
export function recordingLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const make = (): Logger & { lines: string[] } => ({
    lines,
    debug: (m) => void lines.push(`debug ${m}`),
    info: (m) => void lines.push(`info ${m}`),
    warn: (m) => void lines.push(`warn ${m}`),
    error: (m) => void lines.push(`error ${m}`),
    child: () => make(),
  });
  return make();
}
