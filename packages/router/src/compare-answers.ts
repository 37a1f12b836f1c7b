/**
 * Compares a shadow version's answer with the live one: labels and structure must be equal to agree; numbers
 * (JSON numbers, float typed arrays, tensor data) are compared by absolute difference. HTTP answers compare by
 * status, then by their JSON bodies when both are JSON, else byte for byte.
 *
 *   compareAnswers({ label: 'cat', score: 0.91 }, { label: 'cat', score: 0.89 }, 1e6)
 *   // { agree: true, numbers: 1, sumAbsDiff: 0.02, maxAbsDiff: 0.02 }
 */

import type { ShadowCounts } from '@shoal/protocol';

/** Counts of a shadow version with nothing compared yet. */
export function emptyShadowCounts(): ShadowCounts {
  return { mirrored: 0, dropped: 0, compared: 0, agreed: 0, shadowErrors: 0, numbers: 0, sumAbsDiff: 0, maxAbsDiff: 0 };
}

export interface AnswerDiff {
  /** Every non-numeric part (labels, keys, lengths, HTTP status) is equal. */
  agree: boolean;
  /** Numbers compared, and the sum and maximum of their absolute differences. */
  numbers: number;
  sumAbsDiff: number;
  maxAbsDiff: number;
}

interface Acc extends AnswerDiff { budget: number }

export function compareAnswers(live: unknown, shadow: unknown, maxNumbers: number): AnswerDiff {
  const acc: Acc = { agree: true, numbers: 0, sumAbsDiff: 0, maxAbsDiff: 0, budget: maxNumbers };
  if (isHttpAnswer(live) && isHttpAnswer(shadow)) {
    if (live.status !== shadow.status) acc.agree = false;
    const a = jsonBody(live);
    const b = jsonBody(shadow);
    if (a !== NOT_JSON && b !== NOT_JSON) walk(a, b, acc);
    else if (!bytesEqual(toBytes(live.body), toBytes(shadow.body))) acc.agree = false;
  } else {
    walk(live, shadow, acc);
  }
  return { agree: acc.agree, numbers: acc.numbers, sumAbsDiff: acc.sumAbsDiff, maxAbsDiff: acc.maxAbsDiff };
}

function number(acc: Acc, a: number, b: number): void {
  if (acc.budget <= 0) return;
  acc.budget--;
  if (Number.isNaN(a) || Number.isNaN(b)) { if (Number.isNaN(a) !== Number.isNaN(b)) acc.agree = false; return; }
  const d = Math.abs(a - b);
  if (!Number.isFinite(d)) { if (a !== b) acc.agree = false; return; }
  acc.numbers++;
  acc.sumAbsDiff += d;
  if (d > acc.maxAbsDiff) acc.maxAbsDiff = d;
}

type NumArray = Float32Array | Float64Array | Int32Array | Int16Array | Int8Array | Uint16Array | Uint32Array;

function isNumArray(v: unknown): v is NumArray {
  return v instanceof Float32Array || v instanceof Float64Array || v instanceof Int32Array || v instanceof Int16Array
    || v instanceof Int8Array || v instanceof Uint16Array || v instanceof Uint32Array;
}

function walk(a: unknown, b: unknown, acc: Acc): void {
  if (typeof a === 'number' && typeof b === 'number') { number(acc, a, b); return; }
  if (typeof a === 'bigint' && typeof b === 'bigint') { number(acc, Number(a), Number(b)); return; }
  if (isNumArray(a) && isNumArray(b)) {
    if (a.length !== b.length) { acc.agree = false; return; }
    for (let i = 0; i < a.length && acc.budget > 0; i++) number(acc, a[i]!, b[i]!);
    return;
  }
  if (a instanceof Uint8Array && b instanceof Uint8Array) { if (!bytesEqual(a, b)) acc.agree = false; return; }
  if (Array.isArray(a) && Array.isArray(b)) {
    if (a.length !== b.length) { acc.agree = false; return; }
    for (let i = 0; i < a.length; i++) walk(a[i], b[i], acc);
    return;
  }
  if (isPlainObject(a) && isPlainObject(b)) {
    const ka = Object.keys(a);
    if (ka.length !== Object.keys(b).length) acc.agree = false;
    for (const k of ka) {
      if (!Object.prototype.hasOwnProperty.call(b, k)) { acc.agree = false; continue; }
      walk(a[k], b[k], acc);
    }
    return;
  }
  if (a !== b) acc.agree = false;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !ArrayBuffer.isView(v);
}

interface HttpAnswer { status: number; headers: Record<string, string>; body: unknown }

function isHttpAnswer(v: unknown): v is HttpAnswer {
  return isPlainObject(v) && typeof v.status === 'number' && isPlainObject(v.headers) && 'body' in v && Object.keys(v).length <= 3;
}

const NOT_JSON = Symbol('not json');

function jsonBody(r: HttpAnswer): unknown {
  const type = r.headers['content-type'] ?? '';
  if (!/json/i.test(type)) return NOT_JSON;
  try {
    return JSON.parse(new TextDecoder().decode(toBytes(r.body)));
  } catch {
    return NOT_JSON;
  }
}

function toBytes(body: unknown): Uint8Array {
  if (body instanceof Uint8Array) return body;
  if (typeof body === 'string') return new TextEncoder().encode(body);
  return new Uint8Array(0);
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}
