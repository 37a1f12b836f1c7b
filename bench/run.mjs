#!/usr/bin/env node
// `pnpm bench NAME [args]`: runs bench/NAME/index.(ts|mjs), which prints its table and writes bench/results/NAME.json.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const here = dirname(fileURLToPath(import.meta.url));
const [name, ...rest] = process.argv.slice(2);
const available = readdirSync(here, { withFileTypes: true })
  .filter((d) => d.isDirectory() && ['index.ts', 'index.mjs'].some((f) => existsSync(join(here, d.name, f))))
  .map((d) => d.name);
if (name === undefined || !available.includes(name)) {
  process.stderr.write(`usage: pnpm bench NAME   (NAME: ${available.join(', ')})\n`);
  process.exit(2);
}
const entry = ['index.ts', 'index.mjs'].map((f) => join(here, name, f)).find((f) => existsSync(f));
const tsx = createRequire(join(here, 'package.json')).resolve('tsx/esm');
const child = spawn(process.execPath, ['--import', `file://${tsx}`, entry, ...rest], { stdio: 'inherit' });
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
for (const s of ['SIGINT', 'SIGTERM']) process.on(s, () => child.kill(s));
