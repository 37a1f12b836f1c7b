/**
 * msgpack encoding of frames. `moreTypes` keeps typed arrays typed across the wire (Float32Array arrives as
 * Float32Array, not a Buffer); Buffers and Uint8Arrays travel as msgpack bin, never as base64.
 */
import { Packr } from 'msgpackr';
import { ProtocolError } from '@shoal/core';
import type { Message } from './messages.ts';

const packr = new Packr({ moreTypes: true, useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

export function encodeFrame(messages: readonly Message[]): Buffer {
  return packr.pack(messages);
}

/** A frame holding one message: a msgpack array of length one, so its first byte is 0x91. */
export function encodeMessage(message: Message): Buffer {
  return packr.pack([message]);
}

/**
 * Joins frames made by {@link encodeMessage} into one frame holding all their messages, the same bytes
 * {@link encodeFrame} makes: a msgpack array is its length header followed by its elements, so each part's
 * one-byte header is dropped and one header for the whole is written. A single part is returned as is (no copy).
 */
export function joinMessages(parts: readonly Buffer[]): Buffer {
  if (parts.length === 1) return parts[0]!;
  const header = arrayHeaderBytes(parts.length);
  let total = header;
  for (const p of parts) total += p.byteLength - 1;
  const out = Buffer.allocUnsafe(total);
  const n = parts.length;
  if (header === 1) out[0] = 0x90 | n;
  else if (header === 3) { out[0] = 0xdc; out.writeUInt16BE(n, 1); }
  else { out[0] = 0xdd; out.writeUInt32BE(n, 1); }
  let at = header;
  for (const p of parts) { p.copy(out, at, 1); at += p.byteLength - 1; }
  return out;
}

/** Size of the frame {@link joinMessages} makes from `count` parts totalling `partBytes`. */
export function joinedBytes(count: number, partBytes: number): number {
  return count === 1 ? partBytes : arrayHeaderBytes(count) + partBytes - count;
}

/** msgpack array header: fixarray (under 16 elements), array 16, array 32. */
function arrayHeaderBytes(count: number): number {
  return count < 16 ? 1 : count < 0x10000 ? 3 : 5;
}

/** Decodes one frame; anything that is not an array of objects with a string `t` is a ProtocolError. */
export function decodeFrame(data: Buffer | Uint8Array): Message[] {
  let value: unknown;
  try {
    value = packr.unpack(data);
  } catch (err) {
    throw new ProtocolError(`malformed frame (${data.byteLength} bytes): ${(err as Error).message}`);
  }
  if (!Array.isArray(value)) throw new ProtocolError(`frame must be an array of messages, got ${typeof value}`);
  for (const m of value) {
    if (typeof m !== 'object' || m === null || typeof (m as { t?: unknown }).t !== 'string') {
      throw new ProtocolError('frame holds a message without a string "t" field');
    }
  }
  return value as Message[];
}
