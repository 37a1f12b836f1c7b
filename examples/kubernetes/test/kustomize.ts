/**
 * A kustomize renderer for exactly the features the manifests in examples/kubernetes use, so that CI (which has no
 * kubectl) can render every kustomization: resources (files and directories), configMapGenerator (files, with
 * options.disableNameSuffixHash and labels), images (newName, newTag) and patches (strategic merge of the simple
 * kind: maps merge, the lists below merge by their key or are replaced, `$patch: delete` of a whole object; and
 * JSON 6902 add/remove/replace with a target). Anything else in a kustomization, a patch or a target is an error
 * naming it, never ignored: a renderer that skipped a field would validate something kubectl never applies.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { parseAllDocuments } from 'yaml';

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string>; [k: string]: unknown };
  [k: string]: unknown;
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonObject = { [k: string]: Json };

const KUSTOMIZATION_FIELDS = new Set(['apiVersion', 'kind', 'resources', 'configMapGenerator', 'images', 'patches']);

/** Lists a strategic-merge patch merges item by item, by this key (as the Kubernetes API's patchMergeKey). */
const MERGE_KEYS: Record<string, string> = { containers: 'name', initContainers: 'name', env: 'name', volumes: 'name', volumeMounts: 'mountPath' };
/** Lists a strategic-merge patch replaces whole (no patchMergeKey in the API). */
const REPLACED_LISTS = new Set(['args', 'command', 'tolerations']);

export class KustomizeError extends Error {
  constructor(where: string, message: string) {
    super(`${where}: ${message}`);
    this.name = 'KustomizeError';
  }
}

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function clone<T>(v: T): T {
  return structuredClone(v);
}

/** Every YAML document of a file, empty ones left out. */
export function readYamlDocuments(file: string): unknown[] {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'));
  const out: unknown[] = [];
  for (const d of docs) {
    if (d.errors.length > 0) throw new KustomizeError(file, `YAML error: ${d.errors[0]!.message}`);
    const v = d.toJS() as unknown;
    if (v !== null && v !== undefined) out.push(v);
  }
  return out;
}

function asObject(where: string, v: unknown): K8sObject {
  if (!isObject(v) || typeof v.apiVersion !== 'string' || typeof v.kind !== 'string' || !isObject(v.metadata) || typeof v.metadata.name !== 'string') {
    throw new KustomizeError(where, 'expected a Kubernetes object with apiVersion, kind and metadata.name');
  }
  return v as unknown as K8sObject;
}

/** Renders the kustomization in `dir` (kustomization.yaml) to its objects, in the order kustomize builds them. */
export function render(dir: string): K8sObject[] {
  const file = join(dir, 'kustomization.yaml');
  if (!existsSync(file)) throw new KustomizeError(dir, 'no kustomization.yaml (the only name this renderer reads)');
  const docs = readYamlDocuments(file);
  if (docs.length !== 1 || !isObject(docs[0])) throw new KustomizeError(file, 'expected one YAML object');
  const k = docs[0];
  for (const key of Object.keys(k)) if (!KUSTOMIZATION_FIELDS.has(key)) throw new KustomizeError(file, `field "${key}" is not implemented by this renderer (it implements: ${[...KUSTOMIZATION_FIELDS].join(', ')})`);
  if (k.apiVersion !== 'kustomize.config.k8s.io/v1beta1' || k.kind !== 'Kustomization') throw new KustomizeError(file, 'expected apiVersion kustomize.config.k8s.io/v1beta1, kind Kustomization');

  let objects: K8sObject[] = [];
  for (const entry of list(file, 'resources', k.resources)) {
    if (typeof entry !== 'string') throw new KustomizeError(file, 'resources: expected paths');
    const path = resolve(dir, entry);
    if (!existsSync(path)) throw new KustomizeError(file, `resources: ${entry} does not exist`);
    if (statSync(path).isDirectory()) objects.push(...render(path));
    else objects.push(...readYamlDocuments(path).map((d) => asObject(path, d)));
  }
  for (const g of list(file, 'configMapGenerator', k.configMapGenerator)) objects.push(configMap(file, dir, g));
  for (const p of list(file, 'patches', k.patches)) objects = applyPatch(file, dir, p, objects);
  for (const i of list(file, 'images', k.images)) setImage(file, i, objects);
  const seen = new Set<string>();
  for (const o of objects) {
    const id = `${o.kind}/${o.metadata.name}`;
    if (seen.has(id)) throw new KustomizeError(file, `${id} is defined twice`);
    seen.add(id);
  }
  return objects;
}

function list(file: string, field: string, v: Json | undefined): Json[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw new KustomizeError(file, `${field}: expected a list`);
  return v;
}

function onlyKeys(where: string, v: JsonObject, keys: string[]): void {
  for (const key of Object.keys(v)) if (!keys.includes(key)) throw new KustomizeError(where, `field "${key}" is not implemented by this renderer (it implements: ${keys.join(', ')})`);
}

function configMap(file: string, dir: string, g: Json): K8sObject {
  if (!isObject(g) || typeof g.name !== 'string') throw new KustomizeError(file, 'configMapGenerator: expected entries with a name');
  const where = `${file}: configMapGenerator ${g.name}`;
  onlyKeys(where, g, ['name', 'files', 'options']);
  const options = g.options ?? {};
  if (!isObject(options)) throw new KustomizeError(where, 'options: expected an object');
  onlyKeys(`${where} options`, options, ['disableNameSuffixHash', 'labels']);
  // kustomize's hash suffix (and rewriting every reference to the hashed name) is not implemented.
  if (options.disableNameSuffixHash !== true) throw new KustomizeError(where, 'options.disableNameSuffixHash must be true (name hashing is not implemented by this renderer)');
  const data: Record<string, string> = {};
  for (const f of list(where, 'files', g.files)) {
    if (typeof f !== 'string') throw new KustomizeError(where, 'files: expected paths');
    const [key, path] = f.includes('=') ? f.split('=', 2) as [string, string] : [basename(f), f];
    data[key] = readFileSync(resolve(dir, path), 'utf8');
  }
  const metadata: K8sObject['metadata'] = { name: g.name };
  if (options.labels !== undefined) metadata.labels = options.labels as Record<string, string>;
  return { apiVersion: 'v1', kind: 'ConfigMap', metadata, data };
}

interface Target { group: string; version: string; kind: string; name: string }

function targetOf(where: string, t: Json): Target {
  if (!isObject(t)) throw new KustomizeError(where, 'target: expected an object');
  onlyKeys(`${where} target`, t, ['group', 'version', 'kind', 'name']);
  for (const key of ['version', 'kind', 'name']) if (typeof t[key] !== 'string') throw new KustomizeError(where, `target.${key}: expected a string (this renderer matches exact targets only)`);
  return { group: typeof t.group === 'string' ? t.group : '', version: t.version as string, kind: t.kind as string, name: t.name as string };
}

function matches(o: K8sObject, t: Target): boolean {
  const [group, version] = o.apiVersion.includes('/') ? o.apiVersion.split('/', 2) as [string, string] : ['', o.apiVersion];
  return group === t.group && version === t.version && o.kind === t.kind && o.metadata.name === t.name;
}

function applyPatch(file: string, dir: string, p: Json, objects: K8sObject[]): K8sObject[] {
  if (!isObject(p)) throw new KustomizeError(file, 'patches: expected objects');
  onlyKeys(`${file} patches`, p, ['path', 'patch', 'target']);
  const where = `${file}: patch ${typeof p.path === 'string' ? p.path : '(inline)'}`;
  let docs: unknown[];
  if (typeof p.path === 'string' && p.patch === undefined) docs = readYamlDocuments(resolve(dir, p.path));
  else if (typeof p.patch === 'string' && p.path === undefined) docs = parseAllDocuments(p.patch).map((d) => d.toJS() as unknown);
  else throw new KustomizeError(where, 'expected exactly one of path and patch');
  if (docs.length !== 1) throw new KustomizeError(where, `expected one YAML document, got ${docs.length}`);
  const body = docs[0];
  if (Array.isArray(body)) {
    if (p.target === undefined) throw new KustomizeError(where, 'a JSON 6902 patch needs a target');
    const target = targetOf(where, p.target);
    const hit = objects.filter((o) => matches(o, target));
    if (hit.length !== 1) throw new KustomizeError(where, `target ${target.kind}/${target.name} matches ${hit.length} objects`);
    return objects.map((o) => (o === hit[0] ? json6902(where, o, body as Json[]) : o));
  }
  const patch = asObject(where, body);
  const target = p.target !== undefined ? targetOf(where, p.target) : (() => {
    const [group, version] = patch.apiVersion.includes('/') ? patch.apiVersion.split('/', 2) as [string, string] : ['', patch.apiVersion];
    return { group, version, kind: patch.kind, name: patch.metadata.name };
  })();
  const hit = objects.filter((o) => matches(o, target));
  if (hit.length !== 1) throw new KustomizeError(where, `target ${target.kind}/${target.name} matches ${hit.length} objects`);
  const { $patch, ...rest } = patch as unknown as JsonObject;
  if ($patch !== undefined) {
    if ($patch !== 'delete') throw new KustomizeError(where, `$patch: ${String($patch)} is not implemented (only a top-level $patch: delete)`);
    return objects.filter((o) => o !== hit[0]);
  }
  return objects.map((o) => (o === hit[0] ? strategicMerge(where, clone(o) as unknown as JsonObject, rest, '') as unknown as K8sObject : o));
}

function strategicMerge(where: string, into: JsonObject, patch: JsonObject, path: string): JsonObject {
  for (const [key, value] of Object.entries(patch)) {
    const at = `${path}/${key}`;
    if (key.startsWith('$')) throw new KustomizeError(where, `directive ${key} at ${at} is not implemented`);
    if (value === null) { delete into[key]; continue; }
    if (Array.isArray(value)) {
      const mergeKey = MERGE_KEYS[key];
      if (mergeKey !== undefined) into[key] = mergeList(where, Array.isArray(into[key]) ? into[key] : [], value, mergeKey, at);
      else if (REPLACED_LISTS.has(key)) into[key] = clone(value);
      else throw new KustomizeError(where, `list ${at}: its strategic-merge semantics are not implemented (merged: ${Object.keys(MERGE_KEYS).join(', ')}; replaced: ${[...REPLACED_LISTS].join(', ')})`);
      continue;
    }
    if (isObject(value)) {
      into[key] = strategicMerge(where, isObject(into[key]) ? into[key] : {}, value, at);
      continue;
    }
    into[key] = value;
  }
  return into;
}

function mergeList(where: string, into: Json[], patch: Json[], key: string, at: string): Json[] {
  const out = clone(into);
  for (const item of patch) {
    if (!isObject(item) || typeof item[key] !== 'string') throw new KustomizeError(where, `list ${at}: every item needs its merge key "${key}"`);
    const i = out.findIndex((x) => isObject(x) && x[key] === item[key]);
    if (i >= 0) out[i] = strategicMerge(where, out[i] as JsonObject, item, `${at}[${key}=${item[key]}]`);
    else out.push(strategicMerge(where, {}, item, `${at}[${key}=${item[key]}]`));
  }
  return out;
}

function pointer(where: string, path: string): string[] {
  if (!path.startsWith('/')) throw new KustomizeError(where, `JSON pointer "${path}" must start with /`);
  return path.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function json6902(where: string, o: K8sObject, ops: Json[]): K8sObject {
  const doc = clone(o) as unknown as JsonObject;
  for (const op of ops) {
    if (!isObject(op) || typeof op.op !== 'string' || typeof op.path !== 'string') throw new KustomizeError(where, 'expected operations with op and path');
    onlyKeys(`${where} ${op.op} ${op.path}`, op, ['op', 'path', 'value']);
    const segs = pointer(where, op.path);
    const last = segs.pop()!;
    let parent: Json = doc;
    for (const s of segs) {
      const next: Json | undefined = Array.isArray(parent) ? parent[Number(s)] : isObject(parent) ? parent[s] : undefined;
      if (next === undefined) throw new KustomizeError(where, `${op.op} ${op.path}: no ${s} on the way`);
      parent = next;
    }
    const has = Array.isArray(parent) ? (last === '-' ? false : Number(last) < parent.length) : isObject(parent) && last in parent;
    switch (op.op) {
      case 'add':
        if (op.value === undefined) throw new KustomizeError(where, `add ${op.path}: needs a value`);
        if (Array.isArray(parent)) parent.splice(last === '-' ? parent.length : Number(last), 0, clone(op.value));
        else (parent as JsonObject)[last] = clone(op.value);
        break;
      case 'replace':
      case 'remove':
        if (!has) throw new KustomizeError(where, `${op.op} ${op.path}: there is nothing at that path`);
        if (op.op === 'replace') {
          if (op.value === undefined) throw new KustomizeError(where, `replace ${op.path}: needs a value`);
          if (Array.isArray(parent)) parent[Number(last)] = clone(op.value); else (parent as JsonObject)[last] = clone(op.value);
        } else if (Array.isArray(parent)) parent.splice(Number(last), 1);
        else delete (parent as JsonObject)[last];
        break;
      default:
        throw new KustomizeError(where, `op "${op.op}" is not implemented (add, remove, replace)`);
    }
  }
  return doc as unknown as K8sObject;
}

/** The pod templates of the workload kinds these manifests use. */
export function podSpecOf(o: K8sObject): JsonObject | undefined {
  const spec = o.spec as JsonObject | undefined;
  if (['Deployment', 'DaemonSet', 'StatefulSet', 'Job'].includes(o.kind)) return (spec?.template as JsonObject | undefined)?.spec as JsonObject | undefined;
  return undefined;
}

function setImage(file: string, i: Json, objects: K8sObject[]): void {
  if (!isObject(i) || typeof i.name !== 'string') throw new KustomizeError(file, 'images: expected entries with a name');
  onlyKeys(`${file} images ${i.name}`, i, ['name', 'newName', 'newTag']);
  for (const o of objects) {
    const pod = podSpecOf(o);
    for (const c of [...(pod?.containers as JsonObject[] | undefined ?? []), ...(pod?.initContainers as JsonObject[] | undefined ?? [])]) {
      const image = String(c.image);
      const m = /^([^@:]+(?::\d+\/[^@:]+)?)(?::([^@]+))?$/.exec(image);
      if (m === null) throw new KustomizeError(file, `image "${image}" (digests are not implemented)`);
      if (m[1] !== i.name) continue;
      const tag = typeof i.newTag === 'string' ? i.newTag : m[2];
      c.image = `${typeof i.newName === 'string' ? i.newName : m[1]}${tag !== undefined ? `:${tag}` : ''}`;
    }
  }
}
