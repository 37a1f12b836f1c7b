/**
 * One WebSocket connection to another shoal process. Outgoing messages queued during one event-loop tick are
 * coalesced into one frame. Requests get ids and wait in a pending table; when the connection closes, every
 * pending request is rejected at once with a PeerGoneError, so no promise hangs on a dead peer.
 */
import type { WebSocket } from 'ws';
import { PeerGoneError, ProtocolError, rebuildError, type Logger, type WireError } from '@shoal/core';
import { decodeFrame, encodeFrame, encodeMessage } from './codec.ts';
import type { Message, ReplyMessage, RequestMessage } from './messages.ts';

export interface PeerOptions {
  /** For messages and logs: "worker w-1", "head". */
  name: string;
  /** Frames larger than this are not sent; the request fails with ERR_FRAME_TOO_LARGE instead. */
  maxFrameBytes: number;
  logger: Logger;
  /** Every message that is not a reply to one of our requests. */
  onMessage: (message: Message, peer: Peer) => void;
  onClose?: (error: PeerGoneError, peer: Peer) => void;
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
export type NewRequest = DistributiveOmit<RequestMessage, 'id'>;

interface Pending {
  resolve: (reply: ReplyMessage) => void;
  reject: (err: Error) => void;
}

/** Messages after which the outbox is flushed without waiting for the end of the tick. */
const EAGER_FLUSH_MESSAGES = 16;

export class Peer {
  readonly name: string;
  private readonly ws: WebSocket;
  private readonly opts: PeerOptions;
  private outbox: Message[] = [];
  private flushScheduled = false;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closedError: PeerGoneError | undefined;
  /** Free-form slot for the owner (the worker id, the hello it sent). */
  meta: Record<string, unknown> = {};

  constructor(ws: WebSocket, opts: PeerOptions) {
    this.ws = ws;
    this.opts = opts;
    this.name = opts.name;
    ws.binaryType = 'nodebuffer';
    ws.on('message', (data: Buffer, isBinary: boolean) => this.onFrame(data, isBinary));
    ws.on('close', (code: number, reason: Buffer) => {
      const why = reason.length > 0 ? `: ${reason.toString()}` : '';
      this.fail(new PeerGoneError(`connection to ${this.name} closed (code ${code}${why}) with ${this.pending.size} requests pending`));
    });
    ws.on('error', (err: Error) => {
      opts.logger.warn('connection error', { peer: this.name, error: err.message });
      this.fail(new PeerGoneError(`connection to ${this.name} failed: ${err.message}`));
    });
  }

  get closed(): boolean { return this.closedError !== undefined; }
  get pendingCount(): number { return this.pending.size; }

  /** Queues a message for this tick's frame. */
  send(message: Message): void {
    if (this.closedError !== undefined) throw this.closedError;
    this.outbox.push(message);
    // A full outbox goes now, so the peer starts on it while this side is still busy: that breaks the lockstep
    // of "one side works while the other waits" under load, and still sends few frames.
    if (this.outbox.length >= EAGER_FLUSH_MESSAGES) { this.flush(); return; }
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flush);
    }
  }

  /** Sends a request and resolves with its reply (ok or not); rejects only if the peer goes away. */
  request(message: NewRequest): Promise<ReplyMessage> {
    if (this.closedError !== undefined) return Promise.reject(this.closedError);
    const id = this.nextId++;
    return new Promise<ReplyMessage>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.send({ ...message, id } as Message);
    });
  }

  /** The id the next request will get (so a caller can cancel it later). */
  requestWithId(message: NewRequest): { id: number; reply: Promise<ReplyMessage> } {
    const id = this.nextId;
    return { id, reply: this.request(message) };
  }

  /** Sends a request and returns the reply's value, throwing the rebuilt remote error. */
  async call(message: NewRequest): Promise<unknown> {
    const reply = await this.request(message);
    if (reply.ok) return reply.value;
    throw rebuildError(reply.error);
  }

  reply(id: number, value: unknown, q?: number): void {
    if (this.closedError !== undefined) return;
    this.send(q === undefined ? { t: 'reply', id, ok: true, value } : { t: 'reply', id, ok: true, value, q });
  }

  replyError(id: number, error: WireError, q?: number): void {
    if (this.closedError !== undefined) return;
    this.send(q === undefined ? { t: 'reply', id, ok: false, error } : { t: 'reply', id, ok: false, error, q });
  }

  close(code = 1000, reason = ''): void {
    this.flush();
    this.ws.close(code, reason);
    this.fail(new PeerGoneError(`connection to ${this.name} closed locally${reason ? `: ${reason}` : ''}`));
  }

  /** Drops the connection at once (no close handshake). */
  terminate(reason: string): void {
    this.ws.terminate();
    this.fail(new PeerGoneError(`connection to ${this.name} terminated: ${reason}`));
  }

  private readonly flush = (): void => {
    this.flushScheduled = false;
    if (this.outbox.length === 0 || this.closedError !== undefined) { this.outbox = []; return; }
    const batch = this.outbox;
    this.outbox = [];
    const frame = encodeFrame(batch);
    if (frame.byteLength <= this.opts.maxFrameBytes) {
      this.ws.send(frame, { binary: true });
      return;
    }
    // Rare path: find which messages are too large, fail them, and send the rest one frame each.
    for (const message of batch) {
      const one = encodeMessage(message);
      if (one.byteLength <= this.opts.maxFrameBytes) { this.ws.send(one, { binary: true }); continue; }
      this.failOversized(message, one.byteLength);
    }
  };

  private failOversized(message: Message, bytes: number): void {
    const text = `frame of ${bytes} bytes to ${this.name} exceeds maxFrameBytes=${this.opts.maxFrameBytes} (message "${message.t}")`;
    this.opts.logger.warn('oversized frame not sent', { peer: this.name, bytes, maxFrameBytes: this.opts.maxFrameBytes, type: message.t });
    const wire = { code: 'ERR_FRAME_TOO_LARGE', name: 'ProtocolError', message: text, httpStatus: 413 };
    if (message.t === 'reply') {
      // Our answer is too large: tell the requester instead of leaving it waiting.
      this.outbox.push({ t: 'reply', id: message.id, ok: false, error: wire });
      if (!this.flushScheduled) { this.flushScheduled = true; setImmediate(this.flush); }
      return;
    }
    if ('id' in message && typeof message.id === 'number') {
      const p = this.pending.get(message.id);
      if (p !== undefined) { this.pending.delete(message.id); p.reject(new ProtocolError(text, 'ERR_FRAME_TOO_LARGE')); }
    }
  }

  private onFrame(data: Buffer, isBinary: boolean): void {
    let messages: Message[];
    try {
      if (!isBinary) throw new ProtocolError('text frames are not part of the protocol');
      messages = decodeFrame(data);
    } catch (err) {
      this.opts.logger.warn('bad frame, closing connection', { peer: this.name, error: (err as Error).message });
      this.ws.close(1002, 'protocol error');
      this.fail(new PeerGoneError(`connection to ${this.name} closed after a protocol error: ${(err as Error).message}`));
      return;
    }
    for (const m of messages) {
      if (m.t === 'reply') {
        const p = this.pending.get(m.id);
        if (p === undefined) continue; // cancelled or timed out locally; the late answer is dropped.
        this.pending.delete(m.id);
        p.resolve(m);
        continue;
      }
      try {
        this.opts.onMessage(m, this);
      } catch (err) {
        this.opts.logger.error('message handler threw', { peer: this.name, type: m.t, error: (err as Error).message });
      }
    }
  }

  /** Forgets a pending request (cancelled by the caller); a late reply is dropped. */
  forget(id: number): boolean {
    return this.pending.delete(id);
  }

  private fail(err: PeerGoneError): void {
    if (this.closedError !== undefined) return;
    this.closedError = err;
    this.outbox = [];
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) p.reject(err);
    this.opts.onClose?.(err, this);
  }
}
