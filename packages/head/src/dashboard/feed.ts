/**
 * The dashboard's live feed: Server-Sent Events, one JSON snapshot per interval to every connected page. It works
 * only while someone watches: the first client starts the loop, the last one to leave stops it and drops the
 * counters. Snapshots never overlap (the next one is scheduled when this one is sent, so a worker slow to answer
 * stats stretches the interval instead of piling up calls), and a client that does not read is cut at a bound
 * rather than buffered without end.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { BackpressureError, realClock, toWireError, type Clock, type Logger, type TimerHandle } from '@shoal/core';
import { buildSnapshot, type DashboardSnapshot, type DashboardStatsInput, type DashboardStatusInput, type SnapshotCounters } from './snapshot.ts';

export interface DashboardFeedOptions {
  /** The status and stats a snapshot is built from (the head's own, as /api/status and /api/stats serve them). */
  source: () => Promise<{ status: DashboardStatusInput; stats: DashboardStatsInput }>;
  logger: Logger;
  clock?: Clock;
  /** Time between snapshots. @default 1000 */
  intervalMs?: number;
  /** Pages watching at once; one more is answered 503. @default 32 */
  maxClients?: number;
  /** Bytes a client may leave unread before it is cut (a snapshot is a few KiB to a few hundred). @default 4194304 (4 MiB) */
  maxBufferedBytes?: number;
}

/** How long a browser waits before reconnecting a dropped stream, ms (SSE `retry:`). */
const RECONNECT_MS = 2000;

export class DashboardFeed {
  private readonly clients = new Set<ServerResponse>();
  private readonly clock: Clock;
  private readonly intervalMs: number;
  private readonly maxClients: number;
  private readonly maxBufferedBytes: number;
  private timer: TimerHandle | undefined;
  private running = false;
  private counters: SnapshotCounters | undefined;
  private last: string | undefined;
  private closed = false;
  /** Bumped by every start: a snapshot in flight when its feed stopped must not start a second loop. */
  private generation = 0;

  constructor(private readonly opts: DashboardFeedOptions) {
    this.clock = opts.clock ?? realClock;
    this.intervalMs = opts.intervalMs ?? 1000;
    this.maxClients = opts.maxClients ?? 32;
    this.maxBufferedBytes = opts.maxBufferedBytes ?? 4 * 1024 * 1024;
  }

  /** Pages connected now. */
  get watching(): number {
    return this.clients.size;
  }

  /** Whether snapshots are being taken (only while a page is connected). */
  get active(): boolean {
    return this.running;
  }

  /** Answers `req` with the event stream; throws BackpressureError (503) past maxClients. */
  attach(req: IncomingMessage, res: ServerResponse): void {
    if (this.closed || this.clients.size >= this.maxClients) {
      throw new BackpressureError(`dashboard: ${this.clients.size} pages watching, at maxClients=${this.maxClients}`, { watching: this.clients.size, maxClients: this.maxClients, retryAfterMs: RECONNECT_MS });
    }
    req.resume();
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      'x-content-type-options': 'nosniff',
    });
    res.write(`retry: ${RECONNECT_MS}\n\n`);
    this.clients.add(res);
    res.once('close', () => this.detach(res));
    // A page that joins a running feed sees the latest snapshot at once (its rates as of then), not a blank second.
    if (this.last !== undefined) this.send(res, this.last);
    if (!this.running) this.start();
  }

  /** Ends every stream and stops; later attaches are refused. */
  close(): void {
    this.closed = true;
    for (const res of [...this.clients]) res.end();
    this.clients.clear();
    this.stop();
  }

  private detach(res: ServerResponse): void {
    this.clients.delete(res);
    if (this.clients.size === 0) this.stop();
  }

  private start(): void {
    this.running = true;
    this.generation++;
    void this.tick(this.generation);
  }

  private stop(): void {
    this.running = false;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    // Rates are measured between snapshots someone saw: a page that comes back later starts fresh.
    this.counters = undefined;
    this.last = undefined;
  }

  /** One snapshot, then the next one scheduled; a tick of a feed stopped (and maybe restarted) since is dropped. */
  private async tick(generation: number): Promise<void> {
    this.timer = undefined;
    try {
      const { status, stats } = await this.opts.source();
      if (generation !== this.generation || !this.running) return;
      const { snapshot, counters } = buildSnapshot(status, stats, this.counters, { wallMs: this.clock.wallNow(), monoMs: this.clock.monoNow() });
      this.counters = counters;
      this.broadcast(snapshot);
    } catch (err) {
      this.opts.logger.warn('dashboard snapshot failed', { error: toWireError(err).message });
    }
    if (generation === this.generation && this.running) this.timer = this.clock.setTimeout(() => void this.tick(generation), this.intervalMs);
  }

  private broadcast(snapshot: DashboardSnapshot): void {
    const frame = `event: snapshot\ndata: ${JSON.stringify(snapshot)}\n\n`;
    this.last = frame;
    for (const res of [...this.clients]) this.send(res, frame);
  }

  private send(res: ServerResponse, frame: string): void {
    if (res.writableLength > this.maxBufferedBytes) {
      this.opts.logger.warn('dashboard page cut: it left too much unread', { bufferedBytes: res.writableLength, maxBufferedBytes: this.maxBufferedBytes });
      this.clients.delete(res);
      res.destroy();
      if (this.clients.size === 0) this.stop();
      return;
    }
    res.write(frame);
  }
}
