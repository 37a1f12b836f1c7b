/**
 * Declaring deployments and composing them into application graphs.
 *
 *   class Model { predict(x: number) { return x * 2; } }
 *   class Ingress {
 *     constructor(private model: Handle<Model>) {}
 *     async fetch(req: ShoalRequest) { return { y: await this.model.predict(Number(req.query.get('x'))) }; }
 *   }
 *   export default deployment(Ingress).bind(deployment(Model, { numReplicas: 2 }).bind());
 */
import { InvalidOptionError, DeployError } from './errors.ts';
import { compileDeploymentOptions, type CompiledDeploymentOptions, type DeploymentOptions } from './options.ts';
import type { CompiledSemanticCache } from './semantic-cache-options.ts';

/** Per-call options of a handle call. */
export interface CallOptions {
  /** Deadline for this call, in ms from now. @default the deployment's requestTimeoutMs */
  timeoutMs?: number;
  /** Aborting cancels the call: dropped if queued, signalled to user code if running. */
  signal?: AbortSignal;
  /** Batch priority (higher first) for batched methods. @default 0 */
  priority?: number;
  /**
   * The model a multiplexed deployment serves this call with (see getModel()); routers prefer replicas holding it.
   * @default the calling request's model id, if any
   */
  modelId?: string;
  /**
   * 'bypass': the target deployment's response cache neither answers nor stores this call (docs/caching.md).
   * @default the cache is used when the deployment has one
   */
  cache?: 'bypass';
  /**
   * Take every answer as a stream: each method returns a {@link HandleStream}. Needed only for a method that
   * returns an async iterable without being an async generator method (`async *m()`), which streams by itself.
   * @default false
   */
  stream?: boolean;
}

/**
 * What a handle gives for a streaming method: iterate it (`for await (const tok of handle.generate(p))`), or
 * await it for an AsyncIterable. The call is sent when iteration (or the await) begins; a `break` cancels it at
 * the replica, and with it that replica's own downstream calls.
 */
export interface HandleStream<C> extends AsyncIterable<C>, PromiseLike<AsyncIterable<C>> {}

type AnyFn = (...args: never[]) => unknown;
/** Methods the runtime calls on a replica; they are not reachable through handles. */
export type LifecycleHook = 'init' | 'reconfigure' | 'checkHealth' | 'shutdown' | 'constructor' | 'loadModel' | 'unloadModel';
export const LIFECYCLE_HOOKS: readonly string[] = ['init', 'reconfigure', 'checkHealth', 'shutdown', 'constructor', 'loadModel', 'unloadModel'];
type MethodKeys<T> = { [K in keyof T]-?: T[K] extends AnyFn ? (K extends LifecycleHook ? never : K) : never }[keyof T];

/** A typed reference to another deployment, usable inside a replica: `await handle.method(...args)`. */
export type Handle<T> = {
  readonly [K in MethodKeys<T>]: T[K] extends (...args: infer A) => infer R
    ? ([R] extends [never] ? (...args: A) => Promise<never> : [R] extends [AsyncIterable<infer C>] ? (...args: A) => HandleStream<C> : (...args: A) => Promise<Awaited<R>>)
    : never;
} & {
  /** The same handle with per-call options applied to every call made through it. */
  withOptions(opts: CallOptions): Handle<T>;
};

const APP_BRAND = Symbol.for('shoal.application');
const DEPLOYMENT_BRAND = Symbol.for('shoal.deployment');

/** A deployment with its constructor arguments bound: a node of an application graph. */
export class Application<T = unknown> {
  readonly [APP_BRAND] = true;
  /** Phantom field carrying the instance type; never set. */
  declare readonly __instance?: T;
  constructor(readonly deployment: Deployment<T, never[]>, readonly args: readonly unknown[]) {}

  static isApplication(v: unknown): v is Application {
    return typeof v === 'object' && v !== null && (v as Record<symbol, unknown>)[APP_BRAND] === true;
  }
}

/** A constructor argument accepts, in place of a Handle<T>, a bound deployment of T. */
export type BindArgs<A extends readonly unknown[]> = { [K in keyof A]: A[K] extends Handle<infer T> ? Application<T> | A[K] : A[K] };

export type DeploymentKind = 'class' | 'function';

export class Deployment<T, A extends readonly unknown[]> {
  readonly [DEPLOYMENT_BRAND] = true;
  constructor(
    readonly kind: DeploymentKind,
    /** For class deployments the class; for function deployments a class wrapping the function as `call`. */
    readonly factory: new (...args: A) => T,
    readonly options: CompiledDeploymentOptions,
    /** Options exactly as the user wrote them, kept so `.options()` can override some of them. */
    readonly rawOptions: DeploymentOptions,
  ) {}

  /** Binds constructor arguments; bound deployments among them become handles inside the replica. */
  bind(...args: BindArgs<A>): Application<T> {
    return new Application<T>(this as unknown as Deployment<T, never[]>, args);
  }

  /** A copy of this deployment with some options replaced. */
  withOptions(overrides: DeploymentOptions): Deployment<T, A> {
    const raw = { ...this.rawOptions, ...overrides };
    const compiled = compileDeploymentOptions(raw, this.options.name);
    if (compiled.multiplex !== undefined) checkMultiplexHooks(this.factory, this.kind === 'class', this.options.name);
    if (compiled.semanticCache !== undefined) checkSemanticCacheMethods(this.factory, this.kind === 'class', this.options.name, compiled.semanticCache);
    return new Deployment(this.kind, this.factory, compiled, raw);
  }

  static isDeployment(v: unknown): v is Deployment<unknown, unknown[]> {
    return typeof v === 'object' && v !== null && (v as Record<symbol, unknown>)[DEPLOYMENT_BRAND] === true;
  }
}

function isClass(fn: unknown): boolean {
  return typeof fn === 'function' && /^class[\s{]/.test(Function.prototype.toString.call(fn));
}

/** The instance type of a function deployment: one method, `call`. */
export interface FunctionInstance<F extends (...args: never[]) => unknown> { call: F }

export function deployment<C extends new (...args: never[]) => object>(cls: C, options?: DeploymentOptions): Deployment<InstanceType<C>, ConstructorParameters<C>>;
export function deployment<F extends (...args: never[]) => unknown>(fn: F, options?: DeploymentOptions): Deployment<FunctionInstance<F>, []>;
export function deployment(target: unknown, options: DeploymentOptions = {}): Deployment<unknown, never[]> {
  if (typeof target !== 'function') throw new InvalidOptionError('deployment(target)', 'must be a class or a function', target);
  const defaultName = (target as { name?: string }).name || 'deployment';
  const compiled = compileDeploymentOptions(options, defaultName);
  if (compiled.multiplex !== undefined) checkMultiplexHooks(target, isClass(target), defaultName);
  if (compiled.semanticCache !== undefined) checkSemanticCacheMethods(target, isClass(target), defaultName, compiled.semanticCache);
  if (isClass(target)) return new Deployment('class', target as new (...args: never[]) => unknown, compiled, options);
  const fn = target as (...args: unknown[]) => unknown;
  // An async generator function stays one, so handles know from the class that `call` streams.
  const Wrapped = isAsyncGeneratorFunction(fn)
    ? class { async *call(...args: unknown[]): AsyncGenerator<unknown, unknown> { return yield* (fn(...args) as AsyncGenerator<unknown, unknown>); } }
    : class { call(...args: unknown[]): unknown { return fn(...args); } };
  Object.defineProperty(Wrapped, 'name', { value: defaultName });
  return new Deployment('function', Wrapped as unknown as new (...args: never[]) => unknown, compiled, options);
}

/** A multiplexed deployment must be a class with loadModel(modelId), and unloadModel(modelId, model) if any, on its prototype. */
function checkMultiplexHooks(target: unknown, cls: boolean, name: string): void {
  if (!cls) throw new InvalidOptionError('deployment.multiplex', `needs a class with a loadModel(modelId) method; "${name}" is a function`);
  const proto = (target as { prototype: Record<string, unknown> }).prototype;
  if (typeof proto.loadModel !== 'function') throw new InvalidOptionError('deployment.multiplex', `needs a loadModel(modelId) method on class "${name}"`);
  if (proto.unloadModel !== undefined && typeof proto.unloadModel !== 'function') throw new InvalidOptionError('deployment.multiplex', `unloadModel of class "${name}" must be a method (modelId, model)`);
}

/**
 * A semantic cache needs a class whose `embed` names a method. A method on the prototype is checked here; a name the
 * prototype lacks may be a field the constructor sets (a batched method, `embed = batch(...)`), so the replica
 * checks it on the instance when it starts, and a missing one fails the start naming the option.
 */
function checkSemanticCacheMethods(target: unknown, cls: boolean, name: string, opts: CompiledSemanticCache): void {
  if (!cls) throw new InvalidOptionError('deployment.semanticCache', `needs a class with an embedding method "${opts.embed}"; "${name}" is a function`);
  const proto = (target as { prototype: Record<string, unknown> }).prototype;
  for (const [path, method] of [['embed', opts.embed] as const, ...(opts.methods ?? []).map((m, i) => [`methods[${i}]`, m] as const)]) {
    const d = Object.getOwnPropertyDescriptor(proto, method) ?? inheritedDescriptor(proto, method);
    if (d !== undefined && typeof d.value !== 'function') throw new InvalidOptionError(`deployment.semanticCache.${path}`, `names "${method}" of class "${name}", which is not a method`, method);
    if (LIFECYCLE_HOOKS.includes(method)) throw new InvalidOptionError(`deployment.semanticCache.${path}`, `names the lifecycle hook "${method}", which is not a request method`, method);
  }
}

function inheritedDescriptor(proto: object, key: string): PropertyDescriptor | undefined {
  for (let o = Object.getPrototypeOf(proto) as object | null; o !== null && o !== Object.prototype; o = Object.getPrototypeOf(o) as object | null) {
    const d = Object.getOwnPropertyDescriptor(o, key);
    if (d !== undefined) return d;
  }
  return undefined;
}

/**
 * A deployment class that serves a model over the Open Inference Protocol carries this static property (the ONNX
 * backend's classes do); every ingress then answers /v2/models/<model> for it, whatever application it is in.
 */
export const OIP_MODEL: unique symbol = Symbol.for('shoal.oipModel') as never;

export interface OipModelInfo {
  /** Model name in /v2/models/<model>. */
  model: string;
  /** Version in /v2/models/<model>/versions/<version>. */
  version: string;
  /** @example "onnxruntime_onnx" */
  platform: string;
}

/** The serialisable description of an application graph that the head stores and workers rebuild. */
export interface DeploymentSpec {
  name: string;
  kind: DeploymentKind;
  options: CompiledDeploymentOptions;
  /** Names of deployments this one holds handles to. */
  dependencies: string[];
  /** Methods reachable through handles (lifecycle hooks excluded). HTTP goes to `fetch`, else to `call`. */
  methods: string[];
  /** Set for a model served over the Open Inference Protocol (its class's OIP_MODEL). */
  oip?: OipModelInfo;
}

export interface AppSpec {
  name: string;
  /** URL prefix the ingress serves, or null for no HTTP route. */
  routePrefix: string | null;
  ingress: string;
  /** Absolute path (or URL) of the module workers import to rebuild the graph. */
  modulePath: string;
  /** Which export of the module holds the application. */
  exportName: string;
  deployments: DeploymentSpec[];
  /**
   * sha256 (hex) of the module file's content when it was deployed, set by the head: part of every deployment's
   * version (an edited file is a new version), the key workers import it under (so two versions of one file run
   * side by side), and checked by workers against the file they read. @default none (the head fills it)
   */
  codeHash?: string;
}

function methodNames(factory: new (...args: never[]) => unknown): string[] {
  const names = new Set<string>();
  let proto: object | null = factory.prototype as object;
  while (proto !== null && proto !== Object.prototype) {
    for (const key of Object.getOwnPropertyNames(proto)) {
      if (!LIFECYCLE_HOOKS.includes(key) && typeof Object.getOwnPropertyDescriptor(proto, key)?.value === 'function') names.add(key);
    }
    proto = Object.getPrototypeOf(proto) as object | null;
  }
  return [...names].sort();
}

function isAsyncGeneratorFunction(f: unknown): boolean {
  return typeof f === 'function' && Object.prototype.toString.call(f) === '[object AsyncGeneratorFunction]';
}

/**
 * Methods of a deployment class written as async generators (`async *generate()`): handles return a
 * HandleStream for them. (A method that returns another async iterable streams too; its callers use
 * `withOptions({ stream: true })`, or await the call.)
 */
export function streamMethodNames(factory: new (...args: never[]) => unknown): string[] {
  const names = new Set<string>();
  let proto: object | null = factory.prototype as object;
  while (proto !== null && proto !== Object.prototype) {
    for (const key of Object.getOwnPropertyNames(proto)) {
      if (!LIFECYCLE_HOOKS.includes(key) && isAsyncGeneratorFunction(Object.getOwnPropertyDescriptor(proto, key)?.value)) names.add(key);
    }
    proto = Object.getPrototypeOf(proto) as object | null;
  }
  return [...names].sort();
}

/** Visits every Application reachable from a value (through arrays and plain objects). */
export function forEachApplication(value: unknown, visit: (app: Application) => void, seen = new Set<unknown>()): void {
  if (Application.isApplication(value)) { visit(value); return; }
  if (typeof value !== 'object' || value === null || seen.has(value)) return;
  seen.add(value);
  if (Array.isArray(value)) { for (const v of value) forEachApplication(v, visit, seen); return; }
  if (Object.getPrototypeOf(value) === Object.prototype) for (const v of Object.values(value)) forEachApplication(v, visit, seen);
}

/** Walks the graph from its ingress, checks deployment names are unique, and returns every node by name. */
export function collectGraph(root: Application): Map<string, Application> {
  const nodes = new Map<string, Application>();
  const walk = (app: Application): void => {
    const name = app.deployment.options.name;
    const existing = nodes.get(name);
    if (existing !== undefined) {
      if (existing === app) return;
      if (existing.deployment.factory !== app.deployment.factory) {
        throw new DeployError(`two different deployments are named "${name}" in one application; give one of them another name`);
      }
      return;
    }
    nodes.set(name, app);
    for (const arg of app.args) forEachApplication(arg, walk);
  };
  walk(root);
  return nodes;
}

export function buildAppSpec(root: Application, opts: { name: string; routePrefix: string | null; modulePath: string; exportName: string }): AppSpec {
  if (!Application.isApplication(root)) throw new DeployError(`export "${opts.exportName}" of ${opts.modulePath} is not an application: call .bind() on a deployment`);
  if (opts.routePrefix !== null && !opts.routePrefix.startsWith('/')) throw new InvalidOptionError('routePrefix', 'must start with "/"', opts.routePrefix);
  checkAppName(opts.name);
  const nodes = collectGraph(root);
  const deployments: DeploymentSpec[] = [];
  for (const [name, app] of nodes) {
    const deps = new Set<string>();
    for (const arg of app.args) forEachApplication(arg, (d) => deps.add(d.deployment.options.name));
    const oip = (app.deployment.factory as unknown as { [OIP_MODEL]?: OipModelInfo })[OIP_MODEL];
    deployments.push({ name, kind: app.deployment.kind, options: app.deployment.options, dependencies: [...deps], methods: methodNames(app.deployment.factory), ...(oip === undefined ? {} : { oip: { ...oip } }) });
  }
  return { name: opts.name, routePrefix: opts.routePrefix, ingress: root.deployment.options.name, modulePath: opts.modulePath, exportName: opts.exportName, deployments };
}

export function checkAppName(name: string): void {
  if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/.test(name)) throw new InvalidOptionError('app.name', 'must be 1-64 characters of letters, digits, _ . -', name);
}
