// The ceiling: raw onnxruntime-node in one process, no HTTP, no copies beyond ORT's own. For each intra-op thread
// count and batch size, run back to back for a fixed time and report items/s; the best is the ceiling. Every
// setting is measured `rounds` times, interleaved, and its best round kept, so a burst of load from another
// process during one round does not decide the choice.
//   node ceiling.mjs '{"model": "...", "input": "x", "itemDims": [2048], "batches": [1, 8], "threads": [1, 2], "seconds": 1, "rounds": 2}'
import * as ort from 'onnxruntime-node';

const cfg = JSON.parse(process.argv[2]);
const itemSize = cfg.itemDims.reduce((a, b) => a * b, 1);
const sessions = new Map();
for (const threads of cfg.threads) {
  sessions.set(threads, await ort.InferenceSession.create(cfg.model, { intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all' }));
}
const feedsOf = (batch) => {
  const data = new Float32Array(itemSize * batch);
  for (let i = 0; i < data.length; i++) data[i] = ((i * 7919) % 1000) / 1000 - 0.5;
  return { [cfg.input]: new ort.Tensor('float32', data, [batch, ...cfg.itemDims]) };
};
const best = new Map();
for (let round = 0; round < (cfg.rounds ?? 2); round++) {
  for (const [threads, session] of sessions) {
    for (const batch of cfg.batches) {
      const feeds = feedsOf(batch);
      for (let i = 0; i < 2; i++) await session.run(feeds); // warm-up
      let items = 0;
      const t0 = performance.now();
      const end = t0 + cfg.seconds * 1000;
      while (performance.now() < end) {
        await session.run(feeds);
        items += batch;
      }
      const s = (performance.now() - t0) / 1000;
      const key = `${threads}x${batch}`;
      const r = { threads, batch, itemsPerSec: items / s, msPerRun: (s * 1000 * batch) / items };
      if (!best.has(key) || best.get(key).itemsPerSec < r.itemsPerSec) best.set(key, r);
    }
  }
}
for (const s of sessions.values()) await s.release();
process.stdout.write(`${JSON.stringify([...best.values()])}\n`);
