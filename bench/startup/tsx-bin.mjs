// The CLI as it started before issue 14: tsx registered for everything, then the TypeScript sources imported.
// bench/startup runs it with --conditions=source, so every @shoal/* import resolves to src/ as it did when each
// package's "exports" named ./src/index.ts. Used only by bench/startup.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../../packages/cli/src/main.ts');
const code = await main(process.argv.slice(2));
if (typeof code === 'number') process.exitCode = code;
