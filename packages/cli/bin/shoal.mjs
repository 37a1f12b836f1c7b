#!/usr/bin/env node
// The shoal command. Registers tsx so that shoal's own sources and users' TypeScript app files run without a
// build step, then hands over to src/main.ts.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/main.ts');
main(process.argv.slice(2)).then(
  (code) => { if (typeof code === 'number') process.exitCode = code; },
  (err) => {
    process.stderr.write(`shoal: ${err?.message ?? err}\n`);
    process.exit(typeof err?.exitCode === 'number' ? err.exitCode : 1);
  },
);
