/** What the streaming integration tests share: reading a fixture app's counters, and waiting for them to settle. */
import { expect } from 'vitest';
import { waitFor } from './helpers.ts';

export type { Counts } from './fixtures/stream-common.ts';

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
