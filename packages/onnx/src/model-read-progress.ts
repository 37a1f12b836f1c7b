/**
 * Load progress of a model file: onnxruntime reads a model given by path inside its session's native code, which
 * says nothing until the session exists. So while the sessions load, this reads the same file in chunks alongside
 * them and reports the bytes read (@shoal/core's reportLoadProgress). Both read through the page cache: whichever
 * reads a page first takes it from the disk and the other finds it cached, so a cold model file is read from disk
 * once and the progress follows that read. Nothing is kept: one chunk buffer is reused.
 */
import { open } from 'node:fs/promises';
import { reportLoadProgress } from '@shoal/core';

/** Bytes per read. @default 4 MiB: a few hundred reports for a GB-sized model. */
export const MODEL_READ_CHUNK_BYTES = 4 * 2 ** 20;

/**
 * Starts reading `path`, reporting bytes read of its size, until the end or `stop()`. A file that cannot be read
 * reports nothing (the session's own load fails with the real error).
 */
export function reportModelRead(path: string, chunkBytes = MODEL_READ_CHUNK_BYTES): { stop(): void; done: Promise<void> } {
  let stopped = false;
  const done = (async () => {
    let fh: Awaited<ReturnType<typeof open>> | undefined;
    try {
      fh = await open(path, 'r');
      const total = (await fh.stat()).size;
      reportLoadProgress(0, total);
      const buf = Buffer.allocUnsafe(Math.min(chunkBytes, Math.max(1, total)));
      let pos = 0;
      while (!stopped && pos < total) {
        const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
        if (bytesRead === 0) break; // truncated under us: report what there was
        pos += bytesRead;
        reportLoadProgress(Math.min(pos, total), total);
      }
    } catch {
      // Unreadable: the session's load reports why.
    } finally {
      await fh?.close().catch(() => undefined);
    }
  })();
  return { stop: () => { stopped = true; }, done };
}
