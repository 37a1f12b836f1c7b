/**
 * Loading users' TypeScript: shoal itself runs compiled JavaScript, and registers tsx (Node's module hooks) only
 * when the first TypeScript module is about to be imported, so shoal's own modules, already loaded by then, never
 * pass through it. In a process that already runs shoal from its TypeScript sources (vitest, or tsx), a loader is
 * in place and nothing is registered.
 *
 * An app module is an ES module (it has `export default ...`), but Node, and tsx with it, gives a `.ts` file the
 * module type of its nearest package.json: in a project made with `npm init -y` (npm 11 writes "type": "commonjs")
 * or with no package.json at all, the import fails deep inside Node with "Cannot require() ES Module ... in a
 * cycle". That case is caught before the import, with the file, the package.json and the fix named.
 */
import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DeployError } from '@shoal/core';

const TS_FILE = /\.(?:[mc]?ts|tsx)(?:[?#].*)?$/i;
/** .ts and .tsx take the package's type; .mts is always a module (and .cts always CommonJS, the user's choice). */
const TYPED_BY_PACKAGE = /\.tsx?$/i;
const RUNNING_FROM_SOURCE = import.meta.url.endsWith('.ts');

let registered: Promise<void> | undefined;

/** Whether importing `specifier` (a path or URL) needs a TypeScript loader. */
export function isTypeScriptModule(specifier: string): boolean {
  return TS_FILE.test(specifier);
}

/** The nearest package.json above `file` and its "type" (undefined when it has none), as Node looks it up. */
export function packageTypeOf(file: string): { packageJson: string; type: unknown } | undefined {
  for (let dir = dirname(file); ; dir = dirname(dir)) {
    const candidate = join(dir, 'package.json');
    if (existsSync(candidate)) {
      let type: unknown;
      try {
        type = (JSON.parse(readFileSync(candidate, 'utf8')) as { type?: unknown }).type;
      } catch {
        // Node reports an unreadable package.json itself, naming it.
        return { packageJson: candidate, type: undefined };
      }
      return { packageJson: candidate, type };
    }
    if (dirname(dir) === dir) return undefined;
  }
}

/**
 * Throws a DeployError naming the file and the remedy when a `.ts` app module would load as CommonJS: its nearest
 * package.json does not say "type": "module" (or there is none). `specifier` is a path or a file: URL.
 */
export function assertTypeScriptLoadsAsModule(specifier: string): void {
  let file: string;
  try {
    file = /^file:/i.test(specifier) ? fileURLToPath(specifier.replace(/[?#].*$/, '')) : specifier.replace(/[?#].*$/, '');
  } catch {
    return;
  }
  if (/^[a-z]+:/i.test(file) && !/^[a-z]:[\\/]/i.test(file)) return; // another scheme: not a file Node types by package
  if (!TYPED_BY_PACKAGE.test(file)) return;
  const pkg = packageTypeOf(file);
  if (pkg?.type === 'module') return;
  // .tsx has no module-only twin (.mts cannot hold JSX): for it the package's type is the fix.
  const rename = /\.ts$/i.test(file) ? `, or rename it to ${basename(file).replace(/\.ts$/i, '.mts')}` : '';
  const why = pkg === undefined
    ? 'no package.json is above it, so Node loads it as CommonJS'
    : `${pkg.packageJson} has ${pkg.type === undefined ? 'no "type"' : `"type": ${JSON.stringify(pkg.type)}`}, so Node loads it as CommonJS`;
  const fix = pkg === undefined
    ? `add one with "type": "module" in the project's directory (npm init -y && npm pkg set type=module)`
    : `run \`npm pkg set type=module\` in ${dirname(pkg.packageJson)}`;
  throw new DeployError(`cannot load ${file} as an ES module: ${why}${pkg?.type === 'commonjs' ? ' (npm init -y writes that)' : ''}. An app module is an ES module: ${fix}${rename}`);
}

/** Registers tsx once, before the first TypeScript module is imported; a no-op for JavaScript modules. */
export function registerTypeScript(specifier: string): Promise<void> {
  if (RUNNING_FROM_SOURCE || !isTypeScriptModule(specifier)) return Promise.resolve();
  try {
    assertTypeScriptLoadsAsModule(specifier);
  } catch (err) {
    return Promise.reject(err);
  }
  registered ??= import('tsx/esm/api').then(({ register }) => { register(); });
  return registered;
}
