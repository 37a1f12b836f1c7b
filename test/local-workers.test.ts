/** The head keeps exactly N local workers: a SIGKILLed one is replaced once, not once per way its death was seen. */
import { afterAll, describe, expect, it } from 'vitest';
import type { Head } from '@shoal/head';
import { isAlive, startCluster, waitFor } from './helpers.ts';

let head: Head | undefined;
afterAll(async () => { await head?.stop(); });

describe('local workers', () => {
  it('replaces a SIGKILLed local worker with exactly one new process', async () => {
    head = await startCluster({ workers: 1 });
    const [victim] = head.localWorkerPids();
    expect(victim).toBeDefined();
    process.kill(victim!, 'SIGKILL');
    await waitFor('a replacement to join', () => head!.controller.aliveWorkers().some((w) => w.pid !== victim), 20_000);
    // Long enough for a second, duplicate replacement (spawned 500 ms after an exit) to have joined too.
    await new Promise((r) => setTimeout(r, 2500));
    const pids = head.localWorkerPids();
    expect(pids).toHaveLength(1);
    expect(pids[0]).not.toBe(victim);
    expect(isAlive(victim!)).toBe(false);
    expect(head.controller.aliveWorkers().map((w) => w.pid)).toEqual(pids);
  }, 60_000);
});
