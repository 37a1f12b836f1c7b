/**
 * Model load progress of a replica that is starting: user code reports bytes loaded of a total while its
 * constructor or init() runs, and the worker puts the latest report in its next heartbeat, where `shoal deploy`
 * shows it (the head's status lists it per STARTING replica).
 *
 *   import { reportLoadProgress } from '@shoal/core';
 *   class Big {
 *     async init() {
 *       for await (const chunk of stream) { received += chunk.length; reportLoadProgress(received, size); }
 *     }
 *   }
 *
 * Reports are cheap (one map write) and may come as often as the code likes; heartbeats sample the latest.
 */
import { requestContext } from './context.ts';

const KEY = Symbol.for('shoal.loadProgress');
const g = globalThis as unknown as Record<symbol, Map<string, [number, number]> | undefined>;
/** Latest report per replica id; one map per process even if two copies of this package are loaded. */
const latest: Map<string, [number, number]> = g[KEY] ??= new Map<string, [number, number]>();

/**
 * Reports that the running replica has loaded `bytesLoaded` of `bytesTotal` bytes of its model. Called outside a
 * replica (a unit test constructing the class directly) it does nothing. A report for a replica that is no longer
 * starting is kept until the worker clears it, and is not shown.
 */
export function reportLoadProgress(bytesLoaded: number, bytesTotal: number): void {
  if (typeof bytesLoaded !== 'number') throw new TypeError(`reportLoadProgress: bytesLoaded must be a number, got ${typeof bytesLoaded}`);
  if (typeof bytesTotal !== 'number') throw new TypeError(`reportLoadProgress: bytesTotal must be a number, got ${typeof bytesTotal}`);
  if (!Number.isFinite(bytesTotal) || bytesTotal < 0) throw new RangeError(`reportLoadProgress: bytesTotal must be a finite number >= 0, got ${bytesTotal}`);
  if (!Number.isFinite(bytesLoaded) || bytesLoaded < 0 || bytesLoaded > bytesTotal) {
    throw new RangeError(`reportLoadProgress: bytesLoaded must be between 0 and bytesTotal=${bytesTotal}, got ${bytesLoaded}`);
  }
  const ctx = requestContext();
  if (ctx === undefined) return;
  const cur = latest.get(ctx.replicaId);
  if (cur === undefined) latest.set(ctx.replicaId, [bytesLoaded, bytesTotal]);
  else { cur[0] = bytesLoaded; cur[1] = bytesTotal; }
}

/** The latest report of a replica, as [bytesLoaded, bytesTotal], or undefined; for the worker's heartbeat. */
export function loadProgressOf(replicaId: string): readonly [number, number] | undefined {
  return latest.get(replicaId);
}

/** Forgets a replica's reports (it left STARTING). */
export function clearLoadProgress(replicaId: string): void {
  latest.delete(replicaId);
}
