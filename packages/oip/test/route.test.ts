/** kserveRoute on a real node:http server on 127.0.0.1 port 0: chunked binary responses arrive whole. */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { createKServeHandler, fixedModelRegistry, kserveRoute } from '../src/index.ts';

let server: Server;
let base: string;

beforeAll(async () => {
  const registry = fixedModelRegistry([{
    name: 'echo',
    metadata: () => ({ inputs: [{ name: 'x', type: 'float32', shape: ['n'] }], outputs: [{ name: 'y', type: 'float32', shape: ['n'] }, { name: 'z', type: 'float32', shape: ['n'] }] }),
    infer: async (f) => ({ y: f.x!, z: { type: 'float32', dims: f.x!.dims, data: (f.x!.data as Float32Array).map((v) => -v) } }),
  }]);
  const route = kserveRoute(createKServeHandler(registry), { maxBodyBytes: 4096 });
  server = createServer((req, res) => { if (!route(req, res)) res.writeHead(404).end(); });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

test('a binary response written as chunks has the right content-length and bytes', async () => {
  const header = Buffer.from(JSON.stringify({ inputs: [{ name: 'x', shape: [3], datatype: 'FP32', parameters: { binary_data_size: 12 } }], parameters: { binary_data_output: true } }));
  const res = await fetch(`${base}/v2/models/echo/infer`, {
    method: 'POST', body: Buffer.concat([header, Buffer.from(Float32Array.of(1, 2, 3).buffer)]),
    headers: { 'inference-header-content-length': String(header.byteLength) },
  });
  expect(res.status).toBe(200);
  const body = Buffer.from(await res.arrayBuffer());
  const hl = Number(res.headers.get('inference-header-content-length'));
  expect(Number(res.headers.get('content-length'))).toBe(body.byteLength);
  expect(body.byteLength).toBe(hl + 24);
  const floats = new Float32Array(new Uint8Array(body.subarray(hl)).buffer);
  expect(Array.from(floats)).toEqual([1, 2, 3, -1, -2, -3]);
});

test('a bad request is a JSON 400; a body past maxBodyBytes a 413', async () => {
  const bad = await fetch(`${base}/v2/models/echo/infer`, { method: 'POST', body: JSON.stringify({ inputs: [{ name: 'x', shape: [2], datatype: 'FP32', data: [1, 'NaN'] }] }) });
  expect(bad.status).toBe(400);
  expect((await bad.json() as { error: string }).error).toMatch(/^input "x" of model "echo": data\[1\] must be a finite number/);
  const big = await fetch(`${base}/v2/models/echo/infer`, { method: 'POST', body: Buffer.alloc(5000) });
  expect(big.status).toBe(413);
});
