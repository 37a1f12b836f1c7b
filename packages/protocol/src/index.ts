export * from './messages.ts';
export { encodeFrame, decodeFrame, encodeMessage } from './codec.ts';
export { Peer, type PeerOptions, type NewRequest } from './peer.ts';
export { connectPeer, acceptHello, sendWelcome, tokenMatches, type ConnectOptions, type AcceptOptions } from './connect.ts';
