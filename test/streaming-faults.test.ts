/**
 * Integration: a streamed answer whose worker dies. Before its first chunk, an idempotent streaming method is
 * retried on another replica and the caller sees only the retry's chunks; after its first chunk it is never retried:
 * the caller gets the chunk, then ERR_PEER_GONE. Two real worker processes, one Flaky replica on each; every run of
 * a generator is logged to a file, which is what the assertions count.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { streamMethodNames, type AppSpec, type Handle } from '@shoal/core';
import type { Head } from '@shoal/head';
import { createHandle } from '@shoal/router';
import { Flaky } from './fixtures/stream-app.ts';
import { deployFixture, startCluster, waitFor } from './helpers.ts';

const STREAM_APP = resolve(import.meta.dirname, 'fixtures/stream-app.ts');

let head: Head;
let spec: AppSpec;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'shoal-stream-faults-'));
  head = await startCluster({ workers: 2 });
  spec = await deployFixture(head, { module: STREAM_APP, exportName: 'flaky', name: 'flaky', routePrefix: '/flaky' });
});
afterAll(async () => {
  await head?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function flaky(): Handle<Flaky> {
  return createHandle({ router: head.router, key: 'flaky/Flaky', methods: spec.deployments[0]!.methods, streams: streamMethodNames(Flaky) }) as Handle<Flaky>;
}

const runs = (kind: string): string[] => readFileSync(join(dir, 'runs'), 'utf8').split('\n').filter((l) => l.startsWith(kind));

describe('streams and dying workers', () => {
  it('runs one Flaky replica on each worker', () => {
    const workers = head.controller.status().replicas.filter((r) => r.app === 'flaky').map((r) => r.workerId);
    expect(new Set(workers).size).toBe(2);
  });

  it('retries a stream whose worker died before its first chunk, on the other replica', async () => {
    const got: string[] = [];
    for await (const v of flaky().crashEarly(dir)) got.push(v);
    expect(got).toEqual(['after', 'retry']);
    const early = runs('early');
    expect(early.length).toBe(2);
    expect(early[0]).not.toBe(early[1]); // two processes
  });

  it('never retries after the first chunk: the caller gets it, then ERR_PEER_GONE', async () => {
    // The dead worker of the last test is being replaced: wait until both replicas run again.
    await waitFor('two Flaky replicas running again', () => head.router.replicaCount('flaky/Flaky') >= 2, 30_000);
    const got: string[] = [];
    const err = await (async () => { try { for await (const v of flaky().crashLate(dir)) got.push(v); } catch (e) { return e; } return undefined; })();
    expect(got).toEqual(['first']);
    expect(err).toMatchObject({ code: 'ERR_PEER_GONE' });
    // Give a retry, were there one, time to have started and logged its run.
    await new Promise((r) => setTimeout(r, 500));
    expect(runs('late').length).toBe(1);
  });
});
