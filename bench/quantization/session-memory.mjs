// One model's onnxruntime session memory in a fresh process, so that no earlier model's freed pages are reused:
// resident memory after a small warm-up session (onnxruntime's own start-up: thread pools, allocators) and again
// after creating the model's session and running one batch through it.
//   node session-memory.mjs '{"model": "...", "warmupModel": "...", "warmupWidth": 16, "width": 2048, "rows": 128, "intraOp": 1}'
// Both models take one float32 input "x" of [rows, width]. Prints one JSON line: { baseMiB, loadedMiB, deltaMiB }.
import * as ort from 'onnxruntime-node';

const cfg = JSON.parse(process.argv[2]);
const mib = () => process.memoryUsage.rss() / 2 ** 20;
const feeds = (width) => ({ x: new ort.Tensor('float32', new Float32Array(width * cfg.rows).fill(0.5), [cfg.rows, width]) });
const opts = { intraOpNumThreads: cfg.intraOp, interOpNumThreads: 1 };

const warm = await ort.InferenceSession.create(cfg.warmupModel, opts);
await warm.run(feeds(cfg.warmupWidth));
const baseMiB = mib();
const session = await ort.InferenceSession.create(cfg.model, opts);
await session.run(feeds(cfg.width));
const loadedMiB = mib();
process.stdout.write(`${JSON.stringify({ baseMiB, loadedMiB, deltaMiB: loadedMiB - baseMiB })}\n`);
