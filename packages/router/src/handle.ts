/** Handles: typed proxies that turn `handle.method(...args)` into a router call. */
import { Deadline, InvalidOptionError, checkModelId, type CallOptions, type Handle, type TraceContext } from '@shoal/core';
import type { Router } from './router.ts';

export interface HandleTarget {
  router: Router;
  /** `${app}/${deployment}` */
  key: string;
  /** Method names the deployment's prototype defines (informational; instance fields such as batched methods add more). */
  methods: readonly string[];
  /** Deadline inherited from the caller's request (wall ms), so cancellation reaches downstream calls. */
  inheritedDeadline?: () => Deadline | undefined;
  inheritedSignal?: () => AbortSignal | undefined;
  /** The calling request's priority, used when the call sets none. */
  inheritedPriority?: () => number | undefined;
  /** The calling request's model id (multiplexing), used when the call sets none. */
  inheritedModelId?: () => string | undefined;
  /** The calling request's id and trace context: the call is a child of its span, with its request id. */
  inheritedRequest?: () => { readonly requestId?: string | undefined; readonly trace?: TraceContext | undefined } | undefined;
}

export function createHandle<T>(target: HandleTarget, opts: CallOptions = {}): Handle<T> {
  const methods = new Set(target.methods);
  const cache = new Map<string, (...args: unknown[]) => Promise<unknown>>();
  return new Proxy({} as Handle<T>, {
    get(_obj, prop) {
      if (prop === 'withOptions') return (o: CallOptions) => createHandle<T>(target, { ...opts, ...o });
      if (prop === 'then' || typeof prop === 'symbol') return undefined; // not a thenable
      let fn = cache.get(prop);
      if (fn !== undefined) return fn;
      // Names outside the prototype's methods (batched methods are instance fields) go to the replica, which
      // answers NotFoundError listing what it has. TypeScript already rejects unknown names at compile time.
      fn = (...args: unknown[]) => {
        const timeoutMs = opts.timeoutMs;
        if (timeoutMs !== undefined && (!Number.isFinite(timeoutMs) || timeoutMs <= 0)) {
          return Promise.reject(new InvalidOptionError('handle.withOptions.timeoutMs', 'must be a positive number', timeoutMs));
        }
        const clock = target.router.clock;
        let deadline = timeoutMs === undefined ? undefined : Deadline.after(clock, timeoutMs);
        const inherited = target.inheritedDeadline?.();
        if (inherited !== undefined) deadline = deadline === undefined ? inherited : Math.min(deadline, inherited);
        if (deadline === undefined) {
          const def = target.router.requestTimeoutMs(target.key);
          if (def > 0) deadline = Deadline.after(clock, def);
        }
        const signals = [opts.signal, target.inheritedSignal?.()].filter((s): s is AbortSignal => s !== undefined);
        const signal = signals.length === 0 ? undefined : signals.length === 1 ? signals[0] : AbortSignal.any(signals);
        const priority = opts.priority ?? target.inheritedPriority?.();
        if (opts.modelId !== undefined) {
          try { checkModelId('handle.withOptions.modelId', opts.modelId); } catch (err) { return Promise.reject(err); }
        }
        const modelId = opts.modelId ?? target.inheritedModelId?.();
        const caller = target.inheritedRequest?.();
        return target.router.call(target.key, prop, args, {
          deadline, signal, ...(priority === undefined ? {} : { priority }), ...(modelId === undefined ? {} : { modelId }),
          ...(caller?.requestId === undefined ? {} : { requestId: caller.requestId }), ...(caller?.trace === undefined ? {} : { trace: caller.trace }),
        });
      };
      cache.set(prop, fn);
      return fn;
    },
  });
}
