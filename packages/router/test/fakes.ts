/** A Transport that holds every dispatched request until the test answers it, and counts cancels. */
import { FakeClock, seededRandom, silentLogger, toWireError, type WireError } from '@shoal/core';
import type { NewRequest, ReplyMessage, RouteEntry, RouteTable } from '@shoal/protocol';
import { Router, type Dispatch, type ReplicaRef, type RouterOptions, type Transport } from '../src/index.ts';

export interface Sent {
  replica: ReplicaRef;
  message: NewRequest;
  cancels: number;
  /** Answers with a value and, optionally, the replica's load after answering. */
  answer(value: unknown, q?: number): void;
  answerError(err: unknown, q?: number): void;
  /** The connection to the replica's worker broke (the transport rejects). */
  die(err: Error): void;
}

export class FakeTransport implements Transport {
  readonly sent: Sent[] = [];

  dispatch(replica: ReplicaRef, message: NewRequest): Dispatch {
    let resolve!: (r: ReplyMessage) => void;
    let reject!: (e: Error) => void;
    const reply = new Promise<ReplyMessage>((res, rej) => { resolve = res; reject = rej; });
    const entry: Sent = {
      replica, message, cancels: 0,
      answer: (value, q) => resolve(q === undefined ? { t: 'reply', id: 0, ok: true, value } : { t: 'reply', id: 0, ok: true, value, q }),
      answerError: (err, q) => {
        const error: WireError = toWireError(err);
        resolve(q === undefined ? { t: 'reply', id: 0, ok: false, error } : { t: 'reply', id: 0, ok: false, error, q });
      },
      die: (err) => reject(err),
    };
    this.sent.push(entry);
    return { reply, cancel: () => { entry.cancels++; } };
  }

  /** Requests sent to one replica. */
  to(replicaId: string): Sent[] {
    return this.sent.filter((s) => s.replica.replicaId === replicaId);
  }

  get totalCancels(): number {
    return this.sent.reduce((n, s) => n + s.cancels, 0);
  }
}

/** A seeded generator (mulberry32), so statistical tests are repeatable. */
export const seeded = seededRandom;

export function entry(replicas: Array<[replicaId: string, workerId: string]>, limits: Partial<Omit<RouteEntry, 'replicas'>> = {}): RouteEntry {
  return {
    maxOngoingRequests: 100, maxQueuedRequests: 1000, requestTimeoutMs: 0, ...limits,
    replicas: replicas.map(([replicaId, workerId]) => ({ replicaId, workerId, dataAddress: `ws://${workerId}` })),
  };
}

export interface Rig {
  router: Router;
  transport: FakeTransport;
  clock: FakeClock;
  /** Publishes a route table with the next version. */
  routes(table: RouteTable): void;
}

/** A router over a fake transport, whose deadlines and timers all run on one FakeClock. */
export function rig(opts: Partial<RouterOptions> = {}): Rig {
  const clock = new FakeClock();
  const transport = new FakeTransport();
  const router = new Router({ transport, clock, logger: silentLogger, noReplicaTimeoutMs: 5000, random: seeded(1), ...opts });
  let version = 0;
  return { router, transport, clock, routes: (table) => router.updateRoutes(table, ++version) };
}

/** Lets every promise continuation that is ready run. */
export async function flush(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

export type Outcome = { ok: true; value: unknown } | { ok: false; error: Error };

/** Tracks a promise without awaiting it: `outcome` is set once it settles. */
export function track(p: Promise<unknown>): { outcome: Outcome | undefined } {
  const t: { outcome: Outcome | undefined } = { outcome: undefined };
  p.then((value) => { t.outcome = { ok: true, value }; }, (error: Error) => { t.outcome = { ok: false, error }; });
  return t;
}

export function errorOf(t: { outcome: Outcome | undefined }): Error {
  if (t.outcome === undefined) throw new Error('still pending');
  if (t.outcome.ok) throw new Error(`resolved with ${JSON.stringify(t.outcome.value)}`);
  return t.outcome.error;
}
