/**
 * Integration: user code that throws and returns what no error handler expects never takes its worker down. Real
 * head, two real worker processes; the fixture (test/fixtures/hostile-app.ts) places Caller and Hostile on
 * different workers, so calls between them cross processes and their replies are encoded.
 */
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger, type AppSpec, type Logger } from '@shoal/core';
import type { Head } from '@shoal/head';
import type { Caller, Hostile } from './fixtures/hostile-app.ts';
import { deployFixture, handleFor, isAlive, startCluster, waitFor } from './helpers.ts';

const HOSTILE_APP = resolve(import.meta.dirname, 'fixtures/hostile-app.ts');

let head: Head;
let spec: AppSpec;
let pids: number[];
/** What the head logged at warn and above, each line with its fields as text. */
const headLog: string[] = [];

function recording(): Logger {
  const at = (msg: string, fields?: Record<string, unknown>): void => { headLog.push(`${msg} ${JSON.stringify(fields ?? {})}`); };
  return { ...silentLogger, warn: at, error: at, child: () => recording() };
}

beforeAll(async () => {
  head = await startCluster({ workers: 2, logger: recording() });
  pids = head.localWorkerPids();
  spec = await deployFixture(head, { module: HOSTILE_APP, name: 'hostile', routePrefix: '/hostile' });
});
afterAll(async () => { await head?.stop(); });

const hostile = (): ReturnType<typeof handleFor<Hostile>> => handleFor<Hostile>(head, spec, 'Hostile');
const caller = (): ReturnType<typeof handleFor<Caller>> => handleFor<Caller>(head, spec, 'Caller');

function replicasOf(deployment: string): Array<{ replicaId: string; workerId: string; state: string }> {
  return head.controller.status().replicas.filter((r) => r.app === 'hostile' && r.deployment === deployment);
}

/** Both worker processes are the ones the cluster started with, and both still serve. */
async function workersUnharmed(): Promise<void> {
  expect(head.localWorkerPids().sort()).toEqual([...pids].sort());
  for (const pid of pids) expect(isAlive(pid)).toBe(true);
  expect(pids).toContain((await hostile().ping()).pid);
  expect(pids).toContain((await caller().ping()).pid);
  expect(pids).toContain((await caller().pingHostile()).pid);
}

describe('hostile user code', () => {
  it('places Caller and Hostile on different workers', () => {
    const [c] = replicasOf('Caller');
    const [h] = replicasOf('Hostile');
    expect(c?.workerId).toBeDefined();
    expect(c?.workerId).not.toBe(h?.workerId);
  });

  it('a return value msgpack cannot encode fails that call with ERR_ENCODE, across workers and to the head', async () => {
    const across = await caller().cycleViaHostile();
    expect(across).toMatchObject({ ok: false, code: 'ERR_ENCODE', name: 'ProtocolError' });
    await expect(hostile().cycle()).rejects.toMatchObject({ code: 'ERR_ENCODE' });
    await workersUnharmed();
  });

  it('a promise rejected with no handler, and an exception thrown from a timer, are logged and the worker goes on', async () => {
    expect(await hostile().floatingRejection()).toBe('returned');
    expect(await hostile().uncaught()).toBe('returned');
    await new Promise((r) => setTimeout(r, 300)); // past the rejection and the timer
    await workersUnharmed();
  });

  it('replicas do not inherit the cluster token from the environment', async () => {
    expect(await hostile().token()).toEqual({ present: false, value: null });
  });

  it('a null-prototype object thrown from checkHealth() replaces the replica; shutdown() throwing undefined does not end the worker', async () => {
    const [before] = replicasOf('Hostile');
    await hostile().makeSick();
    await waitFor('the sick replica to be replaced', () => {
      const now = replicasOf('Hostile');
      return now.length === 1 && now[0]!.replicaId !== before!.replicaId && now[0]!.state === 'RUNNING';
    }, 20_000);
    // The head learnt why, described: not "[object Object]", not a TypeError from describing it.
    expect(headLog.some((l) => l.includes(before!.replicaId) && l.includes('[Object: null prototype] { health: \\"bad\\" }'))).toBe(true);
    await workersUnharmed();
  });

  it('a null-prototype object thrown from reconfigure() fails that reconfigure only', async () => {
    const count = await hostile().reconfigureCount();
    const next = JSON.parse(JSON.stringify(spec)) as AppSpec;
    next.deployments.find((d) => d.name === 'Hostile')!.options.userConfig = { mode: 'throw' };
    await head.deploy(next);
    await waitFor('the reconfigure to reach the replica', async () => (await hostile().reconfigureCount()) > count, 10_000);
    await waitFor('the head to log the refusal, described', () => headLog.some((l) => l.includes('[Object: null prototype] { config: \\"refused\\" }')), 5000);
    await workersUnharmed();
  });
});
