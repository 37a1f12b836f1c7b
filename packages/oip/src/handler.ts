/**
 * The Open Inference Protocol (KServe v2) over HTTP, without the transport: a function from a request
 * (method, path, headers, body) to a response (status, headers, body), so the ingress, a test, or a plain
 * node:http server can all mount it. Implements health, server and model metadata, inference with JSON and
 * binary tensors, and the model repository extension. Errors are `{"error": "..."}` with the status of the
 * shoal error that caused them (400 bad request, 404 unknown model, 503 not ready or overloaded).
 *
 * @example
 * const handle = createKServeHandler(registry);
 * http.createServer(async (req, res) => {
 *   const chunks = []; for await (const c of req) chunks.push(c);
 *   const r = await handle({ method: req.method!, path: req.url!, headers: req.headers, body: Buffer.concat(chunks) });
 *   res.writeHead(r.status, r.headers).end(responseBody(r));     // or kserveRoute(handle), which writes the chunks
 * }).listen(8000);
 */
import {
  BadRequestError, NotFoundError, ReplicaUnavailableError, RequestTooLargeError, ShoalError, checkInt,
} from '@shoal/core';
import { parseHeaderLength } from './binary-tensor.ts';
import { decodeInferRequest, parseJsonHeader } from './infer-request.ts';
import { encodeInferResponse, modelMetadataResponse } from './infer-response.ts';
import { DEFAULT_MAX_BODY_BYTES } from './limits.ts';
import type { KServeModel, KServeRegistry } from './registry.ts';

export interface KServeRequest {
  method: string;
  /** Path, optionally with a query string (ignored). */
  path: string;
  /** Header names in any case (node:http gives lower case). */
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  /**
   * Whatever the caller wants the registry to see for this request (the ingress passes its deadline and
   * cancellation); handed to KServeRegistry.get as is. @default undefined
   */
  context?: unknown;
}

export interface KServeResponse {
  status: number;
  /** Without content-length: the transport sets it (responseLength). */
  headers: Record<string, string>;
  /**
   * One buffer, or chunks to send in order: a binary inference response is its JSON header followed by views over
   * the output tensors (EncodedResponse.chunks), so nothing is copied on the way out. kserveRoute writes either;
   * responseBody joins chunks where one buffer is needed.
   */
  body: Buffer | readonly Buffer[];
}

export type KServeHandler = (req: KServeRequest) => Promise<KServeResponse>;

export interface KServeHandlerOptions {
  /** Server name in GET /v2. @default "shoal" */
  serverName?: string;
  /** Server version in GET /v2. @default "0.1.0" */
  serverVersion?: string;
  /** Largest request body accepted; past it, 413. @default 67108864 (64 MiB) */
  maxBodyBytes?: number;
  /**
   * Largest element count of one input tensor; a shape past it is a 400 naming this bound, before any data is
   * read. @default maxBodyBytes (no element takes less than a byte of body, so only impossible shapes meet it)
   */
  maxElements?: number;
  /** Server liveness for /v2/health/live. @default always live */
  isLive?: () => boolean;
}

/** Extensions this handler implements, as GET /v2 reports them (model_repository only over a registry that loads). */
export const KSERVE_EXTENSIONS = ['binary_tensor_data', 'model_repository'] as const;

/** A response's body as one buffer: itself, or its chunks joined (one copy). */
export function responseBody(r: KServeResponse): Buffer {
  if (Buffer.isBuffer(r.body)) return r.body;
  const chunks = r.body as readonly Buffer[];
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, responseLength(r));
}

/** A response's body length in bytes (its content-length). */
export function responseLength(r: KServeResponse): number {
  if (Buffer.isBuffer(r.body)) return r.body.byteLength;
  return (r.body as readonly Buffer[]).reduce((n, b) => n + b.byteLength, 0);
}

const JSON_HEADERS = { 'content-type': 'application/json' };

function json(status: number, value: unknown): KServeResponse {
  return { status, headers: JSON_HEADERS, body: Buffer.from(JSON.stringify(value), 'utf8') };
}

function empty(status: number): KServeResponse {
  return { status, headers: {}, body: Buffer.alloc(0) };
}

/** Any thrown value as `{"error": ...}`, with the status its shoal error carries (500 otherwise). */
export function errorResponse(err: unknown): KServeResponse {
  if (err instanceof ShoalError) return json(err.httpStatus, { error: err.message });
  return json(500, { error: err instanceof Error ? err.message : String(err) });
}

function header(headers: KServeRequest['headers'], name: string): string | undefined {
  const want = name.toLowerCase();
  for (const [k, v] of Object.entries(headers)) {
    if (k.toLowerCase() === want) return Array.isArray(v) ? v[0] : v;
  }
  return undefined;
}

function methodNotAllowed(method: string, path: string, allowed: string): ShoalError {
  return new ShoalError('ERR_BAD_REQUEST', `${method} is not allowed on ${path}; use ${allowed}`, { httpStatus: 405 });
}

type Route =
  | { kind: 'server-metadata' | 'live' | 'ready' | 'repo-index' }
  | { kind: 'model-metadata' | 'model-ready' | 'infer'; model: string; version: string | undefined }
  | { kind: 'repo-load' | 'repo-unload'; model: string };

function decode(segment: string): string {
  try { return decodeURIComponent(segment); } catch {
    throw new BadRequestError(`path segment ${JSON.stringify(segment)} is not valid percent-encoding`);
  }
}

/** Matches a path to a route; undefined when no route has this shape. */
function route(path: string): Route | undefined {
  const s = path.split('/');
  if (s[0] === '') s.shift();
  if (s.at(-1) === '') s.pop();
  if (s[0] !== 'v2') return undefined;
  const rest = s.slice(1);
  if (rest.length === 0) return { kind: 'server-metadata' };
  if (rest[0] === 'health' && rest.length === 2 && rest[1] === 'live') return { kind: 'live' };
  if (rest[0] === 'health' && rest.length === 2 && rest[1] === 'ready') return { kind: 'ready' };
  if (rest[0] === 'repository') {
    if (rest.length === 2 && rest[1] === 'index') return { kind: 'repo-index' };
    if (rest.length === 4 && rest[1] === 'models' && (rest[3] === 'load' || rest[3] === 'unload')) {
      return { kind: rest[3] === 'load' ? 'repo-load' : 'repo-unload', model: decode(rest[2]!) };
    }
    return undefined;
  }
  if (rest[0] !== 'models' || rest.length < 2) return undefined;
  const model = decode(rest[1]!);
  let tail = rest.slice(2);
  let version: string | undefined;
  if (tail[0] === 'versions') {
    if (tail.length < 2) return undefined;
    version = decode(tail[1]!);
    tail = tail.slice(2);
  }
  if (tail.length === 0) return { kind: 'model-metadata', model, version };
  if (tail.length === 1 && tail[0] === 'ready') return { kind: 'model-ready', model, version };
  if (tail.length === 1 && tail[0] === 'infer') return { kind: 'infer', model, version };
  return undefined;
}

const METHOD: Record<Route['kind'], 'GET' | 'POST'> = {
  'server-metadata': 'GET', live: 'GET', ready: 'GET', 'model-metadata': 'GET', 'model-ready': 'GET',
  infer: 'POST', 'repo-index': 'POST', 'repo-load': 'POST', 'repo-unload': 'POST',
};

async function findModel(registry: KServeRegistry, name: string, version: string | undefined, context: unknown): Promise<KServeModel> {
  const m = await registry.get(name, version, context);
  if (m !== undefined) return m;
  if (version !== undefined) {
    const any = await registry.get(name, undefined, context);
    if (any !== undefined) throw new NotFoundError(`model "${name}" has no version "${version}" (served versions: ${any.versions.join(', ') || 'none'})`);
  }
  const entries = await registry.list();
  const known = entries.find((e) => e.name === name);
  if (known !== undefined) {
    const why = known.reason === undefined ? known.state : `${known.state}: ${known.reason}`;
    const remedy = registry.load === undefined ? '' : `; POST /v2/repository/models/${encodeURIComponent(name)}/load loads it`;
    throw new NotFoundError(`model "${name}" is not loaded (${why})${remedy}`);
  }
  const names = [...new Set(entries.map((e) => e.name))];
  throw new NotFoundError(`unknown model "${name}"; models: ${names.join(', ') || 'none'}`);
}

function notReady(m: KServeModel): ReplicaUnavailableError {
  return new ReplicaUnavailableError(`model "${m.name}" version "${m.version}" is not ready`);
}

function jsonBody(body: Buffer): Record<string, unknown> {
  if (body.byteLength === 0) return {};
  const v = parseJsonHeader(body, undefined);
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new BadRequestError('request body must be a JSON object');
  return v as Record<string, unknown>;
}

function parametersOf(body: Buffer): Record<string, unknown> | undefined {
  const p = jsonBody(body).parameters;
  if (p === undefined) return undefined;
  if (typeof p !== 'object' || p === null || Array.isArray(p)) throw new BadRequestError('"parameters" must be an object');
  return p as Record<string, unknown>;
}

/** Builds the handler over a registry. */
export function createKServeHandler(registry: KServeRegistry, options: KServeHandlerOptions = {}): KServeHandler {
  const serverName = options.serverName ?? 'shoal';
  const serverVersion = options.serverVersion ?? '0.1.0';
  const maxBodyBytes = checkInt('maxBodyBytes', options.maxBodyBytes, 1, DEFAULT_MAX_BODY_BYTES);
  const maxElements = checkInt('maxElements', options.maxElements, 1, maxBodyBytes);
  const isLive = options.isLive ?? (() => true);
  const { load, unload } = registry;
  const extensions = KSERVE_EXTENSIONS.filter((e) => e !== 'model_repository' || (load !== undefined && unload !== undefined));
  const noRepository = (r: { model: string }, verb: string): NotFoundError => new NotFoundError(
    `no Open Inference Protocol endpoint at POST /v2/repository/models/${encodeURIComponent(r.model)}/${verb}: this server serves a fixed set of models and does not ${verb} them`,
  );

  const serverReady = async (): Promise<boolean> => {
    if (registry.ready !== undefined) return registry.ready();
    return (await registry.list()).every((e) => e.state === 'READY' || e.state === 'UNAVAILABLE');
  };

  const dispatch = async (r: Route, req: KServeRequest): Promise<KServeResponse> => {
    switch (r.kind) {
      case 'server-metadata':
        return json(200, { name: serverName, version: serverVersion, extensions });
      case 'live': {
        const live = isLive();
        return json(live ? 200 : 503, { live });
      }
      case 'ready': {
        const ready = await serverReady();
        return json(ready ? 200 : 503, { ready });
      }
      case 'model-metadata': {
        const m = await findModel(registry, r.model, r.version, req.context);
        if (m.metadata === undefined) throw notReady(m);
        return json(200, modelMetadataResponse(m.name, m.versions, m.platform, m.metadata));
      }
      case 'model-ready': {
        const m = await findModel(registry, r.model, r.version, req.context);
        return json(m.ready ? 200 : 503, { name: m.name, ready: m.ready });
      }
      case 'infer': {
        const m = await findModel(registry, r.model, r.version, req.context);
        if (!m.ready || m.metadata === undefined) throw notReady(m);
        const headerLength = parseHeaderLength(header(req.headers, 'inference-header-content-length'), req.body.byteLength);
        const decoded = decodeInferRequest(m.name, m.metadata, req.body, headerLength, { maxElements });
        const outputs = await m.infer(decoded.feeds, decoded.outputs === undefined ? {} : { outputs: decoded.outputs });
        const order = decoded.outputs ?? m.metadata.outputs.map((o) => o.name);
        const enc = encodeInferResponse({ model: m.name, version: m.version, id: decoded.id, outputs, order, binary: decoded.binary });
        return { status: 200, headers: enc.headers, body: enc.chunks };
      }
      case 'repo-index': {
        const filter = jsonBody(req.body).ready;
        if (filter !== undefined && typeof filter !== 'boolean') throw new BadRequestError(`"ready" must be a boolean, got ${JSON.stringify(filter)}`);
        const entries = await registry.list();
        return json(200, filter === true ? entries.filter((e) => e.state === 'READY') : entries);
      }
      case 'repo-load':
        if (load === undefined) throw noRepository(r, 'load');
        await load.call(registry, r.model, parametersOf(req.body));
        return empty(200);
      case 'repo-unload':
        if (unload === undefined) throw noRepository(r, 'unload');
        await unload.call(registry, r.model, parametersOf(req.body));
        return empty(200);
    }
  };

  return async (req) => {
    try {
      const path = req.path.split('?')[0] ?? '';
      const r = route(path);
      if (r === undefined) throw new NotFoundError(`no Open Inference Protocol endpoint at ${req.method} ${path}`);
      const want = METHOD[r.kind];
      const method = req.method.toUpperCase();
      if (method !== want) throw methodNotAllowed(method, path, want);
      if (req.body.byteLength > maxBodyBytes) {
        throw new RequestTooLargeError(`request body is ${req.body.byteLength} bytes, more than maxBodyBytes=${maxBodyBytes}`, { bytes: req.body.byteLength, maxBodyBytes });
      }
      return await dispatch(r, req);
    } catch (err) {
      return errorResponse(err);
    }
  };
}
