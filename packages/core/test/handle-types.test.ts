/**
 * Type-level tests of Handle<T> that fail vitest, not only tsc: fixtures/handle-types.ts is type-checked here as
 * written (no error: every expectTypeOf holds, every @ts-expect-error is used) and with its @ts-expect-error
 * directives disabled (each then reports exactly the error it names).
 */
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkTypeFixture } from '../../../test/type-fixture.mjs';

const here = import.meta.dirname;

describe('Handle<T> types (fixtures/handle-types.ts)', () => {
  const result = checkTypeFixture(resolve(here, 'fixtures/handle-types.ts'), resolve(here, 'tsconfig.json'));

  it('compile as written: every positive check holds and every expected error occurs', () => {
    expect(result.errors).toEqual([]);
  });

  it('each refused use is an error of the kind its directive names, once the directive is gone', () => {
    expect(result.expectations.map((e) => [e.text, e.got])).toEqual(result.expectations.map((e) => [e.text, [e.code]]));
    // The nine refusals of the fixture: a directive deleted there shows here.
    expect(result.expectations.map((e) => e.code)).toEqual([2339, 2345, 2554, 2339, 2339, 2339, 2322, 2345, 2345]);
    expect(result.stray).toEqual([]);
  });
});
