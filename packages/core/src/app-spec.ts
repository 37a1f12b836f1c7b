/**
 * Checks an AppSpec that arrived from outside the process (the head's control API) and compiles it the way
 * `deployment()` and `buildAppSpec()` would have: options through compileDeploymentOptions, so defaults are filled
 * the same way, and every error names the full path in the spec (`app.deployments[1].options.maxOngoingRequests`).
 *
 *   const spec = validateAppSpec(JSON.parse(body));   // InvalidOptionError (400) on the first bad field
 *   await assertModuleFile(spec.modulePath);            // and the module is a file on this host
 */
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InvalidOptionError } from './errors.ts';
import { checkAppName, type AppSpec, type DeploymentKind, type DeploymentSpec } from './deployment.ts';
import { checkName, compileDeploymentOptions, type DeploymentOptions } from './options.ts';

const ROOT = 'app';
const APP_KEYS = ['name', 'routePrefix', 'ingress', 'modulePath', 'exportName', 'deployments', 'codeHash'];
const DEPLOYMENT_KEYS = ['name', 'kind', 'options', 'dependencies', 'methods', 'oip'];
const OIP_KEYS = ['model', 'version', 'platform'];
const KINDS: readonly DeploymentKind[] = ['class', 'function'];

function object(path: string, value: unknown, keys: readonly string[]): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new InvalidOptionError(path, 'must be an object', value);
  for (const key of Object.keys(value)) if (!keys.includes(key)) throw new InvalidOptionError(`${path}.${key}`, `is not a field here (${keys.join(', ')})`);
  return value as Record<string, unknown>;
}

function text(path: string, value: unknown): string {
  if (value === undefined) throw new InvalidOptionError(path, 'is required (a non-empty string)');
  if (typeof value !== 'string' || value === '') throw new InvalidOptionError(path, 'must be a non-empty string', value);
  return value;
}

function strings(path: string, value: unknown, check: (path: string, v: unknown) => string): string[] {
  if (!Array.isArray(value)) throw new InvalidOptionError(path, 'must be an array of strings', value);
  return value.map((v: unknown, i) => check(`${path}[${i}]`, v));
}

const MODULE_PATH = `${ROOT}.modulePath`;

/**
 * The file a modulePath names: an absolute path, or a file: URL. Anything else (data:, http(s):, node:, a bare
 * package name, a relative path) is refused, since workers import it as code.
 */
function modulePathToFile(modulePath: string): string {
  if (isAbsolute(modulePath)) return modulePath;
  if (/^file:/i.test(modulePath)) {
    try {
      return fileURLToPath(modulePath);
    } catch (err) {
      throw new InvalidOptionError(MODULE_PATH, `is not a usable file: URL (${(err as Error).message})`, modulePath);
    }
  }
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(modulePath)?.[1];
  throw new InvalidOptionError(MODULE_PATH, scheme === undefined
    ? 'must be an absolute file path or a file: URL, not a relative path or a package name'
    : `must be an absolute file path or a file: URL, not a ${scheme}: URL`, modulePath);
}

/**
 * Checks that the module of a (validated) spec is a regular file on this host; InvalidOptionError naming
 * app.modulePath and the value if it is missing or something else (a directory, a device).
 */
export async function assertModuleFile(modulePath: string): Promise<void> {
  const file = modulePathToFile(modulePath);
  let isFile: boolean;
  try {
    isFile = (await stat(file)).isFile();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new InvalidOptionError(MODULE_PATH, code === 'ENOENT' ? 'no such file on the head' : `cannot be read on the head (${code ?? 'error'})`, modulePath);
  }
  if (!isFile) throw new InvalidOptionError(MODULE_PATH, 'is not a regular file', modulePath);
}

/** sha256 (hex) of a module file's content: what AppSpec.codeHash holds. */
export async function moduleCodeHash(modulePath: string): Promise<string> {
  return createHash('sha256').update(await readFile(modulePathToFile(modulePath))).digest('hex');
}

/** Returns a new spec with compiled options; throws InvalidOptionError naming the first bad field. */
export function validateAppSpec(raw: unknown): AppSpec {
  const app = object(ROOT, raw, APP_KEYS);
  if (typeof app.name !== 'string') throw new InvalidOptionError(`${ROOT}.name`, 'must be a string', app.name);
  checkAppName(app.name);
  const routePrefix = app.routePrefix;
  if (routePrefix !== null && (typeof routePrefix !== 'string' || !routePrefix.startsWith('/'))) {
    throw new InvalidOptionError(`${ROOT}.routePrefix`, 'must be null or a string starting with "/"', routePrefix);
  }
  const modulePath = text(`${ROOT}.modulePath`, app.modulePath);
  modulePathToFile(modulePath);
  const exportName = text(`${ROOT}.exportName`, app.exportName);
  if (!Array.isArray(app.deployments) || app.deployments.length === 0) {
    throw new InvalidOptionError(`${ROOT}.deployments`, 'must be a non-empty array', app.deployments);
  }

  const firstIndex = new Map<string, number>();
  const deployments = app.deployments.map((entry: unknown, i): DeploymentSpec => {
    const path = `${ROOT}.deployments[${i}]`;
    const d = object(path, entry, DEPLOYMENT_KEYS);
    const name = checkName(`${path}.name`, d.name);
    const twin = firstIndex.get(name);
    if (twin !== undefined) throw new InvalidOptionError(`${path}.name`, `is also the name of deployments[${twin}]`, name);
    firstIndex.set(name, i);
    if (!KINDS.includes(d.kind as DeploymentKind)) throw new InvalidOptionError(`${path}.kind`, `must be ${KINDS.map((k) => `'${k}'`).join(' or ')}`, d.kind);
    // The compiled form is also a valid input form, so compiling it again checks it and fills what is missing.
    const options = compileDeploymentOptions(d.options as DeploymentOptions, name, `${path}.options`);
    if (options.name !== name) throw new InvalidOptionError(`${path}.options.name`, `must equal the deployment's name "${name}"`, options.name);
    const spec: DeploymentSpec = {
      name,
      kind: d.kind as DeploymentKind,
      options,
      dependencies: strings(`${path}.dependencies`, d.dependencies, text),
      methods: strings(`${path}.methods`, d.methods, text),
    };
    if (d.oip === undefined) return spec;
    const oip = object(`${path}.oip`, d.oip, OIP_KEYS);
    // Spread, so this file does not depend on DeploymentSpec declaring `oip` while that field settles.
    return { ...spec, ...{ oip: { model: text(`${path}.oip.model`, oip.model), version: text(`${path}.oip.version`, oip.version), platform: text(`${path}.oip.platform`, oip.platform) } } };
  });

  deployments.forEach((d, i) => d.dependencies.forEach((dep, k) => {
    if (!firstIndex.has(dep)) throw new InvalidOptionError(`${ROOT}.deployments[${i}].dependencies[${k}]`, 'names no deployment of this application', dep);
  }));
  if (typeof app.ingress !== 'string' || !firstIndex.has(app.ingress)) {
    throw new InvalidOptionError(`${ROOT}.ingress`, `must name one of the deployments (${[...firstIndex.keys()].join(', ')})`, app.ingress);
  }
  if (app.codeHash !== undefined && (typeof app.codeHash !== 'string' || !/^[0-9a-f]{16,64}$/.test(app.codeHash))) {
    throw new InvalidOptionError(`${ROOT}.codeHash`, 'must be 16 to 64 lowercase hex digits (a sha256 of the module file)', app.codeHash);
  }
  return { name: app.name, routePrefix, ingress: app.ingress, modulePath, exportName, deployments, ...(app.codeHash !== undefined ? { codeHash: app.codeHash } : {}) };
}
