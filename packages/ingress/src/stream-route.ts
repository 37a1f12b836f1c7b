/**
 * Routing a request as a stream and writing its chunks to a client with backpressure: what the HTTP ingress does
 * for SSE and chunked answers, and what any other front (a WebSocket route) reuses.
 *
 *   const answer = await routeStream(router, key, { method: 'generate', args: [prompt] }, { signal, deadline });
 *   if (answer.stream === undefined) send(answer.value);                  // the method did not stream
 *   else await pipeChunks(answer.stream, { write: (cs) => ws.send(...), drained: () => ... });
 *
 * Cancel: abort the `signal` given in the route options (the client left), or call `answer.stream.cancel(err)`;
 * either ends the generator at its replica and, through that request's signal, its downstream calls.
 */
import { ChunkStream, DEFAULT_STREAM_WINDOW, type StreamWindow, type WireHttpRequest, type WireHttpResponse } from '@shoal/core';
import type { RouteOptions, Router } from '@shoal/router';

/** Where a stream's chunks go. */
export interface ChunkWriter {
  /**
   * Writes chunks taken from the stream, in order. Returns false when the client's buffer is past its mark: no
   * credit is then granted (no chunk taken) until drained() resolves, so the generator pauses.
   */
  write(chunks: readonly unknown[]): boolean;
  /**
   * Resolves once the client can take more (HTTP 'drain', a WebSocket's bufferedAmount low again), or it closed.
   * pipeChunks also stops waiting when the stream ends, so a drained() that never resolves cannot hold it.
   */
  drained(): Promise<void>;
}

/** What a streamed request answered: its stream, or the value of a method that did not stream. */
export type StreamAnswer =
  | { stream: ChunkStream; value?: undefined }
  | { stream?: undefined; value: unknown };

/** A call of a method with arguments, or an HTTP request to the deployment's fetch(). */
export type StreamTarget = { method: string; args: unknown[] } | { req: WireHttpRequest };

/**
 * Routes a request taking a streamed answer. Resolves when the answer starts: at the first chunk for a stream
 * (retries happen only before it), or with the whole value; the route options' deadline bounds the whole stream.
 */
export async function routeStream(router: Router, key: string, target: StreamTarget, opts: RouteOptions & { window?: StreamWindow } = {}): Promise<StreamAnswer> {
  const { window, ...route } = opts;
  const withStream = { ...route, stream: window ?? DEFAULT_STREAM_WINDOW };
  const answer = 'req' in target
    ? await router.http(key, target.req, withStream) as WireHttpResponse | ChunkStream
    : await router.call(key, target.method, target.args, withStream);
  return ChunkStream.is(answer) ? { stream: answer } : { value: answer };
}

/**
 * Writes a stream's chunks as they come, a batch at a time, and waits for the writer to drain when it says so.
 * Resolves when the stream completes; rejects with its error (the generator's, a deadline, a cancellation).
 */
export async function pipeChunks(stream: ChunkStream, writer: ChunkWriter): Promise<void> {
  // A writer stalled by a client that stopped reading may never drain: the stream ending (a deadline, a cancel)
  // ends the wait too, so the caller learns how it ended and can free the client's connection.
  let ended: Promise<void> | undefined;
  for (;;) {
    const batch = await stream.nextBatch();
    if (batch === undefined) return;
    let ok: boolean;
    try {
      ok = writer.write(batch);
    } catch (err) {
      // A chunk the writer cannot frame (JSON of a cycle, a BigInt): the stream fails, and its generator stops.
      stream.cancel(err as Error);
      throw err;
    }
    if (!ok) {
      ended ??= new Promise<void>((resolve) => stream.onEnd(() => resolve()));
      await Promise.race([writer.drained(), ended]);
    }
  }
}
