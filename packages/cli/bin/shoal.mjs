#!/usr/bin/env node
// The shoal command: runs the compiled CLI (dist/). TypeScript app files load through tsx, registered only when one
// is imported (see registerTypeScript in @shoal/worker), so shoal's own modules never pass through a transpiler.
import { existsSync } from 'node:fs';

const entry = new URL('../dist/main.js', import.meta.url);
if (!existsSync(entry)) {
  // Only in a checkout that was never built: an installed package always ships dist/.
  process.stderr.write('shoal: the CLI is not built (no dist/main.js); run `npx -y pnpm@10 build` in the repository first\n');
  process.exit(1);
}
const { main } = await import(entry.href);
main(process.argv.slice(2)).then(
  (code) => { if (typeof code === 'number') process.exitCode = code; },
  (err) => {
    process.stderr.write(`shoal: ${err?.message ?? err}\n`);
    process.exit(typeof err?.exitCode === 'number' ? err.exitCode : 1);
  },
);
