/**
 * Throwaway broker servers for tests: Debian's redis-server and nats-server (JetStream on, storage in a temp
 * folder), each on a free port of 127.0.0.1. A test keeps the child it started and stops only that process.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestServer {
  url: string;
  port: number;
  pid: number;
  stop(): Promise<void>;
}

export function available(command: 'redis-server' | 'nats-server'): boolean {
  return spawnSync(command, ['--version'], { stdio: 'ignore' }).error === undefined;
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

async function start(kind: 'redis' | 'nats'): Promise<TestServer> {
  let last: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const dir = kind === 'nats' ? mkdtempSync(join(tmpdir(), 'shoal-nats-')) : undefined;
    const cleanup = (): void => { if (dir !== undefined) rmSync(dir, { recursive: true, force: true }); };
    try {
      const child = kind === 'redis'
        ? await startOnce('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], 'Ready to accept connections', port, cleanup)
        : await startOnce('nats-server', ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', dir!], 'Server is ready', port, cleanup);
      const pid = child.pid!;
      return {
        url: `${kind}://127.0.0.1:${port}`,
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

export const startRedisServer = (): Promise<TestServer> => start('redis');
export const startNatsServer = (): Promise<TestServer> => start('nats');

// The broker clients, for tests outside this package (test/broker-*.test.ts), which resolve packages from the
// repository root where neither is a dependency.
export { Redis } from 'ioredis';
export { connect as connectNats, headers as natsHeaders, type JetStreamManager, type NatsConnection, type StoredMsg } from 'nats';
