/**
 * One-line errors for a port that cannot be listened on, naming the flag that chooses it (`--port`,
 * `--http-port`, `--data-port`), instead of Node's `listen EADDRINUSE` and its stack.
 */
import { createServer } from 'node:net';
import { InvalidOptionError } from '@shoal/core';

interface ListenErrno { code?: unknown; syscall?: unknown; address?: unknown; port?: unknown }

function errnoOf(err: unknown): ListenErrno | undefined {
  return typeof err === 'object' && err !== null ? err as ListenErrno : undefined;
}

/** True for a failed listen() (EADDRINUSE, EACCES, EADDRNOTAVAIL), optionally on `port` only. */
export function isListenError(err: unknown, port?: number): boolean {
  const e = errnoOf(err);
  if (e === undefined || e.syscall !== 'listen' || typeof e.code !== 'string') return false;
  return port === undefined || e.port === port;
}

/** The error to show for a failed listen() on host:port chosen by `flag`. */
export function portError(flag: string, host: string, port: number, code: string): InvalidOptionError {
  const where = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  const why = code === 'EADDRINUSE' ? 'is already in use'
    : code === 'EACCES' ? 'needs privileges (EACCES)'
      : code === 'EADDRNOTAVAIL' ? 'is not an address of this host (EADDRNOTAVAIL)' : `cannot be listened on (${code})`;
  return new InvalidOptionError(flag, `${where} ${why}; choose another with ${flag} (0 picks a free port)`, port);
}

/** portError for a Node listen error; undefined when `err` is not one. */
export function listenErrorFor(err: unknown, flag: string, fallbackHost: string, fallbackPort: number): InvalidOptionError | undefined {
  if (!isListenError(err)) return undefined;
  const e = errnoOf(err)!;
  return portError(flag, typeof e.address === 'string' ? e.address : fallbackHost, typeof e.port === 'number' ? e.port : fallbackPort, e.code as string);
}

/**
 * Listens on host:port and closes at once, so a command fails with portError before it starts work that would
 * only find the port busy later (a worker's ingress listens after it has joined). The port can still be taken
 * between this check and the real listen; that case is logged where the real listen fails.
 */
export function probePort(flag: string, host: string, port: number): Promise<void> {
  if (port === 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', (err: NodeJS.ErrnoException) => reject(portError(flag, host, port, err.code ?? 'error')));
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve()));
  });
}
