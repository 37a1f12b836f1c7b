/** The router's metrics hooks: onAnswered once per routed request when it settles, onQueued for a wait for a slot. */
import { describe, expect, it } from 'vitest';
import { ReplicaUnavailableError, UserCodeError, markNotRun } from '@shoal/core';
import { entry, flush, rig } from './fakes.ts';

const KEY = 'app/model';

function recording() {
  const answered: Array<[string, number, boolean]> = [];
  const queued: Array<[string, number]> = [];
  return {
    answered, queued,
    opts: { onAnswered: (key: string, ms: number, ok: boolean) => { answered.push([key, ms, ok]); }, onQueued: (key: string, ms: number) => { queued.push([key, ms]); } },
  };
}

describe('Router metrics hooks', () => {
  it('reports each answered request once, with the time from routing to its answer and whether it failed', async () => {
    const r = recording();
    const { router, transport, clock, routes } = rig(r.opts);
    routes({ [KEY]: entry([['r1', 'w1']]) });
    const ok = router.call(KEY, 'predict', [1]);
    const failed = router.call(KEY, 'predict', [2]).catch((e: unknown) => e);
    await flush();
    clock.advance(7);
    transport.sent[0]!.answer('yes');
    await flush();
    clock.advance(5);
    transport.sent[1]!.answerError(new UserCodeError('model broke'));
    expect(await ok).toBe('yes');
    expect(await failed).toBeInstanceOf(UserCodeError);
    expect(r.answered).toEqual([[KEY, 7, true], [KEY, 12, false]]);
    // Neither waited for a slot.
    expect(r.queued).toEqual([]);
  });

  it('counts a request retried on another replica once, over both attempts', async () => {
    const r = recording();
    const { router, transport, clock, routes } = rig(r.opts);
    routes({ [KEY]: entry([['r1', 'w1'], ['r2', 'w2']]) });
    const p = router.call(KEY, 'predict', [1]);
    await flush();
    clock.advance(3);
    // Refused before it ran (a draining replica): the router sends it to the other replica.
    transport.sent[0]!.die(markNotRun(new ReplicaUnavailableError('replica is DRAINING')));
    await flush();
    expect(transport.sent).toHaveLength(2);
    expect(r.answered).toEqual([]);
    clock.advance(4);
    transport.sent[1]!.answer('second');
    expect(await p).toBe('second');
    expect(r.answered).toEqual([[KEY, 7, true]]);
  });

  it('reports the wait of a request that found every replica full, once it got a slot', async () => {
    const r = recording();
    const { router, transport, clock, routes } = rig(r.opts);
    routes({ [KEY]: entry([['r1', 'w1']], { maxOngoingRequests: 1 }) });
    const first = router.call(KEY, 'predict', [1]);
    const second = router.call(KEY, 'predict', [2]);
    await flush();
    expect(transport.sent).toHaveLength(1);
    clock.advance(10);
    transport.sent[0]!.answer('a');
    await flush();
    expect(r.queued).toEqual([[KEY, 10]]);
    clock.advance(2);
    transport.sent[1]!.answer('b');
    expect(await Promise.all([first, second])).toEqual(['a', 'b']);
    expect(r.answered).toEqual([[KEY, 10, true], [KEY, 12, true]]);
  });
});
