/** Fake model handles for cascade tests: they implement Handle<Model> and record every call. */
import { requestContext, type RequestContext } from '../../src/context.ts';
import type { CallOptions, Handle } from '../../src/deployment.ts';

export interface Answer { label: string; score: number }

/** The shape both fake models have: one method, predict(x). */
export class Model {
  predict(x: number): Answer { return { label: x >= 0.5 ? 'pos' : 'neg', score: x }; }
}

export interface RecordedCall {
  x: number;
  opts: CallOptions;
  /** The request context the call was made in (undefined outside one). */
  ctx: RequestContext | undefined;
}

export class FakeHandle implements Handle<Model> {
  constructor(
    private readonly impl: (x: number, opts: CallOptions) => Answer | Promise<Answer>,
    private readonly opts: CallOptions = {},
    readonly calls: RecordedCall[] = [],
  ) {}

  readonly predict = (x: number): Promise<Answer> => {
    this.calls.push({ x, opts: this.opts, ctx: requestContext() });
    return Promise.resolve().then(() => this.impl(x, this.opts));
  };

  withOptions(o: CallOptions): Handle<Model> {
    return new FakeHandle(this.impl, { ...this.opts, ...o }, this.calls);
  }
}
