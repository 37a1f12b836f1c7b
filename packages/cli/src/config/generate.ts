/**
 * `shoal config generate APP.ts [-o FILE]`: a config file holding the application's deployments with the options
 * its code declares. Each deployment lists numReplicas (or autoscaling) and every option that differs from shoal's
 * default; the defaults follow as comments. Deploying the file gives every deployment the options, hence the
 * version, that `shoal run APP.ts` gives it: generate checks that round trip for each deployment before writing.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { basename, dirname, isAbsolute, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Document, isMap, type YAMLMap } from 'yaml';
import { Application, buildAppSpec, collectGraph, compileDeploymentOptions, InvalidOptionError, type AppSpec, type CompiledDeploymentOptions, type DeploymentOptions } from '@shoal/core';
import { canonical } from './diff.ts';
import { importExports, overridesOf } from './load.ts';
import { OPTION_KEYS } from './schema.ts';

export interface GenerateOptions {
  exportName?: string;
  /** @default 'default' */
  name?: string;
  /** @default '/' */
  routePrefix?: string | null;
  /** Where the file will be written: importPath is relative to its directory. @default the current directory */
  outFile?: string;
}

type Json = Record<string, unknown>;
const isPlainObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A structural copy without undefined fields (what YAML can hold). */
function plain(v: unknown): unknown {
  return v === undefined ? undefined : JSON.parse(JSON.stringify(v)) as unknown;
}

/**
 * The fewest options that compile to `target`: every field whose removal compiles to the same thing is removed,
 * nested objects field by field (autoscaling's initialReplicas defaults to its minReplicas, and so on: the
 * compiler, not a table here, says what a default is). numReplicas stays without autoscaling, userConfig when set.
 */
export function minimalOptions(target: CompiledDeploymentOptions): { options: Json; defaults: Json } {
  const { name, ...rest } = plain(target) as Json & { name: string };
  const want = canonical(target);
  const compilesSame = (o: Json): boolean => {
    try { return canonical(compileDeploymentOptions(o as DeploymentOptions, name)) === want; } catch { return false; }
  };
  const options = rest;
  const defaults: Json = {};
  const prune = (node: Json, top: boolean): void => {
    for (const key of Object.keys(node)) {
      if (top && (key === 'userConfig' || (key === 'numReplicas' && options.autoscaling === undefined))) continue;
      const value = node[key];
      delete node[key];
      if (compilesSame(options)) {
        // With autoscaling, numReplicas is its initial count: not a default worth showing.
        if (top && key !== 'numReplicas') defaults[key] = value;
        continue;
      }
      node[key] = value;
      if (isPlainObject(value)) prune(value, false);
    }
  };
  prune(options, true);
  // Options in the order the schema lists them (the order of the docs), not the compiler's.
  const ordered: Json = {};
  for (const key of OPTION_KEYS) if (key in options) ordered[key] = options[key];
  return { options: ordered, defaults };
}

/** The deployment's entry for the file, and its commented defaults; checked to deploy as `target` over the code's raw options. */
function entryFor(target: CompiledDeploymentOptions, raw: DeploymentOptions): { entry: Json; defaults: Json } {
  const { options, defaults } = minimalOptions(target);
  const applied = compileDeploymentOptions({ ...raw, ...overridesOf({ name: target.name, options }) }, target.name);
  if (canonical(applied) === canonical(target)) return { entry: { name: target.name, ...options }, defaults };
  // Not reached with the compilers as they are; should one ever make it so, the full options round-trip by construction.
  const { name: _n, ...all } = plain(target) as Json;
  return { entry: { name: target.name, ...all }, defaults: {} };
}

/** The YAML text of a config for the application `file` exports. */
export async function generateConfig(file: string, opts: GenerateOptions = {}): Promise<string> {
  const modulePath = resolve(file);
  if (!existsSync(modulePath)) throw new InvalidOptionError('APP', 'no such file', file);
  const mod = await importExports(modulePath);
  const exportName = opts.exportName ?? 'default';
  const root = mod[exportName];
  if (!(exportName in mod)) throw new InvalidOptionError('--export', `${basename(file)} has no export "${exportName}" (exports: ${Object.keys(mod).join(', ') || 'none'})`);
  if (!Application.isApplication(root)) throw new InvalidOptionError('--export', `export "${exportName}" of ${basename(file)} is not an application: call .bind() on a deployment`);
  const spec: AppSpec = buildAppSpec(root, { name: opts.name ?? 'default', routePrefix: opts.routePrefix === undefined ? '/' : opts.routePrefix, modulePath, exportName });
  const graph = collectGraph(root);

  const base = opts.outFile === undefined ? process.cwd() : dirname(resolve(opts.outFile));
  let rel = relative(base, modulePath);
  if (!isAbsolute(rel) && !rel.startsWith('..')) rel = `./${rel}`;
  const importPath = exportName === 'default' ? rel : `${rel}:${exportName}`;

  const entries = spec.deployments.map((d) => entryFor(d.options, graph.get(d.name)!.deployment.rawOptions));
  const doc = new Document({
    applications: [{ name: spec.name, importPath, routePrefix: spec.routePrefix, deployments: entries.map((e) => e.entry) }],
  });
  doc.commentBefore = [
    ` Generated by \`shoal config generate ${file}\` from the options the code declares (docs/config.md).`,
    ' Each deployment lists the options that differ from the defaults; the defaults follow, commented.',
    ` Apply: shoal deploy ${opts.outFile ?? 'config.yaml'} --address ws://HOST:PORT   (or run here: shoal run ${opts.outFile ?? 'config.yaml'})`,
  ].join('\n');
  entries.forEach((e, i) => {
    if (Object.keys(e.defaults).length === 0) return;
    const node = doc.getIn(['applications', 0, 'deployments', i], true);
    if (!isMap(node)) return;
    const text = new Document(e.defaults).toString({ lineWidth: 0 }).trimEnd();
    (node as YAMLMap).comment = [' defaults:', ...text.split('\n').map((l) => ` ${l}`)].join('\n');
  });
  return doc.toString({ lineWidth: 0 });
}

export const CONFIG_USAGE = `usage: shoal config generate APP.ts [options]
  write a config file (docs/config.md) holding the application's deployments with the options its code declares;
  apply it with shoal deploy FILE --address ws://HOST:PORT, or run it here with shoal run FILE

options:
  -o, --output FILE         write the file there (importPath relative to its directory); default: print it
  --force                   overwrite FILE when it exists
  --export NAME             the module's export that is the application (default: default)
  --name APP                the application's name in the file (default: default)
  --route-prefix /PATH      its route prefix (default: /)
`;

/** `shoal config generate APP.ts [-o FILE] [--force] [--export NAME] [--name APP] [--route-prefix /PATH]`. */
export async function configCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === '--help' || sub === '-h' || sub === 'help') { process.stdout.write(CONFIG_USAGE); return 0; }
  if (sub !== 'generate') {
    process.stderr.write(`shoal config: ${sub === undefined ? 'needs a subcommand' : `unknown subcommand "${sub}"`}\n${CONFIG_USAGE}`);
    return 2;
  }
  const { values, positionals } = parseArgs({
    args: rest,
    options: {
      output: { type: 'string', short: 'o' }, force: { type: 'boolean' }, export: { type: 'string' }, name: { type: 'string' }, 'route-prefix': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    allowPositionals: true,
  });
  if (values.help === true) { process.stdout.write(CONFIG_USAGE); return 0; }
  const file = positionals[0];
  if (file === undefined || positionals.length > 1) throw new InvalidOptionError('APP', 'shoal config generate takes one application file, e.g. shoal config generate app.ts -o config.yaml');
  const out = values.output;
  if (out !== undefined && existsSync(out) && values.force !== true) throw new InvalidOptionError('-o', `${out} exists; --force overwrites it`, out);
  const text = await generateConfig(file, {
    ...(values.export !== undefined ? { exportName: values.export } : {}),
    ...(values.name !== undefined ? { name: values.name } : {}),
    ...(values['route-prefix'] !== undefined ? { routePrefix: values['route-prefix'] } : {}),
    ...(out !== undefined ? { outFile: out } : {}),
  });
  if (out === undefined) { process.stdout.write(text); return 0; }
  writeFileSync(out, text);
  process.stdout.write(`wrote ${out}: application "${values.name ?? 'default'}" from ${file}\n`);
  return 0;
}
