import { describe, expect, it, vi } from 'vitest';
import { Packr } from 'msgpackr';
import { ProtocolError, type AppSpec } from '@shoal/core';
import { decodeFrame, encodeFrame, encodeMessage, PROTOCOL_VERSION, type Message } from '../src/index.ts';
import { joinedBytes, joinMessages } from '../src/codec.ts';

const app: AppSpec = {
  name: 'a', routePrefix: '/', ingress: 'I', modulePath: '/tmp/app.ts', exportName: 'default',
  deployments: [{
    name: 'I', kind: 'class', dependencies: [], methods: ['fetch'],
    options: {
      name: 'I', numReplicas: 1, maxOngoingRequests: 100, maxQueuedRequests: 1000, maxRequestBytes: 1024, requestTimeoutMs: 0,
      resources: { cpus: 1, gpus: 0.5, memory: 0, gpuMemory: 0, sharedBlobs: [], device: 'cuda' }, userConfig: { k: [1, 'x'] }, healthCheckPeriodMs: 10, healthCheckTimeoutMs: 20, gracefulShutdownTimeoutMs: 0, autoscaling: undefined, idempotentMethods: [],
      rollout: { maxSurge: '25%', maxUnavailable: 0, maxFailures: 3, shadow: undefined, canary: undefined, experiment: undefined },
    },
  }],
};

/** One message of every kind in the union; a new kind without a sample here fails the `satisfies` below. */
const samples = {
  hello: { t: 'hello', v: PROTOCOL_VERSION, token: 'tok', role: 'worker', name: 'host-1', pid: 42, dataAddress: 'ws://127.0.0.1:1',
    resources: { cpus: 8, memory: 2 ** 34, gpus: 1, devices: [{ index: 0, name: 'H100', kind: 'cuda', totalBytes: 2 ** 36, freeBytes: 2 ** 35, computeCapability: '9.0' }] } },
  hb: { t: 'hb', at: 1_700_000_000_123, replicas: [{ replicaId: 'r1', ongoing: 3, queued: 0 }] },
  replicaState: { t: 'replicaState', replicaId: 'r1', state: 'FAILED', error: 'boom' },
  welcome: { t: 'welcome', v: PROTOCOL_VERSION, workerId: 'w1', heartbeatMs: 500 },
  refuse: { t: 'refuse', code: 'ERR_UNAUTHORIZED', message: 'wrong cluster token' },
  start: { t: 'start', id: 1, replicaId: 'r1', app, deployment: 'I', devices: [1, 3], version: 'v2' },
  stop: { t: 'stop', id: 2, replicaId: 'r1', timeoutMs: 20_000 },
  reconfigure: { t: 'reconfigure', id: 3, replicaId: 'r1', userConfig: { nested: { list: [1, 2, null] } } },
  health: { t: 'health', id: 4, replicaId: 'r1', timeoutMs: 30_000 },
  routes: { t: 'routes', version: 7, table: { 'a/I': { maxOngoingRequests: 1, maxQueuedRequests: 2, requestTimeoutMs: 0, replicas: [{ replicaId: 'r1', workerId: 'w1', dataAddress: 'ws://x' }] } } },
  call: { t: 'call', id: 5, replicaId: 'r1', method: 'predict', args: [1, 'two', { three: 3 }, [4], null, true], deadline: 1_700_000_000_999, priority: -2 },
  http: { t: 'http', id: 6, replicaId: 'r1', req: { method: 'POST', path: '/x', query: 'a=1', headers: { 'content-type': 'application/json', 'x-multi': ['a', 'b'] }, body: Buffer.from('{"a":1}') }, deadline: 5 },
  cancel: { t: 'cancel', id: 5 },
  replyOk: { t: 'reply', id: 5, ok: true, value: { y: 42 }, q: 3 },
  replyErr: { t: 'reply', id: 6, ok: false, error: { code: 'ERR_USER_CODE', name: 'UserCodeError', message: 'bad', httpStatus: 500, details: { userName: 'TypeError' } } },
} satisfies Record<string, Message>;

describe('codec', () => {
  it.each(Object.entries(samples))('round-trips a %s message', (_kind, message) => {
    const decoded = decodeFrame(encodeMessage(message));
    expect(decoded).toEqual([message]);
  });

  it('decodes a frame of several messages into the same messages, in order', () => {
    const all = Object.values(samples) as Message[];
    expect(decodeFrame(encodeFrame(all))).toEqual(all);
    expect(decodeFrame(encodeFrame([]))).toEqual([]);
  });

  it('joins one-message frames into the bytes encodeFrame makes of them all, for each array header size', () => {
    const all = Object.values(samples) as Message[];
    // 1 part (returned as is), under 16 (fixarray), 16 and more (array 16), 65536 and more (array 32).
    for (const count of [1, 2, 15, 16, 300, 65_536]) {
      const messages = Array.from({ length: count }, (_, i) => all[i % all.length]!);
      const parts = messages.map(encodeMessage);
      const joined = joinMessages(parts);
      expect(joined.equals(encodeFrame(messages))).toBe(true);
      expect(joined.byteLength).toBe(joinedBytes(count, parts.reduce((n, p) => n + p.byteLength, 0)));
      if (count === 1) expect(joined).toBe(parts[0]);
    }
  });

  it('decodes frames made by another codec instance, as between two processes', async () => {
    vi.resetModules();
    const other = await import('../src/codec.ts');
    expect(other.decodeFrame).not.toBe(decodeFrame);
    const all = Object.values(samples) as Message[];
    // Warm each side with different shapes first, so neither can lean on state the other lacks.
    decodeFrame(encodeFrame([samples.hb, samples.cancel]));
    other.decodeFrame(other.encodeFrame([samples.call]));
    for (let i = 0; i < 3; i++) {
      expect(other.decodeFrame(encodeFrame(all))).toEqual(all);
      expect(decodeFrame(other.encodeFrame(all))).toEqual(all);
    }
  });

  it('keeps Buffers and every typed array as binary of the same type and values', () => {
    const f32View = new Float32Array(new Float32Array([9, 1.5, -2.25, 7]).buffer, 4, 2); // a view with an offset
    const args = [
      Buffer.from([1, 2, 3, 255]),
      new Uint8Array([4, 5, 6]),
      new Float32Array([1.5, -2.5, Math.fround(0.1)]),
      new Float64Array([Math.PI, -0]),
      new Int32Array([-1, 2 ** 31 - 1]),
      new Uint32Array([2 ** 32 - 1]),
      new Int16Array([-32768]),
      new Uint16Array([65535]),
      new Int8Array([-128]),
      new Uint8ClampedArray([0, 255]),
      new BigInt64Array([-(2n ** 63n)]),
      new BigUint64Array([2n ** 64n - 1n]),
      f32View,
    ];
    const [decoded] = decodeFrame(encodeMessage({ t: 'call', id: 1, replicaId: 'r', method: 'm', args })) as unknown as [{ args: unknown[] }];
    expect(decoded.args).toHaveLength(args.length);
    args.forEach((sent, i) => {
      const got = decoded.args[i] as ArrayBufferView;
      expect(got.constructor, `arg ${i}`).toBe(sent.constructor);
      expect(Array.from(got as unknown as ArrayLike<number>), `arg ${i}`).toEqual(Array.from(sent as unknown as ArrayLike<number>));
    });
    expect(Array.from(decoded.args[12] as Float32Array)).toEqual([1.5, -2.25]);
  });

  it('sends binary as raw bytes, not base64 or JSON', () => {
    const payload = Buffer.alloc(4096);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 31) & 0xff;
    const frame = encodeMessage({ t: 'call', id: 1, replicaId: 'r', method: 'm', args: [payload] });
    expect(frame.includes(payload)).toBe(true); // the bytes appear verbatim in the frame
    expect(frame.byteLength).toBeLessThan(payload.length + 64); // base64 would be ~4/3 the size
    expect(frame.includes(Buffer.from(payload.toString('base64').slice(0, 32)))).toBe(false);

    const floats = new Float32Array(1024).map((_, i) => i / 3);
    const f = encodeMessage({ t: 'call', id: 1, replicaId: 'r', method: 'm', args: [floats] });
    expect(f.includes(Buffer.from(floats.buffer))).toBe(true);
    expect(f.byteLength).toBeLessThan(floats.byteLength + 64);
  });

  describe('garbage is a ProtocolError', () => {
    const plain = new Packr({ useRecords: false });
    const cases: Array<[string, Uint8Array]> = [
      ['empty input', new Uint8Array(0)],
      ['a truncated frame', encodeFrame([samples.call]).subarray(0, 10)],
      ['a reserved msgpack byte', Uint8Array.from([0xc1])],
      ['text', Buffer.from('{"t":"call"}')],
      ['a number', plain.pack(42)],
      ['an object instead of an array', plain.pack({ t: 'call' })],
      ['an array holding a number', plain.pack([1])],
      ['an array holding null', plain.pack([null])],
      ['a message without t', plain.pack([{ id: 1 }])],
      ['a message whose t is not a string', plain.pack([{ t: 5 }])],
    ];
    it.each(cases)('%s', (_name, bytes) => {
      let thrown: unknown;
      try { decodeFrame(bytes); } catch (err) { thrown = err; }
      expect(thrown).toBeInstanceOf(ProtocolError);
      expect((thrown as ProtocolError).code).toBe('ERR_PROTOCOL');
    });

    it('survives random bytes: every outcome is messages or a ProtocolError', () => {
      let seed = 12345;
      const rnd = (): number => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed / 0x7fffffff; };
      for (let n = 0; n < 500; n++) {
        const bytes = Uint8Array.from({ length: 1 + Math.floor(rnd() * 40) }, () => Math.floor(rnd() * 256));
        try {
          const ms = decodeFrame(bytes);
          for (const m of ms) expect(typeof m.t).toBe('string');
        } catch (err) {
          expect(err).toBeInstanceOf(ProtocolError);
        }
      }
    });
  });
});
