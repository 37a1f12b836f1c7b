/**
 * The checkpoint a batch run keeps beside its output (`OUTPUT.shoal-checkpoint`): the input byte offset and line
 * number of the last line such that it and every line before it are in the output, and the output's length at
 * that point. Written atomically (a temporary file, fsync, rename), after the output's own bytes are synced, so
 * that whatever stops the process the checkpoint on disk never claims more than the output holds.
 *
 * It also records what the input looked like (size, mtime, sha256 of its first KiB) and the run's target, so a
 * run never resumes over a different file or deployment.
 */
import { createHash } from 'node:crypto';
import { open, readFile, rename, rm, stat } from 'node:fs/promises';
import { BatchError } from './errors.ts';

export interface InputFingerprint {
  size: number;
  mtimeMs: number;
  /** sha256 (hex) of the first 1024 bytes (fewer for a smaller file). */
  headSha256: string;
}

export interface Checkpoint {
  v: 1;
  /** The input path as the run was given it (for messages). */
  input: string;
  fingerprint: InputFingerprint;
  /** What the lines were run through ("app/deployment.method", or the caller's label). */
  target: string | undefined;
  /** Input byte offset just past the last line covered. */
  offset: number;
  /** Number of the last line covered (0: none yet). */
  line: number;
  /** Output length, in bytes, with every covered line written. */
  outputBytes: number;
  /** Covered lines answered, and covered lines written as errors. */
  ok: number;
  failed: number;
  updatedAt: string;
}

export const CHECKPOINT_SUFFIX = '.shoal-checkpoint';
const HEAD_BYTES = 1024;

export function checkpointPathFor(output: string): string {
  return `${output}${CHECKPOINT_SUFFIX}`;
}

export async function fingerprintOf(path: string): Promise<InputFingerprint> {
  const st = await stat(path);
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(Math.min(HEAD_BYTES, st.size));
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return { size: st.size, mtimeMs: st.mtimeMs, headSha256: createHash('sha256').update(buf.subarray(0, bytesRead)).digest('hex') };
  } finally {
    await fh.close();
  }
}

/** The checkpoint at `path`, undefined when there is none; a file that is not one is an error naming it. */
export async function readCheckpoint(path: string): Promise<Checkpoint | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  let cp: Partial<Checkpoint>;
  try { cp = JSON.parse(text) as Partial<Checkpoint>; } catch { cp = {}; }
  const counts = ['offset', 'line', 'outputBytes', 'ok', 'failed'] as const;
  const f = cp.fingerprint;
  if (cp.v !== 1 || counts.some((k) => !Number.isSafeInteger(cp[k]) || (cp[k] as number) < 0) || typeof f !== 'object' || f === null
    || typeof f.size !== 'number' || typeof f.mtimeMs !== 'number' || typeof f.headSha256 !== 'string') {
    throw new BatchError('ERR_BATCH_CHECKPOINT_CORRUPT', `${path} is not a batch checkpoint this version reads: remove it, or run with --restart to start over`);
  }
  return cp as Checkpoint;
}

/** Writes the checkpoint atomically: a reader (or a crash) sees the previous one or this one, whole. */
export async function writeCheckpoint(path: string, cp: Checkpoint): Promise<void> {
  const tmp = `${path}.tmp`;
  const fh = await open(tmp, 'w');
  try {
    await fh.writeFile(`${JSON.stringify(cp)}\n`);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
}

export async function removeCheckpoint(path: string): Promise<void> {
  await rm(path, { force: true });
  await rm(`${path}.tmp`, { force: true });
}

/** Why the checkpoint does not belong to this run, or undefined when it does. */
export function checkpointMismatch(cp: Checkpoint, input: InputFingerprint, target: string | undefined): string | undefined {
  const f = cp.fingerprint;
  if (f.size !== input.size) return `the input's size is ${input.size} bytes, the checkpoint was made on ${f.size}`;
  if (f.headSha256 !== input.headSha256) return `the input's first ${Math.min(HEAD_BYTES, input.size)} bytes differ from those the checkpoint was made on`;
  if (f.mtimeMs !== input.mtimeMs) return `the input was modified at ${new Date(input.mtimeMs).toISOString()}, after the checkpoint's ${new Date(f.mtimeMs).toISOString()}`;
  if (cp.target !== target) return `the checkpoint was made running ${cp.target ?? '(no target)'}, this run runs ${target ?? '(no target)'}`;
  if (cp.offset > input.size) return `the checkpoint's offset ${cp.offset} is past the input's end (${input.size} bytes)`;
  return undefined;
}
