/**
 * A batch run in its own process, for batch-resume.test.ts to kill with SIGKILL: `node --import tsx batch-child.ts
 * IN OUT`. Each line (a number) is answered with its double after a short random wait, many in flight.
 */
import { runBatch } from '../src/batch/run-batch.ts';

const [input, output] = process.argv.slice(2);
const r = await runBatch({
  input: input!, output: output!, concurrency: 32, checkpointEveryItems: 50, checkpointEveryMs: 20,
  call: async (x) => { await new Promise((res) => setTimeout(res, Math.random() * 4)); return (x as number) * 2; },
});
process.stdout.write(`${JSON.stringify(r)}\n`);
