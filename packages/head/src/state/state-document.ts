/**
 * The pure half of the state store: checking stored values field by field, and computing the state after each
 * write. Both stores use these, so a Redis store and a file store accept, reject and trim exactly alike.
 *
 * A checker takes a `fail(path, problem)` callback: on load it raises StoreCorruptError naming the file or key,
 * on write InvalidOptionError naming the argument.
 */
import { createHash } from 'node:crypto';
import { InvalidOptionError, compileDeploymentOptions, describe, validateAppSpec, type AppSpec, type DeploymentSpec } from '@shoal/core';
import { StoreCorruptError } from './errors.ts';
import type { AppMeta, ClusterState, DeploymentVersion, SeenWorker, StoredApp, StoredRollout } from './state-store.ts';

export type Fail = (path: string, problem: string, cause?: unknown) => never;

/** A fail that raises StoreCorruptError for data read from `where`. */
export function corruptAt(where: string): Fail {
  return (path, problem, cause) => { throw new StoreCorruptError(where, `${path} ${problem}`, { cause }); };
}

/** A fail that raises InvalidOptionError for an argument of a write. */
const badArgument: Fail = (path, problem) => { throw new InvalidOptionError(path, problem); };

/** What changed in a write: the Redis store writes only this, the file store the whole next state. */
export type StateChange =
  | { kind: 'putApp'; app: StoredApp }
  | { kind: 'deleteApp'; name: string }
  | { kind: 'putWorkers'; workers: SeenWorker[] };

export function emptyState(): ClusterState {
  return { apps: {}, workers: [] };
}

function record(path: string, value: unknown, fail: Fail): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(path, `must be an object (got ${describe(value)})`);
  return value as Record<string, unknown>;
}

function text(path: string, value: unknown, fail: Fail): string {
  if (typeof value !== 'string' || value === '') fail(path, `must be a non-empty string (got ${describe(value)})`);
  return value as string;
}

function wallMs(path: string, value: unknown, fail: Fail): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) fail(path, `must be epoch milliseconds (got ${describe(value)})`);
  return value as number;
}

/** Checks a stored schema version: anything but STATE_SCHEMA_VERSION is refused, never migrated silently. */
export function checkSchemaVersion(value: unknown, expected: number, fail: Fail): void {
  if (value !== expected) fail('schemaVersion', `is ${describe(value)}, this head reads schema version ${expected}`);
}

export function checkWorkers(path: string, value: unknown, fail: Fail): SeenWorker[] {
  if (!Array.isArray(value)) fail(path, `must be an array (got ${describe(value)})`);
  return (value as unknown[]).map((raw, i) => {
    const at = `${path}[${i}]`;
    const w = record(at, raw, fail);
    if (typeof w.local !== 'boolean') fail(`${at}.local`, `must be a boolean (got ${describe(w.local)})`);
    const worker: SeenWorker = {
      name: text(`${at}.name`, w.name, fail),
      dataAddress: text(`${at}.dataAddress`, w.dataAddress, fail),
      workerId: text(`${at}.workerId`, w.workerId, fail),
      local: w.local as boolean,
    };
    if (w.pid !== undefined) {
      if (typeof w.pid !== 'number' || !Number.isInteger(w.pid) || w.pid <= 0) fail(`${at}.pid`, `must be a positive integer (got ${describe(w.pid)})`);
      worker.pid = w.pid as number;
    }
    return worker;
  });
}

function checkMeta(path: string, value: unknown, spec: AppSpec, fail: Fail): AppMeta {
  const m = record(path, value, fail);
  const versions = record(`${path}.versions`, m.versions, fail);
  const out: Record<string, string> = {};
  for (const d of spec.deployments) out[d.name] = text(`${path}.versions.${d.name}`, versions[d.name], fail);
  for (const name of Object.keys(versions)) if (out[name] === undefined) fail(`${path}.versions.${name}`, `names no deployment of application "${spec.name}"`);
  const meta: AppMeta = { deployedAtMs: wallMs(`${path}.deployedAtMs`, m.deployedAtMs, fail), versions: out };
  if (m.rollouts !== undefined) {
    const rollouts: Record<string, StoredRollout> = {};
    for (const [dep, raw] of Object.entries(record(`${path}.rollouts`, m.rollouts, fail))) {
      const at = `${path}.rollouts.${dep}`;
      if (out[dep] === undefined) fail(at, `names no deployment of application "${spec.name}"`);
      const r = record(at, raw, fail);
      if (!['shadow', 'canary', 'experiment', 'rolling'].includes(r.phase as string)) fail(`${at}.phase`, `must be shadow, canary, experiment or rolling (got ${describe(r.phase)})`);
      if (typeof r.step !== 'number' || !Number.isInteger(r.step) || r.step < 0) fail(`${at}.step`, `must be an integer >= 0 (got ${describe(r.step)})`);
      rollouts[dep] = { from: text(`${at}.from`, r.from, fail), phase: r.phase as StoredRollout['phase'], step: r.step as number };
    }
    meta.rollouts = rollouts;
  }
  return meta;
}

function checkHistory(path: string, value: unknown, spec: AppSpec, fail: Fail): Record<string, DeploymentVersion[]> {
  const h = record(path, value, fail);
  const out: Record<string, DeploymentVersion[]> = {};
  for (const d of spec.deployments) {
    const list = h[d.name] ?? [];
    if (!Array.isArray(list)) fail(`${path}.${d.name}`, `must be an array (got ${describe(list)})`);
    out[d.name] = (list as unknown[]).map((raw, i) => {
      const at = `${path}.${d.name}[${i}]`;
      const v = record(at, raw, fail);
      const entry: DeploymentVersion = { versionId: text(`${at}.versionId`, v.versionId, fail), specHash: text(`${at}.specHash`, v.specHash, fail), atMs: wallMs(`${at}.atMs`, v.atMs, fail) };
      if (v.spec !== undefined) entry.spec = checkVersionSpec(`${at}.spec`, v.spec, d.name, fail);
      if (v.code !== undefined) {
        const c = record(`${at}.code`, v.code, fail);
        entry.code = { modulePath: text(`${at}.code.modulePath`, c.modulePath, fail), exportName: text(`${at}.code.exportName`, c.exportName, fail) };
        if (c.codeHash !== undefined) entry.code.codeHash = text(`${at}.code.codeHash`, c.codeHash, fail);
      }
      return entry;
    });
  }
  return out;
}

/** A deployment spec kept with a version: its shape, and its options through compileDeploymentOptions. */
function checkVersionSpec(path: string, value: unknown, name: string, fail: Fail): DeploymentSpec {
  const s = record(path, value, fail);
  if (s.name !== name) fail(`${path}.name`, `must be "${name}" (got ${describe(s.name)})`);
  if (s.kind !== 'class' && s.kind !== 'function') fail(`${path}.kind`, `must be 'class' or 'function' (got ${describe(s.kind)})`);
  for (const k of ['dependencies', 'methods'] as const) {
    if (!Array.isArray(s[k]) || (s[k] as unknown[]).some((x) => typeof x !== 'string')) fail(`${path}.${k}`, 'must be an array of strings');
  }
  try {
    return { ...(s as unknown as DeploymentSpec), options: compileDeploymentOptions(s.options as never, name, `${path}.options`) };
  } catch (err) {
    return fail(`${path}.options`, `are not valid deployment options: ${(err as Error).message}`, err);
  }
}

/** Checks one stored application; its spec goes through validateAppSpec, as a spec from the control API would. */
export function checkStoredApp(path: string, value: unknown, fail: Fail): StoredApp {
  const a = record(path, value, fail);
  let spec: AppSpec;
  try {
    spec = validateAppSpec(a.spec);
  } catch (err) {
    // validateAppSpec names its field from `app`; the stored spec sits at `${path}.spec`.
    return fail(`${path}.spec`, `is not a valid application spec: ${(err as Error).message}`, err);
  }
  return { spec, meta: checkMeta(`${path}.meta`, a.meta, spec, fail), history: checkHistory(`${path}.history`, a.history, spec, fail) };
}

/** Checks a whole stored state: `{ apps: { name: StoredApp }, workers: SeenWorker[] }`. */
export function checkState(value: unknown, fail: Fail): ClusterState {
  const s = record('(document)', value, fail);
  const apps: Record<string, StoredApp> = {};
  for (const [name, raw] of Object.entries(record('apps', s.apps, fail))) {
    const app = checkStoredApp(`apps.${name}`, raw, fail);
    if (app.spec.name !== name) fail(`apps.${name}.spec.name`, `is "${app.spec.name}", not the key it is stored under`);
    apps[name] = app;
  }
  return { apps, workers: checkWorkers('workers', s.workers, fail) };
}

/** Keys sorted at every level, so a hash does not depend on the order fields were built in. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object' && value !== null) {
    const entries = Object.entries(value).filter(([, v]) => v !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

export function specHash(d: DeploymentSpec): string {
  return createHash('sha256').update(canonicalJson(d)).digest('hex').slice(0, 16);
}

/** Keeps the newest `limit` entries of every history. */
export function trimHistory(history: Record<string, DeploymentVersion[]>, limit: number): Record<string, DeploymentVersion[]> {
  return Object.fromEntries(Object.entries(history).map(([name, list]) => [name, list.slice(-limit)]));
}

/** The stored app after putApp(spec, meta): meta checked, one history entry per changed deployment, trimmed. */
export function nextStoredApp(previous: StoredApp | undefined, spec: AppSpec, rawMeta: AppMeta, historyLimit: number): StoredApp {
  const meta = checkMeta('meta', rawMeta, spec, badArgument);
  const history: Record<string, DeploymentVersion[]> = {};
  for (const d of spec.deployments) {
    const list = [...(previous?.history[d.name] ?? [])];
    const code = { modulePath: spec.modulePath, exportName: spec.exportName, ...(spec.codeHash !== undefined ? { codeHash: spec.codeHash } : {}) };
    const entry: DeploymentVersion = { versionId: meta.versions[d.name]!, specHash: specHash(d), atMs: meta.deployedAtMs, spec: d, code };
    const newest = list[list.length - 1];
    if (newest === undefined || newest.versionId !== entry.versionId || newest.specHash !== entry.specHash) list.push(entry);
    // A version deployed again (a rollback) is the newest entry once more, with its first time kept.
    else if (newest.spec === undefined) list[list.length - 1] = { ...newest, spec: d, code };
    history[d.name] = list;
  }
  // A JSON round trip: the stored value is exactly what a load returns, and the caller's spec is not aliased.
  return JSON.parse(JSON.stringify({ spec, meta, history: trimHistory(history, historyLimit) })) as StoredApp;
}

/** The list passed to putWorkers, checked and copied. */
export function nextWorkers(workers: readonly SeenWorker[]): SeenWorker[] {
  return checkWorkers('workers', workers, badArgument);
}
