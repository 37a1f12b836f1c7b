/** Handles: typed proxies that turn `handle.method(...args)` into a router call. */
import { DEFAULT_STREAM_WINDOW, Deadline, InvalidOptionError, checkModelId, type CallOptions, type Handle, type TraceContext } from '@shoal/core';
import type { RouteOptions, Router } from './router.ts';
import { HandleStream } from './stream-handle.ts';

export interface HandleTarget {
  router: Router;
  /** `${app}/${deployment}` */
  key: string;
  /** Method names the deployment's prototype defines (informational; instance fields such as batched methods add more). */
  methods: readonly string[];
  /** Methods that stream (async generator methods, see streamMethodNames): calls to them return a HandleStream. @default none */
  streams?: readonly string[];
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
  const streams = new Set(target.streams ?? []);
  const cache = new Map<string, (...args: unknown[]) => unknown>();
  return new Proxy({} as Handle<T>, {
    get(_obj, prop) {
      if (prop === 'withOptions') return (o: CallOptions) => createHandle<T>(target, { ...opts, ...o });
      if (prop === 'then' || typeof prop === 'symbol') return undefined; // not a thenable
      let fn = cache.get(prop);
      if (fn !== undefined) return fn;
      if (opts.stream === true || streams.has(prop)) {
        const method = prop;
        // A streaming method: its options are read now (the calling request's deadline and signal), the call is
        // sent once iteration begins, with the stream's own signal beside the caller's.
        fn = (...args: unknown[]) => streamCall(target, opts, method, args);
        cache.set(prop, fn);
        return fn;
      }
      // Names outside the prototype's methods (batched methods are instance fields) go to the replica, which
      // answers NotFoundError listing what it has. TypeScript already rejects unknown names at compile time.
      // An instance field that streams (a continuousBatch method) is known only once a replica built its instance:
      // the route entry says so (one lookup per call).
      fn = (...args: unknown[]) => {
        if (target.router.streamFieldsOf(target.key)?.has(prop) === true) return streamCall(target, opts, prop, args);
        let o: RouteOptions;
        try { o = routeOptions(target, opts); } catch (err) { return Promise.reject(err); }
        return target.router.call(target.key, prop, args, o);
      };
      cache.set(prop, fn);
      return fn;
    },
  });
}

/** A call to a streaming method: a HandleStream that sends it once iteration begins. */
function streamCall(target: HandleTarget, opts: CallOptions, method: string, args: unknown[]): HandleStream {
  let o: RouteOptions | Error;
  try { o = routeOptions(target, opts); } catch (err) { o = err as Error; }
  return new HandleStream((own) => {
    if (o instanceof Error) return Promise.reject(o);
    const signal = o.signal === undefined ? own : AbortSignal.any([own, o.signal as AbortSignal]);
    return target.router.call(target.key, method, args, { ...o, signal, stream: DEFAULT_STREAM_WINDOW });
  }, `${target.key}.${method}`);
}

/** A call's route options: the handle's, else inherited from the calling request; a bad option throws. */
function routeOptions(target: HandleTarget, opts: CallOptions): RouteOptions {
  const timeoutMs = opts.timeoutMs;
  if (timeoutMs !== undefined && (!Number.isFinite(timeoutMs) || timeoutMs <= 0)) {
    throw new InvalidOptionError('handle.withOptions.timeoutMs', 'must be a positive number', timeoutMs);
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
  if (opts.modelId !== undefined) checkModelId('handle.withOptions.modelId', opts.modelId);
  const modelId = opts.modelId ?? target.inheritedModelId?.();
  const caller = target.inheritedRequest?.();
  // Fields set one by one rather than spread from conditional literals: a spread costs tens of ns per call.
  const o: RouteOptions = { deadline, signal };
  if (priority !== undefined) o.priority = priority;
  if (modelId !== undefined) o.modelId = modelId;
  if (caller?.requestId !== undefined) o.requestId = caller.requestId;
  if (caller?.trace !== undefined) o.trace = caller.trace;
  if (opts.cache !== undefined) o.cache = opts.cache;
  return o;
}
