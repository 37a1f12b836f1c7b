/**
 * A head process holding a file store, for file-lock-takeover.test.ts (run with `node --import tsx`):
 *   hold <dir>   opens a FileStateStore on dir, prints {"ready":pid}, and holds it (refreshing the lock) until killed
 */
import { silentLogger } from '@shoal/core';
import { FileStateStore } from '../src/state/index.ts';

const [mode, dir] = process.argv.slice(2);
if (mode !== 'hold' || dir === undefined) {
  process.stderr.write(`usage: file-lock-child.ts hold DIR (got ${process.argv.slice(2).join(' ')})\n`);
  process.exit(2);
}
const store = new FileStateStore(dir, { logger: silentLogger });
await store.open();
process.stdout.write(`${JSON.stringify({ ready: process.pid })}\n`);
setInterval(() => undefined, 60_000);
