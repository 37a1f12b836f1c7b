import { describe, expect, it } from 'vitest';
import { InvalidOptionError, compileDeploymentOptions, deployment, type DeploymentOptions } from '@shoal/core';

function errorFor(fn: () => unknown): InvalidOptionError {
  try { fn(); } catch (err) { expect(err).toBeInstanceOf(InvalidOptionError); return err as InvalidOptionError; }
  throw new Error('expected an InvalidOptionError');
}

const compile = (semanticCache: unknown) => compileDeploymentOptions({ semanticCache } as DeploymentOptions, 'qa');

describe('semanticCache option', () => {
  it('fills defaults and recompiles to itself', () => {
    const c = compile({ embed: 'embed' }).semanticCache!;
    expect(c).toEqual({ embed: 'embed', threshold: 0.9, maxEntries: 100_000, ttlMs: 0 });
    expect(compile(c).semanticCache).toEqual(c);
    expect(compile({ embed: 'vec', threshold: 1, maxEntries: 5, ttlMs: 60_000, methods: ['answer', 'answer'] }).semanticCache)
      .toEqual({ embed: 'vec', threshold: 1, maxEntries: 5, ttlMs: 60_000, methods: ['answer'] });
    expect(compileDeploymentOptions({}, 'qa').semanticCache).toBeUndefined();
  });

  it('names the option path of every bad value', () => {
    const cases: Array<[unknown, RegExp]> = [
      ['embed', /deployment\.semanticCache: must be an object/],
      [{}, /deployment\.semanticCache\.embed: is required/],
      [{ embed: 3 }, /deployment\.semanticCache\.embed: must be a method name/],
      [{ embed: '_private' }, /deployment\.semanticCache\.embed: must not start with _/],
      [{ embed: 'e', threshold: 0 }, /deployment\.semanticCache\.threshold: must be in \(0, 1\]/],
      [{ embed: 'e', threshold: 1.01 }, /deployment\.semanticCache\.threshold: must be in \(0, 1\]/],
      [{ embed: 'e', threshold: '0.9' }, /deployment\.semanticCache\.threshold: must be a number/],
      [{ embed: 'e', maxEntries: 0 }, /deployment\.semanticCache\.maxEntries: must be between 1 and 10000000/],
      [{ embed: 'e', maxEntries: 1.5 }, /deployment\.semanticCache\.maxEntries: must be an integer/],
      [{ embed: 'e', ttlMs: -1 }, /deployment\.semanticCache\.ttlMs: must be between 0/],
      [{ embed: 'e', methods: [] }, /deployment\.semanticCache\.methods: must be a non-empty array/],
      [{ embed: 'e', methods: ['ok', 'bad name'] }, /deployment\.semanticCache\.methods\[1\]: must be a method name/],
      [{ embed: 'e', methods: ['answer', 'e'] }, /deployment\.semanticCache\.methods\[1\]: is the embed method "e", which is never cached/],
      [{ embed: 'e', treshold: 0.9 }, /deployment\.semanticCache\.treshold: is not a semanticCache option/],
    ];
    for (const [input, message] of cases) expect(errorFor(() => compile(input)).message).toMatch(message);
  });

  it('checks at declaration that embed names a method of the class', () => {
    class Qa { embed(q: string): number[] { return [q.length, 1]; } answer(q: string): string { return q; } }
    expect(deployment(Qa, { semanticCache: { embed: 'embed' } }).options.semanticCache?.embed).toBe('embed');
    class Field { vector = 3; answer(): number { return 1; } }
    // A field is known only on the instance: the replica checks it when it starts.
    expect(deployment(Field, { semanticCache: { embed: 'vectorize' } }).options.semanticCache?.embed).toBe('vectorize');
    class NotMethod { get embed(): number { return 1; } }
    expect(errorFor(() => deployment(NotMethod, { semanticCache: { embed: 'embed' } })).message).toMatch(/deployment\.semanticCache\.embed: names "embed" of class "NotMethod", which is not a method/);
    expect(errorFor(() => deployment(Qa, { semanticCache: { embed: 'init' } })).message).toMatch(/deployment\.semanticCache\.embed: names the lifecycle hook "init"/);
    expect(errorFor(() => deployment((x: number) => x, { semanticCache: { embed: 'embed' } })).message).toMatch(/deployment\.semanticCache: needs a class/);
    expect(errorFor(() => deployment(Qa).withOptions({ semanticCache: { embed: 'embed', methods: ['init'] } })).message).toMatch(/deployment\.semanticCache\.methods\[0\]: names the lifecycle hook/);
  });
});
