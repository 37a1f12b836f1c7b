/** Small helpers shared by the ingress and the control API. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { readRequestBody, toWireError } from '@shoal/core';

const JSON_TYPE = { 'content-type': 'application/json' };

export function sendJson(res: ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { ...JSON_TYPE, 'content-length': Buffer.byteLength(body), ...headers });
  res.end(body);
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
