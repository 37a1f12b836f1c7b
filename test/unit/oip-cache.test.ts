/**
 * OIP infer through a router whose model deployment has a response cache: a repeated infer is answered from the
 * cache, and `x-shoal-cache: bypass` (or Cache-Control: no-cache) on the HTTP request reaches infer's router call.
 */
import { describe, expect, it } from 'vitest';
import { FakeClock, LazyAbortController, compileCache, compileDeploymentOptions, silentLogger, type AppSpec, type WireHttpRequest } from '@shoal/core';
import { OipRoute } from '@shoal/ingress';
import type { NewRequest, ReplyMessage } from '@shoal/protocol';
import { Router, type Dispatch, type ReplicaRef, type Transport } from '@shoal/router';

/** Answers at once: metadata, and infer (y = 2x); counts the infer calls. */
class ModelTransport implements Transport {
  infers = 0;
  dispatch(_replica: ReplicaRef, m: NewRequest): Dispatch {
    let value: unknown;
    if (m.t === 'call' && m.method === 'metadata') {
      value = { inputs: [{ name: 'x', type: 'float32', shape: ['n'] }], outputs: [{ name: 'y', type: 'float32', shape: ['n'] }] };
    } else if (m.t === 'call' && m.method === 'infer') {
      this.infers++;
      const x = (m.args[0] as Record<string, { dims: number[]; data: Float32Array }>).x!;
      value = { y: { type: 'float32', dims: x.dims, data: x.data.map((v) => v * 2) } };
    }
    return { reply: Promise.resolve({ t: 'reply', id: 0, ok: true, value } satisfies ReplyMessage), cancel: () => undefined };
  }
}

const app: AppSpec = {
  name: 'app', routePrefix: null, ingress: 'M', modulePath: '/nowhere.ts', exportName: 'default',
  deployments: [{ name: 'M', kind: 'class', options: compileDeploymentOptions({ cache: {} }, 'M'), dependencies: [], methods: ['infer', 'metadata'], oip: { model: 'm', version: '1', platform: 'test' } }],
};

function infer(x: number[], headers: Record<string, string> = {}): WireHttpRequest {
  return { method: 'POST', path: '/v2/models/m/infer', query: '', headers: { 'content-type': 'application/json', ...headers }, body: Buffer.from(JSON.stringify({ inputs: [{ name: 'x', shape: [x.length], datatype: 'FP32', data: x }] })) };
}

describe('OIP infer and the response cache', () => {
  it('a repeated infer is a hit; the bypass headers compute it again', async () => {
    const transport = new ModelTransport();
    const router = new Router({ transport, clock: new FakeClock(), logger: silentLogger });
    router.updateRoutes({ 'app/M': { maxOngoingRequests: 10, maxQueuedRequests: 10, requestTimeoutMs: 0, replicas: [{ replicaId: 'r1', workerId: 'w1', dataAddress: 'ws://w1', version: 'v1' }], cache: { ...compileCache({}, 'cache'), version: 'v1', config: 'c' } } }, 1);
    const oip = new OipRoute({ router, logger: silentLogger, token: 'token' });
    oip.setApps([app]);
    const scope = () => ({ deadline: undefined, priority: undefined, signal: new LazyAbortController(), requestId: 'r', trace: { traceId: '0'.repeat(32), spanId: '0'.repeat(16), sampled: false } });
    const answer = async (req: WireHttpRequest): Promise<unknown> => {
      const out = await oip.serve(req, scope());
      const text = Buffer.concat(out.body instanceof Uint8Array ? [out.body] : [...out.body]).toString('utf8');
      expect(out.status, text).toBe(200);
      return JSON.parse(text);
    };
    const first = await answer(infer([1, 2]));
    expect(first).toMatchObject({ outputs: [{ name: 'y', data: [2, 4] }] });
    expect(await answer(infer([1, 2]))).toEqual(first);
    expect(transport.infers).toBe(1);
    await answer(infer([1, 2], { 'x-shoal-cache': 'bypass' }));
    await answer(infer([1, 2], { 'cache-control': 'no-cache' }));
    expect(transport.infers).toBe(3);
    await answer(infer([1, 3]));
    expect(transport.infers).toBe(4);
    router.close();
  });
});
