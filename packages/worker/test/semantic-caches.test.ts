/**
 * A worker's semantic caches (semantic-caches.ts) with real replicas: per version and userConfig, per method, per
 * model id, the cache-bypass flag of a call, and what a reconfigure in progress may store.
 */
import { describe, expect, it } from 'vitest';
import { compileDeploymentOptions, silentLogger, type CompiledDeploymentOptions } from '@shoal/core';
import { hashedTextEmbedding } from '@shoal/cache';
import { Replica, type ReplicaInstance } from '../src/replica.ts';
import { WorkerSemanticCaches } from '../src/semantic-caches.ts';

interface Config { prefix: string }

/** Answers with its userConfig's prefix; its reconfigure sets the prefix at once, then waits for `release`. */
class Answerer {
  runs = 0;
  prefix = '';
  release: (() => void) | undefined;
  embed(q: string): Float32Array { return hashedTextEmbedding(q); }
  answer(q: string): string { this.runs++; return `${this.prefix}${q.toLowerCase()} #${this.runs}`; }
  summarize(q: string): string { this.runs++; return `summary of ${q.toLowerCase()} #${this.runs}`; }
  async reconfigure(cfg: Config): Promise<void> {
    this.prefix = cfg.prefix;
    if (this.runs === 0) return; // the first, at start
    await new Promise<void>((resolve) => { this.release = resolve; });
  }
}

function options(multiplexed = false): CompiledDeploymentOptions {
  return compileDeploymentOptions({ userConfig: { prefix: 'A: ' }, semanticCache: { embed: 'embed', threshold: 0.9 }, ...(multiplexed ? { multiplex: { maxModelsPerReplica: 4 } } : {}) }, 'QA');
}

async function start(caches: WorkerSemanticCaches, replicaId: string, opts = options()): Promise<{ replica: Replica; inst: Answerer }> {
  const replica = new Replica({ replicaId, app: 'app', deployment: 'QA', options: opts, logger: silentLogger, semanticCache: caches.acquire(replicaId, 'app', 'QA', 'v1', opts, undefined) });
  const inst = new Answerer();
  if (opts.multiplex !== undefined) (inst as unknown as { loadModel: (id: string) => string }).loadModel = (id) => id;
  await replica.start(() => inst as unknown as ReplicaInstance);
  return { replica, inst };
}

const call = (r: Replica, method: string, q: string, modelId?: string, bypass = false): Promise<unknown> =>
  r.call(method, [q], new AbortController().signal, undefined, undefined, modelId, undefined, undefined, bypass);

describe('WorkerSemanticCaches', () => {
  it('replicas of a version share entries per method; two methods never answer for each other', async () => {
    const caches = new WorkerSemanticCaches();
    const { replica: r1 } = await start(caches, 'r1');
    const { replica: r2, inst: i2 } = await start(caches, 'r2');
    expect(await call(r1, 'answer', 'Where is my order?')).toBe('A: where is my order? #1');
    expect(await call(r2, 'answer', 'where is my order')).toBe('A: where is my order? #1');
    expect(await call(r2, 'summarize', 'Where is my order?')).toBe('summary of where is my order? #1');
    expect(i2.runs).toBe(1);
    expect(caches.sizes()).toEqual([{ app: 'app', deployment: 'QA', entries: 2 }]);
  });

  it('in a multiplexed deployment each model has its own entries', async () => {
    const caches = new WorkerSemanticCaches();
    const { replica } = await start(caches, 'r1', options(true));
    expect(await call(replica, 'answer', 'Where is my order?', 'model-a')).toBe('A: where is my order? #1');
    expect(await call(replica, 'answer', 'Where is my order?', 'model-b')).toBe('A: where is my order? #2');
    expect(await call(replica, 'answer', 'where is my order', 'model-a')).toBe('A: where is my order? #1');
  });

  it('a call flagged cache-bypass (handle cache: "bypass") computes and stores nothing', async () => {
    const caches = new WorkerSemanticCaches();
    const { replica } = await start(caches, 'r1');
    await call(replica, 'answer', 'Where is my order?');
    expect(await call(replica, 'answer', 'Where is my order?', undefined, true)).toBe('A: where is my order? #2');
    expect(await call(replica, 'answer', 'What is shoal?', undefined, true)).toBe('A: what is shoal? #3');
    expect(await call(replica, 'answer', 'what is shoal')).toBe('A: what is shoal #4');
    expect(caches.sizes()).toEqual([{ app: 'app', deployment: 'QA', entries: 2 }]);
  });

  it('while a replica reconfigures, its new-config answers do not go into the old config\'s cache', async () => {
    const caches = new WorkerSemanticCaches();
    const { replica: r1, inst: i1 } = await start(caches, 'r1');
    const { replica: r2, inst: i2 } = await start(caches, 'r2');
    await call(r1, 'answer', 'warm up');
    // What the worker does on a reconfigure message: stop storing first, then reconfigure, then move.
    caches.reconfiguring('r1');
    const done = r1.reconfigure({ prefix: 'B: ' });
    expect(i1.release).toBeDefined();
    // r1 already answers with B's prefix; that answer must not be served to r2, which still runs config A.
    expect(await call(r1, 'answer', 'What is shoal?')).toBe('B: what is shoal? #2');
    expect(await call(r2, 'answer', 'What is shoal?')).toBe('A: what is shoal? #1');
    expect(i2.runs).toBe(1);
    i1.release!();
    await done;
    const moved = caches.reconfigured('r1', { prefix: 'B: ' });
    expect(moved).toBeDefined();
    r1.useSemanticCache(moved!);
    // On B's cache now: A's entries are not served, B's answers are stored again.
    expect(await call(r1, 'answer', 'what is shoal')).toBe('B: what is shoal #3');
    expect(await call(r1, 'answer', 'What is shoal?')).toBe('B: what is shoal #3');
    expect(i1.runs).toBe(3);
  });

  it('a reconfigure that keeps the userConfig resumes storing in the same cache', async () => {
    const caches = new WorkerSemanticCaches();
    const { replica, inst } = await start(caches, 'r1');
    await call(replica, 'answer', 'warm up');
    caches.reconfiguring('r1');
    const done = replica.reconfigure({ prefix: 'A: ' });
    inst.release!();
    await done;
    expect(caches.reconfigured('r1', { prefix: 'A: ' })).toBeUndefined();
    await call(replica, 'answer', 'What is shoal?');
    expect(await call(replica, 'answer', 'what is shoal')).toBe('A: what is shoal? #2');
  });
});
