/** Reading an HTTP request body under a size limit, for the ingress and the KServe route. */
import type { IncomingMessage } from 'node:http';
import { RequestTooLargeError } from './errors.ts';

/**
 * Reads a request body up to `maxBytes`. A declared content-length past it is refused before any byte is read;
 * a body that grows past it while streaming is refused at that point and the rest is drained unread.
 * `limit` names the setting in the error ("maxRequestBytes=1024"), `what` what it applies to ("deployment X").
 */
export function readRequestBody(req: IncomingMessage, maxBytes: number, limit: string, what?: string): Promise<Buffer> {
  const forWhat = what === undefined ? '' : ` for ${what}`;
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxBytes) {
    return Promise.reject(new RequestTooLargeError(`request body of ${declared} bytes exceeds ${limit}=${maxBytes}${forWhat}`, { bytes: declared, limit: maxBytes }));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.byteLength;
      if (size > maxBytes) {
        req.removeAllListeners('data');
        req.resume();
        reject(new RequestTooLargeError(`request body exceeds ${limit}=${maxBytes}${forWhat} (read ${size} bytes so far)`, { bytes: size, limit: maxBytes }));
        return;
      }
      chunks.push(chunk);
    });
    req.once('end', () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size)));
    req.once('error', reject);
  });
}
