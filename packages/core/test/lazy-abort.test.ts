import { describe, expect, it } from 'vitest';
import { LazyAbortController, abortableOf } from '../src/index.ts';

describe('LazyAbortController', () => {
  it('makes no signal until asked; a signal made after the abort is already aborted with the reason', () => {
    const c = new LazyAbortController();
    expect(c.aborted).toBe(false);
    const reason = new Error('gone');
    c.abort(reason);
    c.abort(new Error('second'));
    expect([c.aborted, c.reason]).toEqual([true, reason]);
    expect(c.signal.aborted).toBe(true);
    expect(c.signal.reason).toBe(reason);
  });

  it('tells its one listener and the signal\'s listeners once', () => {
    const c = new LazyAbortController();
    const seen: unknown[] = [];
    c.listen((r) => seen.push(['listener', r]));
    c.signal.addEventListener('abort', () => seen.push(['event', c.signal.reason]));
    c.abort('why');
    c.abort('again');
    expect(seen).toEqual([['listener', 'why'], ['event', 'why']]);
  });

  it('a removed listener is not told; abortableOf wraps a plain AbortSignal', () => {
    const c = new LazyAbortController();
    let told = 0;
    c.listen(() => { told++; });
    c.listen(undefined);
    c.abort();
    expect(told).toBe(0);
    expect(c.reason).toBeInstanceOf(DOMException);
    const ac = new AbortController();
    const a = abortableOf(ac.signal);
    expect(a.aborted).toBe(false);
    ac.abort('x');
    expect([a.aborted, a.reason, a.signal]).toEqual([true, 'x', ac.signal]);
  });
});
