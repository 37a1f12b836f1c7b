/**
 * Reads a JSON-lines file as a stream, from a byte offset, one line at a time. The file is never held whole:
 * the read stream is pulled only as fast as lines are taken (an async iterator is backpressure), and a line is
 * buffered only up to maxLineBytes, past which the read fails naming the line.
 */
import { createReadStream } from 'node:fs';
import { BatchError } from './errors.ts';

/** One line of the input, without its newline (and without a `\r` before it). */
export interface InputLine {
  /** Line number in the file, from 1. */
  line: number;
  /** Byte offset of the line's first byte. */
  start: number;
  /** Byte offset just past the line's newline (or the end of the file, for a last line without one). */
  end: number;
  text: Buffer;
}

export interface ReadLinesOptions {
  /** Byte offset to start at: the first byte of a line. @default 0 */
  start?: number;
  /** The number of the line that starts at `start`. @default 1 */
  firstLine?: number;
  /** Longest line, in bytes. @default 67108864 (64 MiB) */
  maxLineBytes?: number;
  /** Size of each read from the file. @default 1048576 (1 MiB) */
  chunkBytes?: number;
}

export const DEFAULT_MAX_LINE_BYTES = 64 * 1024 * 1024;

const NL = 0x0a;
const CR = 0x0d;

export async function* readLines(path: string, opts: ReadLinesOptions = {}): AsyncGenerator<InputLine> {
  const maxLineBytes = opts.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
  let offset = opts.start ?? 0;
  let line = opts.firstLine ?? 1;
  const stream = createReadStream(path, { start: offset, highWaterMark: opts.chunkBytes ?? 1024 * 1024 });
  // The part of the current line read so far, in pieces: concatenated once, when its newline arrives.
  let parts: Buffer[] = [];
  let partBytes = 0;
  let lineStart = offset;
  const tooLong = (): BatchError => new BatchError('ERR_BATCH_LINE_TOO_LONG', `input line ${line} (at byte ${lineStart}) is longer than maxLineBytes=${maxLineBytes}`);
  const finish = (piece: Buffer, end: number): InputLine => {
    let text = partBytes === 0 ? piece : Buffer.concat([...parts, piece], partBytes + piece.length);
    if (text.length > 0 && text[text.length - 1] === CR) text = text.subarray(0, text.length - 1);
    const out = { line, start: lineStart, end, text };
    parts = [];
    partBytes = 0;
    line++;
    lineStart = end;
    return out;
  };
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      let pos = 0;
      while (pos < chunk.length) {
        const nl = chunk.indexOf(NL, pos);
        if (nl === -1) {
          const rest = chunk.subarray(pos);
          if (partBytes + rest.length > maxLineBytes) throw tooLong();
          parts.push(rest);
          partBytes += rest.length;
          break;
        }
        if (partBytes + (nl - pos) > maxLineBytes) throw tooLong();
        yield finish(chunk.subarray(pos, nl), offset + nl + 1);
        pos = nl + 1;
      }
      offset += chunk.length;
    }
    if (partBytes > 0) yield finish(Buffer.alloc(0), offset);
  } finally {
    stream.destroy();
  }
}
