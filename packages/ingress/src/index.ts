/**
 * @shoal/ingress: the HTTP front of a shoal process. Every worker serves one; the head serves one only when it
 * has no local workers.
 *
 * @example
 * import { Ingress } from '@shoal/ingress';
 * const ingress = new Ingress({ router, logger, isReady: () => true });
 * ingress.setApps([appSpec]);                                  // mounts each application at its route prefix
 * await ingress.listen({ port: 8000, host: '127.0.0.1' });     // or { handle } passed from a parent process
 */
export { Ingress, TIMEOUT_HEADER, PRIORITY_HEADER, type IngressOptions, type IngressMetrics, type ExtraRoute, type RequestScope, type ListenTarget } from './ingress.ts';
export { sendError, sendJson, sendResponse, readBody, type HttpAnswer } from './http-util.ts';
export { HttpMetrics, RouterMetrics, DURATION_BUCKETS } from './http-metrics.ts';
export { OipRoute, type OipRouteOptions } from './oip-route.ts';
export { framingFor, chunkedContentType, chunkedBytes, sseEvent, sseError, SSE_END, SSE_CONTENT_TYPE, NDJSON_CONTENT_TYPE, gatheredBody, type StreamFraming } from './stream-framing.ts';
export { routeStream, pipeChunks, type ChunkWriter, type StreamAnswer, type StreamTarget } from './stream-route.ts';
export { compileWebSocketOptions, type WebSocketOptions, type CompiledWebSocketOptions } from './ws-options.ts';
export { WebSocketMetrics } from './ws-metrics.ts';
export type { WebSocketObserver, WebSocketAppObserver } from './ws-session.ts';
