/**
 * JetStreamSource against a real nats-server (Debian's, JetStream on, storage in a temp folder) on a free port,
 * started by this file and stopped by its pid. Without nats-server it is skipped with a logged reason, unless
 * SHOAL_REQUIRE_NATS=1 (CI sets it).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect, headers, type JetStreamManager, type NatsConnection, type StoredMsg } from 'nats';
import { BadRequestError, compileConsume, env, silentLogger, type CompiledNatsConsume, type Logger } from '@shoal/core';
import { Consumer, JetStreamSource, SourceConfigError, SourceGoneError, type MessageResult } from '../src/index.ts';
import { available, startNatsServer, type TestServer } from './servers.ts';

const REQUIRE = env.requireNats();
const missing = !available('nats-server');
if (missing && !REQUIRE) process.stderr.write('jetstream-source.test.ts: skipped: no nats-server on PATH (Debian: apt-get install nats-server; SHOAL_REQUIRE_NATS=1 makes this a failure)\n');

const enc = new TextEncoder();
const dec = new TextDecoder();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe.skipIf(missing && !REQUIRE)('JetStreamSource', () => {
  let server: TestServer;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  const open: Array<JetStreamSource | Consumer> = [];
  let n = 0;
  let o: CompiledNatsConsume;

  beforeAll(async () => {
    if (missing) throw new Error('SHOAL_REQUIRE_NATS=1 but nats-server is not on PATH (Debian: apt-get install nats-server)');
    server = await startNatsServer();
    nc = await connect({ servers: server.url });
    jsm = await nc.jetstreamManager();
  });
  afterAll(async () => {
    await nc?.close();
    await server?.stop();
  });
  afterEach(async () => {
    for (const s of open.splice(0)) await (s instanceof Consumer ? s.stop(1000) : s.close());
  });

  /** A fresh input stream IN<n> (subject in<n>) and output stream OUT<n> (out<n>, and out<n>.dead for dead letters). */
  const setup = async (extra: Record<string, unknown> = {}): Promise<CompiledNatsConsume> => {
    n++;
    await jsm.streams.add({ name: `IN${n}`, subjects: [`in${n}`] });
    await jsm.streams.add({ name: `OUT${n}`, subjects: [`out${n}`, `out${n}.>`] });
    const [s] = compileConsume({ nats: { servers: server.url, stream: `IN${n}`, output: `out${n}`, ackWaitMs: 300, ...extra } }, 'd', 'consume');
    return (s as { nats: CompiledNatsConsume }).nats;
  };
  const source = async (name: string, _concurrency = 4, logger: Logger = silentLogger): Promise<JetStreamSource> => {
    const s = new JetStreamSource({ options: o, consumer: name, logger });
    open.push(s);
    await s.start();
    return s;
  };
  const publish = async (count: number, body: (i: number) => string = (i) => JSON.stringify({ i }), msgID?: (i: number) => string): Promise<void> => {
    const js = nc.jetstream();
    for (let i = 0; i < count; i++) await js.publish(`in${n}`, enc.encode(body(i)), msgID === undefined ? {} : { msgID: msgID(i) });
  };
  /** Every message of a stream whose subject is `subject`. */
  const stored = async (stream: string, subject: string): Promise<StoredMsg[]> => {
    const info = await jsm.streams.info(stream);
    const out: StoredMsg[] = [];
    for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
      const m = await jsm.streams.getMessage(stream, { seq }).catch(() => undefined);
      if (m !== undefined && m.subject === subject) out.push(m);
    }
    return out;
  };

  it('creates the durable consumer once for every worker, and pulls with delivery count 1 and the stream sequence as key', async () => {
    o = await setup();
    const a = await source('a');
    await source('b');
    expect((await jsm.consumers.list(`IN${n}`).next()).map((c) => c.name)).toEqual([o.durable]);
    await publish(3);
    const got: string[] = [];
    while (got.length < 3) for (const m of await a.pull(10)) { got.push(`${dec.decode(m.payload)} ${m.deliveryCount} ${m.key}`); await a.answer(m, enc.encode('1')); }
    expect(got).toEqual([`{"i":0} 1 IN${n}:1`, `{"i":1} 1 IN${n}:2`, `{"i":2} 1 IN${n}:3`]);
  });

  it('writes one answer when the same message is delivered twice (ack_wait passed on a slow consumer)', async () => {
    o = await setup();
    const slow = await source('slow');
    await publish(1);
    const [first] = await slow.pull(1);
    const fast = await source('fast');
    await sleep(400); // past ack_wait: redelivered
    let again = (await fast.pull(1))[0];
    again ??= (await fast.pull(1))[0];
    expect(again?.id).toBe(first!.id);
    // 2 or more: the slow consumer's client may have taken redeliveries into its prefetch first.
    expect(again!.deliveryCount).toBeGreaterThanOrEqual(2);
    const results = await Promise.all([fast.answer(again!, enc.encode('"b"')), slow.answer(first!, enc.encode('"a"'))]);
    expect(results.sort()).toEqual(['answered', 'duplicate']);
    const out = await stored(`OUT${n}`, `out${n}`);
    expect(out).toHaveLength(1);
    expect(out[0]!.header.get('Nats-Msg-Id')).toBe(first!.key);
    expect(await slow.lag()).toBe(0);
  });

  it('keys a message by its producer Nats-Msg-Id', async () => {
    o = await setup();
    const s = await source('a');
    const h = headers();
    await nc.jetstream().publish(`in${n}`, enc.encode('1'), { msgID: 'order-7', headers: h });
    const [m] = await s.pull(1);
    expect(m?.key).toBe('order-7');
  });

  it('redelivers the messages a consumer held and did not settle when it closed, and a consumer answers each once', async () => {
    o = await setup();
    const dead = await source('dead', 8);
    await publish(20);
    const held = await dead.pull(8);
    expect(held.length).toBeGreaterThan(0);
    await dead.close();
    const results: MessageResult[] = [];
    const c = new Consumer({
      source: await source('alive'), concurrency: 4, maxDeliveries: 5, encoding: 'json', logger: silentLogger,
      call: async (arg) => ({ doubled: (arg as { i: number }).i * 2 }),
      observer: { settled: (r) => results.push(r) },
    });
    open.push(c);
    c.start();
    await waitFor(async () => (await stored(`OUT${n}`, `out${n}`)).length === 20);
    const out = await stored(`OUT${n}`, `out${n}`);
    expect(new Set(out.map((m) => m.header.get('Nats-Msg-Id'))).size).toBe(20);
    expect(out.map((m) => (JSON.parse(dec.decode(m.data)) as { doubled: number }).doubled).sort((x, y) => x - y)).toEqual([...Array(20).keys()].map((i) => i * 2));
    await waitFor(async () => (await jsm.consumers.info(`IN${n}`, o.durable)).num_ack_pending === 0);
  });

  it('dead-letters a message whose call keeps failing after maxDeliveries, and a 4xx or a bad payload at once', async () => {
    o = await setup({ maxDeliveries: 3 });
    await publish(1, () => '{"fail":500}', () => 'boom');
    await publish(1, () => '{"fail":400}', () => 'bad');
    await publish(1, () => '{nope', () => 'notjson');
    const calls = new Map<string, number>();
    const c = new Consumer({
      source: await source('a'), concurrency: 2, maxDeliveries: 3, encoding: 'json', logger: silentLogger,
      call: async (arg) => {
        const fail = (arg as { fail: number }).fail;
        calls.set(String(fail), (calls.get(String(fail)) ?? 0) + 1);
        if (fail === 400) throw new BadRequestError('no such item');
        throw new Error('model crashed');
      },
    });
    open.push(c);
    c.start();
    await waitFor(async () => (await stored(`OUT${n}`, `out${n}.dead`)).length === 3, 20_000);
    const dead = Object.fromEntries((await stored(`OUT${n}`, `out${n}.dead`)).map((m) => [m.header.get('Nats-Msg-Id'), m]));
    expect(dead.boom!.header.get('Shoal-Error-Code')).toBe('ERR_USER_CODE');
    expect(dead.boom!.header.get('Shoal-Deliveries')).toBe('3');
    expect(dead.boom!.header.get('Shoal-Error')).toContain('model crashed');
    expect(dec.decode(dead.boom!.data)).toBe('{"fail":500}');
    expect(dead.bad!.header.get('Shoal-Error-Code')).toBe('ERR_BAD_REQUEST');
    expect(dead.bad!.header.get('Shoal-Deliveries')).toBe('1');
    expect(dead.notjson!.header.get('Shoal-Error-Code')).toBe('ERR_BAD_REQUEST');
    expect(Object.fromEntries(calls)).toEqual({ 500: 3, 400: 1 });
    expect(await stored(`OUT${n}`, `out${n}`)).toHaveLength(0);
    await waitFor(async () => (await jsm.consumers.info(`IN${n}`, o.durable)).num_ack_pending === 0);
  });

  it('reports lag: num_pending plus num_ack_pending', async () => {
    o = await setup();
    const s = await source('a', 4);
    await publish(10);
    expect(await s.lag()).toBe(10);
    const got = await s.pull(4);
    expect(got.length).toBeGreaterThan(0);
    expect(await s.lag()).toBe(10);
    for (const m of got) await s.answer(m, enc.encode('1'));
    expect(await s.lag()).toBe(10 - got.length);
  });

  it('keeps a slow call\'s message from redelivery: +WPI every ackWaitMs/3, so it is called once', async () => {
    o = await setup();
    let calls = 0;
    const c = new Consumer({
      source: await source('a'), concurrency: 2, maxDeliveries: 5, encoding: 'json', logger: silentLogger,
      // Five times ackWaitMs (300): without keepAlive the server redelivers it and it is called again.
      call: async () => { calls++; await sleep(1500); return 'done'; },
    });
    open.push(c);
    c.start();
    await publish(1);
    await waitFor(async () => (await stored(`OUT${n}`, `out${n}`)).length === 1);
    expect(calls).toBe(1);
    expect((await jsm.consumers.info(`IN${n}`, o.durable)).num_redelivered).toBe(0);
  });

  it('has no more than concurrency messages delivered to it at once (fetch sized to the free slots)', async () => {
    o = await setup({ ackWaitMs: 5000 });
    let running = 0;
    let unblock!: () => void;
    const gate = new Promise<void>((r) => { unblock = r; });
    const c = new Consumer({
      source: await source('a'), concurrency: 2, maxDeliveries: 5, encoding: 'json', logger: silentLogger,
      call: async (x) => { running++; await gate; return x; },
    });
    open.push(c);
    c.start();
    await publish(10);
    await waitFor(async () => running === 2);
    // Past a fetch's expiry, so a further request would have been made by now.
    await sleep(1500);
    const info = await jsm.consumers.info(`IN${n}`, o.durable);
    expect(info.num_ack_pending).toBe(2);
    expect(info.num_pending).toBe(8);
    unblock();
    await waitFor(async () => (await stored(`OUT${n}`, `out${n}`)).length === 10);
  });

  it('recovers when its durable consumer is deleted under it: created again, and new messages answered', async () => {
    o = await setup();
    const c = new Consumer({ source: await source('a'), concurrency: 2, maxDeliveries: 5, encoding: 'json', logger: silentLogger, call: async (x) => x });
    open.push(c);
    c.start();
    await publish(1);
    await waitFor(async () => (await stored(`OUT${n}`, `out${n}`)).length === 1);
    await jsm.consumers.delete(`IN${n}`, o.durable);
    await publish(1, () => '"after"', () => 'k-after');
    await waitFor(async () => (await stored(`OUT${n}`, `out${n}`)).some((m) => m.header.get('Nats-Msg-Id') === 'k-after'), 20_000);
    expect(await stored(`OUT${n}`, `out${n}.dead`)).toHaveLength(0);
  });

  it('classifies a pull on a deleted durable as SourceGoneError', async () => {
    o = await setup();
    const s = await source('a');
    await jsm.consumers.delete(`IN${n}`, o.durable);
    await expect(s.pull(1)).rejects.toBeInstanceOf(SourceGoneError);
  });

  it('fails start() naming the option and subject when no stream captures output or deadLetter, or the input stream is missing', async () => {
    n++;
    await jsm.streams.add({ name: `IN${n}`, subjects: [`in${n}`] });
    await jsm.streams.add({ name: `OUT${n}`, subjects: [`out${n}`] });
    const compile = (extra: Record<string, unknown>): CompiledNatsConsume =>
      (compileConsume({ nats: { servers: server.url, stream: `IN${n}`, output: `out${n}`, ...extra } }, 'd', 'consume')[0] as { nats: CompiledNatsConsume }).nats;
    const startWith = async (opts: CompiledNatsConsume): Promise<unknown> => {
      const s = new JetStreamSource({ options: opts, consumer: 'a', logger: silentLogger, path: 'app/d consume.nats' });
      open.push(s);
      return await s.start().then(() => undefined, (err: unknown) => err);
    };
    const noOutput = await startWith(compile({ output: `nowhere${n}` }));
    expect(noOutput).toBeInstanceOf(SourceConfigError);
    expect((noOutput as Error).message).toContain(`app/d consume.nats.output: no JetStream stream captures the subject "nowhere${n}"`);
    // out<n>.dead, the default deadLetter, is not captured by OUT<n> here.
    const noDead = await startWith(compile({}));
    expect((noDead as Error).message).toContain(`app/d consume.nats.deadLetter: no JetStream stream captures the subject "out${n}.dead"`);
    const noInput = await startWith(compile({ stream: `MISSING${n}` }));
    expect(noInput).toBeInstanceOf(SourceConfigError);
    expect((noInput as Error).message).toContain(`app/d consume.nats.stream: JetStream has no stream "MISSING${n}"`);
  });

  it('warns once when the output stream\'s duplicate_window is shorter than ackWaitMs x (maxDeliveries + 1) + timeoutMs', async () => {
    n++;
    await jsm.streams.add({ name: `IN${n}`, subjects: [`in${n}`] });
    await jsm.streams.add({ name: `OUT${n}`, subjects: [`out${n}`, `out${n}.>`], duplicate_window: 2_000_000_000 });
    o = (compileConsume({ nats: { servers: server.url, stream: `IN${n}`, output: `out${n}`, ackWaitMs: 1000, maxDeliveries: 4, timeoutMs: 3000 } }, 'd', 'consume')[0] as { nats: CompiledNatsConsume }).nats;
    const warnings: Array<[string, Record<string, unknown> | undefined]> = [];
    const logger: Logger = { ...silentLogger, warn: (msg, fields) => { warnings.push([msg, fields]); }, child: () => logger };
    const s = await source('a', 1, logger);
    await s.start();
    expect(warnings).toHaveLength(1);
    expect(warnings[0]![0]).toContain('duplicate_window');
    expect(warnings[0]![1]).toMatchObject({ stream: `OUT${n}`, duplicateWindowMs: 2000, neededMs: 8000 });
  });
});

async function waitFor(cond: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('timed out');
    await sleep(50);
  }
}
