/** The bounds of the ingress's WebSocket front (docs/streaming.md, "WebSocket"), compiled once. */
import { checkInt, DEFAULT_STREAM_WINDOW, InvalidOptionError, MAX_STREAM_WINDOW, type StreamWindow } from '@shoal/core';

export interface WebSocketOptions {
  /** WebSocket connections this process serves at once; an upgrade past it is refused with 503. @default 10000 */
  maxConnections?: number;
  /** Requests in flight on one socket; one more is answered with an ERR_QUEUE_FULL error message. @default 64 */
  maxInflightPerSocket?: number;
  /**
   * Bytes a socket may hold unsent (ws's bufferedAmount) before its streams stop taking chunks, so their
   * generators pause, and the socket stops being read until it drains, so a client that sends and never reads
   * cannot pile up answers: the slow reader's bound. @default 1048576 (1 MiB)
   */
  maxBufferedBytes?: number;
  /**
   * Every this many ms the server pings each socket; one that has not answered the previous ping by the next is
   * taken for dead and cut, which cancels its requests as a close does. 0: no pings. @default 30000
   */
  pingIntervalMs?: number;
  /** The window each stream asks of its replica (chunks and bytes produced ahead of what was sent). @default 16 chunks, 1 MiB */
  window?: StreamWindow;
}

export interface CompiledWebSocketOptions {
  maxConnections: number;
  maxInflightPerSocket: number;
  maxBufferedBytes: number;
  pingIntervalMs: number;
  window: StreamWindow;
}

const KEYS = ['maxConnections', 'maxInflightPerSocket', 'maxBufferedBytes', 'pingIntervalMs', 'window'];

export function compileWebSocketOptions(o: WebSocketOptions = {}, path = 'websocket'): CompiledWebSocketOptions {
  if (typeof o !== 'object' || o === null) throw new InvalidOptionError(path, 'must be an object', o);
  for (const k of Object.keys(o)) {
    if (!KEYS.includes(k)) throw new InvalidOptionError(`${path}.${k}`, `is not an option (options: ${KEYS.join(', ')})`);
  }
  if (o.window !== undefined && (typeof o.window !== 'object' || o.window === null)) throw new InvalidOptionError(`${path}.window`, 'must be {chunks, bytes}', o.window);
  const w = o.window ?? DEFAULT_STREAM_WINDOW;
  return {
    maxConnections: checkInt(`${path}.maxConnections`, o.maxConnections, 1, 10_000),
    maxInflightPerSocket: checkInt(`${path}.maxInflightPerSocket`, o.maxInflightPerSocket, 1, 64),
    maxBufferedBytes: checkInt(`${path}.maxBufferedBytes`, o.maxBufferedBytes, 1, 1024 * 1024),
    // Below 10 ms a ping would race its own answer on a busy loop; a day is past any useful dead-peer check.
    pingIntervalMs: checkPingInterval(`${path}.pingIntervalMs`, o.pingIntervalMs),
    window: Object.freeze({
      chunks: checkInt(`${path}.window.chunks`, w.chunks, 1, DEFAULT_STREAM_WINDOW.chunks, MAX_STREAM_WINDOW.chunks),
      bytes: checkInt(`${path}.window.bytes`, w.bytes, 1, DEFAULT_STREAM_WINDOW.bytes, MAX_STREAM_WINDOW.bytes),
    }),
  };
}

function checkPingInterval(path: string, v: unknown): number {
  if (v === undefined) return 30_000;
  if (v === 0) return 0;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 10 || v > 86_400_000) throw new InvalidOptionError(path, 'must be 0 (no pings) or an integer number of ms between 10 and 86400000', v);
  return v;
}
