// Entry of an ORT worker thread when shoal runs from TypeScript sources (tests, `tsx`): Node 20 cannot load
// .ts files in a worker by itself, and --import in a worker's execArgv races the entry module, so register
// tsx's hooks here first, then import the real entry. Compiled builds (dist/*.js) start ort-thread.js directly.
import { register } from 'tsx/esm/api';
import { workerData } from 'node:worker_threads';

register();
await import(workerData.entry);
