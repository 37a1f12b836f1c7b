/**
 * Deployment options: the documented input form, and the compiled form with every default filled in and every
 * unit normalised. Compiled once, when a deployment is declared; errors name the full option path.
 */
import { InvalidOptionError } from './errors.ts';

export interface ResourceOptions {
  /** CPU cores one replica reserves on its worker. @default 1 */
  cpus?: number;
  /** GPUs one replica reserves; fractions share one GPU logically (0.25 = four replicas per GPU). @default 0 */
  gpus?: number;
  /** Host memory one replica reserves, in bytes. @default 0 */
  memory?: number;
}

export interface DeploymentOptions {
  /** Unique name within the application. @default the class or function name */
  name?: string;
  /** Replicas to keep running. @default 1 */
  numReplicas?: number;
  /** Requests one replica runs at once; more wait in the router's queue. @default 100 */
  maxOngoingRequests?: number;
  /** Requests the router queues for this deployment when every replica is full; past it, 503. @default 1000 */
  maxQueuedRequests?: number;
  /** Largest HTTP request body this deployment accepts when it is an ingress; past it, 413. @default 16 MiB */
  maxRequestBytes?: number;
  /** Default deadline of a request, from its arrival; past it, 504. 0 = none. @default 0 */
  requestTimeoutMs?: number;
  /** Resources one replica reserves on its worker. */
  resources?: ResourceOptions;
  /** Passed to the replica's `reconfigure(userConfig)` at start and whenever it changes, without a restart. @default undefined */
  userConfig?: unknown;
  /** How often the controller calls the replica's `checkHealth()`. @default 10000 */
  healthCheckPeriodMs?: number;
  /** A health check slower than this counts as failed. @default 30000 */
  healthCheckTimeoutMs?: number;
  /** How long a draining replica may finish its ongoing requests before it is stopped. @default 20000 */
  gracefulShutdownTimeoutMs?: number;
}

export interface CompiledResources { cpus: number; gpus: number; memory: number }

export interface CompiledDeploymentOptions {
  name: string;
  numReplicas: number;
  maxOngoingRequests: number;
  maxQueuedRequests: number;
  maxRequestBytes: number;
  requestTimeoutMs: number;
  resources: CompiledResources;
  userConfig: unknown;
  healthCheckPeriodMs: number;
  healthCheckTimeoutMs: number;
  gracefulShutdownTimeoutMs: number;
}

const NAME_RE = /^[A-Za-z_][A-Za-z0-9_.-]{0,127}$/;

export function checkInt(path: string, value: unknown, min: number, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value)) throw new InvalidOptionError(path, 'must be an integer', value);
  if (value < min || value > max) throw new InvalidOptionError(path, `must be between ${min} and ${max}`, value);
  return value;
}

export function checkNumber(path: string, value: unknown, min: number, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new InvalidOptionError(path, 'must be a finite number', value);
  if (value < min) throw new InvalidOptionError(path, `must be >= ${min}`, value);
  return value;
}

export function checkName(path: string, value: unknown): string {
  if (typeof value !== 'string' || !NAME_RE.test(value)) {
    throw new InvalidOptionError(path, 'must be 1-128 characters of letters, digits, _ . - starting with a letter or _', value);
  }
  return value;
}

const KNOWN = new Set(['name', 'numReplicas', 'maxOngoingRequests', 'maxQueuedRequests', 'maxRequestBytes', 'requestTimeoutMs', 'resources', 'userConfig', 'healthCheckPeriodMs', 'healthCheckTimeoutMs', 'gracefulShutdownTimeoutMs', 'batch']);

export function compileDeploymentOptions(input: DeploymentOptions, defaultName: string, path = 'deployment'): CompiledDeploymentOptions {
  if (typeof input !== 'object' || input === null) throw new InvalidOptionError(path, 'must be an object', input);
  for (const key of Object.keys(input)) if (!KNOWN.has(key)) throw new InvalidOptionError(`${path}.${key}`, 'is not a deployment option');
  const name = checkName(`${path}.name`, input.name ?? defaultName);
  const res = input.resources ?? {};
  if (typeof res !== 'object' || res === null) throw new InvalidOptionError(`${path}.resources`, 'must be an object', res);
  for (const key of Object.keys(res)) if (!['cpus', 'gpus', 'memory'].includes(key)) throw new InvalidOptionError(`${path}.resources.${key}`, 'is not a resource (cpus, gpus, memory)');
  const gpus = checkNumber(`${path}.resources.gpus`, res.gpus, 0, 0);
  if (gpus > 1 && !Number.isInteger(gpus)) throw new InvalidOptionError(`${path}.resources.gpus`, 'above 1 must be a whole number', gpus);
  const compiled: CompiledDeploymentOptions = {
    name,
    numReplicas: checkInt(`${path}.numReplicas`, input.numReplicas, 0, 1, 10_000),
    maxOngoingRequests: checkInt(`${path}.maxOngoingRequests`, input.maxOngoingRequests, 1, 100),
    maxQueuedRequests: checkInt(`${path}.maxQueuedRequests`, input.maxQueuedRequests, 0, 1000),
    maxRequestBytes: checkInt(`${path}.maxRequestBytes`, input.maxRequestBytes, 1, 16 * 1024 * 1024),
    requestTimeoutMs: checkInt(`${path}.requestTimeoutMs`, input.requestTimeoutMs, 0, 0),
    resources: {
      cpus: checkNumber(`${path}.resources.cpus`, res.cpus, 0, 1),
      gpus,
      memory: checkInt(`${path}.resources.memory`, res.memory, 0, 0),
    },
    userConfig: input.userConfig,
    healthCheckPeriodMs: checkInt(`${path}.healthCheckPeriodMs`, input.healthCheckPeriodMs, 1, 10_000),
    healthCheckTimeoutMs: checkInt(`${path}.healthCheckTimeoutMs`, input.healthCheckTimeoutMs, 1, 30_000),
    gracefulShutdownTimeoutMs: checkInt(`${path}.gracefulShutdownTimeoutMs`, input.gracefulShutdownTimeoutMs, 0, 20_000),
  };
  return compiled;
}
