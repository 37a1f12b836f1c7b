/**
 * A second head process for the state store tests, run with `node --import tsx`. It prints one JSON line per
 * event on stdout.
 *
 *   redis-hold <url> <prefix> <leaseTtlMs>  opens a RedisStateStore, stores app "held", prints {"ready":pid},
 *                                           then on each "write" line on stdin tries putWorkers and prints
 *                                           {"write":"ok"} or {"write":"<code>"}; prints {"leaseLost":code}
 *   file-crash <dir>                        opens a FileStateStore, stores app "old", then SIGKILLs itself
 *                                           inside the next write, after the temp file is fsynced and before
 *                                           the rename: a crash at the worst moment
 */
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { createInterface } from 'node:readline';
import { silentLogger } from '@shoal/core';
import { FileStateStore, RedisStateStore } from '../src/state/index.ts';
import { appSpec, meta, workers } from './state-store-fixtures.ts';

function say(event: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

const [mode, ...args] = process.argv.slice(2);

if (mode === 'redis-hold') {
  const [url, prefix, ttl] = args as [string, string, string];
  const store = new RedisStateStore({ url, prefix, leaseTtlMs: Number(ttl), logger: silentLogger });
  await store.open({ onLeaseLost: (err) => say({ leaseLost: err.code }) });
  await store.putApp(appSpec('held'), meta('v-held'));
  say({ ready: process.pid });
  for await (const line of createInterface({ input: process.stdin })) {
    if (line !== 'write') continue;
    try {
      await store.putWorkers(workers(1, 'stale'));
      say({ write: 'ok' });
    } catch (err) {
      say({ write: (err as { code?: string }).code ?? String(err) });
    }
  }
} else if (mode === 'file-crash') {
  const store = new FileStateStore(args[0]!, { logger: silentLogger });
  await store.open();
  await store.putApp(appSpec('old'), meta('v-old'));
  // The store imports rename from node:fs/promises; replacing it there and syncing the builtin's ESM exports
  // makes the store's next rename of state.json a SIGKILL, with the new content fsynced in its temp file.
  const fsp = createRequire(import.meta.url)('node:fs/promises') as { rename: (from: string, to: string) => Promise<void> };
  const rename = fsp.rename;
  fsp.rename = async (from, to) => {
    if (to.endsWith('state.json')) process.kill(process.pid, 'SIGKILL');
    return rename(from, to);
  };
  syncBuiltinESMExports();
  say({ ready: process.pid });
  await store.putApp(appSpec('new'), meta('v-new'));
  say({ error: 'the write completed: the crash did not happen' });
} else {
  process.stderr.write(`unknown mode ${String(mode)}\n`);
  process.exit(2);
}
