/**
 * Mounts a KServeHandler on a node:http server: a route function that claims every path under /v2 and answers
 * it, for the head ingress's `extraRoutes` (or any server that tries routes in turn).
 *
 * @example
 * const route = kserveRoute(createKServeHandler(registry));
 * http.createServer((req, res) => { if (!route(req, res)) res.writeHead(404).end(); });
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { checkInt, readRequestBody } from '@shoal/core';
import { errorResponse, responseLength, type KServeHandler, type KServeResponse } from './handler.ts';
import { DEFAULT_MAX_BODY_BYTES } from './limits.ts';

export interface KServeRouteOptions {
  /** Largest request body read; past it, 413 and the connection closes. @default 67108864 (64 MiB) */
  maxBodyBytes?: number;
  /** Called when writing a response fails (the client went away). @default ignore */
  onError?: (err: unknown) => void;
}

/** True for /v2 and every path under it. */
export function isKServePath(url: string): boolean {
  return url === '/v2' || url.startsWith('/v2/') || url.startsWith('/v2?');
}

/** Writes a response; chunks (the binary extension's tensor views) go out corked, as one write, uncopied. */
function send(res: ServerResponse, r: KServeResponse, close: boolean): void {
  if (res.destroyed) return;
  const headers: Record<string, string> = { ...r.headers, 'content-length': String(responseLength(r)) };
  if (close) headers.connection = 'close';
  res.writeHead(r.status, headers);
  if (Buffer.isBuffer(r.body)) {
    res.end(r.body);
    return;
  }
  res.cork();
  for (const chunk of r.body as readonly Buffer[]) res.write(chunk);
  res.end(); // end() uncorks fully
}

/** A route for `extraRoutes`: answers /v2/... with `handler` and returns true; returns false for other paths. */
export function kserveRoute(handler: KServeHandler, options: KServeRouteOptions = {}): (req: IncomingMessage, res: ServerResponse) => boolean {
  const maxBodyBytes = checkInt('maxBodyBytes', options.maxBodyBytes, 1, DEFAULT_MAX_BODY_BYTES);
  const onError = options.onError ?? (() => undefined);
  return (req, res) => {
    const url = req.url ?? '/';
    if (!isKServePath(url)) return false;
    readRequestBody(req, maxBodyBytes, 'maxBodyBytes').then(
      async (body) => send(res, await handler({ method: req.method ?? 'GET', path: url, headers: req.headers, body }), false),
      (err: unknown) => send(res, errorResponse(err), true),
    ).catch(onError);
    return true;
  };
}
