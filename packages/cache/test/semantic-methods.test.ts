import { describe, expect, it } from 'vitest';
import { ShoalRequest, contextStorage, response, type CompiledSemanticCache, type RequestContext } from '@shoal/core';
import { SemanticCacheSet } from '../src/semantic-registry.ts';
import { SemanticMethods, type SemanticCacheObserver, type SemanticResult } from '../src/semantic-methods.ts';
import { hashedTextEmbedding } from '../src/text-embedding.ts';

class Recorder implements SemanticCacheObserver {
  results: SemanticResult[] = [];
  looked(result: SemanticResult, embedMs: number, lookupMs: number): void {
    expect(embedMs).toBeGreaterThanOrEqual(0);
    expect(lookupMs).toBeGreaterThanOrEqual(0);
    this.results.push(result);
  }
}

/** A question answerer that counts how often it really ran. */
class Answerer {
  runs = 0;
  embeds = 0;
  /** Our only input kinds: a question, or an HTTP request carrying it as ?q=. */
  embed(q: string | ShoalRequest): Float32Array { this.embeds++; return hashedTextEmbedding(typeof q === 'string' ? q : q.query.get('q') ?? ''); }
  answer(q: string): string { this.runs++; return `answer to ${q} #${this.runs}`; }
  async answerAsync(q: string): Promise<string> { this.runs++; await Promise.resolve(); return `async ${q} #${this.runs}`; }
  fail(q: string): never { this.runs++; throw new Error(`no answer to ${q}`); }
  stream(q: string): AsyncIterable<string> { this.runs++; return (async function* () { yield q; })(); }
  status(q: string): unknown { this.runs++; return response({ error: q }, { status: 503 }); }
  fetch(req: ShoalRequest): string { this.runs++; return `fetched ${req.query.get('q')} #${this.runs}`; }
}

const CALLABLE = ['answer', 'answerAsync', 'embed', 'fail', 'fetch', 'status', 'stream'];

function setup(opts: Partial<CompiledSemanticCache> = {}): { inst: Answerer; m: Map<string, (...a: unknown[]) => unknown>; obs: Recorder; cache: SemanticCacheSet; methods: SemanticMethods } {
  const compiled: CompiledSemanticCache = { embed: 'embed', threshold: 0.9, maxEntries: 100, ttlMs: 0, ...opts };
  const cache = new SemanticCacheSet({ threshold: compiled.threshold, maxEntries: compiled.maxEntries });
  const obs = new Recorder();
  const inst = new Answerer();
  const methods = new SemanticMethods(cache, compiled, 'qa', obs);
  return { inst, m: methods.wrap(inst, CALLABLE), obs, cache, methods };
}

function request(q: string, headers: Record<string, string> = {}): ShoalRequest {
  return new ShoalRequest({ method: 'GET', path: '/', query: `q=${encodeURIComponent(q)}`, headers, body: new Uint8Array(0) });
}

describe('SemanticMethods', () => {
  it('answers a paraphrase from the cache without running the method; a different question runs it', () => {
    const { inst, m, obs } = setup();
    const answer = m.get('answer')!;
    const first = answer('How do I reset my password?');
    expect(first).toBe('answer to How do I reset my password? #1');
    expect(answer('how do i reset my password')).toBe(first);
    expect(inst.runs).toBe(1);
    expect(answer('How do I bake sourdough bread?')).toBe('answer to How do I bake sourdough bread? #2');
    expect(inst.runs).toBe(2);
    expect(obs.results).toEqual(['miss', 'hit', 'miss']);
    expect(inst.embeds).toBe(3);
  });

  it('synchronous embed and method answer synchronously; async ones with a promise', async () => {
    const { m } = setup();
    expect(typeof m.get('answer')!('q one')).toBe('string');
    const p = m.get('answerAsync')!('q two');
    expect(p).toBeInstanceOf(Promise);
    expect(await p).toBe('async q two #2');
    expect(await m.get('answerAsync')!('Q TWO!')).toBe('async q two #2');
  });

  it('awaits an async embed method (a batched one returns a promise)', async () => {
    const inst = new Answerer();
    inst.embed = ((q: string) => Promise.resolve(hashedTextEmbedding(q))) as unknown as Answerer['embed'];
    const wrapped = new SemanticMethods(new SemanticCacheSet({ threshold: 0.9, maxEntries: 10 }), { embed: 'embed', threshold: 0.9, maxEntries: 10, ttlMs: 0 }, 'qa').wrap(inst, CALLABLE);
    expect(await wrapped.get('answer')!('where is my order')).toBe('answer to where is my order #1');
    expect(await wrapped.get('answer')!('Where is my order?')).toBe('answer to where is my order #1');
    expect(inst.runs).toBe(1);
  });

  it('never caches errors, streams or HTTP error responses', async () => {
    const { inst, m, cache } = setup();
    expect(() => m.get('fail')!('why')).toThrow(/no answer to why/);
    expect(() => m.get('fail')!('why')).toThrow(/no answer to why/);
    const s1 = m.get('stream')!('tokens') as AsyncIterable<string>;
    expect(typeof s1[Symbol.asyncIterator]).toBe('function');
    m.get('stream')!('tokens');
    m.get('status')!('down');
    m.get('status')!('down');
    expect(inst.runs).toBe(6);
    expect(cache.size).toBe(0);
  });

  it('an HTTP request with x-shoal-cache: bypass (or cache-control: no-cache) skips the cache', () => {
    const { inst, m, obs } = setup();
    const fetch = m.get('fetch')!;
    const a = fetch(request('what is machine learning'));
    expect(fetch(request('What is machine learning?'))).toBe(a);
    expect(fetch(request('What is machine learning?', { 'x-shoal-cache': 'bypass' }))).toBe('fetched What is machine learning? #2');
    expect(fetch(request('What is machine learning?', { 'cache-control': 'no-cache' }))).toBe('fetched What is machine learning? #3');
    expect(inst.runs).toBe(3);
    expect(obs.results).toEqual(['miss', 'hit', 'bypass', 'bypass']);
  });

  it('caches only the listed methods, and never the embed method', () => {
    expect([...setup({ methods: ['answer'] }).m.keys()]).toEqual(['answer']);
    const all = setup().m;
    expect([...all.keys()].sort()).toEqual(CALLABLE.filter((n) => n !== 'embed'));
  });

  it('does not cache an input whose embedding is the zero vector', () => {
    const { inst, m, obs, cache } = setup();
    m.get('answer')!('???');
    m.get('answer')!('???');
    expect(inst.runs).toBe(2);
    expect(cache.size).toBe(0);
    expect(obs.results).toEqual(['miss', 'miss']);
  });

  it('fails a call whose embedding is malformed, naming the embed method and deployment', () => {
    const inst = new Answerer();
    let vector: unknown = [1, 2];
    inst.embed = (() => vector) as unknown as Answerer['embed'];
    const cache = new SemanticCacheSet({ threshold: 0.9, maxEntries: 10 });
    const m = new SemanticMethods(cache, { embed: 'embed', threshold: 0.9, maxEntries: 10, ttlMs: 0 }, 'qa').wrap(inst, CALLABLE);
    m.get('answer')!('first');
    vector = [1, 2, 3];
    expect(() => m.get('answer')!('second')).toThrow(/semanticCache.embed method "embed" of deployment "qa" returned a vector of 3 dimensions; this cache holds 2/);
    vector = 'nope';
    expect(() => m.get('answer')!('third')).toThrow(TypeError);
    expect(inst.runs).toBe(1);
  });

  it('each method has its own entries: one method\'s answer is never served for another on the same input', () => {
    class TwoTasks {
      runs = 0;
      embed(q: string): Float32Array { return hashedTextEmbedding(q); }
      summarize(q: string): string { this.runs++; return `summary of ${q}`; }
      translate(q: string): string { this.runs++; return `translation of ${q}`; }
    }
    const inst = new TwoTasks();
    const cache = new SemanticCacheSet({ threshold: 0.9, maxEntries: 10 });
    const m = new SemanticMethods(cache, { embed: 'embed', threshold: 0.9, maxEntries: 10, ttlMs: 0 }, 'nlp').wrap(inst, ['embed', 'summarize', 'translate']);
    expect(m.get('summarize')!('the quick brown fox')).toBe('summary of the quick brown fox');
    expect(m.get('translate')!('the quick brown fox')).toBe('translation of the quick brown fox');
    expect(inst.runs).toBe(2);
    // Each is a hit for its own method.
    expect(m.get('summarize')!('The quick brown fox!')).toBe('summary of the quick brown fox');
    expect(m.get('translate')!('The quick brown fox!')).toBe('translation of the quick brown fox');
    expect(inst.runs).toBe(2);
    expect(cache.size).toBe(2);
    expect(cache.count).toBe(2);
  });

  it('each model a request names has its own entries (a multiplexed deployment)', () => {
    const { inst, m, cache } = setup();
    const answer = m.get('answer')!;
    const as = (modelId: string | undefined, q: string): unknown => contextStorage.run({ signal: new AbortController().signal, deadline: undefined, app: 'a', deployment: 'qa', replicaId: 'r1', modelId } satisfies RequestContext, () => answer(q));
    expect(as('model-a', 'where is my order')).toBe('answer to where is my order #1');
    expect(as('model-b', 'where is my order')).toBe('answer to where is my order #2');
    expect(as('model-a', 'Where is my order?')).toBe('answer to where is my order #1');
    expect(as('model-b', 'Where is my order?')).toBe('answer to where is my order #2');
    // A request naming no model is apart from both.
    expect(as(undefined, 'where is my order')).toBe('answer to where is my order #3');
    expect(inst.runs).toBe(3);
    expect(cache.count).toBe(3);
  });

  it('keeps only the most recent models\' caches past its bound', () => {
    const set = new SemanticCacheSet({ threshold: 0.9, maxEntries: 10 }, 2);
    const a = set.cacheFor('answer', 'a');
    set.cacheFor('answer', 'b');
    expect(set.cacheFor('answer', 'a')).toBe(a);
    set.cacheFor('answer', 'c'); // evicts b, the least recently used
    expect(set.cacheFor('answer', 'a')).toBe(a);
    expect(set.count).toBe(2);
  });

  it('requestContext().cacheBypass (a handle\'s cache: "bypass") runs the method and caches nothing', () => {
    const { inst, m, obs, cache } = setup();
    const answer = m.get('answer')!;
    const bypassing = (q: string): unknown => contextStorage.run({ signal: new AbortController().signal, deadline: undefined, app: 'a', deployment: 'qa', replicaId: 'r1', cacheBypass: true } satisfies RequestContext, () => answer(q));
    answer('how do I reset my password');
    expect(bypassing('how do I reset my password')).toBe('answer to how do I reset my password #2');
    expect(cache.size).toBe(1);
    expect(bypassing('a question never asked')).toBe('answer to a question never asked #3');
    expect(cache.size).toBe(1);
    expect(inst.runs).toBe(3);
    expect(obs.results).toEqual(['miss', 'bypass', 'bypass']);
  });

  it('after stopInserting() (a reconfigure started) it still answers hits but stores no new answer, not even of calls in flight', async () => {
    const { inst, m, cache, methods } = setup();
    m.get('answer')!('old question');
    const inFlight = m.get('answerAsync')!('slow question') as Promise<string>;
    methods.stopInserting();
    await inFlight;
    expect(m.get('answer')!('Old question?')).toBe('answer to old question #1');
    m.get('answer')!('new question');
    m.get('answer')!('new question');
    expect(inst.runs).toBe(4);
    expect(cache.size).toBe(1);
    methods.resumeInserting();
    m.get('answer')!('new question');
    m.get('answer')!('new question');
    expect(inst.runs).toBe(5);
    expect(cache.size).toBe(2);
  });

  it('refuses an instance without the embed method or a listed method, naming the option', () => {
    const cache = new SemanticCacheSet({ threshold: 0.9, maxEntries: 10 });
    expect(() => new SemanticMethods(cache, { embed: 'vectorize', threshold: 0.9, maxEntries: 10, ttlMs: 0 }, 'qa').wrap(new Answerer(), CALLABLE))
      .toThrow(/deployment.semanticCache.embed names "vectorize", but the instance of "qa" has no such method \(it has: answer, /);
    expect(() => new SemanticMethods(cache, { embed: 'embed', threshold: 0.9, maxEntries: 10, ttlMs: 0, methods: ['answer', 'predict'] }, 'qa').wrap(new Answerer(), CALLABLE))
      .toThrow(/deployment.semanticCache.methods\[1\] names "predict"/);
  });
});
