/**
 * One WebSocket connection to another shoal process. Outgoing messages queued during one event-loop tick are
 * coalesced into one frame. Requests get ids and wait in a pending table; when the connection closes, every
 * pending request is rejected at once with a PeerGoneError, so no promise hangs on a dead peer.
 *
 * Flow control, as undici honours `drain`: the peer counts the bytes it has queued that the kernel has not taken
 * yet (ws.bufferedAmount plus its own outbox). Past `highWaterBytes` a new request fails at once with a
 * BackpressureError (503, retryable); replies and cancels always go, since they free the other side. And while the
 * replies this side owes are past the mark, it stops reading the socket and holds the requests it had already
 * read, so a caller that does not read its answers meets TCP backpressure instead of growing this process; reading
 * resumes once they drain below half the mark.
 *
 * Streams: a request sent with a window (`s`) may be answered by `chunk` messages before its `reply`. The first one
 * resolves the request with a ChunkStream (ReplyOk.stream) and moves it from the pending table to the stream table;
 * later chunks feed it, the consumer's credit goes back as `credit` messages, and the reply ends it. A closing
 * connection fails every open stream with the same PeerGoneError as the pending requests.
 */
import type { WebSocket } from 'ws';
import { BackpressureError, CancelledError, ChunkStream, DEFAULT_STREAM_WINDOW, env, InvalidOptionError, PeerGoneError, ProtocolError, markNotRun, rebuildError, windowOfWire, type ChunkSource, type Logger, type StreamWindow, type WireError, type WireStreamWindow } from '@shoal/core';
import { decodeFrame, encodeMessage, joinedBytes, joinMessages } from './codec.ts';
import type { ChunkMessage, Message, ReplyMessage, RequestMessage } from './messages.ts';

export interface PeerOptions {
  /** For messages and logs: "worker w-1", "head". */
  name: string;
  /** Frames larger than this are not sent; the request fails with ERR_FRAME_TOO_LARGE instead. */
  maxFrameBytes: number;
  /**
   * Buffered outgoing bytes past which new requests fail with ERR_BACKPRESSURE, and, counting only the replies
   * this side owes, past which it stops reading until they drain below half of it.
   * @default env.peerHighWaterBytes() (SHOAL_PEER_HIGH_WATER_BYTES, 8 MiB)
   */
  highWaterBytes?: number;
  logger: Logger;
  /** Every message that is not a reply to one of our requests. */
  onMessage: (message: Message, peer: Peer) => void;
  onClose?: (error: PeerGoneError, peer: Peer) => void;
  /**
   * Liveness: a WebSocket ping every intervalMs; a peer from which nothing (no frame, no pong) arrived for
   * timeoutMs is terminated, so its pending requests reject at once. A tick that runs late means this process was
   * stalled, not the peer: the silence clock restarts. @default none (no pings)
   */
  liveness?: { intervalMs: number; timeoutMs: number };
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
export type NewRequest = DistributiveOmit<RequestMessage, 'id'>;

interface Pending {
  resolve: (reply: ReplyMessage) => void;
  reject: (err: Error) => void;
  /** Set when the request takes a streamed answer: the window its ChunkStream grants, as sent (built at its first chunk). */
  s?: WireStreamWindow;
}

/** One encoded message waiting for this tick's frame. */
interface Queued {
  data: Buffer;
  reply: boolean;
}

/** Messages after which the outbox is flushed without waiting for the end of the tick. */
const EAGER_FLUSH_MESSAGES = 16;
/** Outbox bytes after which it is flushed at once; a message this large also goes in a frame of its own (no copy). */
const EAGER_FLUSH_BYTES = 64 * 1024;
/** Retry hint on a BackpressureError: a congested link usually drains within a round trip or two. */
const BACKPRESSURE_RETRY_AFTER_MS = 100;

export class Peer {
  readonly name: string;
  private readonly ws: WebSocket;
  private readonly opts: PeerOptions;
  private readonly highWaterBytes: number;
  private readonly lowWaterBytes: number;
  private outbox: Queued[] = [];
  private outboxBytes = 0;
  private outboxReplyBytes = 0;
  /** Reply bytes handed to ws whose write to the kernel has not completed. */
  private unwrittenReplyBytes = 0;
  private flushScheduled = false;
  private paused = false;
  /** Requests and other messages read but not handled, because answering them would pass the high-water mark. */
  private held: Message[] = [];
  private heldNext = 0;
  private pauseCount = 0;
  private refusalCount = 0;
  private readonly pending = new Map<number, Pending>();
  /** Requests whose streamed answer has started: chunks feed them until their reply. */
  private readonly streams = new Map<number, ChunkStream>();
  private nextId = 1;
  private closedError: PeerGoneError | undefined;
  private livenessTimer: NodeJS.Timeout | undefined;
  /** performance.now() of the last frame or pong from the peer. */
  private lastSeen = performance.now();
  /** Free-form slot for the owner (the worker id, the hello it sent). */
  meta: Record<string, unknown> = {};

  constructor(ws: WebSocket, opts: PeerOptions) {
    const hw = opts.highWaterBytes ?? env.peerHighWaterBytes();
    if (!Number.isInteger(hw) || hw < 1) throw new InvalidOptionError('highWaterBytes', 'must be an integer >= 1', hw);
    this.ws = ws;
    this.opts = opts;
    this.name = opts.name;
    this.highWaterBytes = hw;
    this.lowWaterBytes = Math.floor(hw / 2);
    ws.binaryType = 'nodebuffer';
    ws.on('message', (data: Buffer, isBinary: boolean) => { this.lastSeen = performance.now(); this.onFrame(data, isBinary); });
    if (opts.liveness !== undefined) this.watchLiveness(opts.liveness);
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
  /** Streamed answers started and not yet ended. */
  get streamCount(): number { return this.streams.size; }
  /** Outgoing bytes not yet taken by the kernel: ws's buffer plus this tick's outbox. */
  get bufferedBytes(): number { return this.ws.bufferedAmount + this.outboxBytes; }
  /** True while new requests are refused with ERR_BACKPRESSURE. */
  get congested(): boolean { return this.bufferedBytes > this.highWaterBytes; }
  /** True while this side does not read the socket, waiting for its replies to drain. */
  get readingPaused(): boolean { return this.paused; }
  /** Times reading was paused since the connection opened. */
  get pauses(): number { return this.pauseCount; }
  /** Requests refused with ERR_BACKPRESSURE since the connection opened. */
  get refusals(): number { return this.refusalCount; }
  /** Messages read but waiting for the replies to drain. */
  get heldCount(): number { return this.held.length - this.heldNext; }

  /** Queues a message for this tick's frame. Never refused for congestion: use request() for new work. */
  send(message: Message): void {
    if (this.closedError !== undefined) throw this.closedError;
    let data: Buffer;
    try {
      data = encodeMessage(message);
    } catch (err) {
      // A value the codec cannot encode (a cycle, nesting too deep) fails that one message, never the connection
      // or the process: a reply becomes an error reply, a request throws to its caller.
      const text = `cannot encode "${message.t}" message for ${this.name}: ${(err as Error).message}`;
      this.opts.logger.warn('message not encodable', { peer: this.name, type: message.t, error: (err as Error).message });
      if (message.t === 'reply' && message.ok) { this.send({ t: 'reply', id: message.id, ok: false, error: { code: 'ERR_ENCODE', name: 'ProtocolError', message: text, httpStatus: 500 }, ...(message.q === undefined ? {} : { q: message.q }) }); return; }
      throw new ProtocolError(text, 'ERR_ENCODE');
    }
    if (data.byteLength > this.opts.maxFrameBytes) { this.failOversized(message, data.byteLength); return; }
    // A large message goes alone: a frame of one part is sent without copying it.
    if (data.byteLength >= EAGER_FLUSH_BYTES && this.outbox.length > 0) this.flush();
    // Chunks count as replies: they are what this side owes, and what a caller that does not read holds back.
    const reply = message.t === 'reply' || message.t === 'chunk';
    this.outbox.push({ data, reply });
    this.outboxBytes += data.byteLength;
    if (reply) {
      this.outboxReplyBytes += data.byteLength;
      if (!this.paused && this.replyBacklog > this.highWaterBytes) this.pauseReading();
    }
    // A full outbox goes now, so the peer starts on it while this side is still busy: that breaks the lockstep
    // of "one side works while the other waits" under load, and still sends few frames.
    if (this.outbox.length >= EAGER_FLUSH_MESSAGES || this.outboxBytes >= EAGER_FLUSH_BYTES) { this.flush(); return; }
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flush);
    }
  }

  /**
   * Sends a request and resolves with its reply (ok or not); rejects if the peer goes away, or at once with a
   * BackpressureError while the connection is past its high-water mark.
   */
  request(message: NewRequest): Promise<ReplyMessage> {
    return this.requestWithId(message).reply;
  }

  /** Like request(), and returns the id the request got (so a caller can cancel it later). */
  requestWithId(message: NewRequest): { id: number; reply: Promise<ReplyMessage> } {
    // The id is taken even when the request is refused, so a cancel for it can never hit a later request.
    const id = this.nextId++;
    // Refusals here happen before anything is sent: marked so, a router may send the request elsewhere.
    if (this.closedError !== undefined) return { id, reply: Promise.reject(markNotRun(new PeerGoneError(`${this.closedError.message}; request not sent`))) };
    const buffered = this.bufferedBytes;
    if (buffered > this.highWaterBytes) {
      this.refusalCount++;
      return {
        id,
        reply: Promise.reject(markNotRun(new BackpressureError(
          `connection to ${this.name} is congested: buffered=${buffered} bytes, highWaterBytes=${this.highWaterBytes}`,
          { bufferedBytes: buffered, highWaterBytes: this.highWaterBytes, retryAfterMs: BACKPRESSURE_RETRY_AFTER_MS },
        ))),
      };
    }
    const s = (message as { s?: WireStreamWindow }).s;
    const reply = new Promise<ReplyMessage>((resolve, reject) => {
      this.pending.set(id, s === undefined ? { resolve, reject } : { resolve, reject, s });
      try {
        this.send({ ...message, id } as Message);
      } catch (err) {
        this.pending.delete(id);
        reject(err);
      }
    });
    return { id, reply };
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

  /** Starts liveness checks (see PeerOptions.liveness) on a peer made without them, once the intervals are known. */
  watchLiveness({ intervalMs, timeoutMs }: { intervalMs: number; timeoutMs: number }): void {
    if (!(intervalMs > 0) || !(timeoutMs > intervalMs)) throw new InvalidOptionError('liveness', `needs 0 < intervalMs < timeoutMs, got intervalMs=${intervalMs} timeoutMs=${timeoutMs}`);
    if (this.livenessTimer !== undefined || this.closedError !== undefined) return;
    this.lastSeen = performance.now();
    this.ws.on('pong', () => { this.lastSeen = performance.now(); });
    // Bytes arriving count as life too: a large frame in transit holds back the pongs queued behind it. ws has no
    // public hook for raw bytes, so this listens on its socket when it can (an internal field, checked).
    const socket = (this.ws as unknown as { _socket?: { on?: (e: string, f: () => void) => void } })._socket;
    if (typeof socket?.on === 'function') socket.on('data', () => { this.lastSeen = performance.now(); });
    // Silence is checked twenty times per timeout, and a peer is cut once silent for the timeout less one check
    // period: so it is found within timeoutMs of its last word (a stopped peer, within timeoutMs of stopping).
    // Pings go every intervalMs.
    const checkMs = Math.max(20, Math.min(intervalMs, Math.floor(timeoutMs / 20)));
    const limitMs = timeoutMs - checkMs;
    let lastTick = performance.now();
    let lastPing = Number.NEGATIVE_INFINITY;
    let lastBuffered = Number.POSITIVE_INFINITY;
    this.livenessTimer = setInterval(() => {
      const now = performance.now();
      // A tick far later than its period: this process did not run (stopped, or its loop blocked), so what the
      // peer sent meanwhile waits unread in the socket. Its silence is ours; start counting again.
      if (now - lastTick > Math.max(2 * checkMs + 50, timeoutMs / 2)) this.lastSeen = now;
      lastTick = now;
      if (this.closedError !== undefined) return;
      // While this side chose not to read (replies draining), nothing can arrive: the peer's life shows instead as
      // its taking our replies: a frame written (replyWritten), or the send buffer shrinking (frames queued behind
      // one another on a slow link); a peer that takes nothing for the timeout is gone too.
      if (this.paused) {
        const buffered = this.ws.bufferedAmount;
        if (buffered < lastBuffered) this.lastSeen = now;
        lastBuffered = buffered;
      }
      const silent = now - this.lastSeen;
      if (silent >= limitMs) {
        this.opts.logger.warn('peer silent past its liveness timeout; terminating the connection', { peer: this.name, silentMs: Math.round(silent), timeoutMs });
        this.terminate(`nothing received for ${Math.round(silent)} ms (liveness timeout ${timeoutMs} ms)`);
        return;
      }
      if (now - lastPing >= intervalMs) {
        lastPing = now;
        try { this.ws.ping(); } catch { /* closing: the close event fails the peer */ }
      }
    }, checkMs);
    this.livenessTimer.unref();
  }

  /** Milliseconds since the peer was last heard from (a frame or a pong). */
  get silentMs(): number { return performance.now() - this.lastSeen; }

  /** Reply bytes this side owes that the kernel has not taken yet. */
  private get replyBacklog(): number { return this.unwrittenReplyBytes + this.outboxReplyBytes; }

  private readonly flush = (): void => {
    this.flushScheduled = false;
    const queued = this.outbox;
    this.outbox = [];
    this.outboxBytes = 0;
    this.outboxReplyBytes = 0;
    if (queued.length === 0 || this.closedError !== undefined) return;
    // Every part fits maxFrameBytes (send() checked); cut the outbox into frames that do too.
    let from = 0;
    let partBytes = 0;
    for (let i = 0; i < queued.length; i++) {
      const next = partBytes + queued[i]!.data.byteLength;
      if (i > from && joinedBytes(i + 1 - from, next) > this.opts.maxFrameBytes) {
        this.write(queued.slice(from, i));
        from = i;
        partBytes = queued[i]!.data.byteLength;
      } else {
        partBytes = next;
      }
    }
    this.write(from === 0 ? queued : queued.slice(from));
  };

  private write(parts: Queued[]): void {
    let replyBytes = 0;
    for (const p of parts) if (p.reply) replyBytes += p.data.byteLength;
    const frame = joinMessages(parts.map((p) => p.data));
    if (replyBytes === 0) { this.ws.send(frame, { binary: true }); return; }
    // ws calls back once the frame is written to the kernel (or failed): that is when the replies stop costing us.
    this.unwrittenReplyBytes += replyBytes;
    this.ws.send(frame, { binary: true }, () => this.replyWritten(replyBytes));
  }

  private replyWritten(bytes: number): void {
    this.unwrittenReplyBytes -= bytes;
    if (this.paused) this.lastSeen = performance.now();
    if (this.paused && this.closedError === undefined && this.replyBacklog <= this.lowWaterBytes) this.resumeReading();
  }

  /**
   * Only the replies this side owes pause reading: reading is what makes it answer. Its own requests are bounded
   * by refusing new ones instead; pausing on them too would let two peers, each waiting for the other to read,
   * stop for good, while the replies to them, which free the other side, could not arrive.
   */
  private pauseReading(): void {
    this.paused = true;
    this.pauseCount++;
    this.ws.pause();
    this.opts.logger.debug('reading paused until replies drain', {
      peer: this.name, replyBytes: this.replyBacklog, highWaterBytes: this.highWaterBytes, lowWaterBytes: this.lowWaterBytes,
    });
  }

  private resumeReading(): void {
    this.paused = false;
    // What was read before the pause goes first; it may pause reading again before the socket is resumed.
    while (!this.paused && this.closedError === undefined && this.heldNext < this.held.length) {
      const m = this.held[this.heldNext++]!;
      this.handle(m);
    }
    if (this.heldNext >= this.held.length) { this.held = []; this.heldNext = 0; }
    if (!this.paused && this.closedError === undefined) this.ws.resume();
  }

  private failOversized(message: Message, bytes: number): void {
    const text = `frame of ${bytes} bytes to ${this.name} exceeds maxFrameBytes=${this.opts.maxFrameBytes} (message "${message.t}")`;
    this.opts.logger.warn('oversized frame not sent', { peer: this.name, bytes, maxFrameBytes: this.opts.maxFrameBytes, type: message.t });
    if (message.t === 'reply') {
      // Our answer is too large: tell the requester instead of leaving it waiting.
      this.send({ t: 'reply', id: message.id, ok: false, error: { code: 'ERR_FRAME_TOO_LARGE', name: 'ProtocolError', message: text, httpStatus: 413 } });
      return;
    }
    if (message.t === 'chunk') {
      // A batch of chunks too large: the caller's stream fails with this error, and the producer stops as if the
      // caller had cancelled (nothing it sends for this id would be read).
      this.send({ t: 'reply', id: message.id, ok: false, error: { code: 'ERR_FRAME_TOO_LARGE', name: 'ProtocolError', message: text, httpStatus: 413 } });
      this.handle({ t: 'cancel', id: message.id });
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
        // Replies are taken even while paused: they cost nothing to handle and free the other side.
        const p = this.pending.get(m.id);
        if (p === undefined) { if (this.streams.size > 0) this.endStream(m); continue; } // else cancelled or timed out locally; the late answer is dropped.
        this.pending.delete(m.id);
        p.resolve(m);
        continue;
      }
      // Chunks, like replies, are answers; credit only lets this side send what the other has room for.
      if (m.t === 'chunk') { this.onChunk(m); continue; }
      if (m.t === 'credit') { this.handle(m); continue; }
      // ws may still deliver what it had read before the pause; it waits, in order, with the rest.
      if (this.paused || this.heldNext < this.held.length) { this.held.push(m); continue; }
      this.handle(m);
    }
  }

  private handle(m: Message): void {
    try {
      this.opts.onMessage(m, this);
    } catch (err) {
      this.opts.logger.error('message handler threw', { peer: this.name, type: m.t, error: (err as Error).message });
    }
  }

  /** Forgets a pending request (cancelled by the caller); a late reply is dropped. A started stream is cancelled here. */
  forget(id: number): boolean {
    if (this.pending.delete(id)) return true;
    const st = this.streams.get(id);
    if (st === undefined) return false;
    this.streams.delete(id);
    st.cancel(new CancelledError(`stream ${id} on ${this.name} was cancelled`));
    return true;
  }

  /** A chunk message: starts the request's stream (resolving it), or feeds the stream already started. */
  private onChunk(m: ChunkMessage): void {
    const st = this.streams.get(m.id);
    if (st !== undefined) { st.push(m.v); return; }
    const p = this.pending.get(m.id);
    if (p === undefined) return; // cancelled: what was in flight is dropped
    this.pending.delete(m.id);
    const stream = new ChunkStream(this.sourceFor(m.id), p.s === undefined ? DEFAULT_STREAM_WINDOW : windowOfWire(p.s));
    this.streams.set(m.id, stream);
    stream.push(m.v);
    p.resolve({ t: 'reply', id: m.id, ok: true, value: stream, stream });
  }

  /** The reply that ends a started stream: complete, or the generator's error rebuilt into its class. */
  private endStream(m: ReplyMessage): void {
    const st = this.streams.get(m.id);
    if (st === undefined) return;
    this.streams.delete(m.id);
    if (m.ok) st.end(); else st.fail(rebuildError(m.error));
  }

  /** How a stream's consumer talks to the producer across this connection. */
  private sourceFor(id: number): ChunkSource {
    return {
      credit: (n) => { if (this.closedError === undefined && this.streams.has(id)) this.send({ t: 'credit', id, n }); },
      cancel: () => { if (this.streams.delete(id) && this.closedError === undefined) this.send({ t: 'cancel', id }); },
    };
  }

  private fail(err: PeerGoneError): void {
    if (this.closedError !== undefined) return;
    this.closedError = err;
    if (this.livenessTimer !== undefined) clearInterval(this.livenessTimer);
    this.outbox = [];
    this.outboxBytes = 0;
    this.outboxReplyBytes = 0;
    this.held = [];
    this.heldNext = 0;
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) p.reject(err);
    const streams = [...this.streams.values()];
    this.streams.clear();
    for (const st of streams) st.fail(err);
    this.opts.onClose?.(err, this);
  }
}
