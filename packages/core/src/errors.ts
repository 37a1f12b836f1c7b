/**
 * Errors shared by every shoal package. Each error has a stable `code`, a `name`, and a message that
 * carries the values that caused it. Classes are branded with Symbol.for so `instanceof` works across two
 * copies of the package, and errors that crossed a process boundary are rebuilt into their class by
 * {@link rebuildError}.
 */
import { types } from 'node:util';

const BRAND = Symbol.for('shoal.error');

export type ErrorCode =
  | 'ERR_INVALID_OPTION'
  | 'ERR_USER_CODE'
  | 'ERR_PEER_GONE'
  | 'ERR_PROTOCOL'
  | 'ERR_PROTOCOL_VERSION'
  | 'ERR_FRAME_TOO_LARGE'
  | 'ERR_ENCODE'
  | 'ERR_UNAUTHORIZED'
  | 'ERR_NOT_FOUND'
  | 'ERR_NO_REPLICA'
  | 'ERR_QUEUE_FULL'
  | 'ERR_BACKPRESSURE'
  | 'ERR_REQUEST_TOO_LARGE'
  | 'ERR_DEADLINE_EXCEEDED'
  | 'ERR_CANCELLED'
  | 'ERR_ILLEGAL_STATE'
  | 'ERR_BATCH_SIZE_MISMATCH'
  | 'ERR_SHAPE_MISMATCH'
  | 'ERR_REPLICA_UNAVAILABLE'
  | 'ERR_DEPLOY_FAILED'
  | 'ERR_INSUFFICIENT_RESOURCES'
  | 'ERR_BAD_REQUEST'
  | 'ERR_BACKEND'
  | 'ERR_OUT_OF_MEMORY'
  | 'ERR_HTTP'
  | 'ERR_INTERNAL';

export class ShoalError extends Error {
  readonly code: ErrorCode;
  /** HTTP status the ingress answers with when this error ends a request. */
  readonly httpStatus: number;
  /** Extra values that travel with the error across processes (numbers that caused it, remedy, ...). */
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, opts: { httpStatus?: number; details?: Record<string, unknown>; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
    this.httpStatus = opts.httpStatus ?? 500;
    this.details = opts.details;
    this.name = new.target.name;
  }

  /** Matches by brand along the prototype chain, so two loaded copies of this package agree. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    // A Proxy is never one: its getPrototypeOf trap is user code that may throw, and this runs in error handlers.
    if (typeof value !== 'object' || value === null || types.isProxy(value)) return false;
    const want = (this.prototype as { [BRAND]?: string })[BRAND];
    let proto: unknown = Object.getPrototypeOf(value);
    while (proto !== null && proto !== undefined && !types.isProxy(proto)) {
      if (Object.prototype.hasOwnProperty.call(proto, BRAND) && (proto as { [BRAND]: string })[BRAND] === want) return true;
      proto = Object.getPrototypeOf(proto);
    }
    return false;
  }
}
Object.defineProperty(ShoalError.prototype, BRAND, { value: 'ShoalError' });

function brand(cls: { prototype: object; name: string }): void {
  Object.defineProperty(cls.prototype, BRAND, { value: cls.name });
}

/** An option had the wrong type or value. The message names the full option path. */
export class InvalidOptionError extends ShoalError {
  constructor(path: string, problem: string, value?: unknown) {
    super('ERR_INVALID_OPTION', `invalid option ${path}: ${problem}${value === undefined ? '' : ` (got ${describe(value)})`}`, { httpStatus: 400, details: { path } });
  }
}
brand(InvalidOptionError);

/** User code threw. The message is the user's message; `userName` the class of what was thrown. */
export class UserCodeError extends ShoalError {
  constructor(message: string, opts: { userName?: string; userStack?: string; deployment?: string } = {}) {
    super('ERR_USER_CODE', message, { httpStatus: 500, details: { userName: opts.userName, userStack: opts.userStack, deployment: opts.deployment } });
  }

  /**
   * Wraps whatever user code threw (any value: undefined, a string, a null-prototype object, an Error whose
   * getters throw) without ever throwing itself. `prefix` goes before the description ("replica r1 failed to start: ").
   */
  static from(thrown: unknown, opts: { deployment?: string; prefix?: string } = {}): UserCodeError {
    const { name, stack } = thrownIdentity(thrown);
    return new UserCodeError(`${opts.prefix ?? ''}${describeThrown(thrown)}`, {
      ...(name === undefined ? {} : { userName: name }), ...(stack === undefined ? {} : { userStack: stack }),
      ...(opts.deployment === undefined ? {} : { deployment: opts.deployment }),
    });
  }
}
brand(UserCodeError);

/** The peer of a connection went away while a request was pending. */
export class PeerGoneError extends ShoalError {
  constructor(message: string) {
    super('ERR_PEER_GONE', message, { httpStatus: 503 });
  }
}
brand(PeerGoneError);

/** A malformed or unexpected message on the wire. */
export class ProtocolError extends ShoalError {
  /** ERR_ENCODE: a value the wire codec cannot encode (a cycle, nesting too deep); 500, the sender's fault. */
  constructor(message: string, code: 'ERR_PROTOCOL' | 'ERR_PROTOCOL_VERSION' | 'ERR_FRAME_TOO_LARGE' | 'ERR_ENCODE' = 'ERR_PROTOCOL') {
    super(code, message, { httpStatus: code === 'ERR_FRAME_TOO_LARGE' ? 413 : code === 'ERR_ENCODE' ? 500 : 400 });
  }
}
brand(ProtocolError);

/** Missing or wrong cluster token. */
export class UnauthorizedError extends ShoalError {
  constructor(message: string) {
    super('ERR_UNAUTHORIZED', message, { httpStatus: 401 });
  }
}
brand(UnauthorizedError);

export class NotFoundError extends ShoalError {
  constructor(message: string) {
    super('ERR_NOT_FOUND', message, { httpStatus: 404 });
  }
}
brand(NotFoundError);

/** No replica of a deployment is running (yet), or all are gone. */
export class NoReplicaError extends ShoalError {
  constructor(message: string) {
    super('ERR_NO_REPLICA', message, { httpStatus: 503 });
  }
}
brand(NoReplicaError);

/** A bounded queue is full. Retry-After is in `details.retryAfterMs`. */
export class QueueFullError extends ShoalError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('ERR_QUEUE_FULL', message, { httpStatus: 503, details });
  }
}
brand(QueueFullError);

/**
 * A connection's outgoing buffer is past its high-water mark, so no new request is put on it. Retryable;
 * `details` holds bufferedBytes, highWaterBytes and retryAfterMs.
 */
export class BackpressureError extends ShoalError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('ERR_BACKPRESSURE', message, { httpStatus: 503, details });
  }
}
brand(BackpressureError);

export class RequestTooLargeError extends ShoalError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('ERR_REQUEST_TOO_LARGE', message, { httpStatus: 413, details });
  }
}
brand(RequestTooLargeError);

export class DeadlineExceededError extends ShoalError {
  constructor(message: string) {
    super('ERR_DEADLINE_EXCEEDED', message, { httpStatus: 504 });
  }
}
brand(DeadlineExceededError);

export class CancelledError extends ShoalError {
  constructor(message: string) {
    // 499 is nginx's "client closed request"; nobody reads it since the client is gone.
    super('ERR_CANCELLED', message, { httpStatus: 499 });
  }
}
brand(CancelledError);

/** A lifecycle transition that is not allowed from the current state. */
export class IllegalStateError extends ShoalError {
  constructor(message: string) {
    super('ERR_ILLEGAL_STATE', message, { httpStatus: 500 });
  }
}
brand(IllegalStateError);

export class BatchSizeMismatchError extends ShoalError {
  constructor(message: string) {
    super('ERR_BATCH_SIZE_MISMATCH', message, { httpStatus: 500 });
  }
}
brand(BatchSizeMismatchError);

export class ShapeMismatchError extends ShoalError {
  constructor(message: string) {
    super('ERR_SHAPE_MISMATCH', message, { httpStatus: 400 });
  }
}
brand(ShapeMismatchError);

export class ReplicaUnavailableError extends ShoalError {
  constructor(message: string) {
    super('ERR_REPLICA_UNAVAILABLE', message, { httpStatus: 503 });
  }
}
brand(ReplicaUnavailableError);

export class DeployError extends ShoalError {
  constructor(message: string, httpStatus = 400) {
    super('ERR_DEPLOY_FAILED', message, { httpStatus });
  }
}
brand(DeployError);

export class InsufficientResourcesError extends ShoalError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('ERR_INSUFFICIENT_RESOURCES', message, { httpStatus: 503, details });
  }
}
brand(InsufficientResourcesError);

/** The request itself is malformed (wrong shape, datatype, JSON...). */
export class BadRequestError extends ShoalError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('ERR_BAD_REQUEST', message, { httpStatus: 400, details });
  }
}
brand(BadRequestError);

/** A model backend (onnxruntime, native addon) failed. */
export class BackendError extends ShoalError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('ERR_BACKEND', message, { httpStatus: 500, details });
  }
}
brand(BackendError);

/** An allocation past a memory budget. */
export class OutOfMemoryError extends ShoalError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('ERR_OUT_OF_MEMORY', message, { httpStatus: 507, details });
  }
}
brand(OutOfMemoryError);

/** The plain-object form of an error on the wire. */
export interface WireError {
  code: string;
  name: string;
  message: string;
  httpStatus?: number;
  details?: Record<string, unknown>;
}

const CLASSES: Record<string, new (...args: never[]) => ShoalError> = {
  InvalidOptionError, UserCodeError, PeerGoneError, ProtocolError, UnauthorizedError, NotFoundError, NoReplicaError,
  QueueFullError, BackpressureError, RequestTooLargeError, DeadlineExceededError, CancelledError, IllegalStateError,
  BatchSizeMismatchError, ShapeMismatchError, ReplicaUnavailableError, DeployError, InsufficientResourcesError,
  BadRequestError, BackendError, OutOfMemoryError,
};

/**
 * Turns any thrown value into its wire form, and never throws: non-shoal values become ERR_USER_CODE with the
 * user's message, or {@link describeThrown}'s description of a value that is not an Error.
 */
export function toWireError(err: unknown): WireError {
  if (isShoalError(err)) {
    return { code: err.code, name: err.name, message: err.message, httpStatus: err.httpStatus, details: err.details };
  }
  const { name, stack } = thrownIdentity(err);
  const details: Record<string, unknown> = {};
  if (name !== undefined) details.userName = name;
  if (stack !== undefined) details.userStack = stack;
  return { code: 'ERR_USER_CODE', name: 'UserCodeError', message: describeThrown(err), httpStatus: 500, details };
}

/** `instanceof ShoalError`, false instead of throwing for a value whose prototype lookup throws (a Proxy). */
function isShoalError(v: unknown): v is ShoalError {
  try { return v instanceof ShoalError; } catch { return false; }
}

/** Rebuilds a wire error into its class, so callers can `instanceof` and read `code`. */
export function rebuildError(wire: WireError): ShoalError {
  const cls = CLASSES[wire.name];
  const err: ShoalError = cls === undefined
    ? new ShoalError((wire.code as ErrorCode) ?? 'ERR_INTERNAL', wire.message, { httpStatus: wire.httpStatus ?? 500, details: wire.details })
    : Object.create(cls.prototype) as ShoalError;
  if (cls !== undefined) {
    // Constructors format their messages; the wire message is already formatted, so set fields directly.
    Object.assign(err, { message: wire.message, code: wire.code, name: wire.name, httpStatus: wire.httpStatus ?? 500, details: wire.details });
    Object.defineProperty(err, 'stack', { value: `${wire.name}: ${wire.message}\n    at <remote>`, writable: true, configurable: true });
  }
  return err;
}

export function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 80 ? `${value.slice(0, 77)}...` : value);
  if (typeof value === 'number' || typeof value === 'boolean' || value === null || value === undefined) return String(value);
  if (Array.isArray(value)) return `array(${value.length})`;
  if (typeof value === 'function') return 'function';
  return typeof value;
}

/** The longest string {@link describeThrown} returns. */
export const DESCRIBE_THROWN_MAX_CHARS = 1000;
/** The longest user stack kept in an error's details. */
const STACK_MAX_CHARS = 8000;
const MAX_DEPTH = 2;
const MAX_ENTRIES = 10;
const MAX_STRING_CHARS = 100;

const isProxy = (v: unknown): boolean => types.isProxy(v);

function clip(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max - 3)}...` : s;
}

/** Reads a property without throwing: a throwing getter or a Proxy reads as undefined. */
function safeGet(o: object, key: string): unknown {
  if (isProxy(o)) return undefined;
  try { return (o as Record<string, unknown>)[key]; } catch { return undefined; }
}

function isErrorLike(v: object): boolean {
  if (isProxy(v)) return false;
  try { return v instanceof Error || types.isNativeError(v); } catch { return false; }
}

/** The class name and stack of a thrown Error, each undefined when absent or unreadable. */
function thrownIdentity(v: unknown): { name: string | undefined; stack: string | undefined } {
  if (typeof v !== 'object' || v === null || !isErrorLike(v)) return { name: undefined, stack: undefined };
  const name = safeGet(v, 'name');
  const stack = safeGet(v, 'stack');
  return { name: typeof name === 'string' ? clip(name, MAX_STRING_CHARS) : undefined, stack: typeof stack === 'string' ? clip(stack, STACK_MAX_CHARS) : undefined };
}

/**
 * A bounded, one-line description of any thrown value that never throws and never runs user code (no toString,
 * no getters, no Proxy traps, no custom inspect): an Error's message (its name when the message is empty or
 * unreadable), a string as it is, `undefined`, `null`, numbers, and for other objects a shallow sketch
 * (`[Object: null prototype] { code: 7 }`, cycles as [Circular]). At most `maxChars` characters.
 *
 *   describeThrown(undefined)              // 'undefined'
 *   describeThrown(Object.create(null))    // '[Object: null prototype] {}'
 */
export function describeThrown(value: unknown, maxChars = DESCRIBE_THROWN_MAX_CHARS): string {
  try {
    return clip(describeTop(value), maxChars);
  } catch {
    return '<a thrown value that cannot be described>';
  }
}

function describeTop(v: unknown): string {
  if (typeof v === 'string') return clip(v, DESCRIBE_THROWN_MAX_CHARS);
  if (typeof v === 'object' && v !== null && isErrorLike(v)) {
    const message = safeGet(v, 'message');
    if (typeof message === 'string' && message !== '') return clip(message, DESCRIBE_THROWN_MAX_CHARS);
    const name = safeGet(v, 'name');
    return typeof name === 'string' && name !== '' ? clip(name, MAX_STRING_CHARS) : 'Error';
  }
  // An error-like plain object ({ message: 'x', code: 7 }) reads as its message, as an Error would.
  if (typeof v === 'object' && v !== null && !isProxy(v)) {
    const own = Object.getOwnPropertyDescriptor(v, 'message');
    if (own !== undefined && typeof own.value === 'string' && own.value !== '') return clip(own.value, DESCRIBE_THROWN_MAX_CHARS);
  }
  return sketch(v, 0, new Set());
}

/** A shallow rendering that reads own data properties only, MAX_ENTRIES of them, MAX_DEPTH levels deep. */
function sketch(v: unknown, depth: number, seen: Set<object>): string {
  switch (typeof v) {
    case 'string': return JSON.stringify(clip(v, MAX_STRING_CHARS));
    case 'number': case 'boolean': case 'undefined': return String(v);
    case 'bigint': return `${String(v)}n`;
    case 'symbol': return String(v); // Symbol's descriptive string: no user code runs
    case 'function': {
      const d = isProxy(v) ? undefined : Object.getOwnPropertyDescriptor(v, 'name');
      return typeof d?.value === 'string' && d.value !== '' ? `[Function ${clip(d.value, MAX_STRING_CHARS)}]` : '[Function]';
    }
  }
  if (v === null) return 'null';
  const o = v as object;
  if (isProxy(o)) return '[Proxy]';
  if (seen.has(o)) return '[Circular]';
  if (isErrorLike(o)) {
    const name = safeGet(o, 'name');
    const message = safeGet(o, 'message');
    return `[${typeof name === 'string' ? clip(name, MAX_STRING_CHARS) : 'Error'}${typeof message === 'string' && message !== '' ? `: ${clip(message, MAX_STRING_CHARS)}` : ''}]`;
  }
  const label = classLabel(o);
  if (Array.isArray(o)) {
    if (depth >= MAX_DEPTH) return `[Array(${o.length})]`;
    seen.add(o);
    const items: string[] = [];
    for (let i = 0; i < Math.min(o.length, MAX_ENTRIES); i++) {
      const d = Object.getOwnPropertyDescriptor(o, i);
      items.push(d === undefined ? '<empty>' : 'value' in d ? sketch(d.value, depth + 1, seen) : '[Getter]');
    }
    seen.delete(o);
    if (o.length > MAX_ENTRIES) items.push(`... ${o.length - MAX_ENTRIES} more`);
    return `[${items.join(', ')}]`;
  }
  if (ArrayBuffer.isView(o) || types.isMap(o) || types.isSet(o) || types.isDate(o) || types.isRegExp(o) || types.isPromise(o)) return `[${label}]`;
  if (depth >= MAX_DEPTH) return `[${label}]`;
  seen.add(o);
  const entries: string[] = [];
  const keys = Object.keys(o);
  for (const key of keys.slice(0, MAX_ENTRIES)) {
    const d = Object.getOwnPropertyDescriptor(o, key);
    const k = /^[A-Za-z_$][\w$]*$/.test(key) ? key : JSON.stringify(clip(key, MAX_STRING_CHARS));
    entries.push(`${k}: ${d === undefined ? 'undefined' : 'value' in d ? sketch(d.value, depth + 1, seen) : '[Getter]'}`);
  }
  seen.delete(o);
  if (keys.length > MAX_ENTRIES) entries.push(`... ${keys.length - MAX_ENTRIES} more`);
  const prefix = label === 'Object' ? '' : `${label} `;
  return `${prefix}{${entries.length > 0 ? ` ${entries.join(', ')} ` : ''}}`;
}

/** "Object", "[Object: null prototype]", or the constructor's name, read without running user code. */
function classLabel(o: object): string {
  const proto: unknown = Object.getPrototypeOf(o);
  if (proto === null) return '[Object: null prototype]';
  if (proto === Object.prototype) return 'Object';
  if (isProxy(proto)) return 'Object';
  const ctor: unknown = Object.getOwnPropertyDescriptor(proto as object, 'constructor')?.value;
  const name: unknown = typeof ctor === 'function' && !isProxy(ctor) ? Object.getOwnPropertyDescriptor(ctor, 'name')?.value : undefined;
  return typeof name === 'string' && name !== '' ? clip(name, MAX_STRING_CHARS) : 'Object';
}
