/**
 * A throwaway Debian redis-server for tests: its own free port on 127.0.0.1, no persistence. The test keeps the
 * child's pid and stops only that process.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';

export interface RedisServer {
  url: string;
  port: number;
  pid: number;
  stop(): Promise<void>;
}

export function redisServerAvailable(): boolean {
  return spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).error === undefined;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr !== null ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

function startOnce(port: number): Promise<ChildProcess> {
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`redis-server on port ${port} not ready after 10 s:\n${out}`)); }, 10_000);
    const onData = (chunk: Buffer): void => {
      out += chunk.toString();
      if (out.includes('Ready to accept connections')) { clearTimeout(timer); child.stdout?.off('data', onData); child.stdout?.resume(); resolve(child); }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', (c: Buffer) => { out += c.toString(); });
    child.once('exit', (code, signal) => { clearTimeout(timer); reject(new Error(`redis-server on port ${port} exited (code ${code}, signal ${signal}):\n${out}`)); });
  });
}

/** Starts redis-server on a free port (retrying if another process takes the port first). */
export async function startRedisServer(): Promise<RedisServer> {
  let last: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    try {
      const child = await startOnce(port);
      const pid = child.pid!;
      return {
        url: `redis://127.0.0.1:${port}`,
        port,
        pid,
        stop: () => new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) { resolve(); return; }
          child.once('exit', () => resolve());
          process.kill(pid, 'SIGKILL');
        }),
      };
    } catch (err) {
      last = err;
    }
  }
  throw last;
}
