/**
 * From a checked config to the AppSpecs the head deploys: each application's module is imported (TypeScript
 * through tsx, as `shoal run app.ts` does), its graph built into a spec, and the file's overrides applied to the
 * deployments' options the way `Deployment.withOptions` applies them: over the options the code gave, compiled
 * once more by core's compileDeploymentOptions, whose rules and defaults are the ones `shoal run app.ts` uses. So
 * the head computes each deployment's version from the final options, and a deployment the file does not mention
 * deploys exactly as the code declares it.
 */
import { existsSync, statSync } from 'node:fs';
import { basename } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Application, buildAppSpec, collectGraph, compileDeploymentOptions, InvalidOptionError, ShoalError, type AppSpec, type CompiledDeploymentOptions, type Deployment, type DeploymentOptions } from '@shoal/core';
import { registerTypeScript } from '@shoal/worker';
import { ConfigError, pathSegments, pathString, type ConfigProblem } from './errors.ts';
import { checkConfigFile, type ConfigApplication, type ConfigDeployment, type ParsedConfig } from './schema.ts';

/** A config file with its applications built. */
export interface LoadedConfig extends ParsedConfig {
  /** One spec per application, in the file's order. */
  specs: AppSpec[];
}

/**
 * Reads, checks and builds a config file; ConfigError listing every problem together: those of the file's shape and
 * names (checkConfig), and those of building each application whose entry is well-formed: a module that fails to
 * load or lacks its export, each deployment name the graph does not have, each option rule an override breaks.
 */
export async function loadConfig(file: string): Promise<LoadedConfig> {
  const { parsed, problems } = checkConfigFile(file);
  const specs: AppSpec[] = [];
  for (const app of parsed.config.applications) {
    try {
      specs.push(await buildApplication(parsed, app, app.index, problems));
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      problems.push(...err.problems);
    }
  }
  if (problems.length > 0) throw new ConfigError(parsed.file, problems);
  return { ...parsed, specs };
}

/** Imports an application module (TypeScript through tsx, registered first) for its exports. */
export async function importExports(modulePath: string): Promise<Record<string, unknown>> {
  const url = pathToFileURL(modulePath).href;
  await registerTypeScript(url);
  return await import(url) as Record<string, unknown>;
}

/** The module's exports, or a ConfigError at applications[i].importPath. */
async function importModule(parsed: ParsedConfig, app: ConfigApplication, i: number): Promise<Record<string, unknown>> {
  const at = ['applications', i, 'importPath'];
  if (!existsSync(app.modulePath) || !statSync(app.modulePath).isFile()) throw parsed.error(at, `no such file: ${app.modulePath}`);
  try {
    return await importExports(app.modulePath);
  } catch (err) {
    throw parsed.error(at, `${app.importPath} failed to load: ${(err as Error).message ?? String(err)}`);
  }
}

/** The application's spec with the file's overrides; a problem of one deployment is added to `problems` and the others are still checked. */
async function buildApplication(parsed: ParsedConfig, app: ConfigApplication, i: number, problems: ConfigProblem[]): Promise<AppSpec> {
  const mod = await importModule(parsed, app, i);
  const root = mod[app.exportName];
  if (!(app.exportName in mod)) {
    throw parsed.error(['applications', i, 'importPath'], `${basename(app.modulePath)} has no export "${app.exportName}" (exports: ${Object.keys(mod).join(', ') || 'none'})`);
  }
  if (!Application.isApplication(root)) {
    throw parsed.error(['applications', i, 'importPath'], `export "${app.exportName}" of ${basename(app.modulePath)} is not an application: call .bind() on a deployment`);
  }
  let spec: AppSpec;
  try {
    spec = buildAppSpec(root, { name: app.name, routePrefix: app.routePrefix, modulePath: app.modulePath, exportName: app.exportName });
  } catch (err) {
    if (err instanceof ShoalError) throw parsed.error(['applications', i, 'importPath'], err.message);
    throw err;
  }
  const graph = collectGraph(root);
  const names = [...graph.keys()];
  const overridden = new Map<string, CompiledDeploymentOptions>();
  for (const [k, d] of app.deployments.entries()) {
    const node = graph.get(d.name);
    if (node === undefined) {
      problems.push(...parsed.error(['applications', i, 'deployments', k, 'name'], `app ${app.importPath} has no deployment "${d.name}" (deployments: ${names.join(', ')})`).problems);
      continue;
    }
    try {
      overridden.set(d.name, applyOverrides(parsed, node.deployment, d, ['applications', i, 'deployments', k]));
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      problems.push(...err.problems);
    }
  }
  return { ...spec, deployments: spec.deployments.map((d) => (overridden.has(d.name) ? { ...d, options: overridden.get(d.name)! } : d)) };
}

/**
 * The overrides as withOptions takes them: null drops the code's value (the default applies); a fixed count in the
 * file replaces the code's autoscaling and autoscaling in the file replaces the code's fixed count, since the two
 * cannot both hold.
 */
export function overridesOf(d: ConfigDeployment): DeploymentOptions {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(d.options)) out[key] = value === null ? undefined : value;
  if ('numReplicas' in d.options && !('autoscaling' in d.options)) out.autoscaling = undefined;
  if (d.options.autoscaling !== undefined && d.options.autoscaling !== null && !('numReplicas' in d.options)) out.numReplicas = undefined;
  return out as DeploymentOptions;
}

/** Compiles the code's options with the file's over them; errors name the path in the file. */
function applyOverrides(parsed: ParsedConfig, dep: Deployment<unknown, never[]>, d: ConfigDeployment, at: Array<string | number>): CompiledDeploymentOptions {
  const overrides = overridesOf(d);
  const prefix = pathString(at);
  try {
    // With the file's path, so an error names the field as the file spells it; then withOptions, which also checks
    // what needs the class (multiplex hooks, the semantic cache's embedding method).
    compileDeploymentOptions({ ...dep.rawOptions, ...overrides }, dep.options.name, prefix);
    return dep.withOptions(overrides).options;
  } catch (err) {
    if (!(err instanceof InvalidOptionError)) throw err;
    const path = String(err.details?.path ?? prefix);
    const inFile = path.startsWith(prefix) ? path : path.replace(/^deployment(?=\.|$)/, prefix);
    const message = err.message.replace(/^invalid option [^:]*: /, '');
    throw parsed.error(pathSegments(inFile), message);
  }
}
