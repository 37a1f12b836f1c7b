// The baseline a user writes first: one onnxruntime session with its default options, run on the main thread
// inside the HTTP handler, so requests go one at a time. Body: the raw float32 input (rows of `itemDims`);
// answer: the first output's raw bytes. GET /stats reports (and resets) this process's event-loop delay.
//   node naive-server.mjs '{"model": "...", "input": "x", "itemDims": [2048]}'   -> prints its port
import { createServer } from 'node:http';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import * as ort from 'onnxruntime-node';

const cfg = JSON.parse(process.argv[2]);
const itemSize = cfg.itemDims.reduce((a, b) => a * b, 1);
const session = await ort.InferenceSession.create(cfg.model);
const delay = monitorEventLoopDelay({ resolution: 10 });
delay.enable();

const server = createServer(async (req, res) => {
  if (req.method === 'GET' && req.url === '/stats') {
    const body = JSON.stringify({ eventLoopDelayP99Ms: delay.percentile(99) / 1e6, eventLoopDelayMaxMs: delay.max / 1e6 });
    delay.reset();
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
    return;
  }
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const buf = Buffer.concat(chunks);
  const rows = buf.byteLength / (itemSize * 4);
  if (!Number.isInteger(rows) || rows < 1) {
    res.writeHead(400).end(`body must be whole rows of ${itemSize} float32 values`);
    return;
  }
  // Copy into an aligned array (a Buffer may start at any offset of Node's pool).
  const data = new Float32Array(rows * itemSize);
  new Uint8Array(data.buffer).set(buf);
  const out = await session.run({ [cfg.input]: new ort.Tensor('float32', data, [rows, ...cfg.itemDims]) });
  const first = out[session.outputNames[0]];
  const bytes = Buffer.from(first.data.buffer, first.data.byteOffset, first.data.byteLength);
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': bytes.byteLength, 'x-dims': first.dims.join(',') }).end(bytes);
});
server.keepAliveTimeout = 65_000;
server.listen(0, '127.0.0.1', () => process.stdout.write(`${server.address().port}\n`));
process.on('SIGTERM', () => process.exit(0));
