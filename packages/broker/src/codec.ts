/** Payload encodings of broker ingress: the message's bytes to the method's argument, the answer back to bytes. */
import { BadRequestError, type ConsumeEncoding } from '@shoal/core';

const utf8 = new TextDecoder('utf-8', { fatal: true });
const encoder = new TextEncoder();

/** The method's argument; BadRequestError (the payload's fault, so a dead letter at once) when it does not decode. */
export function decodePayload(encoding: ConsumeEncoding, payload: Uint8Array): unknown {
  if (encoding === 'bytes') return payload;
  let text: string;
  try {
    text = utf8.decode(payload);
  } catch {
    throw new BadRequestError(`the message payload is not UTF-8 text (encoding '${encoding}', ${payload.byteLength} bytes)`);
  }
  if (encoding === 'text') return text;
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new BadRequestError(`the message payload is not JSON (${(err as Error).message})`);
  }
}

/** A string answer as it is in 'text', bytes as they are in 'bytes'; anything else as JSON (undefined as null). */
export function encodeAnswer(encoding: ConsumeEncoding, value: unknown): Uint8Array {
  if (encoding === 'bytes' && value instanceof Uint8Array) return value;
  if (encoding === 'text' && typeof value === 'string') return encoder.encode(value);
  return encoder.encode(JSON.stringify(value ?? null));
}
