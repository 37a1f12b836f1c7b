/**
 * The file store's lease: a lock file beside the state file holding the holder's token, host, pid, start time and
 * boot id. A lock whose holder is on this host and dead (no such pid, or written before the last reboot) is stale
 * and taken over; any other lock refuses, since a pid on another host cannot be checked from here.
 *
 * The lock is created exclusively with link(2): the content is written to a private temp file first and then
 * linked to the lock's name, which fails with EEXIST like open(O_EXCL) but makes the lock appear with its content
 * or not at all. A plain 'wx' open could leave an empty lock behind a crash, naming no holder.
 */
import { link, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Clock, Logger } from '@shoal/core';
import { StoreCorruptError, StoreLeaseLostError, StoreLockedError, describeHolder, type LeaseHolder } from './errors.ts';
import { sleep } from './leased-state-store.ts';

interface LockContent extends LeaseHolder {
  /** Random per acquisition: tells this holder's lock from a later one with the same pid. */
  token: string;
  /** /proc/sys/kernel/random/boot_id where readable: a lock from before a reboot is stale whatever its pid. */
  bootId?: string;
}

export interface FileLockOptions {
  standby: boolean;
  signal: AbortSignal;
  pollMs: number;
  logger: Logger;
  clock: Clock;
}

const LOCK_REMEDY = 'if no head uses this data directory, delete it';

function bootId(): string | undefined {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

function errno(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the pid exists but belongs to another user.
    return errno(err) === 'EPERM';
  }
}

function holderOf(c: LockContent): LeaseHolder {
  return { host: c.host, pid: c.pid, sinceMs: c.sinceMs };
}

export class FileLock {
  private constructor(readonly path: string, private readonly content: LockContent, private readonly text: string) {}

  /** Takes the lock at `path`: StoreLockedError while a live holder has it, unless `standby` (then waits). */
  static async acquire(path: string, opts: FileLockOptions): Promise<FileLock> {
    const content: LockContent = { token: randomBytes(16).toString('hex'), host: hostname(), pid: process.pid, sinceMs: opts.clock.wallNow() };
    const boot = bootId();
    if (boot !== undefined) content.bootId = boot;
    const text = `${JSON.stringify(content)}\n`;
    let waiting = false;
    for (;;) {
      if (await FileLock.tryCreate(path, text)) {
        if (waiting) opts.logger.info('standby took the state store lock', { lock: path });
        return new FileLock(path, content, text);
      }
      const seen = await FileLock.readLock(path);
      if (seen === undefined) continue; // released between our attempt and the read
      if (FileLock.isStale(seen, boot)) {
        await FileLock.breakStale(path, seen, opts.logger);
        continue;
      }
      if (!opts.standby) {
        throw new StoreLockedError(
          `state store lock ${path} is held by another head: ${describeHolder(seen)}; stop that head, or open this one as a standby`
          + `${seen.host === content.host ? '' : ` (a lock from another host is never taken over: if no head runs there, delete ${path})`}`,
          holderOf(seen),
        );
      }
      if (!waiting) opts.logger.info('waiting as standby for the state store lock', { lock: path, holder: describeHolder(seen) });
      waiting = true;
      await sleep(opts.clock, opts.pollMs, opts.signal, `standby wait for state store lock ${path}`);
    }
  }

  /** Fencing: throws StoreLeaseLostError unless the lock file still holds this acquisition's token. */
  async verify(): Promise<void> {
    const now = await FileLock.readLock(this.path);
    if (now?.token === this.content.token) return;
    throw new StoreLeaseLostError(
      now === undefined
        ? `state store lock ${this.path} was removed while this head (pid ${this.content.pid}) held it; the write was not made`
        : `state store lock ${this.path} now belongs to ${describeHolder(now)}; this head (pid ${this.content.pid}) lost it and the write was not made`,
      now === undefined ? undefined : holderOf(now),
    );
  }

  /** Removes the lock if it is still this acquisition's. */
  async release(): Promise<void> {
    const now = await FileLock.readLock(this.path).catch(() => undefined);
    if (now?.token !== this.content.token) return;
    await unlink(this.path).catch(() => undefined);
  }

  private static async tryCreate(path: string, text: string): Promise<boolean> {
    const temp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
    await writeFile(temp, text, { flag: 'wx' });
    try {
      await link(temp, path);
      return true;
    } catch (err) {
      if (errno(err) === 'EEXIST') return false;
      throw err;
    } finally {
      await unlink(temp).catch(() => undefined);
    }
  }

  /** The lock's content, or undefined when there is no lock file. */
  private static async readLock(path: string): Promise<LockContent | undefined> {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      if (errno(err) === 'ENOENT') return undefined;
      throw err;
    }
    let c: Partial<LockContent>;
    try {
      c = JSON.parse(text) as Partial<LockContent>;
    } catch (err) {
      throw new StoreCorruptError(`lock ${path}`, `it is not JSON (${(err as Error).message})`, { cause: err, remedy: LOCK_REMEDY });
    }
    if (typeof c !== 'object' || c === null || typeof c.token !== 'string' || typeof c.host !== 'string' || typeof c.pid !== 'number' || typeof c.sinceMs !== 'number') {
      throw new StoreCorruptError(`lock ${path}`, 'it lacks token, host, pid or sinceMs', { remedy: LOCK_REMEDY });
    }
    return c as LockContent;
  }

  private static isStale(seen: LockContent, boot: string | undefined): boolean {
    if (seen.host !== hostname()) return false;
    if (boot !== undefined && seen.bootId !== undefined && seen.bootId !== boot) return true;
    return !pidAlive(seen.pid);
  }

  /**
   * Removes a stale lock without racing another head doing the same: rename it aside (atomic, so only one of them
   * gets it), then check that what was moved is still the stale lock. If a fresh lock was moved instead (someone
   * broke the stale one and took over in between), put it back; should that fail, its owner's next write finds
   * its lock gone and fails with StoreLeaseLostError, which is safe.
   */
  private static async breakStale(path: string, seen: LockContent, logger: Logger): Promise<void> {
    const aside = `${path}.stale.${process.pid}.${randomBytes(6).toString('hex')}`;
    try {
      await rename(path, aside);
    } catch (err) {
      if (errno(err) === 'ENOENT') return;
      throw err;
    }
    let moved: LockContent | undefined;
    try {
      moved = await FileLock.readLock(aside);
    } catch {
      moved = undefined;
    }
    if (moved?.token === seen.token) {
      logger.warn('took over a stale state store lock: its holder is dead', { lock: path, holder: describeHolder(seen) });
    } else {
      await link(aside, path).catch(() => undefined);
    }
    await unlink(aside).catch(() => undefined);
  }
}
