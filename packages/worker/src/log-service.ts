/**
 * Answers the head's `logs` queries from this process's log ring, and keeps its follows: new matching lines go to
 * the head as `logsPush` batches (every 100 ms at most). While the connection to the head is past its high-water
 * mark a batch is not sent but dropped, and the next push says how many lines were lost.
 */
import { BadRequestError, toWireError, type LogFollower, type LogRing } from '@shoal/core';
import type { LogsFollowMessage, LogsMessage, LogsUnfollowMessage, Peer } from '@shoal/protocol';

/** What this needs of the head's connection (a Peer; tests pass fakes). */
export type LogServicePeer = Pick<Peer, 'closed' | 'congested' | 'send' | 'reply' | 'replyError'>;

/** Follows one head connection may hold at once (each is one `shoal logs --follow`). */
const MAX_FOLLOWS_PER_PEER = 64;

export class WorkerLogService {
  private readonly follows = new WeakMap<LogServicePeer, Map<number, LogFollower>>();

  /** `tag`: this worker's id, written into lines logged before it had one. */
  constructor(private readonly ring: LogRing, private readonly tag: () => string) {}

  /** The connection went away: ends every follow it held at once (a follow with no new line would wait forever). */
  closePeer(peer: LogServicePeer): void {
    const subs = this.follows.get(peer);
    if (subs === undefined) return;
    for (const f of subs.values()) f.close();
    this.follows.delete(peer);
  }

  /** Follows a connection holds now. */
  followCount(peer: LogServicePeer): number {
    return this.follows.get(peer)?.size ?? 0;
  }

  handle(m: LogsMessage | LogsFollowMessage | LogsUnfollowMessage, peer: LogServicePeer): void {
    if (m.t === 'logsUnfollow') {
      const subs = this.follows.get(peer);
      subs?.get(m.sub)?.close();
      subs?.delete(m.sub);
      return;
    }
    if (peer.closed) return;
    try {
      // Query and subscription in one turn: no line falls between them, none comes twice.
      const answer = this.ring.query(m.filter, this.tag());
      if (m.t === 'logsFollow') this.follow(m, peer);
      peer.reply(m.id, answer);
    } catch (err) {
      peer.replyError(m.id, toWireError(err));
    }
  }

  private follow(m: LogsFollowMessage, peer: LogServicePeer): void {
    let subs = this.follows.get(peer);
    if (subs === undefined) { subs = new Map(); this.follows.set(peer, subs); }
    subs.get(m.sub)?.close();
    if (subs.size >= MAX_FOLLOWS_PER_PEER) throw new BadRequestError(`too many log follows on this connection: ${subs.size} open, at most ${MAX_FOLLOWS_PER_PEER}`);
    const table = subs;
    const { sinceMs: _since, limit: _limit, ...filter } = m.filter;
    const follower = this.ring.follow({
      filter,
      tag: this.tag(),
      deliver: (lines, dropped) => {
        if (peer.closed) { follower.close(); table.delete(m.sub); return true; }
        if (peer.congested) return false;
        peer.send({ t: 'logsPush', sub: m.sub, lines, ...(dropped > 0 ? { dropped } : {}) });
        return true;
      },
    });
    subs.set(m.sub, follower);
  }
}
