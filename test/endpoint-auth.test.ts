/**
 * Integration: the cluster port and a worker's data port check the token at the HTTP upgrade (401, no WebSocket)
 * and cap the sockets that have not authenticated, so a flood of idle connections does not keep a real worker out.
 * The worker here is a real process that reads its token from --token-file.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect as tcpConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Head } from '@shoal/head';
import { localWorkerCommand } from '../packages/cli/src/main.ts';
import { startCluster, waitFor } from './helpers.ts';

let head: Head;
const children: ChildProcess[] = [];
const sockets: Socket[] = [];

beforeAll(async () => {
  head = await startCluster({ workers: 0 });
});
afterAll(async () => {
  for (const s of sockets) s.destroy();
  for (const c of children) c.kill('SIGTERM');
  await head?.stop();
});

function hostPort(address: string): { host: string; port: number } {
  const u = new URL(address.replace(/^ws/, 'http'));
  return { host: u.hostname, port: Number(u.port) };
}

/** The status of a WebSocket upgrade request carrying `headers`; 101 if it was upgraded. */
function upgradeStatus(address: string, headers: Record<string, string>): Promise<number> {
  const { host, port } = hostPort(address);
  return new Promise((resolve, reject) => {
    const req = request({ host, port, headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', ...headers } });
    req.on('upgrade', (res, socket) => { socket.destroy(); resolve(res.statusCode ?? 0); });
    req.on('response', (res) => { res.resume(); resolve(res.statusCode ?? 0); });
    req.on('error', reject);
    req.end();
  });
}

async function flood(address: string, n: number): Promise<Socket[]> {
  const { host, port } = hostPort(address);
  return Promise.all(Array.from({ length: n }, () => new Promise<Socket>((resolve) => {
    const s = tcpConnect(port, host);
    sockets.push(s);
    s.on('error', () => undefined);
    s.once('connect', () => resolve(s));
    s.once('close', () => resolve(s)); // shed before it connected, from the client's side
  })));
}

/** A worker process as an operator starts one: its token in a file, not in argv or the environment. */
function spawnWorker(tokenFile: string): ChildProcess {
  const { command, args } = localWorkerCommand();
  const env = { ...process.env };
  delete env.SHOAL_TOKEN;
  const child = spawn(command, [...args, '--address', head.clusterAddress, '--token-file', tokenFile, '--cpus', '2'], { env: { ...env, SHOAL_LOG_LEVEL: 'warn' }, stdio: ['ignore', 'inherit', 'inherit'] });
  children.push(child);
  return child;
}

describe('endpoint authentication', () => {
  it('the cluster port answers an upgrade without the token with 401 and upgrades one with it', async () => {
    expect(await upgradeStatus(head.clusterAddress, {})).toBe(401);
    expect(await upgradeStatus(head.clusterAddress, { authorization: 'Bearer wrong' })).toBe(401);
    expect(await upgradeStatus(head.clusterAddress, { authorization: `Bearer ${head.token}` })).toBe(101);
  });

  it('200 idle connections to the cluster port do not stop a real worker (token from --token-file) from joining', async () => {
    const idle = await flood(head.clusterAddress, 200);
    // The head keeps at most 64 of them; it closes the rest, oldest first.
    await waitFor('the head to shed the flood', () => idle.filter((s) => s.destroyed || s.readableEnded).length >= 200 - 64, 5000);
    const dir = mkdtempSync(join(tmpdir(), 'shoal-token-'));
    const tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, `${head.token}\n`, { mode: 0o600 });
    spawnWorker(tokenFile);
    await head.waitForWorkers(1, 30_000);
  });

  it('a worker\'s data port refuses an upgrade without the token with 401', async () => {
    const worker = head.controller.aliveWorkers()[0]!;
    expect(await upgradeStatus(worker.dataAddress, {})).toBe(401);
    expect(await upgradeStatus(worker.dataAddress, { authorization: 'Bearer wrong' })).toBe(401);
    expect(await upgradeStatus(worker.dataAddress, { authorization: `Bearer ${head.token}` })).toBe(101);
  });
});
