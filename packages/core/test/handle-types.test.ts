/**
 * Type-level tests of Handle<T>. vitest runs this file, but the checks that matter are made by the compiler:
 * packages/core/test/tsconfig.json includes it and the root tsconfig references that, so `tsc -b` (the first step of
 * `pnpm test`) fails if a `@ts-expect-error` below stops being an error, or an expectTypeOf stops holding.
 */
import { describe, expectTypeOf, it } from 'vitest';
import { deployment, type Application, type CallOptions, type FunctionInstance, type Handle } from '../src/index.ts';

class Model {
  predict(x: number, scale?: number): number { return x * (scale ?? 1); }
  async embed(text: string): Promise<Float32Array> { return new Float32Array(text.length); }
  label = 'not a method';
  init(): void {}
  checkHealth(): void {}
  reconfigure(_config: unknown): void {}
  shutdown(): void {}
}

class Ingress {
  constructor(readonly model: Handle<Model>, readonly greeting: string) {}
  async fetch(): Promise<number> { return this.model.predict(2); }
}

/** Never called: only compiled. */
function typeChecks(h: Handle<Model>): void {
  // @ts-expect-error: Model has no method "train".
  void h.train(1);
  // @ts-expect-error: wrong argument type.
  void h.predict('1');
  // @ts-expect-error: too many arguments.
  void h.embed('a', 'b');
  // @ts-expect-error: lifecycle hooks are not reachable through handles.
  void h.checkHealth();
  // @ts-expect-error: nor is init.
  void h.init();
  // @ts-expect-error: fields are not methods.
  void h.label;
  // @ts-expect-error: the result is a promise, not a number.
  const n: number = h.predict(1);
  void n;

  // @ts-expect-error: a bound deployment of another class is not a Handle<Model>.
  deployment(Ingress).bind(deployment(Ingress).bind(), 'hi');
  // @ts-expect-error: constructor arguments are checked too.
  deployment(Ingress).bind(deployment(Model).bind(), 42);
}
void typeChecks;

describe('Handle<T> types', () => {
  it('maps methods to promise-returning methods with the same parameters', () => {
    expectTypeOf<Handle<Model>['predict']>().toEqualTypeOf<(x: number, scale?: number) => Promise<number>>();
    expectTypeOf<Handle<Model>['embed']>().toEqualTypeOf<(text: string) => Promise<Float32Array>>();
    expectTypeOf<Handle<Model>['withOptions']>().toEqualTypeOf<(opts: CallOptions) => Handle<Model>>();
    expectTypeOf<keyof Handle<Model>>().toEqualTypeOf<'predict' | 'embed' | 'withOptions'>();
  });

  it('types function deployments as a handle with one method, call', () => {
    const d = deployment((a: number, b: string) => `${b}${a}`);
    expectTypeOf(d.bind()).toEqualTypeOf<Application<FunctionInstance<(a: number, b: string) => string>>>();
    expectTypeOf<Handle<FunctionInstance<(a: number, b: string) => string>>['call']>().toEqualTypeOf<(a: number, b: string) => Promise<string>>();
  });

  it('accepts a bound deployment where the constructor takes a handle', () => {
    const app = deployment(Ingress).bind(deployment(Model).bind(), 'hi');
    expectTypeOf(app).toEqualTypeOf<Application<Ingress>>();
  });
});
