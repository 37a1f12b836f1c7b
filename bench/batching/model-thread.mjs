// The synthetic model's "device": one thread that runs one batch at a time, blocking (not spinning) for
// fixedMs + n * perItemMs, like a call into an accelerator or a native kernel. The replica's event loop stays free.
import { parentPort } from 'node:worker_threads';

const cell = new Int32Array(new SharedArrayBuffer(4));
parentPort.on('message', ({ id, ms }) => {
  Atomics.wait(cell, 0, 0, ms);
  parentPort.postMessage(id);
});
