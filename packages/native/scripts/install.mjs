#!/usr/bin/env node
// Runs on install (`pnpm install` in the repository, `npm install` of the @shoal/native tarball in a user's
// project): builds the addon from source with cmake-js, offline. Order: the full build (CUDA too when nvcc is
// found), then a host-only build if that fails. A missing tool (cmake-js, cmake, a C++ compiler) or a failed build
// never fails the install: the reason is logged, to stderr and to build/install.log (npm hides the output of
// install scripts that succeed), and the TypeScript loader then throws AddonNotBuiltError with the remedy when a
// feature needs the addon; everything else works without it.
//
// SHOAL_NATIVE_CUDA=AUTO|ON|OFF (default AUTO) is passed to CMake as SHOAL_CUDA: OFF builds the host backend only
// (no nvcc compile), ON fails the first attempt unless nvcc is found.
import { spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const pkg = join(dirname(fileURLToPath(import.meta.url)), '..');
const logDir = join(pkg, 'build');
const inRepository = !existsSync(join(pkg, 'cpp', 'CMakeLists.txt')) && existsSync(join(pkg, '..', '..', 'native', 'CMakeLists.txt'));
const rebuild = inRepository ? '`pnpm --filter @shoal/native build`' : '`npm rebuild @shoal/native`';

function log(msg) {
  const line = `@shoal/native: ${msg}`;
  process.stderr.write(`${line}\n`);
  try {
    mkdirSync(logDir, { recursive: true });
    appendFileSync(join(logDir, 'install.log'), `${new Date().toISOString()} ${line}\n`);
  } catch {
    // A read-only package folder: stderr is all there is.
  }
}

function cmakeJs() {
  try {
    return createRequire(join(pkg, 'package.json')).resolve('cmake-js/bin/cmake-js');
  } catch {
    return undefined;
  }
}

/** Whether an executable of this name is on PATH (or is an absolute path that exists). */
function onPath(name) {
  if (name.includes('/')) return existsSync(name);
  return (process.env.PATH ?? '').split(delimiter).some((dir) => dir !== '' && existsSync(join(dir, name)));
}

function run(cli, args) {
  const r = spawnSync(process.execPath, [cli, ...args], { cwd: pkg, stdio: ['ignore', 'inherit', 'inherit'] });
  return r.status === 0;
}

const cuda = (process.env.SHOAL_NATIVE_CUDA ?? 'AUTO').toUpperCase();
if (!['AUTO', 'ON', 'OFF'].includes(cuda)) {
  log(`SHOAL_NATIVE_CUDA must be AUTO, ON or OFF, got ${JSON.stringify(process.env.SHOAL_NATIVE_CUDA)}`);
  process.exit(1);
}

const cli = cmakeJs();
if (cli === undefined) {
  log(`cmake-js is not installed; skipping the addon build (run ${rebuild} once it is)`);
  process.exit(0);
}
if (spawnSync('cmake', ['--version'], { stdio: 'ignore' }).status !== 0) {
  log(`cmake not found; skipping the addon build. Install cmake (3.18+) and a C++17 compiler, then run ${rebuild}`);
  process.exit(0);
}
const cxx = process.env.CXX !== undefined && process.env.CXX !== '' ? [process.env.CXX.split(' ')[0]] : ['c++', 'g++', 'clang++'];
if (!cxx.some(onPath)) {
  log(`no C++ compiler found (${process.env.CXX !== undefined && process.env.CXX !== '' ? `CXX=${process.env.CXX} is not on PATH` : 'none of c++, g++, clang++ is on PATH'}); skipping the addon build. Install a C++17 compiler, then run ${rebuild}`);
  process.exit(0);
}
const parallel = ['--parallel', '2'];
if (run(cli, ['compile', ...parallel, `--CDSHOAL_CUDA=${cuda}`])) {
  log(cuda === 'OFF' ? 'host-only addon built (SHOAL_NATIVE_CUDA=OFF)' : 'addon built');
} else if (cuda === 'OFF') {
  log(`addon build failed; the TypeScript loader will report "addon not built". Fix the error above, then run ${rebuild}`);
} else {
  log('full build failed; retrying without CUDA (host backend only)');
  if (run(cli, ['rebuild', ...parallel, '--CDSHOAL_CUDA=OFF'])) log('host-only addon built');
  else log(`addon build failed; the TypeScript loader will report "addon not built". Fix the error above, then run ${rebuild}`);
}
process.exit(0);
