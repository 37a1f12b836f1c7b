export * from './messages.ts';
export { encodeFrame, decodeFrame, encodeMessage } from './codec.ts';
export { Peer, type PeerOptions, type NewRequest } from './peer.ts';
export { connectPeer, acceptHello, sendWelcome, tokenMatches, DEFAULT_MAX_HELLO_BYTES, type ConnectOptions, type AcceptOptions } from './connect.ts';
export { attachWebSocketEndpoint, WebSocketEndpoint, DEFAULT_MAX_PENDING_CONNECTIONS, DEFAULT_PENDING_TIMEOUT_MS, type WebSocketEndpointOptions } from './accept.ts';
export { resolveToken, readTokenFile, type TokenSources } from './token.ts';
export { isListenError, listenErrorFor, portError, probePort } from './listen-error.ts';
