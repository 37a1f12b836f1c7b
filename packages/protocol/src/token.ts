/**
 * Where the cluster token comes from, for every command that presents it: `--token-file PATH` (preferred: argv is
 * visible to every user in `ps`), the SHOAL_TOKEN environment variable, or `--token` (kept for scripts).
 *
 *   const token = resolveToken({ token: values.token, tokenFile: values['token-file'] }, (m) => logger.warn(m));
 */
import { readFileSync, statSync } from 'node:fs';
import { env, InvalidOptionError } from '@shoal/core';

export interface TokenSources {
  /** The value of --token. */
  token?: string | undefined;
  /** The value of --token-file. */
  tokenFile?: string | undefined;
}

/**
 * The token from --token, else --token-file (read and trimmed), else SHOAL_TOKEN; undefined when none is set.
 * A token file that other users may read is used, with a warning through `warn`.
 */
export function resolveToken(sources: TokenSources, warn: (message: string) => void = () => {}): string | undefined {
  if (sources.token !== undefined && sources.tokenFile !== undefined) throw new InvalidOptionError('--token-file', 'cannot be combined with --token (give one)');
  if (sources.token !== undefined) {
    if (sources.token.trim() === '') throw new InvalidOptionError('--token', 'must not be empty');
    return sources.token;
  }
  if (sources.tokenFile !== undefined) return readTokenFile(sources.tokenFile, warn);
  return env.token();
}

/** Reads a token file: InvalidOptionError naming --token-file when it is missing, unreadable or empty. */
export function readTokenFile(path: string, warn: (message: string) => void = () => {}): string {
  if (path === '') throw new InvalidOptionError('--token-file', 'must be a path');
  // '-': read it from stdin to its end (how a head hands the token to the local workers it spawns).
  if (path === '-') {
    let piped: string;
    try { piped = readFileSync(0, 'utf8').trim(); } catch (err) { throw new InvalidOptionError('--token-file', `cannot read stdin (${(err as NodeJS.ErrnoException).code ?? 'error'})`); }
    if (piped === '') throw new InvalidOptionError('--token-file', 'stdin (-) held no token');
    return piped;
  }
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new InvalidOptionError('--token-file', `cannot read ${path} (${code === 'ENOENT' ? 'no such file' : code})`);
  }
  const token = text.trim();
  if (token === '') throw new InvalidOptionError('--token-file', `${path} is empty`);
  try {
    const mode = statSync(path).mode;
    if (process.platform !== 'win32' && (mode & 0o004) !== 0) {
      warn(`--token-file ${path} is readable by every user (mode ${(mode & 0o777).toString(8)}); chmod 600 it`);
    }
  } catch {
    // It was just read; a stat failing now only loses the warning.
  }
  return token;
}
