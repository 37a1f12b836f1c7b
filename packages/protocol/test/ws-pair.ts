/** Real WebSocket pairs on 127.0.0.1 port 0 for peer and handshake tests. */
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer, type ServerOptions } from 'ws';
import type { Logger } from '@shoal/core';

export interface Server {
  wss: WebSocketServer;
  url: string;
  /** Resolves with the server side of the next connection. */
  nextConnection(): Promise<WebSocket>;
  close(): Promise<void>;
}

export async function startServer(opts: Omit<ServerOptions, 'port' | 'host'> = {}): Promise<Server> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, ...opts });
  await once(wss, 'listening');
  const queue: WebSocket[] = [];
  const waiting: Array<(ws: WebSocket) => void> = [];
  wss.on('connection', (ws) => { const w = waiting.shift(); if (w) w(ws); else queue.push(ws); });
  const port = (wss.address() as AddressInfo).port;
  return {
    wss,
    url: `ws://127.0.0.1:${port}`,
    nextConnection: () => new Promise((resolve) => { const ws = queue.shift(); if (ws) resolve(ws); else waiting.push(resolve); }),
    close: async () => {
      for (const c of wss.clients) c.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}

/** A connected pair: [client side, server side]. */
export async function wsPair(server: Server, clientOpts: { maxPayload?: number } = {}): Promise<[WebSocket, WebSocket]> {
  const serverSide = server.nextConnection();
  const client = new WebSocket(server.url, { perMessageDeflate: false, ...clientOpts });
  await once(client, 'open');
  return [client, await serverSide];
}

export interface LogLine { level: string; msg: string; fields: Record<string, unknown> | undefined }

/** A logger that records what it is told, so tests can check that refusals are logged. */
export function recordingLogger(lines: LogLine[] = []): Logger & { lines: LogLine[] } {
  const at = (level: string) => (msg: string, fields?: Record<string, unknown>): void => { lines.push({ level, msg, fields }); };
  const logger: Logger & { lines: LogLine[] } = {
    lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'),
    child: () => logger,
  };
  return logger;
}

/** Resolves after pending setImmediate callbacks (one peer flush) have run. */
export function nextTick(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
