import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CancelledError, InvalidOptionError } from '@shoal/core';
import { checkTypeFixture } from '../../../test/type-fixture.mjs';
import { createHandle } from '../src/index.ts';
import { entry, errorOf, flush, rig, track } from './fakes.ts';

class Model {
  predict(x: number): number { return x * 2; }
  async embed(s: string): Promise<number[]> { return [s.length]; }
}

const KEY = 'app/Model';

/** Handles make deadlines on the router's clock, so every deadline here is fake wall time. */
function handleRig(opts: { requestTimeoutMs?: number; inheritedDeadline?: number; inheritedSignal?: AbortSignal } = {}) {
  const r = rig();
  r.routes({ [KEY]: entry([['r1', 'w1']], { requestTimeoutMs: opts.requestTimeoutMs ?? 0 }) });
  const handle = createHandle<Model>({
    router: r.router, key: KEY, methods: ['embed', 'predict'],
    inheritedDeadline: () => opts.inheritedDeadline, inheritedSignal: () => opts.inheritedSignal,
  });
  return { ...r, handle };
}

describe('createHandle', () => {
  it('turns handle.method(...args) into a router call and returns the value', async () => {
    const { handle, transport } = handleRig();
    const p = handle.predict(21);
    await flush();
    expect(transport.sent[0]!.message).toMatchObject({ t: 'call', replicaId: 'r1', method: 'predict', args: [21] });
    expect(transport.sent[0]!.message).not.toHaveProperty('deadline', expect.any(Number));
    transport.sent[0]!.answer(42);
    expect(await p).toBe(42);
  });

  it('forwards a name outside the prototype methods (batched fields) to the replica, which decides', async () => {
    const { handle, transport } = handleRig();
    const p = (handle as unknown as Record<string, (x: number) => Promise<unknown>>).classify!(3);
    await flush();
    expect(transport.sent[0]!.message).toMatchObject({ t: 'call', method: 'classify', args: [3] });
    transport.sent[0]!.answer('ok');
    expect(await p).toBe('ok');
  });

  it('is not a thenable, so it can be returned from async code', async () => {
    const { handle } = handleRig();
    const same = await Promise.resolve(handle);
    expect(same).toBe(handle);
  });

  it('withOptions applies a timeout as an absolute deadline', async () => {
    const { handle, transport, clock } = handleRig();
    void handle.withOptions({ timeoutMs: 5000, priority: 2 }).predict(1);
    await flush();
    const m = transport.sent[0]!.message as { deadline: number; priority: number };
    expect(m.priority).toBe(2);
    expect(m.deadline).toBe(clock.wallNow() + 5000);
  });

  it('falls back to the deployment\'s requestTimeoutMs, and takes the earlier of its own and the inherited deadline', async () => {
    const a = handleRig({ requestTimeoutMs: 60_000 });
    void a.handle.predict(1);
    await flush();
    expect((a.transport.sent[0]!.message as { deadline: number }).deadline).toBe(a.clock.wallNow() + 60_000);

    // Every rig's fake wall clock starts at the same epoch, so this deadline means the same to b.
    const inherited = a.clock.wallNow() + 1000;
    const b = handleRig({ inheritedDeadline: inherited, requestTimeoutMs: 60_000 });
    void b.handle.withOptions({ timeoutMs: 60_000 }).predict(1);
    void b.handle.predict(2);
    await flush();
    expect(b.transport.sent.map((s) => (s.message as { deadline: number }).deadline)).toEqual([inherited, inherited]);
  });

  it.each([0, -1, Number.NaN, Infinity])('rejects timeoutMs=%s with InvalidOptionError', async (timeoutMs) => {
    const { handle, transport } = handleRig();
    const err = await handle.withOptions({ timeoutMs }).predict(1).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidOptionError);
    expect((err as Error).message).toContain('timeoutMs');
    expect(transport.sent).toHaveLength(0);
  });

  it('cancels a call when either its own signal or the inherited one aborts', async () => {
    const inheritedAc = new AbortController();
    const { handle, transport } = handleRig({ inheritedSignal: inheritedAc.signal });
    const own = new AbortController();
    const t1 = track(handle.withOptions({ signal: own.signal }).predict(1));
    const t2 = track(handle.predict(2));
    await flush();
    own.abort();
    await flush();
    expect(errorOf(t1)).toBeInstanceOf(CancelledError);
    expect(t2.outcome).toBeUndefined();
    inheritedAc.abort();
    await flush();
    expect(errorOf(t2)).toBeInstanceOf(CancelledError);
    expect(transport.sent.map((s) => s.cancels)).toEqual([1, 1]);
  });

  describe('has the types of the deployment\'s methods, with results wrapped in a promise (fixtures/handle-types.ts)', () => {
    // Type-checked here, so a wrong type fails vitest and not only tsc: no error as written, and each refused use
    // an error of the kind its @ts-expect-error names once the directive is disabled.
    const here = import.meta.dirname;
    const result = checkTypeFixture(resolve(here, 'fixtures/handle-types.ts'), resolve(here, 'tsconfig.json'));
    it('compiles as written', () => {
      expect(result.errors).toEqual([]);
    });
    it('refuses what it must, each with the error its directive names', () => {
      expect(result.expectations.map((e) => [e.text, e.got])).toEqual(result.expectations.map((e) => [e.text, [e.code]]));
      expect(result.expectations.map((e) => e.code)).toEqual([2345, 2322, 2339, 2561]);
      expect(result.stray).toEqual([]);
    });
  });
});
