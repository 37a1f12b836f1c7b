/**
 * A throwaway Debian redis-server for tests: its own free port on 127.0.0.1, no persistence. The test keeps the
 * child's pid and stops only that process. freePort and startServer serve other throwaway servers too
 * (packages/broker/test/servers.ts starts nats-server with them).
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

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr !== null ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/** Spawns `command` and resolves once its stdout or stderr shows `ready`; `cleanup` runs if it exits. */
function startOnce(command: string, args: string[], ready: string, port: number, cleanup: () => void): Promise<ChildProcess> {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`${command} on port ${port} not ready after 10 s:\n${out}`)); }, 10_000);
    const onData = (chunk: Buffer): void => {
      out += chunk.toString();
      if (out.includes(ready)) {
        clearTimeout(timer);
        child.stdout?.off('data', onData); child.stderr?.off('data', onData);
        child.stdout?.resume(); child.stderr?.resume();
        resolve(child);
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code, signal) => { cleanup(); clearTimeout(timer); reject(new Error(`${command} on port ${port} exited (code ${code}, signal ${signal}):\n${out}`)); });
  });
}

export interface ServerSpec {
  /** The URL scheme: `redis` gives redis://127.0.0.1:PORT. */
  scheme: string;
  command: string;
  /** What the server prints once it accepts connections. */
  ready: string;
  /** The command's arguments for `port`, with the cleanup of anything made for them (a data folder). */
  args(port: number): { args: string[]; cleanup?: () => void };
}

/** Starts a server on a free port of 127.0.0.1 (retrying if another process takes the port first). */
export async function startServer(spec: ServerSpec): Promise<RedisServer> {
  let last: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const { args, cleanup = () => undefined } = spec.args(port);
    try {
      const child = await startOnce(spec.command, args, spec.ready, port, cleanup);
      const pid = child.pid!;
      return {
        url: `${spec.scheme}://127.0.0.1:${port}`,
        port,
        pid,
        stop: () => new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) { resolve(); return; }
          child.once('exit', () => { cleanup(); resolve(); });
          process.kill(pid, 'SIGKILL');
        }),
      };
    } catch (err) {
      cleanup();
      last = err;
    }
  }
  throw last;
}

/** Starts redis-server on a free port, without persistence. */
export function startRedisServer(): Promise<RedisServer> {
  return startServer({
    scheme: 'redis',
    command: 'redis-server',
    ready: 'Ready to accept connections',
    args: (port) => ({ args: ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'] }),
  });
}
