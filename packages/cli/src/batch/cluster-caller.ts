/**
 * Calls a deployment of a running cluster from outside it, the way a worker's router does: the head is asked
 * only for the route table (GET /api/routes, then again every refreshMs, so replicas added or gone are seen),
 * and every call goes from a Router straight to the worker that hosts the chosen replica, over that worker's data
 * server, as a peer (hello role 'peer'). Power-of-two choices, retries of requests that never ran, the bounded
 * wait for a free replica and the cancellation of calls all come with the Router.
 */
import { Deadline, InvalidOptionError, PeerGoneError, createLogger, env, realClock, toWireError, type Logger, type TimerHandle } from '@shoal/core';
import { connectPeer, type NewRequest, type Peer } from '@shoal/protocol';
import { Router, type Dispatch, type ReplicaRef, type Transport } from '@shoal/router';
import { dispatchOverPeer } from '@shoal/worker';
import type { RoutesView } from '@shoal/head';
import { control } from '../control.ts';
import type { BatchCallContext } from './run-batch.ts';
import { BatchAbortError, BatchError } from './errors.ts';

export interface ClusterCallerOptions {
  /** The head: ws://HOST:PORT. */
  address: string;
  /** The cluster token. */
  token: string;
  /** `app/deployment`, or the deployment's name alone when one application has it. */
  deployment: string;
  /** The method every line is passed to. @default 'call' */
  method?: string;
  /** How often the route table is read again. @default 2000 */
  refreshMs?: number;
  /** The default concurrency (replicas x maxOngoingRequests) at most. @default 1024 */
  maxDefaultConcurrency?: number;
  /** Times one line is sent again after the cluster refused it as overloaded (ERR_QUEUE_FULL, ERR_BACKPRESSURE). @default 30 */
  maxOverloadRetries?: number;
  /** @default createLogger('batch') */
  logger?: Logger;
  /** Largest frame on a data connection. @default env SHOAL_MAX_FRAME_BYTES (64 MiB) */
  maxFrameBytes?: number;
}

/** How long a worker whose data connection closed stays out of the choices, unless a new table comes first. */
/** How often at most a run tells the head that its lines wait for a deployment with no replica. */
const DEMAND_EVERY_MS = 1000;
const QUARANTINE_MS = 1000;

/** Reaches replicas over data connections to their workers, one per worker, opened on first use. */
export class PeerTransport implements Transport {
  private readonly peers = new Map<string, Promise<Peer>>();
  private closed = false;

  constructor(private readonly opts: { token: string; name: string; maxFrameBytes: number; logger: Logger; onLost: (workerId: string) => void }) {}

  dispatch(replica: ReplicaRef, message: NewRequest): Dispatch {
    return dispatchOverPeer(this.peer(replica), replica, message);
  }

  private peer(replica: ReplicaRef): Promise<Peer> {
    const address = replica.dataAddress;
    let p = this.peers.get(address);
    if (p === undefined) {
      if (this.closed) return Promise.reject(new PeerGoneError('the batch client is closing'));
      p = connectPeer({
        address,
        name: `worker at ${address}`,
        hello: { token: this.opts.token, role: 'peer', name: this.opts.name },
        maxFrameBytes: this.opts.maxFrameBytes,
        logger: this.opts.logger,
        onMessage: () => undefined,
        onClose: () => {
          if (this.peers.get(address) === p) this.peers.delete(address);
          if (!this.closed) this.opts.onLost(replica.workerId);
        },
      }).then(({ peer }) => peer);
      this.peers.set(address, p);
      p.catch((err: unknown) => {
        if (this.peers.get(address) === p) this.peers.delete(address);
        this.opts.logger.warn('data connection failed', { address, error: toWireError(err).message });
      });
    }
    return p;
  }

  close(): void {
    this.closed = true;
    for (const p of this.peers.values()) p.then((peer) => peer.close(1000, 'batch done'), () => undefined);
    this.peers.clear();
  }
}

/** The deployment key `name` refers to in `view`: `app/deployment`, or a deployment name one application has. */
export function resolveDeployment(view: RoutesView, name: string): string {
  const keys = Object.keys(view.deployments).sort();
  if (name.includes('/')) {
    if (view.deployments[name] !== undefined) return name;
    throw new BatchError('ERR_BATCH_UNKNOWN_TARGET', `no deployment "${name}" on the cluster (it has: ${keys.join(', ') || 'none'})`);
  }
  const owners = keys.filter((k) => k.slice(k.indexOf('/') + 1) === name);
  if (owners.length === 1) return owners[0]!;
  throw new BatchError('ERR_BATCH_UNKNOWN_TARGET', owners.length === 0
    ? `no deployment "${name}" on the cluster (it has: ${keys.join(', ') || 'none'})`
    : `"${name}" is a deployment of ${owners.map((k) => k.slice(0, k.indexOf('/'))).join(', ')}: say which, as APP/${name}`);
}

/** A line's arguments: `{"args": [...]}` (that key alone) spreads; any other value is the one argument. */
export function argsOf(item: unknown): unknown[] {
  if (typeof item === 'object' && item !== null && !Array.isArray(item)) {
    const keys = Object.keys(item);
    if (keys.length === 1 && keys[0] === 'args' && Array.isArray((item as { args: unknown }).args)) return (item as { args: unknown[] }).args;
  }
  return [item];
}

export class ClusterCaller {
  /** `app/deployment.method`, what a checkpoint records. */
  readonly target: string;
  private readonly router: Router;
  private readonly transport: PeerTransport;
  private timer: TimerHandle | undefined;
  private view: RoutesView;
  /** The method is known to exist: in the class's methods, or the first call reached it. */
  private verified: boolean;
  /** While not verified: the first call's outcome, which every other call waits for. */
  private gate: Promise<void> | undefined;
  private refreshing = false;
  private closed = false;

  private constructor(private readonly opts: ClusterCallerOptions & { method: string }, readonly key: string, view: RoutesView, private readonly logger: Logger) {
    this.view = view;
    this.target = `${key}.${opts.method}`;
    this.verified = view.deployments[key]!.methods.includes(opts.method);
    this.transport = new PeerTransport({
      token: opts.token, name: `shoal-batch-${process.pid}`, maxFrameBytes: opts.maxFrameBytes ?? env.maxFrameBytes(), logger,
      onLost: (workerId) => this.router.dropWorker(workerId, QUARANTINE_MS),
    });
    // A deployment with no replica (scaled to zero) starts only on demand the head sees: tell it, at most once a
    // second, how many lines wait, as a worker's heartbeat would.
    this.router = new Router({ transport: this.transport, clock: realClock, logger, onNoReplica: (k) => this.reportDemand(k) });
    this.router.updateRoutes(view.table, view.version);
    this.schedule();
  }

  private demandAt = Number.NEGATIVE_INFINITY;

  private reportDemand(key: string): void {
    const now = realClock.monoNow();
    if (this.closed || now - this.demandAt < DEMAND_EVERY_MS) return;
    this.demandAt = now;
    const waiting = Math.max(1, this.router.stats()[key]?.waiting ?? 1);
    control(this.opts.address, this.opts.token, 'POST', '/api/demand', { deployment: key, waiting }).catch((err: unknown) => {
      this.logger.warn('could not tell the head that lines wait for a replica', { deployment: key, error: (err as Error).message });
    });
  }

  private schedule(): void {
    // The clock's timers are unref'd: a refresh never holds the process open after the run.
    this.timer = realClock.setTimeout(() => { void this.refresh().finally(() => { if (!this.closed) this.schedule(); }); }, this.opts.refreshMs ?? 2000);
  }

  /** Reads the route table, resolves the deployment; refuses an unknown deployment, or a method its class has not (see call). */
  static async connect(opts: ClusterCallerOptions): Promise<ClusterCaller> {
    if (opts.refreshMs !== undefined && (!Number.isFinite(opts.refreshMs) || opts.refreshMs < 10)) throw new InvalidOptionError('cluster.refreshMs', 'must be a number >= 10', opts.refreshMs);
    if (opts.method !== undefined && (typeof opts.method !== 'string' || opts.method === '')) throw new InvalidOptionError('cluster.method', 'must be a method name', opts.method);
    const logger = opts.logger ?? createLogger('batch');
    const view = await control(opts.address, opts.token, 'GET', '/api/routes') as RoutesView;
    const key = resolveDeployment(view, opts.deployment);
    return new ClusterCaller({ ...opts, method: opts.method ?? 'call' }, key, view, logger);
  }

  /** Replicas x maxOngoingRequests of the deployment now (one replica's worth while none runs), at most maxDefaultConcurrency. */
  defaultConcurrency(): number {
    const entry = this.view.table[this.key];
    const per = entry?.maxOngoingRequests ?? 1;
    return Math.max(1, Math.min(this.opts.maxDefaultConcurrency ?? 1024, per * Math.max(1, entry?.replicas.length ?? 0)));
  }

  /**
   * One line through the deployment. A method not among the class's methods may still be a batched method (a
   * class field): the first call finds out, and the others wait for it; "no method" there stops the run with
   * ERR_BATCH_UNKNOWN_TARGET before any other line is sent.
   */
  call(item: unknown, ctx: BatchCallContext): Promise<unknown> {
    if (this.verified) return this.send(item, ctx);
    if (this.gate !== undefined) return this.gate.then(() => this.send(item, ctx));
    const first = this.send(item, ctx).catch((err: unknown) => {
      const w = toWireError(err);
      if (w.code === 'ERR_NOT_FOUND' && w.message.includes(`has no method "${this.opts.method}"`)) {
        throw new BatchAbortError(w.message, { code: 'ERR_BATCH_UNKNOWN_TARGET', exitCode: 2 });
      }
      throw err;
    });
    this.gate = first.then(() => { this.verified = true; }, (err: unknown) => {
      if (err instanceof BatchAbortError) throw err;
      this.verified = true;
    });
    this.gate.catch(() => undefined);
    return first;
  }

  /**
   * A call refused as overload (a full queue, backpressure) never ran, and a batch would rather wait than write
   * the line off: it is sent again after a jittered backoff (25 ms doubling to 1 s), up to maxOverloadRetries
   * times. Each refusal also lowers overloadLimit to half the calls then in flight (and each answer raises it
   * again, by one per limit's worth of answers): runBatch keeps no more in flight than that, so a client asked
   * for more than the deployment holds settles near what it holds instead of retrying in a storm. Every other
   * failure goes back to runBatch, which makes the transient ones (a worker gone mid-call, no replica, a deadline,
   * an overload these retries did not outlast: isTransientError) again with its own backoff, up to `retries` times.
   */
  private async send(item: unknown, ctx: BatchCallContext): Promise<unknown> {
    const args = argsOf(item);
    const maxRetries = this.opts.maxOverloadRetries ?? 30;
    this.inflight++;
    try {
      for (let attempt = 0; ; attempt++) {
        const timeoutMs = this.router.requestTimeoutMs(this.key);
        try {
          const value = await this.router.call(this.key, this.opts.method, args, { signal: ctx.signal, ...(timeoutMs > 0 ? { deadline: Deadline.after(realClock, timeoutMs) } : {}) });
          if (Number.isFinite(this.limit)) this.limit = Math.min(this.maxLimit, this.limit + 1 / this.limit);
          return value;
        } catch (err) {
          const code = (err as { code?: unknown }).code;
          if ((code !== 'ERR_QUEUE_FULL' && code !== 'ERR_BACKPRESSURE') || attempt >= maxRetries || ctx.signal.aborted) throw err;
          this.overloadRetries++;
          this.limit = Math.max(1, Math.min(this.limit, Math.floor(this.inflight / 2)));
          await new Promise<void>((r) => realClock.setTimeout(r, Math.min(1000, 25 * 2 ** attempt) * (0.5 + Math.random() / 2)));
        }
      }
    } finally {
      this.inflight--;
    }
  }

  /** Calls sent again after an overload refusal, since the start. */
  overloadRetries = 0;
  /** Calls in flight through send() (retries' waits included). */
  private inflight = 0;
  /** What overload refusals have shown the deployment holds; Infinity until the first. */
  private limit = Number.POSITIVE_INFINITY;
  /** The limit grows back at most to this. */
  private readonly maxLimit = 1 << 20;

  /** Calls in flight the cluster has shown it takes (see send): runBatch keeps to it whatever its concurrency. */
  overloadLimit(): number {
    return Number.isFinite(this.limit) ? Math.floor(this.limit) : Number.POSITIVE_INFINITY;
  }

  private async refresh(): Promise<void> {
    if (this.refreshing) return;
    this.refreshing = true;
    try {
      const view = await control(this.opts.address, this.opts.token, 'GET', '/api/routes') as RoutesView;
      // A restarted head numbers its tables afresh.
      if (view.version < this.view.version) this.router.resetRoutesVersion();
      this.view = view;
      this.router.updateRoutes(view.table, view.version);
    } catch (err) {
      this.logger.warn('could not refresh the route table; the last one stays in use', { error: toWireError(err).message });
    } finally {
      this.refreshing = false;
    }
  }

  close(): void {
    this.closed = true;
    if (this.timer !== undefined) realClock.clearTimeout(this.timer);
    this.router.close();
    this.transport.close();
  }
}
