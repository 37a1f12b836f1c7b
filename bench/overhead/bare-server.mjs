// The baseline: a bare Node http server answering the same JSON as the no-op shoal app.
import { createServer } from 'node:http';
const body = Buffer.from(JSON.stringify({ ok: true }));
const server = createServer((req, res) => {
  req.resume();
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
  res.end(body);
});
server.listen(0, '127.0.0.1', () => process.stdout.write(`${server.address().port}\n`));
process.on('SIGTERM', () => process.exit(0));
