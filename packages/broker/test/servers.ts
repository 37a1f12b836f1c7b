/**
 * Throwaway broker servers for tests: Debian's redis-server and nats-server (JetStream on, storage in a temp
 * folder), each on a free port of 127.0.0.1. A test keeps the child it started and stops only that process.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, type RedisServer } from '../../head/test/redis-server.ts';

export { freePort, startRedisServer } from '../../head/test/redis-server.ts';

export type TestServer = RedisServer;

export function available(command: 'redis-server' | 'nats-server'): boolean {
  return spawnSync(command, ['--version'], { stdio: 'ignore' }).error === undefined;
}

export const startNatsServer = (): Promise<TestServer> => startServer({
  scheme: 'nats',
  command: 'nats-server',
  ready: 'Server is ready',
  args: (port) => {
    const dir = mkdtempSync(join(tmpdir(), 'shoal-nats-'));
    return { args: ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', dir], cleanup: () => rmSync(dir, { recursive: true, force: true }) };
  },
});

// The broker clients, for tests outside this package (test/broker-*.test.ts), which resolve packages from the
// repository root where neither is a dependency.
export { Redis } from 'ioredis';
export { connect as connectNats, headers as natsHeaders, type JetStreamManager, type NatsConnection, type StoredMsg } from 'nats';
