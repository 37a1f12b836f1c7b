/**
 * Loading users' TypeScript: shoal itself runs compiled JavaScript, and registers tsx (Node's module hooks) only
 * when the first TypeScript module is about to be imported, so shoal's own modules, already loaded by then, never
 * pass through it. In a process that already runs shoal from its TypeScript sources (vitest, or tsx), a loader is
 * in place and nothing is registered.
 */
const TS_FILE = /\.(?:[mc]?ts|tsx)(?:[?#].*)?$/i;
const RUNNING_FROM_SOURCE = import.meta.url.endsWith('.ts');

let registered: Promise<void> | undefined;

/** Whether importing `specifier` (a path or URL) needs a TypeScript loader. */
export function isTypeScriptModule(specifier: string): boolean {
  return TS_FILE.test(specifier);
}

/** Registers tsx once, before the first TypeScript module is imported; a no-op for JavaScript modules. */
export function registerTypeScript(specifier: string): Promise<void> {
  if (RUNNING_FROM_SOURCE || !isTypeScriptModule(specifier)) return Promise.resolve();
  registered ??= import('tsx/esm/api').then(({ register }) => { register(); });
  return registered;
}
