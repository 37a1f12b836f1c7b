#!/usr/bin/env node
// Runs on `pnpm install`: builds the addon with cmake-js, offline. Order: the full build (CUDA too when nvcc
// is found), then a host-only build if that fails. A failed build never fails the install: the loader then
// reports "addon not built" with the command to run, and everything that does not need the addon works.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const pkg = join(dirname(fileURLToPath(import.meta.url)), '..');
const log = (msg) => process.stderr.write(`@shoal/native: ${msg}\n`);

function cmakeJs() {
  try {
    return createRequire(join(pkg, 'package.json')).resolve('cmake-js/bin/cmake-js');
  } catch {
    return undefined;
  }
}

function run(args) {
  const r = spawnSync(process.execPath, [cli, ...args], { cwd: pkg, stdio: ['ignore', 'inherit', 'inherit'] });
  return r.status === 0;
}

const cli = cmakeJs();
if (cli === undefined) {
  log('cmake-js is not installed; skipping the addon build (run `pnpm --filter @shoal/native build` later)');
  process.exit(0);
}
if (spawnSync('cmake', ['--version'], { stdio: 'ignore' }).status !== 0) {
  log('cmake not found; skipping the addon build. Install cmake and a C++17 compiler, then run `pnpm --filter @shoal/native build`');
  process.exit(0);
}
const parallel = ['--parallel', '2'];
if (run(['compile', ...parallel])) {
  log('addon built');
} else {
  log('full build failed; retrying without CUDA (host backend only)');
  if (run(['rebuild', ...parallel, '--CDSHOAL_CUDA=OFF'])) log('host-only addon built');
  else log('addon build failed; the TypeScript loader will report "addon not built". Fix the error above, then run `pnpm --filter @shoal/native build`');
}
process.exit(0);
