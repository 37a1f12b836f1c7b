/** Small helpers shared by every ingress and the head's control API. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { readRequestBody, toWireError } from '@shoal/core';

const JSON_TYPE = { 'content-type': 'application/json' };

export function sendJson(res: ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { ...JSON_TYPE, 'content-length': Buffer.byteLength(body), ...headers });
  res.end(body);
}

/** An answer whose body may be several chunks (a JSON header and tensor views), written without joining them. */
export interface HttpAnswer {
  status: number;
  headers: Record<string, string>;
  body: Uint8Array | readonly Uint8Array[];
}

/**
 * Writes an answer with its content-length. Chunks are written as they are (views, not copies): node:http corks
 * the socket for the whole response, so they still leave in as few packets as one joined buffer would.
 */
export function sendResponse(res: ServerResponse, out: HttpAnswer): void {
  const chunks = Array.isArray(out.body) ? out.body as readonly Uint8Array[] : [out.body as Uint8Array];
  let length = 0;
  for (const c of chunks) length += c.byteLength;
  // A copy: the answer's headers may be a shared constant object.
  res.writeHead(out.status, { ...out.headers, 'content-length': String(length) });
  if (chunks.length === 1) { res.end(chunks[0]); return; }
  res.cork();
  for (const c of chunks) res.write(c);
  res.end();
  res.uncork();
}

/** Answers with {"error": message, "code": code} and the error's HTTP status (503 gets Retry-After). */
export function sendError(res: ServerResponse, err: unknown): void {
  if (res.headersSent) { res.destroy(); return; }
  const wire = toWireError(err);
  const status = wire.httpStatus ?? 500;
  const headers: Record<string, string> = {};
  if (status === 503 || status === 429) {
    const ms = Number(wire.details?.retryAfterMs ?? 1000);
    headers['retry-after'] = String(Math.max(1, Math.ceil(ms / 1000)));
  }
  sendJson(res, status, { error: wire.message, code: wire.code }, headers);
}

/** Reads a request body up to maxBytes; past it, RequestTooLargeError before the rest is read. */
export function readBody(req: IncomingMessage, maxBytes: number, what: string): Promise<Buffer> {
  return readRequestBody(req, maxBytes, 'maxRequestBytes', what);
}
