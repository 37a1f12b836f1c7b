/**
 * Cascade escalation rate and audits with fake handles: the generated deployment class is built exactly as a
 * worker builds it (constructed with two handles), here with FakeHandles and a FakeClock.
 */
import { describe, expect, it } from 'vitest';
import { cascade, type CascadeAnswer, type CascadeInstance, type CascadeOptions } from '../../src/cascade/index.ts';
import { FakeClock, flushMicrotasks } from '../../src/clock.ts';
import { contextStorage, type RequestContext } from '../../src/context.ts';
import { deployment } from '../../src/deployment.ts';
import { CancelledError, UserCodeError } from '../../src/errors.ts';
import { HttpError, ShoalRequest } from '../../src/http.ts';
import { seededRandom } from '../../src/random.ts';
import { FakeHandle, Model, type Answer } from './fakes.ts';

type Instance = CascadeInstance<'predict', [number], Answer>;
type Extra = Partial<Omit<CascadeOptions<[number], Answer, Answer, boolean>, 'small' | 'large' | 'method'>>;

const smallModel = deployment(Model, { name: 'small' });
const largeModel = deployment(Model, { name: 'large' });
/** The small model's confidence is its input: x below the threshold escalates. */
const confident = (x: number): Answer => ({ label: x >= 0.5 ? 'pos' : 'neg', score: x });
/** The large model always says 'pos' with certainty, so agreement is "the small model said pos". */
const alwaysPos = (): Answer => ({ label: 'pos', score: 1 });

function build(extra: Extra = {}, small = new FakeHandle(confident), large = new FakeHandle(alwaysPos)): { inst: Instance; small: FakeHandle; large: FakeHandle } {
  const app = cascade<Model, Model, 'predict', boolean>({
    name: 'classify', small: smallModel.bind(), large: largeModel.bind(), method: 'predict',
    confidence: (a) => a.score, threshold: 0.8, agree: (a, b) => a.label === b.label, ...extra,
  });
  const Factory = app.deployment.factory as unknown as new (s: FakeHandle, l: FakeHandle) => Instance;
  return { inst: new Factory(small, large), small, large };
}

function context(overrides: Partial<RequestContext> = {}): RequestContext {
  return { signal: new AbortController().signal, deadline: undefined, app: 'a', deployment: 'classify', replicaId: 'r1', ...overrides };
}

describe('cascade escalation rate', () => {
  it('escalates exactly the calls whose confidence is under the threshold (equal to it keeps the small answer)', async () => {
    const { inst, small, large } = build();
    const inputs = [0.79, 0.8, 0.81, 0.5, 1, 0, 0.7999, 0.95, 0.3, 0.85];
    const answers = [];
    for (const x of inputs) answers.push(await inst.predict(x));
    expect(small.calls.map((c) => c.x)).toEqual(inputs);
    const below = inputs.filter((x) => x < 0.8);
    expect(large.calls.map((c) => c.x)).toEqual(below);
    for (const [i, x] of inputs.entries()) expect(answers[i]).toEqual(x < 0.8 ? alwaysPos() : confident(x));
    const s = inst.cascadeStats();
    expect(s.requests).toBe(10);
    expect(s.escalations).toEqual({ total: 5, lowConfidence: 5, smallError: 0, invalidConfidence: 0 });
    expect(s.escalationRate).toBe(0.5);
    expect(s.answered).toEqual({ small: 5, large: 5 });
    expect(s.errors).toEqual({ small: 0, large: 0 });
    // Both answers are at hand on an escalation: the low-confidence small answers that said 'pos' agreed anyway.
    expect(s.escalationAgreements).toEqual({ compared: 5, agreements: below.filter((x) => x >= 0.5).length });
  });

  it('takes a threshold in a range the user states', async () => {
    const { inst, large } = build({ confidence: (a) => a.score * 100, confidenceRange: [0, 100], threshold: 60 });
    for (const x of [0.59, 0.6, 0.61]) await inst.predict(x);
    expect(large.calls.map((c) => c.x)).toEqual([0.59]);
  });

  it('escalates an invalid confidence (out of range, not a number, or thrown) and keeps what it was', async () => {
    let next: unknown = 2;
    const { inst, large } = build({ confidence: () => { if (next === 'throw') throw new Error('no score'); return next as number; } });
    await inst.predict(0.9);
    expect(inst.cascadeStats().lastInvalidConfidence).toBe('confidence() returned 2, outside [0, 1]');
    next = Number.NaN;
    await inst.predict(0.9);
    next = 'throw';
    await inst.predict(0.9);
    expect(inst.cascadeStats().lastInvalidConfidence).toBe('confidence() threw: no score');
    expect(large.calls).toHaveLength(3);
    expect(inst.cascadeStats().escalations).toEqual({ total: 3, lowConfidence: 0, smallError: 0, invalidConfidence: 3 });
  });

  it('returns an envelope saying which model answered, with the confidence and the escalation reason', async () => {
    const { inst } = build({ envelope: true });
    const kept = await inst.predict(0.9) as unknown as CascadeAnswer<Answer>;
    expect(kept).toEqual({ answer: confident(0.9), model: 'small', confidence: 0.9, escalation: null });
    const escalated = await inst.predict(0.2) as unknown as CascadeAnswer<Answer>;
    expect(escalated).toEqual({ answer: alwaysPos(), model: 'large', confidence: 0.2, escalation: 'low_confidence' });
  });
});

describe('cascade: errors of the small model', () => {
  const failing = (): FakeHandle => new FakeHandle(() => { throw new UserCodeError('small is down'); });

  it("escalates a failed small call by default ('escalate')", async () => {
    const { inst, large } = build({}, failing());
    expect(await inst.predict(0.9)).toEqual(alwaysPos());
    expect(large.calls).toHaveLength(1);
    const s = inst.cascadeStats();
    expect(s.escalations.smallError).toBe(1);
    expect(s.answered.large).toBe(1);
    expect(s.latency.small.count).toBe(1);
  });

  it("fails with the small model's error under onSmallError 'fail', and never asks the large one", async () => {
    const { inst, large } = build({ onSmallError: 'fail' }, failing());
    await expect(inst.predict(0.9)).rejects.toThrow('small is down');
    expect(large.calls).toHaveLength(0);
    expect(inst.cascadeStats()).toMatchObject({ requests: 1, errors: { small: 1, large: 0 }, escalations: { total: 0 } });
  });

  it('fails at once, without escalating, when the caller\'s request was cancelled or is past its deadline', async () => {
    const cancelled = new AbortController();
    cancelled.abort(new CancelledError('client left'));
    const { inst, large } = build({}, failing());
    await expect(contextStorage.run(context({ signal: cancelled.signal }), () => inst.predict(0.9))).rejects.toThrow('small is down');
    await expect(contextStorage.run(context({ deadline: Date.now() - 1 }), () => inst.predict(0.9))).rejects.toThrow('small is down');
    expect(large.calls).toHaveLength(0);
    expect(inst.cascadeStats().errors.small).toBe(2);
  });

  it('gives the small model smallTimeoutMs, and a failed large call fails the request', async () => {
    const large = new FakeHandle(() => { throw new UserCodeError('large is down'); });
    const { inst, small } = build({ smallTimeoutMs: 50 }, undefined, large);
    await inst.predict(0.9);
    expect(small.calls[0]!.opts).toEqual({ timeoutMs: 50 });
    await expect(inst.predict(0.1)).rejects.toThrow('large is down');
    expect(inst.cascadeStats()).toMatchObject({ requests: 2, answered: { small: 1, large: 0 }, errors: { small: 0, large: 1 }, escalations: { lowConfidence: 1 } });
  });
});

describe('cascade audits', () => {
  it('audits a share of confident answers equal to the draws of the seeded random under the rate', async () => {
    const rate = 0.25;
    const n = 2000;
    const { inst, large } = build({ auditSampleRate: rate, random: seededRandom(7), maxConcurrentAudits: n });
    for (let i = 0; i < n; i++) await inst.predict(0.9);
    await flushMicrotasks();
    await flushMicrotasks();
    const draws = seededRandom(7);
    let expected = 0;
    for (let i = 0; i < n; i++) if (draws() < rate) expected++;
    expect(large.calls).toHaveLength(expected);
    // About rate x n: within four standard deviations of the binomial.
    expect(Math.abs(expected - rate * n)).toBeLessThan(4 * Math.sqrt(n * rate * (1 - rate)));
    const s = inst.cascadeStats();
    expect(s.audits).toMatchObject({ compared: expected, agreements: expected, agreementRate: 1, lostBusy: 0, lostError: 0, inflight: 0 });
    expect(s.escalations.total).toBe(0);
  });

  it('never audits escalated answers (their large answer is the one returned) nor with rate 0', async () => {
    const { inst, large } = build({ auditSampleRate: 1 });
    await inst.predict(0.1);
    await flushMicrotasks();
    expect(large.calls).toHaveLength(1);
    const none = build({ auditSampleRate: 0 });
    await none.inst.predict(0.9);
    await flushMicrotasks();
    expect(none.large.calls).toHaveLength(0);
  });

  it('never delays the caller: the audit starts after the answer, outside the request\'s deadline and signal, at low priority', async () => {
    const never = new FakeHandle(() => new Promise<Answer>(() => {}));
    const { inst, large } = build({ auditSampleRate: 1, auditTimeoutMs: 1234 }, undefined, never);
    const caller = new AbortController();
    const answer = await contextStorage.run(context({ signal: caller.signal, deadline: Date.now() + 60_000 }), () => inst.predict(0.9));
    expect(answer).toEqual(confident(0.9));
    expect(large.calls).toHaveLength(0);
    await flushMicrotasks();
    expect(large.calls).toHaveLength(1);
    const call = large.calls[0]!;
    expect(call.ctx).toBeUndefined();
    expect(call.opts).toMatchObject({ timeoutMs: 1234, priority: -1 });
    // The caller going away later does not cancel the audit; the replica stopping does.
    caller.abort();
    expect(call.opts.signal!.aborted).toBe(false);
    expect(inst.cascadeStats().audits.inflight).toBe(1);
    (inst as unknown as { shutdown(): void }).shutdown();
    expect(call.opts.signal!.aborted).toBe(true);
  });

  it("keeps the caller's model id for the audit (a multiplexed large model serves it with the same model)", async () => {
    const { inst, large } = build({ auditSampleRate: 1 });
    await contextStorage.run(context({ modelId: 'tenant-7' }), () => inst.predict(0.9));
    await flushMicrotasks();
    expect(large.calls[0]!.opts).toMatchObject({ modelId: 'tenant-7', priority: -1 });
  });

  it('counts agreements and disagreements with agree(), and audits lost to a busy limit or a failure', async () => {
    let fail = false;
    const large = new FakeHandle(() => { if (fail) throw new Error('large failed'); return alwaysPos(); });
    const { inst } = build({ auditSampleRate: 1, threshold: 0.3 }, undefined, large);
    for (const x of [0.9, 0.4, 0.6, 0.35]) { await inst.predict(x); await flushMicrotasks(); }
    expect(inst.cascadeStats().audits).toMatchObject({ compared: 4, agreements: 2, agreementRate: 0.5 });
    fail = true;
    await inst.predict(0.9);
    await flushMicrotasks();
    expect(inst.cascadeStats().audits).toMatchObject({ compared: 4, lostError: 1 });

    const hang = new FakeHandle(() => new Promise<Answer>(() => {}));
    const busy = build({ auditSampleRate: 1, maxConcurrentAudits: 2 }, undefined, hang);
    for (let i = 0; i < 3; i++) await busy.inst.predict(0.9);
    await flushMicrotasks();
    expect(hang.calls).toHaveLength(2);
    expect(busy.inst.cascadeStats().audits).toMatchObject({ lostBusy: 1, inflight: 2, compared: 0 });
  });
});

describe('cascade latency saved', () => {
  it('counts, per small answer, the mean large latency minus the wait, and per escalation the small detour', async () => {
    const clock = new FakeClock();
    const small = new FakeHandle(async (x) => { await clock.sleep(10); return confident(x); });
    const large = new FakeHandle(async () => { await clock.sleep(100); return alwaysPos(); });
    const { inst } = build({ clock }, small, large);
    const timed = async (x: number): Promise<void> => {
      const p = inst.predict(x);
      await clock.advanceAsync(200);
      await p;
    };
    await timed(0.9);   // before any large latency is known: unestimated
    await timed(0.1);   // escalated: waited 10 ms more than the large model alone
    await timed(0.9);   // saved 100 - 10
    await timed(0.95);  // saved 100 - 10
    const s = inst.cascadeStats();
    expect(s.latencySaved).toEqual({ savedMs: 180, addedMs: 10, netMs: 170, unestimated: 1, largeMeanMs: 100 });
    expect(s.latency.small).toEqual({ count: 4, sumMs: 40, meanMs: 10 });
    expect(s.latency.large).toEqual({ count: 1, sumMs: 100, meanMs: 100 });
    expect(s.latency.endToEnd).toEqual({ count: 4, sumMs: 140, meanMs: 35 });
  });
});

describe('cascade over HTTP', () => {
  const post = (body: string, path = '/'): ShoalRequest => new ShoalRequest({ method: 'POST', path, query: '', headers: {}, body: Buffer.from(body) });

  it('passes the JSON body as the one argument and answers JSON with the model in a header', async () => {
    const { inst, small } = build();
    const kept = await inst.fetch(post('0.9'));
    expect(kept.status).toBe(200);
    expect(kept.headers).toEqual({ 'content-type': 'application/json', 'x-shoal-cascade-model': 'small', 'x-shoal-cascade-confidence': '0.9' });
    expect(JSON.parse(String(kept.body))).toEqual(confident(0.9));
    const escalated = await inst.fetch(post('0.2'));
    expect(escalated.headers).toMatchObject({ 'x-shoal-cascade-model': 'large', 'x-shoal-cascade-escalation': 'low_confidence' });
    expect(JSON.parse(String(escalated.body))).toEqual(alwaysPos());
    expect(small.calls.map((c) => c.x)).toEqual([0.9, 0.2]);
    const stats = await inst.fetch(new ShoalRequest({ method: 'GET', path: '/stats', query: '', headers: {}, body: new Uint8Array() }));
    expect(JSON.parse(String(stats.body))).toMatchObject({ requests: 2, escalationRate: 0.5 });
  });

  it('refuses what is not a POST of JSON', async () => {
    const { inst } = build();
    await expect(inst.fetch(new ShoalRequest({ method: 'GET', path: '/', query: '', headers: {}, body: new Uint8Array() }))).rejects.toMatchObject({ status: 405 });
    await expect(inst.fetch(post(''))).rejects.toMatchObject({ status: 400 });
    await expect(inst.fetch(post('{nope'))).rejects.toSatisfy((e) => e instanceof HttpError && e.status === 400);
  });
});
