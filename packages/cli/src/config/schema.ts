/**
 * The config file's format (docs/config.md), as a zod schema, and its parser: YAML (or JSON, which YAML reads too)
 * into a checked ShoalConfig, every problem named by its path in the file and its line.
 *
 *   applications:
 *     - name: hello
 *       importPath: ./app.ts            # or ./app.ts:exportName; relative to this file's directory
 *       routePrefix: /
 *       deployments:                    # overrides of the options the app's code gave its deployments
 *         - name: Model
 *           numReplicas: 2
 *           userConfig: { bias: 0.5 }
 *
 * The schema checks the shape and the types; the rules between values (ranges, autoscaling bounds, rollout steps)
 * are core's compileDeploymentOptions', applied when the overrides meet the code's options (load.ts), so they exist
 * once. Objects are strict: an unknown field is an error, never ignored.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { LineCounter, parseDocument, type Document } from 'yaml';
import { z } from 'zod';
import { checkAppName, InvalidOptionError, type DeploymentOptions } from '@shoal/core';
import { ConfigError, pathString, type ConfigProblem } from './errors.ts';

/** What a value was, for "expected X, got Y". */
export function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? `${v.slice(0, 57)}...` : v);
  return String(v);
}

const int = (min: 0 | 1): z.ZodNumber => {
  const what = min === 0 ? 'expected a non-negative integer' : 'expected a positive integer';
  return z.number({ error: what }).int({ error: what }).min(min, { error: what });
};
const num = (positive: boolean): z.ZodNumber => {
  const what = positive ? 'expected a number > 0' : 'expected a number >= 0';
  return positive ? z.number({ error: what }).positive({ error: what }) : z.number({ error: what }).min(0, { error: what });
};
const str = (what = 'expected a string'): z.ZodString => z.string({ error: what }).min(1, { error: `${what} (not empty)` });
const list = <T extends z.ZodType>(item: T): z.ZodArray<T> => z.array(item, { error: 'expected a list' });
/** Any object: its fields are checked by core's compiler for that option, which names each bad one. */
const anyObject = z.record(z.string(), z.unknown(), { error: 'expected an object' });

/** A strict object: unknown fields are errors that list the fields it has. */
function strict<S extends z.ZodRawShape>(shape: S, what = 'expected an object'): z.ZodObject<S, z.core.$strict> {
  const fields = Object.keys(shape).join(', ');
  return z.strictObject(shape, { error: (iss) => (iss.code === 'unrecognized_keys' ? `is not a field here (fields: ${fields})` : what) });
}

/** Every field may be null: the code's value is dropped and the option's default applies. */
const opt = <T extends z.ZodType>(t: T): z.ZodOptional<z.ZodNullable<T>> => t.nullable().optional();

const RESOURCES = strict({
  cpus: opt(num(false)),
  gpus: opt(num(false)),
  memory: opt(int(0)),
  gpuMemory: opt(int(0)),
  sharedBlobs: opt(list(strict({ name: str(), bytes: int(0) }))),
  device: opt(z.enum(['cuda', 'host'], { error: "expected 'cuda' or 'host'" })),
});

const AUTOSCALING = strict({
  minReplicas: opt(int(0)),
  maxReplicas: opt(int(1)),
  initialReplicas: opt(int(0)),
  targetOngoingRequests: opt(num(true)),
  upscaleDelayMs: opt(int(0)),
  downscaleDelayMs: opt(int(0)),
  downscaleToZeroDelayMs: opt(int(0)),
  lookBackPeriodMs: opt(int(1)),
  smoothingFactor: opt(num(true)),
  upscaleSmoothingFactor: opt(num(true)),
  downscaleSmoothingFactor: opt(num(true)),
  downscaleTolerance: opt(num(false)),
  metricsIntervalMs: opt(int(1)),
});

/** The deployment options a config may set: every one DeploymentOptions has but its name (which selects it). */
export const OPTION_SHAPE = {
  numReplicas: opt(int(0)),
  maxOngoingRequests: opt(int(1)),
  maxQueuedRequests: opt(int(0)),
  maxRequestBytes: opt(int(1)),
  requestTimeoutMs: opt(int(0)),
  streamIdleTimeoutMs: opt(int(0)),
  resources: opt(RESOURCES),
  userConfig: z.unknown().optional(),
  rollout: opt(anyObject),
  healthCheckPeriodMs: opt(int(1)),
  healthCheckTimeoutMs: opt(int(1)),
  gracefulShutdownTimeoutMs: opt(int(0)),
  idempotentMethods: opt(list(str())),
  websocketMethods: opt(list(str())),
  autoscaling: opt(AUTOSCALING),
  multiplex: opt(strict({ maxModelsPerReplica: opt(int(1)), hotOngoingRequests: opt(int(1)) })),
  slo: opt(anyObject),
  cache: opt(anyObject),
  semanticCache: opt(anyObject),
  consume: opt(z.union([anyObject, list(anyObject)], { error: 'expected an object or a list of objects' })),
} satisfies Record<Exclude<keyof DeploymentOptions, 'name'>, z.ZodType>;

export type OptionKey = keyof typeof OPTION_SHAPE;
export const OPTION_KEYS = Object.keys(OPTION_SHAPE) as OptionKey[];

const ROUTE_PREFIX = 'expected a path starting with "/", or null for no HTTP route';
const DEPLOYMENT = strict({ name: str('expected a deployment name'), ...OPTION_SHAPE });
const APPLICATION = strict({
  name: str('expected an application name'),
  importPath: str('expected a module path, ./app.ts or ./app.ts:exportName'),
  routePrefix: z.union([z.string().startsWith('/', { error: ROUTE_PREFIX }), z.null()], { error: ROUTE_PREFIX }).optional(),
  deployments: list(DEPLOYMENT).optional(),
});
const HTTP = strict({ host: str('expected a host name or address').optional(), port: int(0).max(65_535, { error: 'expected a port, 0..65535' }).optional() });
const CONFIG = strict({ applications: list(APPLICATION).min(1, { error: 'expected at least one application' }), http: HTTP.optional() }, 'expected an object with applications: [...]');

/** One deployment's overrides: the fields the file sets (null: back to the option's default). */
export interface ConfigDeployment {
  name: string;
  options: { [K in OptionKey]?: unknown };
}

export interface ConfigApplication {
  /** Its position in the file's applications list (errors name it: applications[index]). */
  index: number;
  name: string;
  /** As written: `./app.ts` or `./app.ts:exportName`. */
  importPath: string;
  /** The module file, absolute (relative paths resolve against the config file's directory). */
  modulePath: string;
  exportName: string;
  /** @default '/' */
  routePrefix: string | null;
  deployments: ConfigDeployment[];
}

export interface ShoalConfig {
  applications: ConfigApplication[];
  /** The HTTP ingress of the head `shoal run CONFIG` starts (flags win). */
  http?: { host?: string; port?: number };
}

/** A parsed, checked file, and where each node of it is (for errors found later, when the apps load). */
export interface ParsedConfig {
  /** The file as the user named it, for messages. */
  file: string;
  dir: string;
  config: ShoalConfig;
  /** Line and column of the node at `path`, or of its nearest ancestor the file has. */
  locate(path: ReadonlyArray<string | number>): { line: number; column: number } | undefined;
  /** A ConfigError for one problem at `path`, located. */
  error(path: ReadonlyArray<string | number>, message: string): ConfigError;
}

/** A file's shape and names checked: every problem found, and the applications whose own entries are well-formed. */
export interface CheckedConfig {
  /** Its applications: those whose entries are well-formed (all of them when `problems` is empty). */
  parsed: ParsedConfig;
  problems: ConfigProblem[];
}

/** Reads a config file and checks its shape and names (checkConfig); ConfigError when it cannot be read. */
export function checkConfigFile(file: string): CheckedConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError(file, [{ path: '', message: code === 'ENOENT' ? 'no such file' : `cannot be read (${code ?? (err as Error).message})` }]);
  }
  return checkConfig(text, file, dirname(resolve(file)));
}

/** `./app.ts:exportName` into the file and the export; a Windows drive letter (`C:\\x.ts`) is not an export. */
export function splitImportPath(importPath: string): { module: string; exportName: string } {
  const m = /^(.*[^:]):([A-Za-z_$][\w$]*)$/.exec(importPath);
  if (m === null || /^[A-Za-z]$/.test(m[1]!)) return { module: importPath, exportName: 'default' };
  return { module: m[1]!, exportName: m[2]! };
}

/** Parses and checks config text (`dir`: what relative import paths resolve against); ConfigError naming every problem. */
export function parseConfig(text: string, file: string, dir: string): ParsedConfig {
  const checked = checkConfig(text, file, dir);
  if (checked.problems.length > 0) throw new ConfigError(file, checked.problems);
  return checked.parsed;
}

/**
 * Parses config text and checks it in two passes: the shape (types, unknown and missing fields) of the whole file,
 * then the names (applications, route prefixes and deployments given twice; application names) among the
 * applications whose entries are well-formed, which are also the applications it returns, for loading to check
 * further. A YAML syntax error or an empty file: ConfigError, with those problems alone.
 */
export function checkConfig(text: string, file: string, dir: string): CheckedConfig {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: true, uniqueKeys: true });
  const locate = (path: ReadonlyArray<string | number>): { line: number; column: number } | undefined => {
    for (let n = path.length; n >= 0; n--) {
      const node = (doc as Document).getIn(path.slice(0, n), true) as { range?: [number, number, number] } | undefined;
      if (node?.range !== undefined) {
        const { line, col } = lines.linePos(node.range[0]);
        return { line, column: col };
      }
    }
    return undefined;
  };
  const problem = (path: ReadonlyArray<string | number>, message: string): ConfigProblem => ({ path: pathString(path), message, ...locate(path) });
  const error = (path: ReadonlyArray<string | number>, message: string): ConfigError => new ConfigError(file, [problem(path, message)]);

  if (doc.errors.length > 0) {
    throw new ConfigError(file, doc.errors.map((e) => {
      const pos = e.linePos?.[0];
      const message = e.message.replace(/ at line \d+, column \d+[\s\S]*$/, '');
      return { path: '', message: `YAML syntax error: ${message}`, ...(pos === undefined ? {} : { line: pos.line, column: pos.col }) };
    }));
  }
  const raw: unknown = doc.toJS({ maxAliasCount: 100 });
  if (raw === null || raw === undefined) throw new ConfigError(file, [{ path: '', message: 'is empty (expected applications: [...])' }]);
  const problems: ConfigProblem[] = [];
  const whole = CONFIG.safeParse(raw, { reportInput: true });
  if (!whole.success) {
    for (const iss of whole.error.issues) {
      const path = iss.path.filter((s): s is string | number => typeof s !== 'symbol');
      if (iss.code === 'unrecognized_keys') {
        for (const key of iss.keys) problems.push(problem([...path, key], iss.message));
        continue;
      }
      const input = (iss as { input?: unknown }).input;
      const missing = iss.code === 'invalid_type' && input === undefined;
      problems.push(problem(path, missing ? `is missing (${iss.message})` : `${iss.message}, got ${describeValue(input)}`));
    }
  }
  // With the shape wrong somewhere, the applications whose own entries are right are still checked, here and when loaded.
  type Entry = z.infer<typeof APPLICATION>;
  const rawApps = (raw as { applications?: unknown }).applications;
  const entries: Array<{ index: number; a: Entry }> = [];
  if (whole.success) whole.data.applications.forEach((a, index) => entries.push({ index, a }));
  else if (Array.isArray(rawApps)) {
    rawApps.forEach((e: unknown, index) => {
      const r = APPLICATION.safeParse(e);
      if (r.success) entries.push({ index, a: r.data });
    });
  }

  const names = new Map<string, number>();
  const prefixes = new Map<string, number>();
  const applications = entries.map(({ index: i, a }): ConfigApplication => {
    try {
      checkAppName(a.name);
    } catch (err) {
      if (!(err instanceof InvalidOptionError)) throw err;
      problems.push(problem(['applications', i, 'name'], `expected 1-64 characters of letters, digits, _ . -, got ${describeValue(a.name)}`));
    }
    const twin = names.get(a.name);
    if (twin !== undefined) problems.push(problem(['applications', i, 'name'], `"${a.name}" is also the name of applications[${twin}]`));
    else names.set(a.name, i);
    const routePrefix = a.routePrefix === undefined ? '/' : a.routePrefix;
    if (routePrefix !== null) {
      const other = prefixes.get(routePrefix);
      if (other !== undefined) problems.push(problem(['applications', i, a.routePrefix === undefined ? 'name' : 'routePrefix'], `route prefix "${routePrefix}"${a.routePrefix === undefined ? ' (the default)' : ''} is also that of applications[${other}]`));
      else prefixes.set(routePrefix, i);
    }
    const seen = new Map<string, number>();
    const deployments = (a.deployments ?? []).map((d, k): ConfigDeployment => {
      const before = seen.get(d.name);
      if (before !== undefined) problems.push(problem(['applications', i, 'deployments', k, 'name'], `"${d.name}" is also listed at deployments[${before}]`));
      else seen.set(d.name, k);
      const { name, ...options } = d;
      return { name, options };
    });
    const { module, exportName } = splitImportPath(a.importPath);
    return { index: i, name: a.name, importPath: a.importPath, modulePath: resolve(dir, module), exportName, routePrefix, deployments };
  });
  const http = whole.success ? whole.data.http : undefined;
  return {
    problems,
    parsed: {
      file, dir, locate, error,
      config: { applications, ...(http !== undefined ? { http: { ...(http.host !== undefined ? { host: http.host } : {}), ...(http.port !== undefined ? { port: http.port } : {}) } } : {}) },
    },
  };
}

/** Whether a command's positional names a config file rather than an application module. */
export function isConfigFile(file: string): boolean {
  return /\.(ya?ml|json)$/i.test(file);
}
