import { defineConfig } from 'vitest/config';

// Tests import shoal's TypeScript sources (each package's "source" export condition); the processes they spawn
// (workers, the CLI) run the compiled dist/, which globalSetup brings up to date first (tsc -b, incremental).
const conditions = ['source', 'node', 'development|production'];

export default defineConfig({
  ssr: { resolve: { conditions } },
  test: {
    include: ['packages/*/test/**/*.test.ts', 'test/**/*.test.ts', 'examples/*/test/**/*.test.ts'],
    globalSetup: ['test/build-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
});
