/**
 * How chunks of a streamed answer become HTTP bytes (docs/streaming.md has the framing):
 *
 * - Server-Sent Events (the client's Accept includes text/event-stream): `data: <JSON>\n\n` per chunk (bytes as a
 *   base64 string), then `event: end\ndata: null\n\n` when the stream completes, or
 *   `event: error\ndata: {"code","message"}\n\n` when it fails.
 * - Otherwise chunked transfer: strings and bytes as they are, any other value as one line of JSON
 *   (newline-delimited JSON). The content type follows the first chunk: text/plain for a string,
 *   application/octet-stream for bytes, application/x-ndjson for anything else.
 */
import { toWireError } from '@shoal/core';

export type StreamFraming = 'sse' | 'chunked';

export const SSE_CONTENT_TYPE = 'text/event-stream; charset=utf-8';
export const NDJSON_CONTENT_TYPE = 'application/x-ndjson';
const TEXT_CONTENT_TYPE = 'text/plain; charset=utf-8';
const BYTES_CONTENT_TYPE = 'application/octet-stream';

/** SSE when the Accept header lists text/event-stream, else chunked transfer. */
export function framingFor(accept: string | string[] | undefined): StreamFraming {
  if (accept === undefined) return 'chunked';
  const v = Array.isArray(accept) ? accept.join(',') : accept;
  return v.includes('text/event-stream') ? 'sse' : 'chunked';
}

/** The content type of a chunked-transfer answer, from its first chunk. */
export function chunkedContentType(first: unknown): string {
  if (typeof first === 'string') return TEXT_CONTENT_TYPE;
  if (first instanceof Uint8Array) return BYTES_CONTENT_TYPE;
  return NDJSON_CONTENT_TYPE;
}

/** One chunk in chunked transfer: a string or bytes as they are, anything else as a JSON line. */
export function chunkedBytes(chunk: unknown): string | Uint8Array {
  if (typeof chunk === 'string' || chunk instanceof Uint8Array) return chunk;
  return `${JSON.stringify(jsonable(chunk)) ?? 'null'}\n`;
}

/** One chunk as an SSE event; a JSON value that spans lines cannot, since JSON.stringify writes none. */
export function sseEvent(chunk: unknown): string {
  return `data: ${JSON.stringify(jsonable(chunk)) ?? 'null'}\n\n`;
}

/** The event that ends a complete SSE stream (an EventSource would otherwise reconnect when the body ends). */
export const SSE_END = 'event: end\ndata: null\n\n';

/** The event that ends a failed SSE stream: the error's stable code and its message. */
export function sseError(err: unknown): string {
  const w = toWireError(err);
  return `event: error\ndata: ${JSON.stringify({ code: w.code, message: w.message })}\n\n`;
}

/** Bytes travel in JSON as base64 strings. */
function jsonable(v: unknown): unknown {
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64');
  return v;
}

/**
 * A whole streamed answer as one body, for a caller that cannot take a stream (the chunks were gathered): the
 * chunked framing joined, with its content type.
 */
export function gatheredBody(chunks: readonly unknown[]): { contentType: string; body: Buffer } {
  const parts = chunks.map((c) => { const b = chunkedBytes(c); return typeof b === 'string' ? Buffer.from(b) : b; });
  return { contentType: chunks.length === 0 ? TEXT_CONTENT_TYPE : chunkedContentType(chunks[0]), body: Buffer.concat(parts) };
}
