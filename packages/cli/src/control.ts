/**
 * The control API client every command that reaches a head uses: one call with the cluster token, errors that
 * carry the head's message.
 */
import { InvalidOptionError, ReplicaUnavailableError, ShoalError } from '@shoal/core';

/** The http(s) URL of a control API path on the head at `address` (ws://HOST:PORT). */
export function controlUrl(address: string, path: string): string {
  const base = address.replace(/^ws(s?):\/\//, 'http$1://').replace(/\/+$/, '');
  if (!/^https?:\/\//.test(base)) throw new InvalidOptionError('--address', 'must look like ws://HOST:PORT', address);
  return `${base}${path}`;
}

/** One control API call, with the token (tokenOf's); errors carry the head's message. */
export async function control(address: string, token: string | undefined, method: string, path: string, body?: unknown): Promise<unknown> {
  if (token === undefined) throw new InvalidOptionError('--token-file', 'is required to talk to a head (a file holding the token `shoal start` printed), or set SHOAL_TOKEN');
  let res: Response;
  try {
    res = await fetch(controlUrl(address, path), {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
  } catch (err) {
    throw new ReplicaUnavailableError(`cannot reach the head at ${address}: ${((err as Error).cause as Error | undefined)?.message ?? (err as Error).message}`);
  }
  const text = await res.text();
  let json: unknown;
  try { json = JSON.parse(text); } catch { json = { error: text }; }
  if (!res.ok) throw new ShoalError(res.status === 401 ? 'ERR_UNAUTHORIZED' : 'ERR_INTERNAL', `head answered ${res.status}: ${(json as { error?: string }).error ?? text}`, { httpStatus: res.status });
  return json;
}

