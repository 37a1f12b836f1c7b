/**
 * How cached answers are held: msgpack bytes (msgpackr, with `moreTypes`, so a Float32Array comes back a
 * Float32Array and a Buffer a Buffer), the encoding the wire protocol uses. Every hit decodes a fresh copy, so a
 * caller that changes or transfers what it got (a transfer to an inference thread detaches buffers) cannot change
 * what the next one gets; the size of an entry is the length of its bytes.
 */
import { Packr } from 'msgpackr';

const packr = new Packr({ moreTypes: true, useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

/** The bytes of `value`, or undefined when msgpack cannot hold it (a function, a class instance's methods). */
export function encodeValue(value: unknown): Uint8Array | undefined {
  try {
    return packr.pack(value);
  } catch {
    return undefined;
  }
}

export function decodeValue(bytes: Uint8Array): unknown {
  return packr.unpack(bytes);
}
