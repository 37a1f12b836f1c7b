/**
 * vitest globalSetup: the processes tests spawn (local workers, `node packages/cli/bin/shoal.mjs`) run each
 * package's compiled dist/, so build it first. Incremental: a second or two when nothing changed.
 */
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { resolve } from 'node:path';

export default function setup(): void {
  if (process.env.SHOAL_SKIP_BUILD === '1') return;
  const root = resolve(import.meta.dirname, '..');
  const tsc = createRequire(resolve(root, 'package.json')).resolve('typescript/bin/tsc');
  execFileSync(process.execPath, [tsc, '-b', 'packages/cli', 'packages/cache', 'packages/broker', 'packages/native'], { cwd: root, stdio: 'inherit' });
}
