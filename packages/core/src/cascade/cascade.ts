/**
 * `cascade()`: a declared composition of a small and a large model. It generates an ordinary class deployment (the
 * cascade's ingress) holding handles to both; workers rebuild it from the application module like any other node.
 */
import { requestContext } from '../context.ts';
import { Application, Deployment } from '../deployment.ts';
import type { HttpResponse, ShoalRequest } from '../http.ts';
import { compileDeploymentOptions } from '../options.ts';
import { serveCascadeHttp } from './http.ts';
import { prometheusObserver } from './metrics.ts';
import { compileCascadeOptions, type CascadeOptions } from './options.ts';
import { CascadeRunner, type CascadeAnswer, type CascadeModelHandle } from './runner.ts';
import { CascadeStats, fanOut, type CascadeStatsJson } from './stats.ts';

type AnyFn = (...args: never[]) => unknown;
type MethodOf<T, M extends PropertyKey> = M extends keyof T ? (T[M] extends AnyFn ? T[M] : never) : never;
/** Arguments of method M of T. */
export type CascadeArgs<T, M extends PropertyKey> = Parameters<MethodOf<T, M>>;
/** What method M of T answers, awaited. */
export type CascadeResult<T, M extends PropertyKey> = Awaited<ReturnType<MethodOf<T, M>>>;

/** The generated deployment: method M runs the cascade; fetch serves it over HTTP; cascadeStats() reads its counters. */
export type CascadeInstance<M extends string, A extends readonly unknown[], R> = {
  [K in M]: (...args: A) => Promise<R>;
} & {
  fetch(req: ShoalRequest): Promise<HttpResponse>;
  cascadeStats(): CascadeStatsJson;
};

const RUN = Symbol('cascade.run');

/**
 * Declares a cascade: `method` is called on `small` first; its answer is returned when
 * `confidence(answer) >= threshold`, and otherwise `large` is asked and its answer returned. A sample of confident
 * answers (`auditSampleRate`) is also asked of the large model in the background and compared with `agree`.
 *
 *   export const app = cascade({
 *     name: 'classify', small: Small.bind(), large: Large.bind(), method: 'predict',
 *     confidence: (out) => out.score, threshold: 0.8, auditSampleRate: 0.05, agree: (a, b) => a.label === b.label,
 *   });
 *
 * The application's ingress is the generated deployment: `handle.predict(x)` from another deployment, or over HTTP
 * `POST` a JSON body (see docs/cascades.md). Its counters: `cascadeStats()`, and shoal_cascade_* in /-/metrics.
 */
export function cascade<S extends object, L extends object, M extends string & keyof S & keyof L, E extends boolean = false>(
  options: CascadeOptions<CascadeArgs<S, M>, CascadeResult<S, M>, CascadeResult<L, M>, E> & { small: Application<S>; large: Application<L>; method: M },
): Application<CascadeInstance<M, CascadeArgs<S, M>, E extends true ? CascadeAnswer<CascadeResult<S, M> | CascadeResult<L, M>> : CascadeResult<S, M> | CascadeResult<L, M>>> {
  const c = compileCascadeOptions(options as unknown as CascadeOptions);
  const raw = { ...c.deployment, name: c.name };
  const compiled = compileDeploymentOptions(raw, c.name, 'cascade.deployment');

  class Cascade {
    readonly #stats: CascadeStats;
    readonly #runner: CascadeRunner;

    constructor(small: CascadeModelHandle, large: CascadeModelHandle) {
      // A replica is built inside its context: app, deployment and replica id label the counters.
      const ctx = requestContext();
      const labels = { app: ctx?.app ?? '', deployment: ctx?.deployment ?? c.name };
      this.#stats = new CascadeStats({ ...labels, replicaId: ctx?.replicaId ?? '', threshold: c.threshold, auditSampleRate: c.auditSampleRate });
      this.#runner = new CascadeRunner(c, small, large, this.#stats, fanOut([this.#stats, prometheusObserver(labels)]));
    }

    [RUN](args: unknown[]): Promise<CascadeAnswer> {
      return this.#runner.run(args);
    }

    fetch(req: ShoalRequest): Promise<HttpResponse> {
      return serveCascadeHttp(req, (args) => this.#runner.run(args), c.envelope, () => this.cascadeStats());
    }

    /** This replica's counters (the Prometheus series sum every replica's). */
    cascadeStats(): CascadeStatsJson {
      return this.#stats.json(this.#runner.inflightAudits);
    }

    shutdown(): void {
      this.#runner.close();
    }
  }
  Object.defineProperty(Cascade, 'name', { value: c.name });
  // The method is named by the user, so it is defined on the prototype here (where buildAppSpec lists methods).
  Object.defineProperty(Cascade.prototype, c.method, {
    value: async function (this: Cascade, ...args: unknown[]): Promise<unknown> {
      const result = await this[RUN](args);
      return c.envelope ? result : result.answer;
    },
    writable: true, configurable: true, enumerable: false,
  });
  const dep = new Deployment('class', Cascade as unknown as new (...args: never[]) => unknown, compiled, raw);
  return new Application(dep as Deployment<unknown, never[]>, [options.small, options.large]) as never;
}
