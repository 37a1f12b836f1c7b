/**
 * The embedded default store: one JSON file, `state.json`, in the head's data directory, and a lock file,
 * `head.lock`, beside it (see file-lock.ts).
 *
 * Each write replaces the whole file atomically: the new document goes to a temp file in the same directory,
 * which is fsynced, then renamed over state.json, then the directory is fsynced so the rename itself survives a
 * power cut. A crash before the rename leaves the old file; after it, the new one; never a torn one.
 *
 *   const store = new FileStateStore('/var/lib/shoal', { logger });
 *   await store.open();
 */
import { mkdir, open, readFile, readdir, rename, unlink } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';
import { InvalidOptionError } from '@shoal/core';
import { StateStoreError, StoreCorruptError, StoreIoError } from './errors.ts';
import { FileLock } from './file-lock.ts';
import { LeasedStateStore, compileStoreOptions } from './leased-state-store.ts';
import { checkSchemaVersion, checkState, corruptAt, emptyState } from './state-document.ts';
import { STATE_SCHEMA_VERSION, type ClusterState, type StateStoreOptions } from './state-store.ts';

export const STATE_FILE = 'state.json';
export const LOCK_FILE = 'head.lock';
/** Temp files of state.json: `.state.json.<pid>.<random>.tmp`; one left behind by a crash is removed at open. */
const TEMP_RE = /^\.state\.json\.\d+\.[0-9a-f]+\.tmp$/;

export type FileStateStoreOptions = StateStoreOptions;

export class FileStateStore extends LeasedStateStore {
  readonly dir: string;
  readonly statePath: string;
  readonly lockPath: string;
  readonly description: string;
  private lock: FileLock | undefined;

  /** `dir`: the head's data directory, created if missing. */
  constructor(dir: string, opts: FileStateStoreOptions = {}) {
    if (typeof dir !== 'string' || dir === '') throw new InvalidOptionError('FileStateStore(dir)', 'must be a non-empty path', dir);
    super(compileStoreOptions(opts, 'fileStateStore'));
    this.dir = resolve(dir);
    this.statePath = join(this.dir, STATE_FILE);
    this.lockPath = join(this.dir, LOCK_FILE);
    this.description = `file ${this.statePath}`;
  }

  protected async acquire(standby: boolean, signal: AbortSignal): Promise<void> {
    try {
      await mkdir(this.dir, { recursive: true });
    } catch (err) {
      throw new StoreIoError(`cannot create the state store directory ${this.dir}`, err);
    }
    this.lock = await FileLock.acquire(this.lockPath, {
      standby, signal, pollMs: this.opts.standbyPollMs, logger: this.opts.logger, clock: this.opts.clock,
    });
  }

  protected async read(): Promise<ClusterState> {
    await this.removeLeftoverTemps();
    let text: string;
    try {
      text = await readFile(this.statePath, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return emptyState();
      throw new StoreIoError(`cannot read ${this.statePath}`, err);
    }
    const fail = corruptAt(this.statePath);
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (err) {
      throw new StoreCorruptError(this.statePath, `it is not JSON (${(err as Error).message})`, { cause: err });
    }
    checkSchemaVersion((doc as { schemaVersion?: unknown } | null)?.schemaVersion, STATE_SCHEMA_VERSION, fail);
    return checkState(doc, fail);
  }

  protected async persist(next: ClusterState): Promise<void> {
    const lock = this.lock!;
    const text = `${JSON.stringify({ schemaVersion: STATE_SCHEMA_VERSION, ...next }, null, 2)}\n`;
    const temp = join(this.dir, `.${STATE_FILE}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
    let renamed = false;
    try {
      const file = await open(temp, 'wx', 0o600);
      try {
        await file.writeFile(text);
        await file.sync();
      } finally {
        await file.close();
      }
      // Fencing, as late as it can be: a head that lost its lock must not replace the new holder's file.
      await lock.verify();
      await rename(temp, this.statePath);
      renamed = true;
      const dir = await open(this.dir, 'r');
      try {
        await dir.sync();
      } finally {
        await dir.close();
      }
    } catch (err) {
      if (!renamed) await unlink(temp).catch(() => undefined);
      if (err instanceof StateStoreError) throw err;
      throw new StoreIoError(`cannot write ${this.statePath}`, err);
    }
  }

  protected async release(held: boolean): Promise<void> {
    const lock = this.lock;
    this.lock = undefined;
    if (held && lock !== undefined) await lock.release().catch((err: unknown) => this.opts.logger.warn('could not remove the state store lock', { lock: this.lockPath, error: String(err) }));
  }

  /** Holding the lock, this head is the only writer, so any temp file of state.json is a crashed write's. */
  private async removeLeftoverTemps(): Promise<void> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    for (const name of names.filter((n) => TEMP_RE.test(n))) {
      this.opts.logger.info('removing a temp file left by an interrupted write', { file: join(this.dir, name) });
      await unlink(join(this.dir, name)).catch(() => undefined);
    }
  }
}
