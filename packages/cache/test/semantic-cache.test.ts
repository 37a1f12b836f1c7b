import { describe, expect, it } from 'vitest';
import { FakeClock, seededRandom } from '@shoal/core';
import { SemanticCache } from '../src/semantic-cache.ts';
import { FlatIndex, HnswIndex, normalize } from '../src/semantic-index.ts';
import { SemanticCacheRegistry } from '../src/semantic-registry.ts';

const D = 16;

/** A deterministic pseudo-random unit vector. */
function randomUnit(seed: number, d = D): Float32Array {
  const next = seededRandom(seed);
  return normalize(Array.from({ length: d }, () => next() - 0.5), d, 'test')!;
}

/** `base` moved towards `other` so that its cosine similarity with base is exactly `cos`. */
function atSimilarity(base: Float32Array, other: Float32Array, cos: number): Float32Array {
  // Gram-Schmidt: the part of other orthogonal to base, then cos * base + sin * that.
  let dot = 0;
  for (let i = 0; i < base.length; i++) dot += base[i]! * other[i]!;
  const orth = normalize(Array.from(other, (x, i) => x - dot * base[i]!), base.length, 'orth')!;
  const sin = Math.sqrt(1 - cos * cos);
  return normalize(Array.from(base, (x, i) => cos * x + sin * orth[i]!), base.length, 'v')!;
}

describe('normalize', () => {
  it('makes unit vectors of number[], Float32Array and Float64Array', () => {
    for (const v of [[3, 4], new Float32Array([3, 4]), new Float64Array([3, 4])]) {
      const n = normalize(v, 2, 'embed')!;
      expect(n[0]).toBeCloseTo(0.6, 6);
      expect(n[1]).toBeCloseTo(0.8, 6);
    }
  });

  it('returns undefined for the zero vector and names what is wrong otherwise', () => {
    expect(normalize([0, 0, 0], 3, 'embed')).toBeUndefined();
    expect(() => normalize('text', 3, 'embed "e"')).toThrow(TypeError);
    expect(() => normalize('text', 3, 'embed "e"')).toThrow(/embed "e" must return an array of numbers.*string/);
    expect(() => normalize([1, 2], 3, 'embed')).toThrow(/2 dimensions; this cache holds 3-dimension/);
    expect(() => normalize([1, Number.NaN, 2], 3, 'embed')).toThrow(/at \[1\]: NaN/);
    expect(() => normalize([], undefined, 'embed')).toThrow(/empty vector/);
  });
});

describe('SemanticCache', () => {
  for (const index of ['flat', 'hnsw'] as const) {
    describe(`with the ${index} index`, () => {
      it('serves an entry at or above the threshold, and not below it', () => {
        const cache = new SemanticCache({ threshold: 0.9, maxEntries: 10, index });
        const base = randomUnit(1);
        cache.insert(base, 'answer');
        const near = atSimilarity(base, randomUnit(2), 0.92);
        const far = atSimilarity(base, randomUnit(2), 0.88);
        expect(cache.lookup(near)).toMatchObject({ value: 'answer' });
        expect(cache.lookup(near)!.similarity).toBeCloseTo(0.92, 4);
        expect(cache.lookup(far)).toBeUndefined();
        expect(cache.lookup(base)!.similarity).toBeCloseTo(1, 5);
      });

      it('evicts the least recently used entry past maxEntries; a hit makes an entry recent', () => {
        const cache = new SemanticCache({ threshold: 0.99, maxEntries: 3, index });
        const [a, b, c, d] = [10, 11, 12, 13].map((s) => randomUnit(s));
        cache.insert(a!, 'a');
        cache.insert(b!, 'b');
        cache.insert(c!, 'c');
        expect(cache.lookup(a!)?.value).toBe('a'); // a is the most recent now; b the least
        cache.insert(d!, 'd');
        expect(cache.size).toBe(3);
        expect(cache.evictions).toBe(1);
        expect(cache.lookup(b!)).toBeUndefined();
        for (const [v, name] of [[a, 'a'], [c, 'c'], [d, 'd']] as const) expect(cache.lookup(v!)?.value).toBe(name);
      });

      it('never serves an entry older than ttlMs (fake clock), and drops it', () => {
        const clock = new FakeClock();
        const cache = new SemanticCache({ threshold: 0.9, maxEntries: 10, ttlMs: 1000, clock, index });
        const v = randomUnit(20);
        cache.insert(v, 'old');
        clock.advance(999);
        expect(cache.lookup(v)?.value).toBe('old');
        clock.advance(1);
        expect(cache.lookup(v)).toBeUndefined();
        expect(cache.size).toBe(0);
        expect(cache.expirations).toBe(1);
        cache.insert(v, 'new');
        expect(cache.lookup(v)?.value).toBe('new');
      });

      it('an expired nearest entry does not hide a live one behind it', () => {
        const clock = new FakeClock();
        const cache = new SemanticCache({ threshold: 0.9, maxEntries: 10, ttlMs: 1000, clock, index });
        const q = randomUnit(30);
        const u = randomUnit(31);
        // On opposite sides of q: 0.97 and 0.95 similar to it, about 0.85 to each other (so both are kept).
        const nearest = atSimilarity(q, u, 0.97);
        const second = atSimilarity(q, u.map((x) => -x), 0.95);
        cache.insert(nearest, 'stale');
        clock.advance(600);
        cache.insert(second, 'fresh');
        expect(cache.size).toBe(2);
        clock.advance(500); // nearest is 1100 ms old now, second 500 ms
        expect(cache.lookup(q)?.value).toBe('fresh');
        expect(cache.expirations).toBe(1);
        expect(cache.size).toBe(1);
      });

      it('adds no entry for a vector an existing entry already answers (concurrent near-identical misses)', () => {
        const cache = new SemanticCache({ threshold: 0.9, maxEntries: 10, index });
        const v = randomUnit(40);
        cache.insert(v, 'first');
        cache.insert(atSimilarity(v, randomUnit(41), 0.95), 'second');
        expect(cache.size).toBe(1);
        expect(cache.lookup(v)?.value).toBe('first');
        cache.insert(atSimilarity(v, randomUnit(41), 0.5), 'other');
        expect(cache.size).toBe(2);
      });

      it('insertMany adds rows at once, keeping the last maxEntries of them', () => {
        const cache = new SemanticCache({ threshold: 0.99, maxEntries: 40, index });
        const vs = Array.from({ length: 50 }, (_, i) => randomUnit(500 + i));
        const rows = new Float32Array(50 * D);
        vs.forEach((v, i) => rows.set(v, i * D));
        cache.insertMany(rows, vs.map((_, i) => i));
        expect(cache.size).toBe(40);
        expect(cache.evictions).toBe(10);
        for (let i = 0; i < 10; i++) expect(cache.lookup(vs[i]!)?.value).not.toBe(i);
        for (let i = 10; i < 50; i++) expect(cache.lookup(vs[i]!)?.value).toBe(i);
        cache.insertMany(rows.subarray(0, 5 * D), [100, 101, 102, 103, 104]);
        expect(cache.size).toBe(40);
        expect(cache.lookup(vs[0]!)?.value).toBe(100);
        expect(() => cache.insertMany(new Float32Array(7), [1, 2])).toThrow(/7 numbers, not a whole number of vectors for 2 values/);
      });

      it('refuses a vector of another length than the first one', () => {
        const cache = new SemanticCache({ threshold: 0.9, maxEntries: 10, index });
        cache.insert(randomUnit(50, 8), 'x');
        expect(() => cache.lookup(randomUnit(51, 9))).toThrow(/9 dimensions; this cache holds 8-dimension/);
      });
    });
  }

  it('rejects a threshold outside (0, 1] and a maxEntries below 1', () => {
    expect(() => new SemanticCache({ threshold: 0, maxEntries: 1 })).toThrow(RangeError);
    expect(() => new SemanticCache({ threshold: 1.5, maxEntries: 1 })).toThrow(/threshold must be in \(0, 1\], got 1.5/);
    expect(() => new SemanticCache({ threshold: 0.9, maxEntries: 0 })).toThrow(/maxEntries must be an integer >= 1, got 0/);
  });
});

describe('flat and HNSW indexes', () => {
  it('find the same nearest entry on small sets', () => {
    for (const n of [1, 10, 200, 1000]) {
      const flat = new FlatIndex(32);
      const hnsw = new HnswIndex(32);
      for (let i = 0; i < n; i++) { const v = randomUnit(1000 + i, 32); flat.add(i, v); hnsw.add(i, v); }
      let agree = 0;
      const queries = 200;
      for (let q = 0; q < queries; q++) {
        const v = randomUnit(900_000 + q, 32);
        const a = flat.nearest(v)!;
        const b = hnsw.nearest(v)!;
        if (a.key === b.key) { agree++; expect(b.similarity).toBeCloseTo(a.similarity, 4); }
      }
      // HNSW is approximate; on sets this small it is all but exact.
      expect(agree / queries, `n=${n}`).toBeGreaterThanOrEqual(n <= 200 ? 1 : 0.97);
    }
  });

  it('remove entries: a removed one is never found, and sizes count live entries', () => {
    for (const index of [new FlatIndex(D), new HnswIndex(D)]) {
      const vs = [0, 1, 2, 3].map((s) => randomUnit(s + 60));
      vs.forEach((v, i) => index.add(i, v));
      expect(index.remove(1)).toBe(true);
      expect(index.remove(1)).toBe(false);
      expect(index.size).toBe(3);
      expect(index.nearest(vs[1]!)!.key).not.toBe(1);
      for (const i of [0, 2, 3]) expect(index.nearest(vs[i]!)!.key).toBe(i);
      for (const i of [0, 2, 3]) index.remove(i);
      expect(index.size).toBe(0);
      expect(index.nearest(vs[0]!)).toBeUndefined();
    }
  });
});

describe('SemanticCacheRegistry', () => {
  const opts = { embed: 'embed', threshold: 0.9, maxEntries: 10, ttlMs: 0 };

  it('shares one cache set between the replicas of a version, never between versions or methods', () => {
    const reg = new SemanticCacheRegistry();
    const v1a = reg.acquire({ app: 'a', deployment: 'd', version: 'v1' }, opts);
    const v1b = reg.acquire({ app: 'a', deployment: 'd', version: 'v1' }, opts);
    const v2 = reg.acquire({ app: 'a', deployment: 'd', version: 'v2' }, opts);
    expect(v1a).toBe(v1b);
    expect(v2).not.toBe(v1a);
    const v = randomUnit(70);
    v1a.cacheFor('answer').insert(v, 'from v1');
    expect(v1b.cacheFor('answer').lookup(v)?.value).toBe('from v1');
    expect(v1b.cacheFor('other').lookup(v)).toBeUndefined();
    expect(v2.cacheFor('answer').lookup(v)).toBeUndefined();
    expect(reg.sizes()).toEqual([{ app: 'a', deployment: 'd', entries: 1 }]);
  });

  it('drops a version\'s cache when its last replica releases it', () => {
    const reg = new SemanticCacheRegistry();
    const key = { app: 'a', deployment: 'd', version: 'v1' };
    const c = reg.acquire(key, opts);
    reg.acquire(key, opts);
    c.cacheFor('answer').insert(randomUnit(80), 'x');
    c.cacheFor('answer', 'model-a').insert(randomUnit(80), 'y');
    expect(reg.sizes()).toEqual([{ app: 'a', deployment: 'd', entries: 2 }]);
    reg.release(key);
    expect(reg.versions).toBe(1);
    reg.release(key);
    expect(reg.versions).toBe(0);
    expect(c.size).toBe(0);
    const again = reg.acquire(key, opts);
    expect(again).not.toBe(c);
    expect(again.size).toBe(0);
  });
});
