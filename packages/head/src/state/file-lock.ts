/**
 * The file store's lease: a lock file beside the state file holding the holder's token, host, pid, process start
 * time, pid namespace and boot id, whose mtime the holder refreshes every second.
 *
 * Whether a lock's holder is alive is decided in one of two ways:
 * - A holder this process can see (same host and boot, same pid namespace): by its pid. It is dead when there is
 *   no such pid, when the pid is this process's own but the token is not one this process holds (a new container
 *   often gets its dead predecessor's pid, pid 1 included), or when the process with that pid started at another
 *   time than the holder did (the pid was reused).
 * - A holder in another container (another pid namespace), on another host, or of another boot (before a reboot,
 *   or another machine with the same host name), whose pid means nothing here: by its refreshes. The lock is
 *   watched for five of its refresh periods; one that does not change meanwhile is stale. A lock that never
 *   declared a refresh period (an older shoal) from another host or container is never taken over.
 * A holder that was only paused and wakes after a takeover finds the lock no longer its own at its next write
 * (verify: StoreLeaseLostError) and stops.
 *
 * The lock is created exclusively with link(2): the content is written to a private temp file first and then
 * linked to the lock's name, which fails with EEXIST like open(O_EXCL) but makes the lock appear with its content
 * or not at all. A plain 'wx' open could leave an empty lock behind a crash, naming no holder.
 */
import { link, readFile, rename, stat, unlink, utimes, writeFile } from 'node:fs/promises';
import { readFileSync, readlinkSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Clock, Logger } from '@shoal/core';
import { StoreCorruptError, StoreLeaseLostError, StoreLockedError, describeHolder, type LeaseHolder } from './errors.ts';
import { sleep } from './leased-state-store.ts';

interface LockContent extends LeaseHolder {
  /** Random per acquisition: tells this holder's lock from a later one with the same pid. */
  token: string;
  /** /proc/sys/kernel/random/boot_id where readable: a lock of another boot cannot be checked by its pid. */
  bootId?: string;
  /** The holder's start time in clock ticks since boot (/proc/self/stat field 22): tells a reused pid from it. */
  startTicks?: number;
  /** The holder's pid namespace (/proc/self/ns/pid, e.g. "pid:[4026531836]"): its pid is checked only in the same one. */
  pidNs?: string;
  /** How often the holder touches the lock's mtime, in ms: a lock from elsewhere that stops changing is stale. */
  refreshMs?: number;
}

export interface FileLockOptions {
  standby: boolean;
  signal: AbortSignal;
  pollMs: number;
  logger: Logger;
  clock: Clock;
  /** How often the holder touches the lock file. @default 1000 */
  refreshMs?: number;
}

const DEFAULT_REFRESH_MS = 1000;
/** A lock from elsewhere is stale once it has not changed for this many of its refresh periods. */
const STALE_PERIODS = 5;
/** Bounds on a refresh period read from a lock file (another process wrote it). */
const MIN_REFRESH_MS = 10;
const MAX_REFRESH_MS = 60_000;

/** Tokens of the locks this process holds now: a lock naming this pid with another token is not this process's. */
const heldHere = new Set<string>();

const LOCK_REMEDY = 'if no head uses this data directory, delete it';

function bootId(): string | undefined {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

/** This process's start time in clock ticks since boot, or undefined without /proc. */
function startTicksOf(pid: number | 'self'): number | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 2 (the command) is in parentheses and may hold spaces: count the fields after its last ')'.
    const ticks = Number(text.slice(text.lastIndexOf(')') + 2).split(' ')[19]);
    return Number.isInteger(ticks) ? ticks : undefined;
  } catch {
    return undefined;
  }
}

function pidNamespace(): string | undefined {
  try {
    return readlinkSync('/proc/self/ns/pid');
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

/** A lock seen held by a holder that is checked by its refreshes, and since when it has not changed. */
interface Watch {
  token: string;
  mtimeMs: number;
  unchangedSinceMs: number;
}

/** Why a lock is stale, for the log; undefined while its holder may be alive. */
type Verdict = { stale: true; reason: string } | { stale: false; watch: boolean };

export class FileLock {
  private readonly refresher: NodeJS.Timeout;

  private constructor(readonly path: string, private readonly content: LockContent, refreshMs: number) {
    heldHere.add(content.token);
    this.refresher = setInterval(() => { void this.refresh(); }, refreshMs);
    this.refresher.unref();
  }

  /** Takes the lock at `path`: StoreLockedError while a live holder has it, unless `standby` (then waits). */
  static async acquire(path: string, opts: FileLockOptions): Promise<FileLock> {
    const refreshMs = opts.refreshMs ?? DEFAULT_REFRESH_MS;
    const content: LockContent = { token: randomBytes(16).toString('hex'), host: hostname(), pid: process.pid, sinceMs: opts.clock.wallNow(), refreshMs };
    const boot = bootId();
    if (boot !== undefined) content.bootId = boot;
    const ticks = startTicksOf('self');
    if (ticks !== undefined) content.startTicks = ticks;
    const ns = pidNamespace();
    if (ns !== undefined) content.pidNs = ns;
    const text = `${JSON.stringify(content)}\n`;
    // The clock's timers are unref'd: while this waits (a watch, a standby), nothing else may keep the process up.
    const alive = setInterval(() => undefined, 60_000);
    try {
      return await FileLock.acquireLoop(path, opts, content, text, refreshMs);
    } finally {
      clearInterval(alive);
    }
  }

  private static async acquireLoop(path: string, opts: FileLockOptions, content: LockContent, text: string, refreshMs: number): Promise<FileLock> {
    let waiting = false;
    let watch: Watch | undefined;
    for (;;) {
      if (await FileLock.tryCreate(path, text)) {
        if (waiting) opts.logger.info('standby took the state store lock', { lock: path });
        return new FileLock(path, content, refreshMs);
      }
      const seen = await FileLock.readLock(path);
      if (seen === undefined) continue; // released between our attempt and the read
      const verdict = FileLock.judge(seen, content);
      if (verdict.stale) {
        await FileLock.breakStale(path, seen, verdict.reason, opts.logger);
        watch = undefined;
        continue;
      }
      if (verdict.watch) {
        // A holder in another container or on another host: alive while it keeps refreshing the lock.
        const period = Math.min(MAX_REFRESH_MS, Math.max(MIN_REFRESH_MS, seen.refreshMs!));
        const mtimeMs = await FileLock.mtimeOf(path);
        if (mtimeMs === undefined) continue;
        const now = opts.clock.monoNow();
        if (watch === undefined || watch.token !== seen.token || watch.mtimeMs !== mtimeMs) {
          const first = watch === undefined || watch.token !== seen.token;
          watch = { token: seen.token, mtimeMs, unchangedSinceMs: now };
          if (first) {
            opts.logger.info('the state store lock is held from another container or host; watching whether its holder still refreshes it', { lock: path, holder: describeHolder(seen), forMs: STALE_PERIODS * period });
          } else if (!opts.standby) {
            // It changed while watched: a live holder.
            throw FileLock.lockedError(path, seen, ' (it refreshes the lock: that head is alive)');
          }
        } else if (now - watch.unchangedSinceMs >= STALE_PERIODS * period) {
          await FileLock.breakStale(path, seen, `its holder in another container or on another host has not refreshed it for ${Math.round(now - watch.unchangedSinceMs)} ms (it refreshes every ${period} ms)`, opts.logger);
          watch = undefined;
          continue;
        }
        await sleep(opts.clock, Math.max(MIN_REFRESH_MS, Math.round(period / 2)), opts.signal, `watch of state store lock ${path}`);
        continue;
      }
      if (!opts.standby) {
        throw FileLock.lockedError(path, seen, seen.host === content.host ? '' : ` (a lock from another host that does not refresh it is never taken over: if no head runs there, delete ${path})`);
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
    clearInterval(this.refresher);
    heldHere.delete(this.content.token);
    const now = await FileLock.readLock(this.path).catch(() => undefined);
    if (now?.token !== this.content.token) return;
    await unlink(this.path).catch(() => undefined);
  }

  /** Touches the lock's mtime while it is still this acquisition's: what a head elsewhere watches. */
  private async refresh(): Promise<void> {
    try {
      if ((await FileLock.readLock(this.path))?.token !== this.content.token) return;
      const now = new Date();
      await utimes(this.path, now, now);
    } catch {
      // A lock gone or unreadable: the next write's verify says so.
    }
  }

  private static lockedError(path: string, seen: LockContent, why: string): StoreLockedError {
    return new StoreLockedError(
      `state store lock ${path} is held by another head: ${describeHolder(seen)}; stop that head, or open this one as a standby${why}`,
      holderOf(seen),
    );
  }

  private static async mtimeOf(path: string): Promise<number | undefined> {
    try {
      return (await stat(path)).mtimeMs;
    } catch (err) {
      if (errno(err) === 'ENOENT') return undefined;
      throw err;
    }
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

  /** Whether `seen` (a lock this process does not hold unless its token says so) is stale; see the file's top. */
  private static judge(seen: LockContent, mine: LockContent): Verdict {
    const sameHost = seen.host === mine.host;
    const refreshes = typeof seen.refreshMs === 'number' && Number.isFinite(seen.refreshMs);
    // Another boot id: written before the last reboot, or on another machine that has the same host name (pods
    // given one hostname). Only its refreshes can tell those apart; a lock of an older shoal has none.
    const otherBoot = mine.bootId !== undefined && seen.bootId !== undefined && seen.bootId !== mine.bootId;
    if (sameHost && otherBoot && !refreshes) return { stale: true, reason: 'it was written before the last reboot' };
    // Another pid namespace (another container), boot or host: its pid cannot be checked from here.
    const elsewhere = !sameHost || otherBoot || (seen.pidNs !== undefined && mine.pidNs !== undefined && seen.pidNs !== mine.pidNs);
    if (elsewhere) return { stale: false, watch: refreshes };
    if (seen.pid === process.pid) {
      return heldHere.has(seen.token) ? { stale: false, watch: false } : { stale: true, reason: `it names this process's pid ${seen.pid}, which has not taken it: its holder is dead` };
    }
    if (!pidAlive(seen.pid)) return { stale: true, reason: 'its holder is dead' };
    if (seen.startTicks !== undefined) {
      const ticks = startTicksOf(seen.pid);
      if (ticks !== undefined && ticks !== seen.startTicks) return { stale: true, reason: `pid ${seen.pid} is another process now (started at tick ${ticks}, the holder at ${seen.startTicks}): its holder is dead` };
    }
    return { stale: false, watch: false };
  }

  /**
   * Removes a stale lock without racing another head doing the same: rename it aside (atomic, so only one of them
   * gets it), then check that what was moved is still the stale lock. If a fresh lock was moved instead (someone
   * broke the stale one and took over in between), put it back; should that fail, its owner's next write finds
   * its lock gone and fails with StoreLeaseLostError, which is safe.
   */
  private static async breakStale(path: string, seen: LockContent, reason: string, logger: Logger): Promise<void> {
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
      logger.warn(`took over a stale state store lock: ${reason}`, { lock: path, holder: describeHolder(seen) });
    } else {
      await link(aside, path).catch(() => undefined);
    }
    await unlink(aside).catch(() => undefined);
  }
}
