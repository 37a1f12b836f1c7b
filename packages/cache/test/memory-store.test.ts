import { describe, expect, it } from 'vitest';
import { FakeClock } from '@shoal/core';
import { MemoryStore } from '../src/memory-store.ts';

const bytes = (n: number, fill = 1): Uint8Array => new Uint8Array(n).fill(fill);

describe('MemoryStore: least recently used, bounded by entries and bytes, with a TTL', () => {
  it('evicts the least recently used entry past maxEntries; a get makes an entry recent', () => {
    const clock = new FakeClock();
    const s = new MemoryStore({ maxBytes: 1 << 20, maxEntries: 3, now: () => clock.monoNow() });
    s.set('a', bytes(1), 1000);
    s.set('b', bytes(1), 1000);
    s.set('c', bytes(1), 1000);
    expect(s.get('a')).toBeDefined(); // a is now the most recent
    s.set('d', bytes(1), 1000); // evicts b
    expect(s.keys()).toEqual(['c', 'a', 'd']);
    expect(s.get('b')).toBeUndefined();
    expect(s.evictions).toBe(1);
    expect(s.stats().entries).toBe(3);
  });

  it('expires entries after their TTL on the monotonic clock', () => {
    const clock = new FakeClock();
    const s = new MemoryStore({ maxBytes: 1 << 20, maxEntries: 10, now: () => clock.monoNow() });
    s.set('k', bytes(10), 100);
    clock.advance(99);
    expect(s.get('k')).toBeDefined();
    clock.advance(1);
    expect(s.get('k')).toBeUndefined();
    expect(s.stats()).toEqual({ entries: 0, bytes: 0 });
  });

  it('keeps its bytes under maxBytes, counting keys and overhead, and refuses an entry larger than it', () => {
    const clock = new FakeClock();
    const one = MemoryStore.sizeOf('k0', bytes(1000));
    const s = new MemoryStore({ maxBytes: one * 3, maxEntries: 100, now: () => clock.monoNow() });
    for (let i = 0; i < 10; i++) {
      s.set(`k${i}`, bytes(1000, i), 1000);
      expect(s.stats().bytes).toBeLessThanOrEqual(one * 3);
    }
    expect(s.keys()).toEqual(['k7', 'k8', 'k9']);
    expect(s.get('k9')![0]).toBe(9);
    s.set('huge', bytes(one * 3), 1000);
    expect(s.get('huge')).toBeUndefined();
    expect(s.stats().entries).toBe(3);
  });

  it('replacing a key frees what the old value held', () => {
    const s = new MemoryStore({ maxBytes: 1 << 20, maxEntries: 10 });
    s.set('k', bytes(5000), 1000);
    s.set('k', bytes(10), 1000);
    expect(s.stats()).toEqual({ entries: 1, bytes: MemoryStore.sizeOf('k', bytes(10)) });
  });

  it('an expired entry evicted for room is not counted as an eviction', () => {
    const clock = new FakeClock();
    const s = new MemoryStore({ maxBytes: 1 << 20, maxEntries: 1, now: () => clock.monoNow() });
    s.set('a', bytes(1), 10);
    clock.advance(20);
    s.set('b', bytes(1), 10);
    expect(s.evictions).toBe(0);
    expect(s.keys()).toEqual(['b']);
  });
});
