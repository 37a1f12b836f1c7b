/**
 * The replica's model cache (multiplexing): LRU order and eviction with unload called, one shared load per model,
 * a failed load not kept, unloads that wait for the requests on a model, and loads that hit a memory budget.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { IllegalStateError, OutOfMemoryError, UserCodeError, flushMicrotasks, silentLogger } from '@shoal/core';
import { DEFAULT_ADDON_DIR, MemoryBudgetError, openNativeRuntime, type Allocation } from '@shoal/native';
import { ModelCache, type ModelHooks } from '../src/model-cache.ts';

interface Deferred<T> { promise: Promise<T>; resolve(v: T): void; reject(e: unknown): void }
function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => { resolve = res; reject = rej; });
  return { promise, resolve, reject };
}

/** Hooks that log what they are called with; a load answers at once unless the test holds it. */
class FakeModels implements ModelHooks {
  readonly log: string[] = [];
  readonly held = new Map<string, Deferred<string>>();
  readonly failNext = new Map<string, Error>();
  hold(id: string): Deferred<string> { const d = deferred<string>(); this.held.set(id, d); return d; }
  load(id: string): Promise<string> {
    this.log.push(`load ${id}`);
    const err = this.failNext.get(id);
    if (err !== undefined) { this.failNext.delete(id); return Promise.reject(err); }
    const d = this.held.get(id);
    if (d !== undefined) { this.held.delete(id); return d.promise; }
    return Promise.resolve(`model ${id}`);
  }
  unload(id: string, model: unknown): void { this.log.push(`unload ${id} (${String(model)})`); }
}

function cache(maxModels: number, hooks: ModelHooks = new FakeModels()): ModelCache {
  return new ModelCache(hooks, { maxModels, deployment: 'Models', logger: silentLogger });
}

describe('ModelCache', () => {
  it('holds at most maxModels and evicts the least recently used, calling unloadModel', async () => {
    const hooks = new FakeModels();
    const c = cache(2, hooks);
    expect(await c.get('a')).toBe('model a');
    await c.get('b');
    await c.get('a'); // a is now the most recently used
    await c.get('c'); // evicts b
    expect(c.stats().models).toEqual(['a', 'c']);
    await c.get('d'); // evicts a
    expect(c.stats().models).toEqual(['c', 'd']);
    expect(hooks.log).toEqual(['load a', 'load b', 'unload b (model b)', 'load c', 'unload a (model a)', 'load d']);
    expect(c.stats()).toMatchObject({ maxModels: 2, hits: 1, misses: 4, loads: 4, evictions: 2, loadFailures: 0, unloading: 0 });
  });

  it('unloads an idle victim before the next load starts (at most maxModels in memory)', async () => {
    const hooks = new FakeModels();
    const c = cache(1, hooks);
    await c.get('a');
    await c.get('b');
    expect(hooks.log).toEqual(['load a', 'unload a (model a)', 'load b']);
  });

  it('shares one load between concurrent requests for a model', async () => {
    const hooks = new FakeModels();
    const slow = hooks.hold('a');
    const c = cache(2, hooks);
    const first = c.get('a');
    const second = c.get('a');
    await flushMicrotasks();
    expect(c.stats().models).toEqual(['a']);
    slow.resolve('the a');
    expect(await Promise.all([first, second, c.get('a')])).toEqual(['the a', 'the a', 'the a']);
    expect(hooks.log).toEqual(['load a']);
    expect(c.stats()).toMatchObject({ hits: 2, misses: 1, loads: 1 });
  });

  it('fails every request of a failed load with its error and does not keep it', async () => {
    const hooks = new FakeModels();
    const c = cache(2, hooks);
    const slow = hooks.hold('bad');
    const both = [c.get('bad'), c.get('bad')];
    slow.reject(new TypeError('no such weights: bad'));
    for (const p of both) {
      const err = await p.catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UserCodeError);
      expect((err as Error).message).toBe('loadModel("bad") of "Models" failed: no such weights: bad');
      expect((err as UserCodeError).details).toMatchObject({ userName: 'TypeError', deployment: 'Models' });
    }
    expect(c.stats()).toMatchObject({ models: [], loadFailures: 1, loads: 0 });
    expect(await c.get('bad')).toBe('model bad'); // tried again, not answered from a cache
    expect(hooks.log).toEqual(['load bad', 'load bad']);
  });

  it('unloads an evicted model only once the requests on it are done, without holding the new load back', async () => {
    const hooks = new FakeModels();
    const c = cache(1, hooks);
    await c.get('a');
    c.pin('a'); // a request on a is running
    c.pin('a');
    expect(await c.get('b')).toBe('model b'); // a is the only victim, busy: evicted, its unload deferred
    expect(hooks.log).toEqual(['load a', 'load b']);
    expect(c.stats()).toMatchObject({ models: ['b'], evictions: 1, unloading: 1 });
    c.unpin('a');
    await flushMicrotasks();
    expect(hooks.log).toEqual(['load a', 'load b']);
    c.unpin('a');
    await flushMicrotasks();
    expect(hooks.log).toEqual(['load a', 'load b', 'unload a (model a)']);
    expect(c.stats().unloading).toBe(0);
  });

  it('prefers an idle victim to a busy one that is less recently used', async () => {
    const hooks = new FakeModels();
    const c = cache(2, hooks);
    await c.get('a');
    await c.get('b');
    c.pin('a');
    await c.get('c');
    expect(c.stats().models).toEqual(['a', 'c']);
    expect(hooks.log).toEqual(['load a', 'load b', 'unload b (model b)', 'load c']);
  });

  it('takes back an evicted model asked for before its unload ran, instead of loading a second copy', async () => {
    const hooks = new FakeModels();
    const c = cache(1, hooks);
    await c.get('a');
    c.pin('a');
    await c.get('b'); // a evicted, still in use
    expect(await c.get('a')).toBe('model a'); // back without a load; b (idle) makes room
    await flushMicrotasks();
    expect(c.stats().models).toEqual(['a']);
    c.unpin('a');
    await flushMicrotasks();
    expect(hooks.log).toEqual(['load a', 'load b', 'unload b (model b)']);
  });

  it('waits for an unload of the same model before loading it again', async () => {
    const order: string[] = [];
    const unloading = deferred<void>();
    const hooks: ModelHooks = {
      load: (id) => { order.push(`load ${id}`); return `model ${id}`; },
      unload: async (id) => { order.push(`unload ${id} start`); await unloading.promise; order.push(`unload ${id} end`); },
    };
    const c = cache(1, hooks);
    await c.get('a');
    const b = c.get('b'); // a is idle: its unload starts and b waits for it
    await flushMicrotasks();
    const a = c.get('a'); // a's unload has started: a new copy waits for it too
    await flushMicrotasks();
    expect(order).toEqual(['load a', 'unload a start']);
    unloading.resolve();
    await Promise.all([a, b]);
    expect(order.slice(0, 4)).toEqual(['load a', 'unload a start', 'unload a end', 'load b']);
    expect(order).toContain('load a');
    expect(order.filter((x) => x === 'load a')).toHaveLength(2);
  });

  it('frees memory and retries a load that ran out of it; the error stands when nothing is left to free', async () => {
    const budget = 2;
    const inMemory = new Set<string>();
    const hooks: ModelHooks = {
      load: (id) => {
        if (inMemory.size >= budget) throw new OutOfMemoryError(`pool full loading ${id}: used=${inMemory.size} budget=${budget}`);
        inMemory.add(id);
        return id;
      },
      unload: (id) => { inMemory.delete(id); },
    };
    const c = cache(3, hooks);
    await c.get('a');
    await c.get('b');
    expect(await c.get('c')).toBe('c'); // room for 3 by count, 2 by memory: a goes
    expect(c.stats()).toMatchObject({ models: ['b', 'c'], evictions: 1, loads: 3, loadFailures: 0 });
    c.pin('b');
    c.pin('c');
    const err = await c.get('d').catch((e: unknown) => e); // both held models are in use: nothing to free
    expect(err).toBeInstanceOf(OutOfMemoryError);
    expect((err as Error).message).toBe('pool full loading d: used=2 budget=2');
    expect(c.stats()).toMatchObject({ models: ['b', 'c'], loadFailures: 1 });
  });

  it('close() unloads every model, held or waiting for its requests, and refuses new ones', async () => {
    const hooks = new FakeModels();
    const c = cache(1, hooks);
    await c.get('a');
    c.pin('a');
    await c.get('b');
    await c.close();
    expect(hooks.log.sort()).toEqual(['load a', 'load b', 'unload a (model a)', 'unload b (model b)']);
    await expect(c.get('a')).rejects.toThrow(IllegalStateError);
  });

  it('versions its model set so routers keep the newest', async () => {
    const c = cache(1);
    const v0 = c.modelSet().v;
    await c.get('a');
    const s1 = c.modelSet();
    await c.get('a');
    expect(c.modelSet()).toEqual(s1);
    await c.get('b');
    expect(c.modelSet().ids).toEqual(['b']);
    expect(c.modelSet().v).toBeGreaterThan(s1.v);
    expect(s1.v).toBeGreaterThan(v0);
  });
});

const addonBuilt = ['cuda', 'host'].some((v) => existsSync(join(DEFAULT_ADDON_DIR, `shoal_native_${v}.node`)));

describe.skipIf(!addonBuilt)(`ModelCache with the native addon's memory pool${addonBuilt ? '' : ' (SKIPPED: addon not built)'}`, () => {
  it('a load past the pool budget (MemoryBudgetError) evicts the least recently used idle model and fits', async () => {
    const rt = openNativeRuntime({ backend: 'host', hostCapacityBytes: 64 << 20, logger: silentLogger });
    const modelBytes = 1 << 20;
    const pool = rt.createPool({ budgetBytes: 2 * modelBytes + (modelBytes >> 1) }); // two models fit, not three
    const log: string[] = [];
    const hooks: ModelHooks = {
      load: (id) => { log.push(`load ${id}`); return pool.alloc(modelBytes); },
      unload: (id, model) => { log.push(`unload ${id}`); (model as Allocation).free(); },
    };
    const c = cache(3, hooks);
    await c.get('a');
    await c.get('b');
    await c.get('a');
    expect(await c.get('c')).toMatchObject({ bytes: modelBytes });
    expect(log).toEqual(['load a', 'load b', 'load c', 'unload b', 'load c']);
    expect(c.stats()).toMatchObject({ models: ['a', 'c'], loads: 3, evictions: 1, loadFailures: 0 });
    expect(pool.stats().usedBytes).toBe(2 * modelBytes);
    c.pin('a');
    c.pin('c');
    const err = await c.get('d').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MemoryBudgetError);
    await c.close();
    expect(pool.stats().usedBytes).toBe(0);
    pool.destroy();
  });
});
