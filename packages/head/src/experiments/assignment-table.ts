/**
 * Which variant each request was assigned, kept from its assignment until its outcome arrives, so an outcome
 * reported by request id is counted for the right variant, and once. Bounded two ways: at most `maxEntries`
 * (the oldest forgotten first) and each for `ttlMs` of wall time.
 *
 *   const table = new AssignmentTable(1_000_000, 7 * 86_400_000);
 *   table.add('req-1', 0, clock.wallNow());          // variant 0, assigned now
 *   const found = table.lookup('req-1', clock.wallNow());   // { kind: 'found', entry } | { kind: 'expired', ... } | { kind: 'unknown' }
 *
 * A Map in insertion order: the oldest entry is the first, so both eviction and expiry drop from the front, O(1)
 * amortised. Expired entries are swept at most once per SWEEP_INTERVAL_MS of the times given (a lookup checks
 * its own entry's age, so the sweep only frees memory sooner). An entry costs about 100 bytes beside its id string.
 */

/** Shortest wall time between two sweeps of expired entries. */
export const SWEEP_INTERVAL_MS = 1000;

export interface AssignmentEntry {
  /** Index of the variant in the experiment's list. */
  readonly variant: number;
  /** Wall ms of the assignment. */
  readonly at: number;
  /** Whether an outcome was counted for it (a second one is refused). */
  outcome: boolean;
}

export type AssignmentLookup =
  | { readonly kind: 'found'; readonly entry: AssignmentEntry }
  | { readonly kind: 'expired'; readonly entry: AssignmentEntry }
  | { readonly kind: 'unknown' };

export class AssignmentTable {
  private readonly entries = new Map<string, AssignmentEntry>();
  private nextSweepAt = Number.NEGATIVE_INFINITY;
  /** Entries forgotten because the table was full. */
  evicted = 0;
  /** Entries dropped because their ttl passed. */
  expired = 0;

  constructor(readonly maxEntries: number, readonly ttlMs: number) {}

  get size(): number {
    return this.entries.size;
  }

  /**
   * Adds an assignment made at `at` (wall ms, perhaps another process's); false (and nothing changes) when the id
   * is already there. `now` is this process's wall time, for the sweep. @default at
   */
  add(requestId: string, variant: number, at: number, now = at): boolean {
    this.sweep(now);
    if (this.entries.has(requestId)) return false;
    this.entries.set(requestId, { variant, at, outcome: false });
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
      this.evicted += 1;
    }
    return true;
  }

  /** The entry of an id, or why there is none; an entry past its ttl reads as expired (and is dropped). */
  lookup(requestId: string, now: number): AssignmentLookup {
    // Looked up before the sweep, so an id that has just expired says so rather than reading as unknown.
    const entry = this.entries.get(requestId);
    if (entry !== undefined && now - entry.at > this.ttlMs) {
      this.entries.delete(requestId);
      this.expired += 1;
      this.sweep(now);
      return { kind: 'expired', entry };
    }
    this.sweep(now);
    return entry === undefined ? { kind: 'unknown' } : { kind: 'found', entry };
  }

  /**
   * Drops expired entries from the front. Assignments stamped out of order (an `at` from another process) can
   * leave an expired one behind a live one; lookup checks each entry's own age, so that one is still refused.
   */
  private sweep(now: number): void {
    if (now < this.nextSweepAt) return;
    this.nextSweepAt = now + SWEEP_INTERVAL_MS;
    for (const [id, entry] of this.entries) {
      if (now - entry.at <= this.ttlMs) return;
      this.entries.delete(id);
      this.expired += 1;
    }
  }
}
