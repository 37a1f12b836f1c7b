/**
 * The WebSocket series of an ingress (docs/METRICS.md): open sockets and messages each way, per application.
 * A stream's chunks are also counted by the router's shoal_stream_* series, like an HTTP stream's.
 */
import type { Registry } from 'prom-client';
import { Gauge } from '@shoal/core/prom';
import { FastCounter, type CounterChild } from '@shoal/core';
import type { WebSocketAppObserver, WebSocketObserver } from './ws-session.ts';

export class WebSocketMetrics implements WebSocketObserver {
  private readonly connections: Gauge<'app'>;
  private readonly messages: FastCounter<'app' | 'direction'>;
  /** Bounded by the applications this ingress served sockets for. */
  private readonly apps = new Map<string, WebSocketAppObserver>();

  constructor(registry: Registry) {
    const registers = [registry];
    this.connections = new Gauge({ name: 'shoal_websocket_connections', help: 'WebSocket connections open on application routes, per application.', labelNames: ['app'], registers });
    this.messages = new FastCounter({ name: 'shoal_websocket_messages_total', help: 'WebSocket messages on application routes, per application and direction (in: read from clients; out: chunks, results, ends and errors sent).', labelNames: ['app', 'direction'], registers });
  }

  forApp(app: string): WebSocketAppObserver {
    let a = this.apps.get(app);
    if (a === undefined) {
      const gauge = this.connections.labels({ app });
      const inbound: CounterChild = this.messages.child({ app, direction: 'in' });
      const outbound: CounterChild = this.messages.child({ app, direction: 'out' });
      a = {
        opened: () => gauge.inc(),
        closed: () => gauge.dec(),
        received: () => inbound.inc(),
        sent: (n) => outbound.inc(n),
      };
      this.apps.set(app, a);
    }
    return a;
  }
}
