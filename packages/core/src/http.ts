/** The HTTP request an ingress deployment receives, and the response it may return. */
import { ShoalError } from './errors.ts';

export interface WireHttpRequest {
  method: string;
  /** Path below the application's route prefix, starting with '/'. */
  path: string;
  /** Raw query string without '?'. */
  query: string;
  headers: Record<string, string | string[] | undefined>;
  body: Uint8Array;
}

export interface WireHttpResponse {
  status: number;
  headers: Record<string, string>;
  body: Uint8Array;
}

/** What an ingress method receives. */
export class ShoalRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: Buffer;
  private readonly rawQuery: string;
  private parsedQuery: URLSearchParams | undefined;

  constructor(wire: WireHttpRequest) {
    this.method = wire.method;
    this.path = wire.path;
    this.rawQuery = wire.query;
    this.headers = wire.headers;
    this.body = Buffer.isBuffer(wire.body) ? wire.body : Buffer.from(wire.body.buffer, wire.body.byteOffset, wire.body.byteLength);
  }

  /** The query string, parsed on first use. */
  get query(): URLSearchParams {
    return this.parsedQuery ??= new URLSearchParams(this.rawQuery);
  }

  header(name: string): string | undefined {
    const v = this.headers[name.toLowerCase()];
    return Array.isArray(v) ? v[0] : v;
  }

  text(): string { return this.body.toString('utf8'); }

  /** Parses the body as JSON; a malformed body throws a BadRequestError (HTTP 400). */
  json<T = unknown>(): T {
    try {
      return JSON.parse(this.text()) as T;
    } catch (err) {
      throw new HttpError(400, `request body is not valid JSON: ${(err as Error).message}`);
    }
  }
}

const RESPONSE_BRAND = Symbol.for('shoal.response');

/** An explicit HTTP response. Anything else an ingress returns is sent as JSON with status 200. */
export class HttpResponse {
  readonly [RESPONSE_BRAND] = true;
  constructor(readonly status: number, readonly body: Uint8Array | string, readonly headers: Record<string, string> = {}) {}

  static isResponse(v: unknown): v is HttpResponse {
    return typeof v === 'object' && v !== null && (v as Record<symbol, unknown>)[RESPONSE_BRAND] === true;
  }
}

/** Builds a response: objects become JSON, strings text/plain, bytes application/octet-stream. */
export function response(body: unknown, init: { status?: number; headers?: Record<string, string> } = {}): HttpResponse {
  const headers = { ...(init.headers ?? {}) };
  let payload: Uint8Array | string;
  if (typeof body === 'string') {
    payload = body;
    headers['content-type'] ??= 'text/plain; charset=utf-8';
  } else if (body instanceof Uint8Array) {
    payload = body;
    headers['content-type'] ??= 'application/octet-stream';
  } else {
    payload = JSON.stringify(body ?? null);
    headers['content-type'] ??= 'application/json';
  }
  return new HttpResponse(init.status ?? 200, payload, headers);
}

/** Throw from an ingress to answer with a status and {"error": message}. */
export class HttpError extends ShoalError {
  constructor(readonly status: number, message: string) {
    super('ERR_HTTP', message, { httpStatus: status });
  }
}
Object.defineProperty(HttpError.prototype, Symbol.for('shoal.error'), { value: 'HttpError' });

const JSON_HEADERS = { 'content-type': 'application/json' };

/** Converts whatever an ingress returned into the wire response. Runs on the worker, off the head's thread. */
export function toWireResponse(value: unknown): WireHttpResponse {
  if (HttpResponse.isResponse(value)) {
    const body = typeof value.body === 'string' ? Buffer.from(value.body) : value.body;
    return { status: value.status, headers: value.headers, body };
  }
  if (value instanceof Uint8Array) return { status: 200, headers: { 'content-type': 'application/octet-stream' }, body: value };
  if (typeof value === 'string') return { status: 200, headers: { 'content-type': 'text/plain; charset=utf-8' }, body: Buffer.from(value) };
  return { status: 200, headers: JSON_HEADERS, body: Buffer.from(JSON.stringify(value ?? null)) };
}
