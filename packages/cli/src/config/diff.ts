/**
 * What applying a config changes on a running cluster, per application and deployment: created, updated (which
 * fields, and whether that replaces replicas), unchanged, deleted. Pure: the specs the file builds against the specs
 * the head holds (GET /api/apps). Whether an update replaces replicas is the head's own rule, deploymentVersion:
 * a new version rolls out; a change that keeps the version (numReplicas, autoscaling, userConfig, rollout, slo,
 * cache, consume) is applied to the running replicas (userConfig through reconfigure()).
 */
import type { AppSpec, DeploymentSpec } from '@shoal/core';
import { deploymentVersion } from '@shoal/head';

export interface FieldChange {
  field: string;
  from: unknown;
  to: unknown;
}

export interface DeploymentChange {
  name: string;
  action: 'created' | 'updated' | 'unchanged' | 'deleted';
  /** For updated: the fields that differ. */
  fields: FieldChange[];
  /** For updated: the version changes, so its replicas are replaced by a rollout (otherwise none restarts). */
  newVersion?: { from: string; to: string };
}

export interface ApplicationChange {
  name: string;
  action: 'created' | 'updated' | 'unchanged';
  /** Application-level fields that differ: routePrefix, ingress, importPath, code (the module's content). */
  fields: FieldChange[];
  deployments: DeploymentChange[];
  /** The spec to deploy (absent for unchanged). */
  spec?: AppSpec;
}

export interface ConfigPlan {
  applications: ApplicationChange[];
  /** Running applications the file does not list (left alone without --prune). */
  notInConfig: string[];
  /** With --prune: the applications that are deleted. */
  deleted: string[];
}

/** JSON with sorted keys, so two equal values compare equal whatever order their keys were written in. */
export function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) => (x !== null && typeof x === 'object' && !Array.isArray(x)
    ? Object.fromEntries(Object.entries(x as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
    : x)) ?? 'undefined';
}

const same = (a: unknown, b: unknown): boolean => canonical(a) === canonical(b);

function fieldsOf(before: DeploymentSpec, after: DeploymentSpec): FieldChange[] {
  const out: FieldChange[] = [];
  const a = before.options as unknown as Record<string, unknown>;
  const b = after.options as unknown as Record<string, unknown>;
  for (const key of [...new Set([...Object.keys(a), ...Object.keys(b)])]) {
    if (key !== 'name' && !same(a[key], b[key])) out.push({ field: key, from: a[key], to: b[key] });
  }
  for (const key of ['kind', 'dependencies', 'methods', 'oip'] as const) {
    if (!same(before[key], after[key])) out.push({ field: key, from: before[key], to: after[key] });
  }
  return out;
}

function appFields(before: AppSpec, after: AppSpec): FieldChange[] {
  const out: FieldChange[] = [];
  if (before.routePrefix !== after.routePrefix) out.push({ field: 'routePrefix', from: before.routePrefix, to: after.routePrefix });
  if (before.ingress !== after.ingress) out.push({ field: 'ingress', from: before.ingress, to: after.ingress });
  const importOf = (s: AppSpec): string => (s.exportName === 'default' ? s.modulePath : `${s.modulePath}:${s.exportName}`);
  if (importOf(before) !== importOf(after)) out.push({ field: 'importPath', from: importOf(before), to: importOf(after) });
  // A spec without a hash (the head could not read the module) says nothing about the code: not counted as a change.
  if (before.codeHash !== undefined && after.codeHash !== undefined && before.codeHash !== after.codeHash) {
    out.push({ field: 'code', from: before.codeHash.slice(0, 12), to: after.codeHash.slice(0, 12) });
  }
  return out;
}

/** Compares one application's spec (codeHash filled, as the head would) with what the cluster runs under its name. */
export function diffApplication(desired: AppSpec, running: AppSpec | undefined): ApplicationChange {
  if (running === undefined) {
    return { name: desired.name, action: 'created', fields: [], deployments: desired.deployments.map((d) => ({ name: d.name, action: 'created', fields: [] })), spec: desired };
  }
  // Compared as the head compares them: a spec it holds has no hash when it could not read the module; then neither.
  const want = running.codeHash === undefined ? { ...desired, codeHash: undefined } : desired;
  const deployments: DeploymentChange[] = desired.deployments.map((d) => {
    const before = running.deployments.find((x) => x.name === d.name);
    if (before === undefined) return { name: d.name, action: 'created', fields: [] };
    const from = deploymentVersion(running, before);
    const to = deploymentVersion(want, d);
    const fields = fieldsOf(before, d);
    if (fields.length === 0 && from === to) return { name: d.name, action: 'unchanged', fields };
    return { name: d.name, action: 'updated', fields, ...(from !== to ? { newVersion: { from, to } } : {}) };
  });
  for (const d of running.deployments) if (!desired.deployments.some((x) => x.name === d.name)) deployments.push({ name: d.name, action: 'deleted', fields: [] });
  const fields = appFields(running, desired);
  const changed = fields.length > 0 || deployments.some((d) => d.action !== 'unchanged');
  return { name: desired.name, action: changed ? 'updated' : 'unchanged', fields, deployments, ...(changed ? { spec: desired } : {}) };
}

/** The whole plan: every application of the file, and what runs that the file does not list. */
export function planConfig(desired: readonly AppSpec[], running: readonly AppSpec[], prune: boolean): ConfigPlan {
  const listed = new Set(desired.map((s) => s.name));
  const others = running.filter((s) => !listed.has(s.name)).map((s) => s.name);
  return {
    applications: desired.map((s) => diffApplication(s, running.find((r) => r.name === s.name))),
    notInConfig: prune ? [] : others,
    deleted: prune ? others : [],
  };
}

/** A value in a diff line: short JSON, or {…} for a long one (the field name says what changed). */
function show(v: unknown): string {
  if (v === undefined) return '(unset)';
  const s = JSON.stringify(v);
  return s.length <= 48 ? s : '{…}';
}

/** The plan as an operator reads it, one line per application and deployment. */
export function formatPlan(plan: ConfigPlan): string {
  const out: string[] = [];
  for (const a of plan.applications) {
    const head = `application "${a.name}": ${a.action}`;
    out.push(a.fields.length === 0 ? head : `${head}: ${a.fields.map((f) => `${f.field} ${show(f.from)} -> ${show(f.to)}`).join(', ')}`);
    for (const d of a.deployments) {
      let line = `  ${d.name}: ${d.action}`;
      if (d.action === 'updated') {
        const fields = d.fields.map((f) => `${f.field} ${show(f.from)} -> ${show(f.to)}`);
        line += `${fields.length > 0 ? `: ${fields.join(', ')}` : ''} ${d.newVersion !== undefined
          ? `(new version ${d.newVersion.from} -> ${d.newVersion.to}: its replicas are replaced by a rollout)`
          : '(same version: no replica restarts)'}`;
      }
      out.push(line);
    }
  }
  for (const name of plan.deleted) out.push(`application "${name}": deleted (not in config, --prune)`);
  if (plan.notInConfig.length > 0) out.push(`not in config: ${plan.notInConfig.join(', ')}; --prune deletes them`);
  return `${out.join('\n')}\n`;
}
