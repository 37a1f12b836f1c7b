/**
 * How a worker's router reaches replicas: in process when the replica lives in this worker, else over a
 * data connection to the hosting worker, opened on first use and shared by all calls.
 */
import { LazyAbortController, PeerGoneError, ReplicaUnavailableError, markNotRun, toWireError, type Logger } from '@shoal/core';
import { connectPeer, type NewRequest, type Peer, type ReplyMessage } from '@shoal/protocol';
import type { Dispatch, ReplicaRef, Transport } from '@shoal/router';

/**
 * Sends `message` to `replica` over the data connection `peer` resolves to. A cancel before the connection is
 * ready stops the send; after it, the request is forgotten and a cancel goes to the worker. A connection that
 * fails means the request was never sent: the error is marked not-run, so the router may try another replica.
 */
export function dispatchOverPeer(peer: Promise<Peer>, replica: ReplicaRef, message: NewRequest): Dispatch {
  let id: number | undefined;
  let peerRef: Peer | undefined;
  let cancelled = false;
  const reply = peer.then((p) => {
    if (cancelled) throw new PeerGoneError('cancelled before the connection was ready');
    peerRef = p;
    const sent = p.requestWithId(message);
    id = sent.id;
    return sent.reply;
  }, (err: unknown) => {
    // Not connected, so not sent: another replica may take it.
    throw markNotRun(new ReplicaUnavailableError(`cannot reach worker ${replica.workerId} at ${replica.dataAddress} for replica ${replica.replicaId}: ${toWireError(err).message}`));
  });
  return {
    reply,
    cancel: () => {
      cancelled = true;
      if (peerRef !== undefined && id !== undefined && !peerRef.closed) {
        peerRef.forget(id);
        peerRef.send({ t: 'cancel', id });
      }
    },
  };
}

export interface LocalDispatcher {
  /** Runs a request against a replica in this process. */
  dispatchLocal(message: NewRequest, controller: LazyAbortController): Promise<ReplyMessage>;
}

export interface WorkerTransportOptions {
  workerId: () => string;
  token: string;
  name: string;
  maxFrameBytes: number;
  logger: Logger;
  local: LocalDispatcher;
  /** Messages (other than replies) that arrive on outgoing data connections. */
  onMessage: (message: import('@shoal/protocol').Message, peer: Peer) => void;
  /** Ping period and silence timeout for data connections (the head's, from welcome); none before it is known. */
  liveness?: () => { intervalMs: number; timeoutMs: number } | undefined;
}

export class WorkerTransport implements Transport {
  private readonly peers = new Map<string, Promise<Peer>>();

  constructor(private readonly opts: WorkerTransportOptions) {}

  dispatch(replica: ReplicaRef, message: NewRequest): Dispatch {
    if (replica.workerId === this.opts.workerId()) {
      const controller = new LazyAbortController();
      return new LocalDispatch(this.opts.local.dispatchLocal(message, controller), controller);
    }
    return dispatchOverPeer(this.peer(replica.dataAddress), replica, message);
  }

  private peer(address: string): Promise<Peer> {
    let p = this.peers.get(address);
    if (p === undefined) {
      const liveness = this.opts.liveness?.();
      p = connectPeer({
        address,
        name: `worker at ${address}`,
        ...(liveness !== undefined ? { liveness } : {}),
        hello: { token: this.opts.token, role: 'peer', name: this.opts.name },
        maxFrameBytes: this.opts.maxFrameBytes,
        logger: this.opts.logger,
        onMessage: this.opts.onMessage,
        onClose: () => { if (this.peers.get(address) === p) this.peers.delete(address); },
      }).then(({ peer }) => peer);
      this.peers.set(address, p);
      p.catch((err: unknown) => {
        this.peers.delete(address);
        this.opts.logger.warn('data connection failed', { address, error: toWireError(err).message });
      });
    }
    return p;
  }

  async close(): Promise<void> {
    for (const p of this.peers.values()) p.then((peer) => peer.close(1001, 'worker stopping'), () => undefined);
    this.peers.clear();
  }
}

/** A request to a replica in this process: cancelling aborts its controller. A class, not a closure per request. */
class LocalDispatch implements Dispatch {
  constructor(readonly reply: Promise<ReplyMessage>, private readonly controller: LazyAbortController) {}
  cancel(reason: Error): void { this.controller.abort(reason); }
}
