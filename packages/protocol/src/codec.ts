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

export function encodeMessage(message: Message): Buffer {
  return packr.pack([message]);
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
