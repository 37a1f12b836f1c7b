// What a skilled user writes instead of shoal: node:http on the main thread, a batcher that flushes when it holds
// `maxBatch` items or `maxWaitMs` after the first item queued, and one onnxruntime session on ONE worker_thread
// (`intraOp` intra-op threads, default the core count) that runs the batches one after another. Each batch is
// copied into one stacked Float32Array (transferred to the worker, not cloned) and its first output split along
// dim 0. ORT's other session options stay at their defaults, as most users leave them (its intra-op threads spin
// while they wait; shoal turns that off by default). Same wire format as naive-server.mjs: the body is raw float32
// rows of `itemDims`, the answer the first output's raw bytes; GET /stats reports (and resets) the main thread's
// event-loop delay.
//   node hand-written-server.mjs '{"model": "...", "input": "x", "itemDims": [2048], "maxBatch": 128, "maxWaitMs": 2}'
//   -> prints its port
import { once } from 'node:events';
import { createServer } from 'node:http';
import { availableParallelism } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';

if (!isMainThread) {
  const ort = await import('onnxruntime-node');
  const { model, input, itemDims, intraOp } = workerData;
  const session = await ort.InferenceSession.create(model, { intraOpNumThreads: intraOp, interOpNumThreads: 1 });
  let chain = Promise.resolve();
  parentPort.on('message', ({ id, data, rows }) => {
    // One run at a time: concurrent runs would only fight over the same intra-op threads.
    chain = chain.then(async () => {
      try {
        const out = (await session.run({ [input]: new ort.Tensor('float32', data, [rows, ...itemDims]) }))[session.outputNames[0]];
        parentPort.postMessage({ id, data: out.data, dims: out.dims }, [out.data.buffer]);
      } catch (err) {
        parentPort.postMessage({ id, error: String(err?.message ?? err) });
      }
    });
  });
  parentPort.postMessage('ready');
} else {
  const cfg = JSON.parse(process.argv[2]);
  const itemBytes = cfg.itemDims.reduce((a, b) => a * b, 1) * 4;
  const maxBatch = cfg.maxBatch ?? 128;
  const maxWaitMs = cfg.maxWaitMs ?? 2;
  const worker = new Worker(new URL(import.meta.url), { workerData: { ...cfg, intraOp: cfg.intraOp ?? availableParallelism() } });
  await once(worker, 'message'); // 'ready', or throws the worker's start-up error
  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();

  const inFlight = new Map(); // batch id -> [{ rows, body, res }]
  let nextId = 0;
  let queue = [];
  let queuedRows = 0;
  let timer;
  const fail = (entries, status, why) => { for (const e of entries) e.res.writeHead(status).end(why); };

  function enqueue(entry) {
    queue.push(entry);
    queuedRows += entry.rows;
    if (queuedRows >= maxBatch) flush();
    else timer ??= setTimeout(flush, maxWaitMs);
  }

  function flush() {
    clearTimeout(timer);
    timer = undefined;
    let rows = 0;
    let n = 0;
    while (n < queue.length && (n === 0 || rows + queue[n].rows <= maxBatch)) rows += queue[n++].rows;
    const batch = queue.slice(0, n);
    queue = queue.slice(n);
    queuedRows -= rows;
    const data = new Float32Array((rows * itemBytes) / 4);
    const bytes = new Uint8Array(data.buffer);
    let offset = 0;
    for (const e of batch) { bytes.set(e.body, offset); offset += e.body.byteLength; }
    const id = nextId++;
    inFlight.set(id, batch);
    worker.postMessage({ id, data, rows }, [data.buffer]);
    if (queuedRows >= maxBatch) flush();
    else if (queue.length > 0) timer = setTimeout(flush, maxWaitMs);
  }

  worker.on('message', ({ id, data, dims, error }) => {
    const batch = inFlight.get(id);
    inFlight.delete(id);
    if (error !== undefined) { fail(batch, 500, error); return; }
    const out = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    const rowBytes = out.byteLength / dims[0];
    let offset = 0;
    for (const e of batch) {
      const part = out.subarray(offset, offset + e.rows * rowBytes);
      offset += part.byteLength;
      e.res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': part.byteLength, 'x-dims': [e.rows, ...dims.slice(1)].join(',') }).end(part);
    }
  });
  // No request may hang on a dead worker: answer everything it held, then exit.
  worker.on('exit', (code) => {
    for (const batch of inFlight.values()) fail(batch, 500, `inference worker exited with code ${code}`);
    fail(queue, 500, `inference worker exited with code ${code}`);
    process.exit(1);
  });

  const server = createServer(async (req, res) => {
    if (req.method === 'GET' && req.url === '/stats') {
      const body = JSON.stringify({ eventLoopDelayP99Ms: delay.percentile(99) / 1e6, eventLoopDelayMaxMs: delay.max / 1e6 });
      delay.reset();
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
      return;
    }
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const body = Buffer.concat(chunks);
    const rows = body.byteLength / itemBytes;
    if (!Number.isInteger(rows) || rows < 1) {
      res.writeHead(400).end(`body must be whole rows of ${itemBytes / 4} float32 values`);
      return;
    }
    enqueue({ rows, body, res });
  });
  server.keepAliveTimeout = 65_000;
  server.listen(0, '127.0.0.1', () => process.stdout.write(`${server.address().port}\n`));
  process.on('SIGTERM', () => process.exit(0));
}
