import { describe, expect, it } from 'vitest';
import {
  BatchSizeMismatchError, CancelledError, ContinuousBatcher, DeadlineExceededError, FakeClock, IllegalStateError,
  InvalidOptionError, QueueFullError, compileContinuousOptions, continuousBatch, continuousMethodsOf, itemError,
  type BatchObserver, type ContinuousOptions, type StepOutput, type Stepper,
} from '../src/index.ts';
import { contextStorage } from '../src/context.ts';
import { optionErrorOf } from './option-error.ts';
import { rejection } from './rejection.ts';

interface Input { id: string; len: number }
interface State { id: string; left: number; n: number }

/** One turn of the event loop (a step boundary is one). */
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * A step-wise fake whose steps wait for the test: each step records which sequences it holds, then blocks until
 * release(). Each sequence emits `${id}${n}` per step and is done after `len` steps.
 */
class GatedModel {
  readonly steps: string[][] = [];
  failNext: unknown;
  outputsFor: ((states: State[]) => Array<StepOutput<string> | ReturnType<typeof itemError>>) | undefined;
  private gates: Array<() => void> = [];

  readonly stepper: Stepper<Input, State, string> = {
    start: (x) => {
      if (x.len < 1) throw new RangeError(`len must be >= 1, got ${x.len}`);
      return { id: x.id, left: x.len, n: 0 };
    },
    step: async (states) => {
      this.steps.push(states.map((s) => s.id));
      await new Promise<void>((resolve) => this.gates.push(resolve));
      if (this.failNext !== undefined) {
        const err = this.failNext;
        this.failNext = undefined;
        throw err;
      }
      if (this.outputsFor !== undefined) return this.outputsFor(states);
      return states.map((s) => ({ emit: `${s.id}${s.n++}`, done: --s.left === 0 }));
    },
  };

  /** Waits until step `k` (1-based) has started. */
  async untilStep(k: number): Promise<void> {
    for (let i = 0; this.steps.length < k; i++) {
      if (i > 10_000) throw new Error(`step ${k} never started; steps so far: ${JSON.stringify(this.steps)}`);
      await turn();
    }
  }

  /** Lets the running step return, then gives the batcher the turns it needs to start the next one, if any. */
  async release(): Promise<void> {
    const gate = this.gates.shift();
    if (gate === undefined) throw new Error(`no step is running; steps so far: ${JSON.stringify(this.steps)}`);
    const n = this.steps.length;
    gate();
    for (let i = 0; i < 5 && this.steps.length === n; i++) await turn();
  }

  /** Releases steps until none starts any more. */
  async drain(): Promise<void> {
    for (let i = 0; i < 1000; i++) {
      if (this.gates.length > 0) { await this.release(); continue; }
      await turn();
      if (this.gates.length === 0) return;
    }
    throw new Error('the batcher never went idle');
  }
}

/** Reads every chunk; the promise is marked handled, since tests await its rejection only after driving the steps. */
function collect<C>(it: AsyncIterable<C>): Promise<C[]> {
  const read = (async () => {
    const out: C[] = [];
    for await (const c of it) out.push(c);
    return out;
  })();
  read.catch(() => undefined);
  return read;
}

function setup(options: ContinuousOptions = {}, clock?: FakeClock) {
  const model = new GatedModel();
  const batcher = new ContinuousBatcher(model.stepper, options, { name: 'lm.generate', ...(clock ? { clock } : {}) });
  return { model, batcher };
}

describe('continuous batching: joins and leaves', () => {
  it('admits new sequences at the next step boundary and drops finished ones', async () => {
    const { model, batcher } = setup();
    const a = collect(batcher.generate({ id: 'A', len: 3 }));
    await model.untilStep(1);
    // B and C arrive while step 1 runs: they join at the boundary after it.
    const b = collect(batcher.generate({ id: 'B', len: 2 }));
    const c = collect(batcher.generate({ id: 'C', len: 1 }));
    expect(batcher.stats()).toMatchObject({ queued: 2, running: 1, runningBatches: 1 });
    await model.drain();
    expect(model.steps).toEqual([['A'], ['A', 'B', 'C'], ['A', 'B']]);
    expect(await a).toEqual(['A0', 'A1', 'A2']);
    expect(await b).toEqual(['B0', 'B1']);
    expect(await c).toEqual(['C0']);
    const s = batcher.stats();
    expect(s).toMatchObject({ queued: 0, running: 0, runningBatches: 0, inFlight: 0, steps: 3, batchSizeCounts: { 1: 1, 2: 1, 3: 1 } });
    expect(s.totals).toMatchObject({ submitted: 3, succeeded: 3, failed: 0, cancelled: 0 });
  });

  it('sequences arriving in the same turn share the first step', async () => {
    const { model, batcher } = setup();
    const outs = ['A', 'B', 'C'].map((id) => collect(batcher.generate({ id, len: 2 })));
    await model.drain();
    expect(model.steps).toEqual([['A', 'B', 'C'], ['A', 'B', 'C']]);
    expect(await Promise.all(outs)).toEqual([['A0', 'A1'], ['B0', 'B1'], ['C0', 'C1']]);
  });

  it('holds at most maxBatchSize per step; the rest wait in arrival order and join as slots free', async () => {
    const { model, batcher } = setup({ maxBatchSize: 2 });
    const a = collect(batcher.generate({ id: 'A', len: 3 }));
    const b = collect(batcher.generate({ id: 'B', len: 1 }));
    const c = collect(batcher.generate({ id: 'C', len: 2 }));
    const d = collect(batcher.generate({ id: 'D', len: 1 }));
    await model.untilStep(1);
    expect(batcher.stats()).toMatchObject({ queued: 2, running: 2 });
    await model.drain();
    expect(model.steps).toEqual([['A', 'B'], ['A', 'C'], ['A', 'C'], ['D']]);
    expect(await Promise.all([a, b, c, d])).toEqual([['A0', 'A1', 'A2'], ['B0'], ['C0', 'C1'], ['D0']]);
    expect(Math.max(...model.steps.map((s) => s.length))).toBe(2);
  });

  it('rejects a call past maxQueued with QueueFullError naming the bound', async () => {
    const { model, batcher } = setup({ maxBatchSize: 1, maxQueued: 1 });
    const a = collect(batcher.generate({ id: 'A', len: 2 }));
    await model.untilStep(1);
    const b = collect(batcher.generate({ id: 'B', len: 1 }));
    const err = await rejection(collect(batcher.generate({ id: 'C', len: 1 })));
    expect(err).toBeInstanceOf(QueueFullError);
    expect((err as Error).message).toContain('queued=1, maxQueued=1 for "lm.generate"');
    await model.drain();
    expect(await a).toEqual(['A0', 'A1']);
    expect(await b).toEqual(['B0']);
    expect(batcher.stats().totals).toMatchObject({ submitted: 2, rejectedQueueFull: 1 });
  });

  it('a lower maxBatchSize at run time lets running sequences finish and holds new ones back', async () => {
    const { model, batcher } = setup({ maxBatchSize: 4 });
    const outs = ['A', 'B', 'C'].map((id) => collect(batcher.generate({ id, len: 2 })));
    await model.untilStep(1);
    batcher.reconfigure({ maxBatchSize: 1 });
    outs.push(collect(batcher.generate({ id: 'D', len: 1 })));
    await model.drain();
    expect(model.steps).toEqual([['A', 'B', 'C'], ['A', 'B', 'C'], ['D']]);
    await Promise.all(outs);
    expect(batcher.config.maxBatchSize).toBe(1);
  });
});

describe('continuous batching: cancellation', () => {
  it('a consumer that stops iterating leaves at the next boundary; the others go on', async () => {
    const { model, batcher } = setup();
    const it = batcher.generate({ id: 'A', len: 5 });
    const b = collect(batcher.generate({ id: 'B', len: 4 }));
    await model.untilStep(1);
    await model.release();
    expect((await it.next()).value).toBe('A0');
    // Step 2 is running with A in it; A's return() takes effect at the boundary after it.
    await it.return!();
    await model.drain();
    expect(model.steps).toEqual([['A', 'B'], ['A', 'B'], ['B'], ['B']]);
    expect(await b).toEqual(['B0', 'B1', 'B2', 'B3']);
    expect(await it.next()).toEqual({ value: undefined, done: true });
    expect(batcher.stats().totals).toMatchObject({ succeeded: 1, cancelled: 1 });
    expect(batcher.stats().inFlight).toBe(0);
  });

  it('return() ends a read that is waiting at once, while the step it is in still runs', async () => {
    const { model, batcher } = setup();
    const it = batcher.generate({ id: 'A', len: 5 });
    const read = it.next();
    await model.untilStep(1);
    await it.return!();
    expect(await read).toEqual({ value: undefined, done: true });
    expect(batcher.stats().running).toBe(1);
    await model.drain();
    expect(model.steps).toEqual([['A']]);
    expect(batcher.stats()).toMatchObject({ running: 0, inFlight: 0 });
  });

  it('breaking out of for-await is a return()', async () => {
    const { model, batcher } = setup();
    const got: string[] = [];
    const done = (async () => {
      for await (const c of batcher.generate({ id: 'A', len: 10 })) {
        got.push(c);
        if (got.length === 2) break;
      }
    })();
    await model.drain();
    await done;
    expect(got).toEqual(['A0', 'A1']);
    expect(model.steps.length).toBeLessThanOrEqual(3);
    expect(batcher.stats().totals.cancelled).toBe(1);
  });

  it('an aborted signal fails the sequence with CancelledError at the next boundary; a waiting one leaves at once', async () => {
    const { model, batcher } = setup({ maxBatchSize: 2 });
    const ac = new AbortController();
    const waitingAc = new AbortController();
    const a = collect(batcher.generate({ id: 'A', len: 3 }, { signal: ac.signal }));
    const b = collect(batcher.generate({ id: 'B', len: 3 }));
    const w = collect(batcher.generate({ id: 'W', len: 1 }, { signal: waitingAc.signal }));
    await model.untilStep(1);
    waitingAc.abort();
    expect(await rejection(w)).toBeInstanceOf(CancelledError);
    ac.abort();
    await model.drain();
    expect(await rejection(a)).toBeInstanceOf(CancelledError);
    expect(await b).toEqual(['B0', 'B1', 'B2']);
    expect(model.steps).toEqual([['A', 'B'], ['B'], ['B']]);
    expect(batcher.stats().totals).toMatchObject({ cancelled: 2, succeeded: 1 });
  });

  it('an already aborted signal fails the first read and never joins', async () => {
    const { model, batcher } = setup();
    const err = await rejection(collect(batcher.generate({ id: 'A', len: 1 }, { signal: AbortSignal.abort() })));
    expect(err).toBeInstanceOf(CancelledError);
    await model.drain();
    expect(model.steps).toEqual([]);
  });

  it('a passed deadline fails the sequence with DeadlineExceededError at the next boundary', async () => {
    const clock = new FakeClock();
    const { model, batcher } = setup({}, clock);
    const a = collect(batcher.generate({ id: 'A', len: 5 }, { deadlineMs: clock.wallNow() + 100 }));
    const b = collect(batcher.generate({ id: 'B', len: 3 }));
    await model.untilStep(1);
    await model.release();
    clock.advance(100);
    await model.drain();
    const err = await rejection(a);
    expect(err).toBeInstanceOf(DeadlineExceededError);
    expect(await b).toEqual(['B0', 'B1', 'B2']);
    expect(model.steps).toEqual([['A', 'B'], ['A', 'B'], ['B']]);
    expect(batcher.stats().totals.deadlineExceeded).toBe(1);
    expect(await rejection(collect(batcher.generate({ id: 'C', len: 1 }, { deadlineMs: clock.wallNow() })))).toBeInstanceOf(DeadlineExceededError);
  });

  it('the request context gives the signal and deadline to a continuous method', async () => {
    const model = new GatedModel();
    const method = continuousBatch(model.stepper, {}, 'lm.generate');
    const ac = new AbortController();
    const it = contextStorage.run(
      { signal: ac.signal, deadline: undefined, app: 'app', deployment: 'lm', replicaId: 'r1', devices: [] } as never,
      () => method({ id: 'A', len: 4 }),
    );
    const first = it.next();
    first.catch(() => undefined);
    await model.untilStep(1);
    ac.abort();
    await model.drain();
    expect(await rejection(first)).toBeInstanceOf(CancelledError);
    expect(model.steps).toEqual([['A']]);
  });
});

describe('continuous batching: errors', () => {
  it('a step that throws fails the sequences of that step; the loop goes on for new ones', async () => {
    const { model, batcher } = setup();
    const a = collect(batcher.generate({ id: 'A', len: 3 }));
    const b = collect(batcher.generate({ id: 'B', len: 3 }));
    await model.untilStep(1);
    await model.release();
    const boom = new Error('kernel failed');
    model.failNext = boom;
    const c = collect(batcher.generate({ id: 'C', len: 2 }));
    await model.release();
    await model.drain();
    expect(await rejection(a)).toBe(boom);
    expect(await rejection(b)).toBe(boom);
    expect(await c).toEqual(['C0', 'C1']);
    expect(model.steps).toEqual([['A', 'B'], ['A', 'B'], ['C'], ['C']]);
    expect(batcher.stats().totals).toMatchObject({ failed: 2, succeeded: 1 });
  });

  it('a consumer gets the chunks it was sent before the error', async () => {
    const { model, batcher } = setup();
    const it = batcher.generate({ id: 'A', len: 3 });
    await model.untilStep(1);
    await model.release();
    model.failNext = new Error('late');
    await model.drain();
    expect(await it.next()).toEqual({ value: 'A0', done: false });
    expect(((await rejection(it.next())) as Error).message).toBe('late');
    expect(await it.next()).toEqual({ value: undefined, done: true });
  });

  it('an ItemError fails one sequence only', async () => {
    const { model, batcher } = setup();
    model.outputsFor = (states) => states.map((s) => (s.id === 'B' ? itemError(new RangeError('bad B')) : { emit: `${s.id}${s.n++}`, done: --s.left === 0 }));
    const a = collect(batcher.generate({ id: 'A', len: 2 }));
    const b = collect(batcher.generate({ id: 'B', len: 2 }));
    await model.drain();
    expect(await a).toEqual(['A0', 'A1']);
    expect(((await rejection(b)) as Error).message).toBe('bad B');
    expect(model.steps).toEqual([['A', 'B'], ['A']]);
  });

  it('a step returning the wrong number of outputs fails its sequences with BatchSizeMismatchError', async () => {
    const { model, batcher } = setup();
    model.outputsFor = () => [{ emit: 'x', done: false }];
    const a = collect(batcher.generate({ id: 'A', len: 2 }));
    const b = collect(batcher.generate({ id: 'B', len: 2 }));
    await model.drain();
    const err = await rejection(a);
    expect(err).toBeInstanceOf(BatchSizeMismatchError);
    expect((err as Error).message).toContain('returned 1 outputs for 2 sequences');
    expect(await rejection(b)).toBe(err);
  });

  it('a start that throws fails only that call, before it joins', async () => {
    const { model, batcher } = setup();
    const bad = collect(batcher.generate({ id: 'X', len: 0 }));
    const a = collect(batcher.generate({ id: 'A', len: 1 }));
    await model.drain();
    expect(await rejection(bad)).toBeInstanceOf(RangeError);
    expect(await a).toEqual(['A0']);
    expect(model.steps).toEqual([['A']]);
  });

  it('an async start joins once its state resolves', async () => {
    const steps: string[][] = [];
    const batcher = new ContinuousBatcher<string, { id: string }, string>({
      start: async (id) => { await turn(); return { id }; },
      step: (states) => { steps.push(states.map((s) => s.id)); return states.map((s) => ({ emit: s.id, done: true })); },
    });
    expect(await collect(batcher.generate('A'))).toEqual(['A']);
    expect(steps).toEqual([['A']]);
  });
});

describe('continuous batching: slow consumers', () => {
  it('parks a sequence whose buffer is full out of the batch and resumes it when its consumer reads', async () => {
    const { model, batcher } = setup({ maxBufferedChunks: 2 });
    const slow = batcher.generate({ id: 'S', len: 6 });
    const fast = collect(batcher.generate({ id: 'F', len: 6 }));
    await model.untilStep(1);
    for (let i = 0; i < 4; i++) await model.release();
    // S's buffer reached 2 after step 2, so it sat out steps 3 and 4 while F went on.
    expect(model.steps).toEqual([['S', 'F'], ['S', 'F'], ['F'], ['F'], ['F']]);
    expect(batcher.stats()).toMatchObject({ parked: 1, running: 1 });
    expect(await slow.next()).toEqual({ value: 'S0', done: false });
    await model.drain();
    expect(await fast).toEqual(['F0', 'F1', 'F2', 'F3', 'F4', 'F5']);
    expect(model.steps[5]).toEqual(['F', 'S']);
    const rest: string[] = [];
    for (let r = await slow.next(); r.done !== true; r = await slow.next()) {
      rest.push(r.value);
      await model.drain();
    }
    expect(rest).toEqual(['S1', 'S2', 'S3', 'S4', 'S5']);
    expect(batcher.stats()).toMatchObject({ parked: 0, inFlight: 0 });
    expect(Math.max(...model.steps.map((s) => s.length))).toBe(2);
  });

  it('a reader that waits on every chunk is never parked, even with a buffer of one', async () => {
    const { model, batcher } = setup({ maxBufferedChunks: 1 });
    const a = collect(batcher.generate({ id: 'A', len: 5 }));
    const b = collect(batcher.generate({ id: 'B', len: 5 }));
    let maxParked = 0;
    for (let k = 1; k <= 5; k++) {
      await model.untilStep(k);
      maxParked = Math.max(maxParked, batcher.stats().parked);
      await model.release();
    }
    await model.drain();
    expect(await a).toEqual(['A0', 'A1', 'A2', 'A3', 'A4']);
    expect(await b).toEqual(['B0', 'B1', 'B2', 'B3', 'B4']);
    expect(model.steps).toEqual(Array.from({ length: 5 }, () => ['A', 'B']));
    expect(maxParked).toBe(0);
  });

  it('concurrent reads are answered in order', async () => {
    const { model, batcher } = setup();
    const it = batcher.generate({ id: 'A', len: 2 });
    const reads = [it.next(), it.next(), it.next()];
    await model.drain();
    expect(await Promise.all(reads)).toEqual([{ value: 'A0', done: false }, { value: 'A1', done: false }, { value: undefined, done: true }]);
  });

  it('a parked sequence whose consumer stops or aborts is dropped at once', async () => {
    const { model, batcher } = setup({ maxBufferedChunks: 1 });
    const ac = new AbortController();
    const a = batcher.generate({ id: 'A', len: 5 }, { signal: ac.signal });
    const b = batcher.generate({ id: 'B', len: 5 });
    await model.untilStep(1);
    // One chunk each fills both buffers: both sit out from the boundary after step 1.
    await model.release();
    expect(batcher.stats().parked).toBe(2);
    ac.abort();
    await b.return!();
    expect(batcher.stats()).toMatchObject({ parked: 0, inFlight: 0 });
    expect(batcher.stats().totals.cancelled).toBe(2);
    await model.drain();
    expect(model.steps).toEqual([['A', 'B']]);
    // A's consumer still reads what was sent before it was cancelled, then the error.
    expect(await a.next()).toEqual({ value: 'A0', done: false });
    expect(await rejection(a.next())).toBeInstanceOf(CancelledError);
  });
});

describe('continuous batching: close', () => {
  it('fails waiting sequences at once and running ones at the next boundary, then takes no new ones', async () => {
    const { model, batcher } = setup({ maxBatchSize: 1 });
    const a = collect(batcher.generate({ id: 'A', len: 5 }));
    const b = collect(batcher.generate({ id: 'B', len: 1 }));
    await model.untilStep(1);
    const reason = new Error('replica stopping');
    const closed = batcher.close(reason);
    expect(batcher.state).toBe('closing');
    expect(await rejection(b)).toBe(reason);
    await model.release();
    await closed;
    expect(batcher.state).toBe('closed');
    expect(await rejection(a)).toBe(reason);
    expect(model.steps).toEqual([['A']]);
    const late = await rejection(collect(batcher.generate({ id: 'C', len: 1 })));
    expect(late).toBeInstanceOf(IllegalStateError);
    expect((late as Error).message).toContain('is closed');
    expect(batcher.stats().inFlight).toBe(0);
  });

  it('a sequence whose async start resolves after close fails with the close reason', async () => {
    let resolveStart: (s: { id: string }) => void = () => undefined;
    const batcher = new ContinuousBatcher<string, { id: string }, string>({
      start: () => new Promise((resolve) => { resolveStart = resolve; }),
      step: (states) => states.map(() => ({ emit: 'x', done: true })),
    });
    const a = collect(batcher.generate('A'));
    expect(batcher.stats().queued).toBe(1);
    await batcher.close('shutting down');
    resolveStart({ id: 'A' });
    const err = await rejection(a);
    expect(err).toBeInstanceOf(CancelledError);
    expect((err as Error).message).toContain('shutting down');
    expect(batcher.stats()).toMatchObject({ queued: 0, inFlight: 0, steps: 0 });
  });

  it('an idle batcher closes at once', async () => {
    const { batcher } = setup();
    await batcher.close();
    expect(batcher.state).toBe('closed');
  });
});

describe('continuous batching: options and observer', () => {
  const optionError = (input: unknown): InvalidOptionError =>
    optionErrorOf((x: ContinuousOptions) => compileContinuousOptions(x, 'userConfig.batch.generate'), input);

  it('fills defaults and names the option path of a bad value', () => {
    expect(compileContinuousOptions(undefined)).toEqual({ maxBatchSize: 16, maxQueued: 1024, maxBufferedChunks: 64 });
    expect(optionError({ maxBatchSize: 0 }).message).toBe('invalid option userConfig.batch.generate.maxBatchSize: must be >= 1 (got 0)');
    expect(optionError({ maxQueued: 1.5 }).message).toContain('userConfig.batch.generate.maxQueued: must be an integer');
    expect(optionError({ maxBufferedChunks: '4' }).message).toContain('userConfig.batch.generate.maxBufferedChunks: must be an integer');
    expect(optionError({ maxWaitMs: 5 }).message).toContain('userConfig.batch.generate.maxWaitMs: unknown option (known: maxBatchSize, maxQueued, maxBufferedChunks)');
    expect(optionError([]).message).toContain('userConfig.batch.generate: must be an object');
    expect(() => continuousBatch({ start: (x: number) => x } as never)).toThrow(/continuousBatch.step: must be a function/);
    expect(() => new ContinuousBatcher({ start: (x: number) => x, step: () => [] }).reconfigure({ maxBatchSize: -1 })).toThrow(/continuous.maxBatchSize: must be >= 1/);
  });

  it('reports each step to the observer as a batch of its size, and each join with its wait', async () => {
    const clock = new FakeClock();
    const { model, batcher } = setup({}, clock);
    const seen: string[] = [];
    const observer: BatchObserver = {
      released: (size, reason) => seen.push(`released ${size} ${reason}`),
      waited: (ms) => seen.push(`waited ${ms}`),
      ran: (ms, size) => seen.push(`ran ${ms} ${size}`),
    };
    batcher.setObserver(observer);
    const a = collect(batcher.generate({ id: 'A', len: 2 }));
    await model.untilStep(1);
    const b = collect(batcher.generate({ id: 'B', len: 1 }));
    clock.advance(7);
    await model.drain();
    await Promise.all([a, b]);
    expect(seen).toEqual(['waited 0', 'released 1 step', 'ran 7 1', 'waited 7', 'released 2 step', 'ran 0 2']);
  });

  it('continuousMethodsOf finds continuous fields of an instance', async () => {
    class Lm {
      generate = continuousBatch<number, { left: number }, number>({
        start: (n) => ({ left: n }),
        step: (states) => states.map((s) => ({ emit: s.left, done: --s.left === 0 })),
      }, { maxBatchSize: 4 });
      other = (x: number) => x;
    }
    const lm = new Lm();
    expect([...continuousMethodsOf(lm).keys()]).toEqual(['generate']);
    expect(await collect(lm.generate(3))).toEqual([3, 2, 1]);
    expect(lm.generate.stats().totals.succeeded).toBe(1);
    lm.generate.reconfigure({ maxBatchSize: 8 });
    expect(lm.generate.batcher.config.maxBatchSize).toBe(8);
    await lm.generate.close();
  });
});
