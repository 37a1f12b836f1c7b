/**
 * The JSON messages of an application's WebSocket (docs/streaming.md, "WebSocket"): what a client may send, read
 * strictly (a typo is an error naming the field, not a silently ignored option), and what the server answers.
 *
 *   client: {"id": "1", "method": "generate", "args": ["hi"], "timeoutMs": 5000, "priority": 1}
 *           {"id": "1", "cancel": true}
 *   server: {"id": "1", "chunk": "tok"} ... {"id": "1", "end": true}     a method that streams
 *           {"id": "1", "result": 42}                                      a method that returns
 *           {"id": "1", "error": {"code": "ERR_...", "message": "..."}}    the request failed (null id: unreadable message)
 *
 * Answers are built as strings around the precomputed JSON of the id, so a chunk costs one JSON.stringify.
 */
import { BadRequestError, ProtocolError, toWireError } from '@shoal/core';

/** A request's id: a string of 1-128 characters or a safe integer, echoed as given in every answer to it. */
export type WsRequestId = string | number;

/** Call `method` of the application's ingress deployment. */
export interface WsCall {
  kind: 'call';
  id: WsRequestId;
  method: string;
  args: unknown[];
  /** This request's deadline in ms from its arrival; overrides the upgrade's x-shoal-timeout-ms. */
  timeoutMs?: number;
  /** Overrides the upgrade's x-shoal-priority. */
  priority?: number;
}

/** Stop the request `id` (its generator ends, its downstream calls are cancelled). */
export interface WsCancel { kind: 'cancel'; id: WsRequestId }

export type WsClientMessage = WsCall | WsCancel;

/** A message that could not be read: the error to answer with, and the id to answer to (null when unreadable). */
export interface WsBadMessage { kind: 'bad'; id: WsRequestId | null; error: BadRequestError }

export const MAX_ID_LENGTH = 128;
const CALL_FIELDS = ['id', 'method', 'args', 'timeoutMs', 'priority'];
const FIELDS = [...CALL_FIELDS, 'cancel'];

/** Reads one text frame. Never throws: a message that is wrong in any way comes back as `bad`, naming what. */
export function parseClientMessage(text: string): WsClientMessage | WsBadMessage {
  let m: unknown;
  try {
    m = JSON.parse(text);
  } catch (err) {
    return bad(null, `is not JSON (${(err as Error).message})`);
  }
  if (typeof m !== 'object' || m === null || Array.isArray(m)) return bad(null, `must be a JSON object, got ${m === null ? 'null' : Array.isArray(m) ? 'an array' : typeof m}`);
  const o = m as Record<string, unknown>;
  if (!('id' in o)) return bad(null, `has no "id" (a string of 1-${MAX_ID_LENGTH} characters or an integer)`);
  const id = o.id;
  if (!(typeof id === 'string' && id.length > 0 && id.length <= MAX_ID_LENGTH) && !Number.isSafeInteger(id)) {
    return bad(null, `field "id" must be a string of 1-${MAX_ID_LENGTH} characters or an integer, got ${describe(id)}`);
  }
  const rid = id as WsRequestId;
  for (const k of Object.keys(o)) if (!FIELDS.includes(k)) return bad(rid, `has an unknown field "${k}" (fields: ${FIELDS.join(', ')})`);
  if ('cancel' in o) {
    if (o.cancel !== true) return bad(rid, `field "cancel" must be true, got ${describe(o.cancel)}`);
    const extra = Object.keys(o).find((k) => k !== 'id' && k !== 'cancel');
    if (extra !== undefined) return bad(rid, `is a cancel and cannot also carry "${extra}"`);
    return { kind: 'cancel', id: rid };
  }
  if (!('method' in o)) return bad(rid, 'needs "method" (a call) or "cancel": true');
  if (typeof o.method !== 'string' || o.method.length === 0) return bad(rid, `field "method" must be a non-empty string, got ${describe(o.method)}`);
  const call: WsCall = { kind: 'call', id: rid, method: o.method, args: [] };
  if (o.args !== undefined) {
    if (!Array.isArray(o.args)) return bad(rid, `field "args" must be an array of arguments, got ${describe(o.args)}`);
    call.args = o.args;
  }
  if (o.timeoutMs !== undefined) {
    if (typeof o.timeoutMs !== 'number' || !Number.isFinite(o.timeoutMs) || o.timeoutMs <= 0) return bad(rid, `field "timeoutMs" must be a positive number of milliseconds, got ${describe(o.timeoutMs)}`);
    call.timeoutMs = o.timeoutMs;
  }
  if (o.priority !== undefined) {
    if (!Number.isSafeInteger(o.priority)) return bad(rid, `field "priority" must be an integer, got ${describe(o.priority)}`);
    call.priority = o.priority as number;
  }
  return call;
}

function bad(id: WsRequestId | null, what: string): WsBadMessage {
  return { kind: 'bad', id, error: new BadRequestError(`WebSocket message ${what}`) };
}

function describe(v: unknown): string {
  if (v === undefined) return 'undefined';
  const s = JSON.stringify(v) ?? typeof v;
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/** The JSON of an id, computed once per request and spliced into each of its answers. */
export function idJson(id: WsRequestId | null): string {
  return JSON.stringify(id);
}

export function chunkMessage(id: string, chunk: unknown): string {
  return `{"id":${id},"chunk":${toJson(chunk)}}`;
}

export function resultMessage(id: string, value: unknown): string {
  return `{"id":${id},"result":${toJson(value)}}`;
}

export function endMessage(id: string): string {
  return `{"id":${id},"end":true}`;
}

/** The error's stable code and its message; never its details (a user error's carry its stack). */
export function errorMessage(id: string, err: unknown): string {
  const w = toWireError(err);
  return `{"id":${id},"error":${JSON.stringify({ code: w.code, message: w.message })}}`;
}

/**
 * A value as JSON, bytes (a Uint8Array or Buffer, at any depth) as a base64 string and other typed arrays as
 * arrays of numbers, as the SSE framing does. A value JSON cannot hold (a BigInt, a cycle) is a ProtocolError
 * (ERR_ENCODE) naming why.
 */
export function toJson(v: unknown): string {
  try {
    // Strings and numbers (tokens, scores) need no replacer.
    if (typeof v === 'string' || typeof v === 'number') return JSON.stringify(v);
    return JSON.stringify(v, replaceViews) ?? 'null';
  } catch (err) {
    throw new ProtocolError(`a value cannot be sent as JSON over the WebSocket: ${(err as Error).message}`, 'ERR_ENCODE');
  }
}

function replaceViews(this: unknown, key: string, value: unknown): unknown {
  // `value` is what toJSON() made (a Buffer's {type, data}); the holder still has the view itself.
  const raw = (this as Record<string, unknown>)[key];
  if (!ArrayBuffer.isView(raw)) return value;
  if (raw instanceof Uint8Array) return Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64');
  if (raw instanceof DataView) return Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64');
  return Array.from(raw as unknown as ArrayLike<number>);
}
