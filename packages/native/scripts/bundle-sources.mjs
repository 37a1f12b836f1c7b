#!/usr/bin/env node
// prepack/postpack of @shoal/native: `copy` puts the C++ project the addon builds from (../../native, less its
// tests and CI scripts) into cpp/ so that the tarball can build it on install; `remove` deletes that copy again.
// In the repository CMakeLists.txt uses ../../native directly; cpp/ exists only while a pack runs.
import { cpSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const pkg = join(dirname(fileURLToPath(import.meta.url)), '..');
const source = join(pkg, '..', '..', 'native');
const target = join(pkg, 'cpp');
// What native/CMakeLists.txt compiles when it is not the top-level project (SHOAL_BUILD_TESTS is then OFF).
const ENTRIES = ['CMakeLists.txt', 'README.md', 'include', 'src', 'binding', 'cuda'];

const mode = process.argv[2];
if (mode === 'remove') {
  rmSync(target, { recursive: true, force: true });
} else if (mode === 'copy') {
  if (!existsSync(join(source, 'CMakeLists.txt'))) {
    process.stderr.write(`@shoal/native: no C++ project at ${source}; pack from a checkout of the shoal repository\n`);
    process.exit(1);
  }
  rmSync(target, { recursive: true, force: true });
  mkdirSync(target);
  for (const entry of ENTRIES) cpSync(join(source, entry), join(target, entry), { recursive: true });
} else {
  process.stderr.write(`usage: bundle-sources.mjs copy|remove (got ${mode === undefined ? 'nothing' : JSON.stringify(mode)})\n`);
  process.exit(2);
}
