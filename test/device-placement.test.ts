/**
 * Devices the head places a replica on reach that replica: start message -> worker -> replica context. One real
 * worker reports two host devices (SHOAL_TEST_HOST_DEVICES, read by the worker process this test spawns).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import type { Head } from '@shoal/head';
import { deployFixture, handleFor, startCluster } from './helpers.ts';

const APP = resolve(import.meta.dirname, 'fixtures/devices-app.ts');

type Placed = { devices(): Promise<{ constructed: number[] | null; request: number[] | null; pid: number }> };

let head: Head;
beforeAll(async () => {
  process.env.SHOAL_TEST_HOST_DEVICES = '2';
  head = await startCluster({ workers: 1 });
});
afterAll(async () => {
  delete process.env.SHOAL_TEST_HOST_DEVICES;
  await head?.stop();
});

describe('device placement reaches the replica', () => {
  it('the worker reports both host devices; a deployment that finds device 0 taken lands on device 1 and sees 1', async () => {
    const [worker] = head.controller.status().workers;
    expect(worker?.resources.devices.map((d) => [d.index, d.kind])).toEqual([[0, 'host'], [1, 'host']]);

    const first = await deployFixture(head, { module: APP, exportName: 'first', name: 'first', routePrefix: '/first' });
    const second = await deployFixture(head, { module: APP, exportName: 'second', name: 'second', routePrefix: '/second' });
    const placed = Object.fromEntries(head.controller.status().replicas.map((r) => [r.app, r.devices]));
    expect(placed).toEqual({ first: [0], second: [1] });

    const onFirst = await handleFor<Placed>(head, first, 'First').devices();
    const onSecond = await handleFor<Placed>(head, second, 'Second').devices();
    expect(onFirst).toMatchObject({ constructed: [0], request: [0] });
    expect(onSecond).toMatchObject({ constructed: [1], request: [1] });
    // Both on the one worker: the device, not the process, tells them apart.
    expect(onSecond.pid).toBe(onFirst.pid);
  });
});

describe('SHOAL_TEST_HOST_DEVICES', () => {
  it('a value that is not a positive integer stops the worker with the variable named', () => {
    const bin = resolve(import.meta.dirname, '../packages/cli/bin/shoal.mjs');
    const run = spawnSync(process.execPath, [bin, 'worker', '--address', 'ws://127.0.0.1:1', '--token', 'x'], {
      env: { ...process.env, SHOAL_TEST_HOST_DEVICES: '0', SHOAL_LOG_LEVEL: 'error' }, encoding: 'utf8', timeout: 30_000,
    });
    expect(run.status).toBe(1);
    expect(run.stderr).toContain('env SHOAL_TEST_HOST_DEVICES: must be an integer >= 1');
  });
});
