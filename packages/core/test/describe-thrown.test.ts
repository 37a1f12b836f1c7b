/** Any thrown value is described without throwing, without running user code, and within a bounded length. */
import { describe, expect, it } from 'vitest';
import {
  DESCRIBE_THROWN_MAX_CHARS, NotFoundError, ShoalError, UserCodeError, describeThrown, rebuildError, toWireError,
} from '../src/index.ts';

/** An object whose every way of being read as text throws. */
function hostile(): object {
  const o = Object.create(null) as Record<string, unknown>;
  for (const key of ['message', 'name', 'stack']) Object.defineProperty(o, key, { get() { throw new Error(`${key} getter`); }, enumerable: true });
  o.toString = () => { throw new Error('toString'); };
  o[Symbol.toPrimitive as unknown as string] = () => { throw new Error('toPrimitive'); };
  return o;
}

class ThrowingError extends Error {
  override get message(): string { throw new Error('message getter'); }
  override get name(): string { throw new Error('name getter'); }
  override get stack(): string { throw new Error('stack getter'); }
}

const cyclic = (): object => { const o: Record<string, unknown> = { id: 1 }; o.self = o; o.list = [o]; return o; };
const trap = (): object => new Proxy({}, {
  get() { throw new Error('get trap'); },
  getPrototypeOf() { throw new Error('getPrototypeOf trap'); },
  ownKeys() { throw new Error('ownKeys trap'); },
  getOwnPropertyDescriptor() { throw new Error('descriptor trap'); },
});

describe('describeThrown', () => {
  it.each([
    ['undefined', undefined, 'undefined'],
    ['null', null, 'null'],
    ['a string, as it is', 'boom', 'boom'],
    ['a number', 42, '42'],
    ['a bigint', 7n, '7n'],
    ['a boolean', false, 'false'],
    ['a symbol', Symbol('s'), 'Symbol(s)'],
    ['a function', function named() {}, '[Function named]'],
    ['an Error, by its message', new TypeError('bad input'), 'bad input'],
    ['an Error with no message, by its name', new RangeError(), 'RangeError'],
    ['an error-like object, by its message', { message: 'from a library', code: 7 }, 'from a library'],
    ['an empty null-prototype object', Object.create(null), '[Object: null prototype] {}'],
    ['a null-prototype object with fields', Object.assign(Object.create(null) as object, { code: 7, why: 'x' }), '[Object: null prototype] { code: 7, why: "x" }'],
    ['a plain object', { a: 1, b: [1, 'two'] }, '{ a: 1, b: [1, "two"] }'],
    ['a class instance', new (class Thing { n = 1; })(), 'Thing { n: 1 }'],
    ['a cycle', cyclic(), '{ id: 1, self: [Circular], list: [[Circular]] }'],
    ['a Proxy whose every trap throws', trap(), '[Proxy]'],
    ['a Map', new Map([[1, 2]]), '[Map]'],
  ])('%s', (_what, value, expected) => {
    expect(describeThrown(value)).toBe(expected);
  });

  it('never throws for objects whose getters, toString and toPrimitive throw', () => {
    expect(() => describeThrown(hostile())).not.toThrow();
    expect(describeThrown(hostile())).toBe('[Object: null prototype] { message: [Getter], name: [Getter], stack: [Getter], toString: [Function] }');
    expect(describeThrown(new ThrowingError())).toBe('Error');
  });

  it('reads no getter and calls no method of the value', () => {
    let touched = 0;
    const o = { get x() { touched++; return 1; }, toString() { touched++; return 'x'; }, toJSON() { touched++; return 'x'; } };
    describeThrown(o);
    expect(touched).toBe(0);
  });

  it('stays within its bound for huge strings, messages, arrays, wide and deep objects', () => {
    const long = 'v'.repeat(1000);
    const wide = Object.fromEntries(Array.from({ length: 100_000 }, (_, i) => [`k${i}`, long]));
    let deep: Record<string, unknown> = {};
    for (let i = 0; i < 10_000; i++) deep = { deep };
    for (const value of ['x'.repeat(1e6), new Error('m'.repeat(1e6)), new Array(1e6).fill({ a: 'b' }), wide, deep]) {
      const s = describeThrown(value);
      expect(s.length).toBeLessThanOrEqual(DESCRIBE_THROWN_MAX_CHARS);
      expect(s.length).toBeGreaterThan(0);
    }
    const wideShort = Object.fromEntries(Array.from({ length: 100_000 }, (_, i) => [`k${i}`, i]));
    expect(describeThrown(wideShort)).toMatch(/^{ k0: 0, k1: 1, .* k9: 9, \.\.\. 99990 more }$/);
    expect(describeThrown(deep)).toBe('{ deep: { deep: [Object] } }');
    expect(describeThrown('x'.repeat(50), 20)).toBe(`${'x'.repeat(17)}...`);
  });
});

describe('toWireError and UserCodeError.from', () => {
  it('keeps shoal errors as they are', () => {
    const wire = toWireError(new NotFoundError('no such thing'));
    expect(wire).toMatchObject({ code: 'ERR_NOT_FOUND', name: 'NotFoundError', message: 'no such thing', httpStatus: 404 });
  });

  it('turns every hostile value into ERR_USER_CODE without throwing', () => {
    for (const value of [undefined, null, 'text', 3, Object.create(null), hostile(), new ThrowingError(), cyclic(), trap(), Symbol('s')]) {
      const wire = toWireError(value);
      expect(wire.code).toBe('ERR_USER_CODE');
      expect(wire.message).toBe(describeThrown(value));
      // What crosses the wire must be plain data.
      expect(() => JSON.stringify(wire)).not.toThrow();
      expect(rebuildError(wire)).toBeInstanceOf(UserCodeError);
    }
  });

  it('keeps an Error\'s class name and a bounded stack', () => {
    const err = new TypeError('bad');
    err.stack = `TypeError: bad\n${'    at x\n'.repeat(10_000)}`;
    const wire = toWireError(err);
    expect(wire.details).toMatchObject({ userName: 'TypeError' });
    expect((wire.details!.userStack as string).length).toBeLessThanOrEqual(8000);
  });

  it('wraps with a prefix and the deployment', () => {
    const e = UserCodeError.from(undefined, { deployment: 'rec', prefix: 'replica r1 failed to start: ' });
    expect(e).toBeInstanceOf(UserCodeError);
    expect(e.message).toBe('replica r1 failed to start: undefined');
    expect(e.details).toMatchObject({ deployment: 'rec' });
  });

  it('instanceof ShoalError is false, not a throw, for a Proxy', () => {
    expect(trap() instanceof ShoalError).toBe(false);
  });
});
