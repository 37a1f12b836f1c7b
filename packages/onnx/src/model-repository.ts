/**
 * A model repository laid out like Triton's:
 *
 *   <repo>/<model>/config.json          optional, see model-config.ts
 *   <repo>/<model>/<version>/model.onnx  versions are positive integers; the policy picks which are served
 *
 * Scanning never loads a model. A model whose layout or config is wrong is reported in `failed` with the reason
 * (as Triton marks it UNAVAILABLE), so one bad model does not hide the good ones.
 */
import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { DeployError, NotFoundError, ShoalError, checkName } from '@shoal/core';
import { compileModelConfig, type CompiledModelConfig, type VersionPolicy } from './model-config.ts';

export interface RepositoryModelVersion {
  version: number;
  /** Absolute path of the version's model file. */
  path: string;
}

export interface RepositoryModel {
  name: string;
  dir: string;
  /** Path of config.json, when the model has one. */
  configPath: string | undefined;
  config: CompiledModelConfig;
  /** The versions the policy selects, highest first. */
  versions: RepositoryModelVersion[];
  /** Every version directory found, ascending. */
  available: number[];
}

export interface RepositoryScan {
  root: string;
  /** Models that scanned cleanly, by name. */
  models: RepositoryModel[];
  /** Models that did not, with why. */
  failed: Array<{ name: string; dir: string; error: ShoalError }>;
}

const VERSION_RE = /^[1-9][0-9]{0,15}$/;

/** The versions a policy serves out of those available (ascending input), highest first. */
export function selectVersions(available: readonly number[], policy: VersionPolicy, model = 'model'): number[] {
  const desc = [...available].sort((a, b) => b - a);
  if ('latest' in policy) return desc.slice(0, policy.latest);
  if ('all' in policy) return desc;
  const missing = policy.specific.filter((v) => !available.includes(v));
  if (missing.length > 0) {
    throw new DeployError(`model "${model}": versionPolicy.specific asks for version(s) ${missing.join(', ')}, but only ${available.join(', ') || 'none'} exist`);
  }
  return policy.specific.slice().sort((a, b) => b - a);
}

async function isDir(path: string): Promise<boolean> {
  try { return (await stat(path)).isDirectory(); } catch { return false; }
}

async function checkRoot(root: string): Promise<void> {
  let s;
  try { s = await stat(root); } catch {
    throw new NotFoundError(`model repository ${root} does not exist`);
  }
  if (!s.isDirectory()) throw new DeployError(`model repository ${root} is not a directory`);
}

async function readConfig(path: string, where: string): Promise<{ raw: unknown; exists: boolean }> {
  let text: string;
  try { text = await readFile(path, 'utf8'); } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { raw: undefined, exists: false };
    throw new DeployError(`${where}: cannot read: ${(err as Error).message}`);
  }
  try { return { raw: JSON.parse(text) as unknown, exists: true }; } catch (err) {
    throw new DeployError(`${where}: not valid JSON: ${(err as Error).message}`);
  }
}

async function scanModelDir(root: string, name: string): Promise<RepositoryModel> {
  checkName(`model repository ${root}: model directory name`, name);
  const dir = join(root, name);
  const configPath = join(dir, 'config.json');
  const { raw, exists } = await readConfig(configPath, configPath);
  const config = compileModelConfig(raw, `${configPath}:`);
  const entries = await readdir(dir, { withFileTypes: true });
  const available: number[] = [];
  const ignored: string[] = [];
  for (const e of entries) {
    if (e.name.startsWith('.') || e.name === 'config.json') continue;
    if (e.isDirectory() && VERSION_RE.test(e.name)) available.push(Number(e.name));
    else ignored.push(e.name);
  }
  available.sort((a, b) => a - b);
  if (available.length === 0) {
    const found = ignored.length === 0 ? 'it is empty' : `found only: ${ignored.join(', ')}`;
    throw new DeployError(`model "${name}" in ${root} has no version directories (${found}); expected ${join(dir, '1', config.modelFile)}`);
  }
  const selected = selectVersions(available, config.versionPolicy, name);
  const versions: RepositoryModelVersion[] = [];
  for (const v of selected) {
    const vdir = join(dir, String(v));
    const path = join(vdir, config.modelFile);
    let ok = false;
    try { ok = (await stat(path)).isFile(); } catch { ok = false; }
    if (!ok) {
      const present = (await readdir(vdir)).filter((f) => !f.startsWith('.'));
      throw new DeployError(`model "${name}" version ${v}: ${path} is missing (the directory holds ${present.length === 0 ? 'nothing' : present.join(', ')}; set "modelFile" in config.json for another name)`);
    }
    versions.push({ version: v, path });
  }
  return { name, dir, configPath: exists ? configPath : undefined, config, versions, available };
}

/** Scans one model of a repository. Rejects with NotFoundError when the model is not there, DeployError for a bad layout. */
export async function scanModel(root: string, name: string): Promise<RepositoryModel> {
  await checkRoot(root);
  if (!(await isDir(join(root, name)))) {
    const names = (await readdir(root, { withFileTypes: true })).filter((e) => e.isDirectory() && !e.name.startsWith('.')).map((e) => e.name);
    throw new NotFoundError(`model "${name}" is not in repository ${root} (models: ${names.join(', ') || 'none'})`);
  }
  return scanModelDir(root, name);
}

/** Scans every model directory of a repository. Rejects only when the repository itself is missing. */
export async function scanModelRepository(root: string): Promise<RepositoryScan> {
  await checkRoot(root);
  const entries = (await readdir(root, { withFileTypes: true }))
    .filter((e) => e.isDirectory() && !e.name.startsWith('.'))
    .map((e) => e.name)
    .sort();
  const scan: RepositoryScan = { root, models: [], failed: [] };
  for (const name of entries) {
    try {
      scan.models.push(await scanModelDir(root, name));
    } catch (err) {
      const error = err instanceof ShoalError ? err : new DeployError(`model "${name}": ${(err as Error).message}`);
      scan.failed.push({ name, dir: join(root, name), error });
    }
  }
  return scan;
}
