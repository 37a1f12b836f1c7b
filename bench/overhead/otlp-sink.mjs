// An OTLP/HTTP traces receiver for bench/overhead: takes every export, counts its spans (occurrences of
// "spanId" not preceded by "parent"), answers 200, and prints its totals as one JSON line on SIGUSR2.
import { createServer } from 'node:http';
const NEEDLE = Buffer.from('"spanId"');
let exportsCount = 0;
let spans = 0;
let bytes = 0;
const server = createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    bytes += body.length;
    exportsCount++;
    for (let i = body.indexOf(NEEDLE); i >= 0; i = body.indexOf(NEEDLE, i + NEEDLE.length)) spans++;
    res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
  });
});
server.listen(0, '127.0.0.1', () => process.stdout.write(`${server.address().port}\n`));
process.on('SIGUSR2', () => process.stdout.write(`${JSON.stringify({ exports: exportsCount, spans, bytes })}\n`));
process.on('SIGTERM', () => process.exit(0));
