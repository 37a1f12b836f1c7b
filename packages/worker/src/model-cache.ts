/**
 * One replica's loaded models, for a multiplexed deployment: at most maxModels held, the least recently used one
 * evicted to make room for another. No transport dependency and no timers: the replica feeds it, tests drive it.
 *
 * - Requests for a model being loaded share that one load; a load that fails fails them all and is not kept.
 * - A request pins its model while it runs (pin/unpin): an evicted model's unload hook runs only once the requests
 *   on it have finished. The victim is the least recently used model with no request running, else the least
 *   recently used one. An idle victim is unloaded before the new model's load starts, so at most maxModels are in
 *   memory; a busy one is unloaded when its last request ends, and until then it and the new model are both
 *   in memory (waiting would hold the new request behind requests of another model for as long as they run).
 * - An evicted model that a request asks for again before its unload has started is taken back as it is.
 * - A load that throws OutOfMemoryError (the native addon's MemoryBudgetError is one: a pool or device budget was
 *   hit) frees memory and tries again: it evicts the least recently used idle model, or waits for an evicted one's
 *   unload to finish; with nothing left to free, the error stands.
 */
import { IllegalStateError, OutOfMemoryError, ShoalError, UserCodeError, describeThrown, type Logger, type ModelCacheStats, type ModelSource } from '@shoal/core';
import type { ModelSet } from '@shoal/protocol';

/** The deployment's hooks: `loadModel(modelId)` and, optionally, `unloadModel(modelId, model)`. */
export interface ModelHooks {
  load(modelId: string): unknown;
  unload?(modelId: string, model: unknown): unknown;
}

export interface ModelCacheOptions {
  maxModels: number;
  /** Named in errors and logs. */
  deployment: string;
  logger: Logger;
  /** Runs a hook in the replica's own context (not the request's that happened to ask first). @default fn() */
  run?: <T>(modelId: string, fn: () => T) => T;
  /** Told how long each load hook took, in monotonic ms, retries after freeing memory included (`ok`: it loaded). @default none */
  onLoad?: (loadMs: number, ok: boolean) => void;
}

/** `waiting`: asked for, not yet admitted (no room); `loading`: the load hook runs; `loaded`: held. */
type HeldState = 'waiting' | 'loading' | 'loaded';

interface Held {
  readonly id: string;
  state: HeldState;
  model: unknown;
  promise: Promise<unknown>;
}

/** An evicted model: its unload waits for its requests to finish (`started` once it runs). */
interface Leaving {
  readonly id: string;
  readonly model: unknown;
  started: boolean;
  /** Settles once it is out of memory (unloaded) or back in the held set (asked for again before its unload). */
  readonly done: Promise<void>;
  readonly resolve: () => void;
}

export class ModelCache implements ModelSource {
  /** In use order: the first is the least recently used. */
  private readonly held = new Map<string, Held>();
  private readonly leaving = new Map<string, Leaving>();
  private readonly pins = new Map<string, number>();
  /** Bumped whenever the held ids change: routers keep the newest set they saw (ModelSet.v). */
  private version = 0;
  private closed = false;
  private readonly counts = { hits: 0, misses: 0, loads: 0, loadFailures: 0, evictions: 0 };

  constructor(private readonly hooks: ModelHooks, private readonly opts: ModelCacheOptions) {}

  /** The model, held, being loaded (that load is shared) or loaded now. */
  get(modelId: string): Promise<unknown> {
    if (this.closed) return Promise.reject(new IllegalStateError(`replica of "${this.opts.deployment}" is stopping: model "${modelId}" cannot be loaded`));
    const held = this.held.get(modelId);
    if (held !== undefined) {
      this.held.delete(modelId);
      this.held.set(modelId, held);
      this.counts.hits++;
      return held.promise;
    }
    const gone = this.leaving.get(modelId);
    if (gone !== undefined && !gone.started) {
      // Still in memory, its unload waiting for requests: take it back rather than load a second copy.
      this.leaving.delete(modelId);
      gone.resolve();
      const back: Held = { id: modelId, state: 'loaded', model: gone.model, promise: Promise.resolve(gone.model) };
      this.held.set(modelId, back);
      this.version++;
      this.counts.hits++;
      this.makeRoom(back).catch((err: unknown) => this.opts.logger.warn('making room for a model taken back failed', { deployment: this.opts.deployment, model: modelId, error: describeThrown(err) }));
      return back.promise;
    }
    this.counts.misses++;
    const entry: Held = { id: modelId, state: 'waiting', model: undefined, promise: Promise.resolve() };
    entry.promise = this.load(entry, gone?.done);
    // A rejection reaches every caller through `promise`; this one only keeps it from being called unhandled.
    entry.promise.catch(() => undefined);
    this.held.set(modelId, entry);
    this.version++;
    return entry.promise;
  }

  /** A request naming `modelId` started; its model is not unloaded until unpin. */
  pin(modelId: string): void {
    this.pins.set(modelId, (this.pins.get(modelId) ?? 0) + 1);
  }

  unpin(modelId: string): void {
    const n = (this.pins.get(modelId) ?? 0) - 1;
    if (n > 0) { this.pins.set(modelId, n); return; }
    this.pins.delete(modelId);
    const gone = this.leaving.get(modelId);
    if (gone !== undefined && !gone.started) void this.unload(gone);
  }

  /** The held ids, for routers. */
  modelSet(): ModelSet {
    return { v: this.version, ids: [...this.held.keys()] };
  }

  stats(): ModelCacheStats {
    return { models: [...this.held.keys()], maxModels: this.opts.maxModels, ...this.counts, unloading: this.leaving.size };
  }

  /**
   * Stops loading, waits for loads in progress, then unloads every model, held or evicted, whatever still runs on
   * it: the replica calls this once its requests are done or its drain timed out.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.held.values()].map((h) => h.promise.catch(() => undefined)));
    const held = [...this.held.values()].filter((h) => h.state === 'loaded');
    this.held.clear();
    this.version++;
    for (const h of held) this.evict(h);
    await Promise.all([...this.leaving.values()].map((l) => (l.started ? l.done : this.unload(l))));
  }

  private async load(entry: Held, after: Promise<void> | undefined): Promise<unknown> {
    /** When the load hook started; undefined before it, and once its time was reported. */
    let hookStartedAt: number | undefined;
    try {
      // The previous copy of this model is still being unloaded: never two copies of one model.
      if (after !== undefined) await after;
      await this.makeRoom(entry);
      if (this.closed) throw new IllegalStateError(`replica of "${this.opts.deployment}" is stopping: model "${entry.id}" was not loaded`);
      entry.state = 'loading';
      hookStartedAt = performance.now();
      let model: unknown;
      for (let freed = 0; ; freed++) {
        try {
          model = await this.runHook(entry.id, () => this.hooks.load(entry.id));
          break;
        } catch (err) {
          if (!(err instanceof OutOfMemoryError) || this.closed || freed >= this.opts.maxModels || !(await this.freeMemory(entry))) throw err;
          this.opts.logger.info('model load ran out of memory; freed another model and retrying', { deployment: this.opts.deployment, model: entry.id, error: err.message });
        }
      }
      this.opts.onLoad?.(performance.now() - hookStartedAt, true);
      hookStartedAt = undefined;
      if (this.closed || this.held.get(entry.id) !== entry) {
        // Stopped (or cleared) while loading: nobody will unload it later, so unload it now.
        await this.unload({ id: entry.id, model, started: false, done: Promise.resolve(), resolve: () => undefined });
        throw new IllegalStateError(`replica of "${this.opts.deployment}" stopped while model "${entry.id}" loaded`);
      }
      entry.state = 'loaded';
      entry.model = model;
      this.counts.loads++;
      return model;
    } catch (err) {
      if (this.held.get(entry.id) === entry) { this.held.delete(entry.id); this.version++; }
      this.counts.loadFailures++;
      if (hookStartedAt !== undefined) this.opts.onLoad?.(performance.now() - hookStartedAt, false);
      this.opts.logger.warn('model load failed', { deployment: this.opts.deployment, model: entry.id, error: describeThrown(err) });
      throw err instanceof ShoalError ? err : UserCodeError.from(err, { deployment: this.opts.deployment, prefix: `loadModel("${entry.id}") of "${this.opts.deployment}" failed: ` });
    }
  }

  /** Evicts until `entry` fits among the models admitted (loading or loaded); an idle victim is unloaded first. */
  private async makeRoom(entry: Held): Promise<void> {
    for (;;) {
      let admitted = 0;
      let idle: Held | undefined;
      let busy: Held | undefined;
      const loading: Promise<unknown>[] = [];
      for (const h of this.held.values()) {
        if (h === entry || h.state === 'waiting') continue;
        admitted++;
        if (h.state === 'loading') { loading.push(h.promise); continue; }
        if ((this.pins.get(h.id) ?? 0) === 0) idle ??= h;
        else busy ??= h;
      }
      if (admitted < this.opts.maxModels || this.closed) return;
      const victim = idle ?? busy;
      if (victim === undefined) {
        // Every admitted model is still loading: the first to finish becomes a candidate.
        await Promise.race(loading.map((p) => p.catch(() => undefined)));
        continue;
      }
      const gone = this.evict(victim);
      if (victim === idle) await gone.done;
    }
  }

  /** Frees memory for a load that ran out of it: an idle held model, else an evicted one still unloading. */
  private async freeMemory(entry: Held): Promise<boolean> {
    for (const h of this.held.values()) {
      if (h !== entry && h.state === 'loaded' && (this.pins.get(h.id) ?? 0) === 0) {
        await this.evict(h).done;
        return true;
      }
    }
    const gone = this.leaving.values().next();
    if (gone.done === true) return false;
    await gone.value.done;
    return true;
  }

  /** Takes a loaded model out of the held set; it is unloaded now if idle, else when its last request ends. */
  private evict(h: Held): Leaving {
    if (this.held.get(h.id) === h) { this.held.delete(h.id); this.version++; }
    this.counts.evictions++;
    let resolve!: () => void;
    const done = new Promise<void>((r) => { resolve = r; });
    const gone: Leaving = { id: h.id, model: h.model, started: false, done, resolve };
    this.leaving.set(h.id, gone);
    if ((this.pins.get(h.id) ?? 0) === 0 || this.closed) void this.unload(gone);
    return gone;
  }

  private async unload(gone: Leaving): Promise<void> {
    if (gone.started) return gone.done;
    gone.started = true;
    try {
      const unload = this.hooks.unload;
      if (unload !== undefined) await this.runHook(gone.id, () => unload.call(this.hooks, gone.id, gone.model));
    } catch (err) {
      // The model is gone from the cache either way; the replica goes on serving the others.
      this.opts.logger.warn('unloadModel threw', { deployment: this.opts.deployment, model: gone.id, error: describeThrown(err) });
    } finally {
      if (this.leaving.get(gone.id) === gone) this.leaving.delete(gone.id);
      gone.resolve();
    }
    return undefined;
  }

  private async runHook(modelId: string, fn: () => unknown): Promise<unknown> {
    return await (this.opts.run === undefined ? fn() : this.opts.run(modelId, fn));
  }
}
