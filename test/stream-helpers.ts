/** What the streaming integration tests share: reading a fixture app's counters, and waiting for them to settle. */
import { expect } from 'vitest';
import { waitFor } from './helpers.ts';

import type { Counts } from './fixtures/stream-common.ts';

export type { Counts };

/** GET `url` (a fixture app's /stats), which must answer 200 with JSON. */
export async function statsAt<T>(url: string): Promise<T> {
  const res = await fetch(url);
  expect(res.status).toBe(200);
  return await res.json() as T;
}

/** Waits until `read` gives the same value `times` polls in a row, and returns it. */
export async function steady(read: () => Promise<number>, times = 5): Promise<number> {
  let last = await read();
  let same = 0;
  await waitFor('a steady value', async () => {
    await new Promise((r) => setTimeout(r, 150));
    const v = await read();
    same = v === last ? same + 1 : 0;
    last = v;
    return same >= times;
  }, 30_000);
  return last;
}

type Both<K extends string> = Record<K | 'model', Counts>;

/**
 * After a relayed stream was cancelled: waits until the ingress deployment `ingress` and Model both ran their
 * finally blocks since `before`, checks that both saw their request aborted, and that Model produces nothing more.
 */
export async function expectRelayCancelled<K extends string>(stats: () => Promise<Both<K>>, ingress: K, before: Both<K>): Promise<void> {
  await waitFor('both generators ended', async () => {
    const s = await stats();
    return s[ingress].finished > before[ingress].finished && s.model.finished > before.model.finished;
  });
  const after = await stats();
  expect(after[ingress].aborted).toBeGreaterThan(before[ingress].aborted);
  expect(after.model.aborted).toBeGreaterThan(before.model.aborted);
  // And nothing is produced any more.
  const produced = after.model.produced;
  await new Promise((r) => setTimeout(r, 300));
  expect((await stats()).model.produced).toBe(produced);
}
