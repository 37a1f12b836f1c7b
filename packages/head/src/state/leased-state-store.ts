/**
 * What both stores share: the lifecycle, the in-memory copy of the state, and the write chain. A backend supplies
 * four steps (acquire the lease, read, persist one change, release); this class orders them.
 *
 * Writes go through one promise chain, so two writes never interleave and land in call order; each computes its
 * next state from the state the previous write left. The in-memory copy changes only after a write is durable,
 * so a failed write leaves it as it was.
 */
import { CancelledError, IllegalStateError, checkInt, createLogger, realClock, type AppSpec, type Clock, type Logger } from '@shoal/core';
import { StoreLeaseLostError } from './errors.ts';
import { emptyState, nextStoredApp, nextWorkers, trimHistory, type StateChange } from './state-document.ts';
import type { AppMeta, ClusterState, OpenOptions, SeenWorker, StateStore, StateStoreOptions } from './state-store.ts';

export type StoreLifecycle = 'idle' | 'opening' | 'open' | 'lost' | 'closed';

export interface CompiledStoreOptions {
  historyLimit: number;
  standbyPollMs: number;
  logger: Logger;
  clock: Clock;
}

/** Fills the defaults of the options both stores take; `root` names them in errors (`stateStore.historyLimit`). */
export function compileStoreOptions(opts: StateStoreOptions, root: string): CompiledStoreOptions {
  return {
    historyLimit: checkInt(`${root}.historyLimit`, opts.historyLimit, 1, 10, 10_000),
    standbyPollMs: checkInt(`${root}.standbyPollMs`, opts.standbyPollMs, 10, 1000, 60_000),
    logger: opts.logger ?? createLogger('state-store'),
    clock: opts.clock ?? realClock,
  };
}

/** Resolves after `ms` on `clock`; rejects with CancelledError when `signal` aborts first. */
export function sleep(clock: Clock, ms: number, signal: AbortSignal, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const cancelled = (): CancelledError => Object.assign(new CancelledError(`${what} cancelled`), { cause: signal.reason });
    if (signal.aborted) { reject(cancelled()); return; }
    const onAbort = (): void => { clock.clearTimeout(timer); reject(cancelled()); };
    const timer = clock.setTimeout(() => { signal.removeEventListener('abort', onAbort); resolve(); }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

export abstract class LeasedStateStore implements StateStore {
  abstract readonly description: string;
  protected readonly opts: CompiledStoreOptions;
  private lifecycle: StoreLifecycle = 'idle';
  private state: ClusterState = emptyState();
  private tail: Promise<unknown> = Promise.resolve();
  private lost: StoreLeaseLostError | undefined;
  private onLeaseLost: ((err: StoreLeaseLostError) => void) | undefined;
  /** Aborts a standby wait when close() comes first. */
  private readonly closing = new AbortController();
  /** The open() in progress, which close() waits for so that it returns with the lease released. */
  private opening: Promise<void> | undefined;

  protected constructor(opts: CompiledStoreOptions) {
    this.opts = opts;
  }

  /** Takes the lease, waiting as standby when asked; rejects with StoreLockedError otherwise. */
  protected abstract acquire(standby: boolean, signal: AbortSignal): Promise<void>;
  /** Reads the stored state (StoreCorruptError when unreadable). Called once, holding the lease. */
  protected abstract read(): Promise<ClusterState>;
  /** Makes one change durable, atomically, only while this store still holds the lease (else StoreLeaseLostError). */
  protected abstract persist(next: ClusterState, change: StateChange): Promise<void>;
  /** Releases the lease when `held`, and frees what the backend holds (timers, connections). Never throws. */
  protected abstract release(held: boolean): Promise<void>;

  get status(): StoreLifecycle {
    return this.lifecycle;
  }

  open(opts: OpenOptions = {}): Promise<void> {
    if (this.lifecycle !== 'idle') return Promise.reject(new IllegalStateError(`open() on a state store that is ${this.lifecycle} (${this.description}); a store opens once`));
    this.lifecycle = 'opening';
    this.onLeaseLost = opts.onLeaseLost;
    this.opening = this.openSteps(opts);
    return this.opening;
  }

  private async openSteps(opts: OpenOptions): Promise<void> {
    const signal = opts.signal === undefined ? this.closing.signal : AbortSignal.any([opts.signal, this.closing.signal]);
    let held = false;
    // The clock's timers are unref'd, and a standby head has nothing else yet that keeps its process alive.
    const keepAlive = opts.standby === true ? setInterval(() => undefined, 60_000) : undefined;
    try {
      await this.acquire(opts.standby ?? false, signal);
      held = true;
      const state = await this.read();
      for (const app of Object.values(state.apps)) app.history = trimHistory(app.history, this.opts.historyLimit);
      this.state = state;
    } catch (err) {
      // A store opens once: after a failed open the head makes a new one to try again.
      this.lifecycle = 'closed';
      await this.release(held);
      throw err;
    } finally {
      clearInterval(keepAlive);
    }
    if (this.lifecycle !== 'opening') {
      // close() ran while the state was read: give the lease straight back.
      await this.release(true);
      throw new IllegalStateError(`state store ${this.description} was closed while it opened`);
    }
    this.lifecycle = this.lost === undefined ? 'open' : 'lost';
  }

  async load(): Promise<ClusterState> {
    this.assertUsable('load()');
    return structuredClone(this.state);
  }

  putApp(spec: AppSpec, meta: AppMeta): Promise<void> {
    return this.write('putApp()', (s) => {
      const app = nextStoredApp(s.apps[spec.name], spec, meta, this.opts.historyLimit);
      return { next: { ...s, apps: { ...s.apps, [spec.name]: app } }, change: { kind: 'putApp', app } };
    }).then(() => undefined);
  }

  deleteApp(name: string): Promise<boolean> {
    return this.write('deleteApp()', (s) => {
      if (s.apps[name] === undefined) return undefined;
      const { [name]: _gone, ...apps } = s.apps;
      return { next: { ...s, apps }, change: { kind: 'deleteApp', name } };
    });
  }

  putWorkers(workers: readonly SeenWorker[]): Promise<void> {
    return this.write('putWorkers()', (s) => {
      const list = nextWorkers(workers);
      return { next: { ...s, workers: list }, change: { kind: 'putWorkers', workers: list } };
    }).then(() => undefined);
  }

  async close(): Promise<void> {
    const was = this.lifecycle;
    if (was === 'closed') return;
    this.lifecycle = 'closed';
    this.closing.abort();
    if (was === 'idle') return;
    // open() releases what it took once it sees the abort.
    if (was === 'opening') { await this.opening?.catch(() => undefined); return; }
    await this.tail;
    await this.release(was === 'open');
  }

  /** Marks the lease lost (once): later writes fail with `err`, and the head hears of it through onLeaseLost. */
  protected leaseLost(err: StoreLeaseLostError): void {
    if (this.lost !== undefined || this.lifecycle === 'closed') return;
    this.lost = err;
    if (this.lifecycle === 'open') this.lifecycle = 'lost';
    this.opts.logger.error('state store lease lost; this head must stop', { store: this.description, reason: err.message });
    this.onLeaseLost?.(err);
  }

  private assertUsable(call: string): void {
    if (this.lifecycle !== 'closed' && this.lost !== undefined) throw this.lost;
    if (this.lifecycle === 'open') return;
    const hint = this.lifecycle === 'idle' ? 'open() it first' : this.lifecycle === 'opening' ? 'wait for open() to resolve' : 'make a new store';
    throw new IllegalStateError(`${call} on a state store that is ${this.lifecycle} (${this.description}); ${hint}`);
  }

  /**
   * Queues one write. `build` runs when the write's turn comes, on the state the previous write left; it returns
   * undefined when there is nothing to change (the write resolves false).
   */
  private write(call: string, build: (s: ClusterState) => { next: ClusterState; change: StateChange } | undefined): Promise<boolean> {
    const run = async (): Promise<boolean> => {
      this.assertUsable(call);
      const step = build(this.state);
      if (step === undefined) return false;
      try {
        await this.persist(step.next, step.change);
      } catch (err) {
        if (err instanceof StoreLeaseLostError) this.leaseLost(err);
        throw err;
      }
      this.state = step.next;
      return true;
    };
    const result = this.tail.then(run, run);
    this.tail = result.catch(() => undefined);
    return result;
  }
}
