/** The bounds of the ingress's WebSocket front (docs/streaming.md, "WebSocket"), compiled once. */
import { checkInt, DEFAULT_STREAM_WINDOW, InvalidOptionError, MAX_STREAM_WINDOW, type StreamWindow } from '@shoal/core';

export interface WebSocketOptions {
  /** WebSocket connections this process serves at once; an upgrade past it is refused with 503. @default 10000 */
  maxConnections?: number;
  /** Requests in flight on one socket; one more is answered with an ERR_QUEUE_FULL error message. @default 64 */
  maxInflightPerSocket?: number;
  /**
   * Bytes a socket may hold unsent (ws's bufferedAmount) before its streams stop taking chunks, so their
   * generators pause: the slow reader's bound. @default 1048576 (1 MiB)
   */
  maxBufferedBytes?: number;
  /** The window each stream asks of its replica (chunks and bytes produced ahead of what was sent). @default 16 chunks, 1 MiB */
  window?: StreamWindow;
}

export interface CompiledWebSocketOptions {
  maxConnections: number;
  maxInflightPerSocket: number;
  maxBufferedBytes: number;
  window: StreamWindow;
}

export function compileWebSocketOptions(o: WebSocketOptions = {}, path = 'websocket'): CompiledWebSocketOptions {
  if (typeof o !== 'object' || o === null) throw new InvalidOptionError(path, 'must be an object', o);
  for (const k of Object.keys(o)) {
    if (!['maxConnections', 'maxInflightPerSocket', 'maxBufferedBytes', 'window'].includes(k)) throw new InvalidOptionError(`${path}.${k}`, 'is not an option (options: maxConnections, maxInflightPerSocket, maxBufferedBytes, window)');
  }
  if (o.window !== undefined && (typeof o.window !== 'object' || o.window === null)) throw new InvalidOptionError(`${path}.window`, 'must be {chunks, bytes}', o.window);
  const w = o.window ?? DEFAULT_STREAM_WINDOW;
  return {
    maxConnections: checkInt(`${path}.maxConnections`, o.maxConnections, 1, 10_000),
    maxInflightPerSocket: checkInt(`${path}.maxInflightPerSocket`, o.maxInflightPerSocket, 1, 64),
    maxBufferedBytes: checkInt(`${path}.maxBufferedBytes`, o.maxBufferedBytes, 1, 1024 * 1024),
    window: Object.freeze({
      chunks: checkInt(`${path}.window.chunks`, w.chunks, 1, DEFAULT_STREAM_WINDOW.chunks, MAX_STREAM_WINDOW.chunks),
      bytes: checkInt(`${path}.window.bytes`, w.bytes, 1, DEFAULT_STREAM_WINDOW.bytes, MAX_STREAM_WINDOW.bytes),
    }),
  };
}
