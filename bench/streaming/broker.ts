/**
 * bench/streaming, broker section: broker ingress under a worker kill, for a Redis stream and for a NATS JetStream
 * stream. For each broker: its own server (redis-server / nats-server -js, a free port, a temp folder; killed by
 * its pid after), a cluster (a head in this process, two local workers), the deployment of broker-app.ts consuming
 * the stream with WORK_MS of awaited work per message, MESSAGES messages published at once (each with its
 * idempotency key `job-<i>`), and one worker SIGKILLed once a quarter of them are answered. Then a bounded wait for
 * every answer, and what the output holds:
 *
 *   - in: messages published (and found in the input stream);
 *   - answered: entries in the output; distinct: distinct idempotency keys among them; lost = in - distinct;
 *     duplicated = answered - distinct; wrong: answers that are not their message's (key and result disagree);
 *   - dead_lettered: entries of the dead-letter stream;
 *   - answers/s before the kill (answers up to the kill, over the time since the first answer) and after it
 *     (answers after the kill, over the time until the last one), from the brokers' own timestamps of the answers
 *     (a Redis entry id's milliseconds, a JetStream message's time), on this machine's clock as the kill's; and
 *     first_delivery_answers_per_s_after: the same after the kill for the messages that were not redelivered
 *     (what the remaining workers kept answering while the redeliveries waited);
 *   - redelivered: messages settled on a later delivery after the kill. Redis: the entries pending for the killed
 *     worker's consumer right after the kill (claimed by another once idle for claimIdleMs), and those seen pending
 *     with a delivery count above 1 (polled every 20 ms: the entry of a failed call, say one that went to the
 *     killed worker's replica, claimed again after claimIdleMs; one answered between two looks is missed).
 *     JetStream: the messages acknowledged with a delivery count above 1, seen by a subscription of this process
 *     on the consumer's ack subjects ($JS.ACK.<stream>.<durable>.<delivered>.<seq>...): the killed worker's (after
 *     ackWaitMs), and those whose call went to the killed worker's replica (released with a nak of 250 ms);
 *   - redelivered_already_answered: those whose answer was in the output before the kill (the worker died between
 *     writing the answer and acknowledging the message), so the later delivery's answer was not written again;
 *   - kill_to_first/last_redelivered_ms: from the kill to the first and the last of their settles (JetStream: the
 *     acknowledgement seen; Redis: the answer's entry, written with the acknowledgement in one script);
 *   - kill_to_all_answered_ms: from the kill until the last answer.
 *
 * Goals: "<broker>: messages lost under a worker kill" and "... duplicated ...", both 0.
 */
import { resolve } from 'node:path';
import { silentLogger } from '@shoal/core';
import { Head } from '@shoal/head';
import { loadAppSpec, localWorkerCommand } from '@shoal/cli';
import {
  Redis, available, connectNats, startNatsServer, startRedisServer, type JetStreamManager, type NatsConnection,
} from '../../packages/broker/test/servers.ts';
import { round, type Goal, type Row } from '../lib.ts';

const APP = resolve(import.meta.dirname, 'broker-app.ts');
const MESSAGES = 2000;
/** The kill comes once this share of the messages is answered. */
const KILL_AT = 0.25;
/** How long after the kill every answer may take before what is missing is reported. */
const WAIT_MS = 90_000;

/** One answer in the output: its idempotency key, its broker's timestamp (ms), its input message's id, its result. */
interface Answer { key: string; t: number; source: string; result: unknown }

/** What the section needs of one broker. */
interface Driver {
  name: string;
  exportName: string;
  /** Whether both workers' consumers are pulling. */
  consuming(): Promise<boolean>;
  publish(n: number): Promise<void>;
  /** Messages found in the input stream. */
  published(): Promise<number>;
  answeredCount(): Promise<number>;
  /** The worker to kill among the live ones (Redis: the one holding the most messages), or undefined for not yet. */
  victim(alive: number[]): Promise<number | undefined>;
  /** Right after the kill of `pid`. */
  killed(pid: number): Promise<void>;
  /** Nothing left to deliver or to acknowledge. */
  settled(): Promise<boolean>;
  /** Called every few ms while the answers are awaited after the kill. */
  watch(): Promise<void>;
  answers(): Promise<Answer[]>;
  deadLettered(): Promise<number>;
  /**
   * The messages settled on a later delivery after the kill: their input ids (Answer.source), each with the time it
   * was settled on that delivery where the broker tells (else its answer's time in the output is taken).
   */
  redelivered(killAt: number): Map<string, number | undefined>;
  close(): Promise<void>;
}

const fieldsOf = (flat: unknown[]): Record<string, string> => {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[String(flat[i])] = String(flat[i + 1]);
  return out;
};
const pidOf = (consumer: string): number => Number(consumer.split('-').pop());

async function redisDriver(): Promise<Driver> {
  const server = await startRedisServer();
  const redis = new Redis(server.url);
  process.env.SHOAL_BENCH_BROKER_REDIS = server.url;
  const group = 'shoal:bench_redis';
  const consumers = async (): Promise<Array<Record<string, string>>> => {
    try { return (await redis.xinfo('CONSUMERS', 'bench:jobs', group) as unknown[][]).map(fieldsOf); } catch { return []; }
  };
  let held = new Set<string>();
  return {
    name: 'redis',
    exportName: 'redisBenchApp',
    consuming: async () => (await consumers()).length >= 2,
    async publish(n) {
      for (let from = 0; from < n; from += 500) {
        const p = redis.pipeline();
        for (let i = from; i < Math.min(n, from + 500); i++) p.xadd('bench:jobs', '*', 'id', `job-${i}`, 'payload', JSON.stringify({ i }));
        await p.exec();
      }
    },
    published: () => redis.xlen('bench:jobs'),
    answeredCount: () => redis.xlen('bench:answers'),
    async victim(alive) {
      const holders = (await consumers()).filter((c) => Number(c.pending) > 0 && alive.includes(pidOf(c.name!))).sort((a, b) => Number(b.pending) - Number(a.pending));
      return holders[0] === undefined ? undefined : pidOf(holders[0].name!);
    },
    async killed(pid) {
      const name = (await consumers()).find((c) => pidOf(c.name!) === pid)?.name;
      if (name === undefined) throw new Error(`bench/streaming broker: no consumer of worker ${pid} in group ${group}`);
      const pending = await redis.xpending('bench:jobs', group, '-', '+', 100_000, name) as Array<[string, string, number, number]>;
      held = new Set(pending.map((p) => p[0]));
    },
    settled: async () => Number((await redis.xpending('bench:jobs', group) as [number])[0]) === 0,
    // Entries delivered again (claimed after a failed call, say one that went to the killed worker's replica)
    // while they wait for their answer. One answered between two looks is not seen: a lower bound on those.
    async watch() {
      const pending = await redis.xpending('bench:jobs', group, '-', '+', 100_000) as Array<[string, string, number, number]>;
      for (const p of pending) if (Number(p[3]) > 1) held.add(p[0]);
    },
    async answers() {
      return (await redis.xrange('bench:answers', '-', '+')).map(([id, f]) => {
        const e = fieldsOf(f);
        return { key: e.id!, t: Number(id.split('-')[0]), source: e.entry!, result: JSON.parse(e.result!) as unknown };
      });
    },
    deadLettered: () => redis.xlen('bench:jobs:dead'),
    redelivered: () => new Map([...held].map((id) => [id, undefined])),
    async close() {
      delete process.env.SHOAL_BENCH_BROKER_REDIS;
      await redis.quit().catch(() => undefined);
      await server.stop();
    },
  };
}

async function natsDriver(): Promise<Driver> {
  const server = await startNatsServer();
  let nc: NatsConnection | undefined;
  try {
    nc = await connectNats({ servers: server.url });
    const jsm: JetStreamManager = await nc.jetstreamManager();
    await jsm.streams.add({ name: 'BENCHJOBS', subjects: ['bench.jobs'] });
    // Answers and dead letters (bench.answers.dead), with JetStream's default duplicate window (2 minutes).
    await jsm.streams.add({ name: 'BENCHANSWERS', subjects: ['bench.answers', 'bench.answers.>'] });
    process.env.SHOAL_BENCH_BROKER_NATS = server.url;
    const durable = 'shoal_bench_nats';
    // Acknowledgements of a later delivery, as the consumers send them: $JS.ACK.<stream>.<durable>.<delivered>.<stream seq>...
    // (nats-server 2.10+ may add a domain and an account hash after ACK).
    const acks: Array<{ t: number; seq: string }> = [];
    const sub = nc.subscribe(`$JS.ACK.>`, {
      callback: (err, m) => {
        if (err !== null) return;
        const data = new TextDecoder().decode(m.data);
        if (!data.startsWith('+ACK')) return;
        const tok = m.subject.split('.');
        const at = tok[2] === 'BENCHJOBS' ? 2 : tok[4] === 'BENCHJOBS' ? 4 : -1;
        if (at < 0 || tok[at + 1] !== durable) return;
        if (Number(tok[at + 2]) > 1) acks.push({ t: Date.now(), seq: tok[at + 3]! });
      },
    });
    const stored = async (subject: string): Promise<Array<{ subject: string; seq: number; key: string; t: number; source: string; data: Uint8Array }>> => {
      const { state } = await jsm.streams.info('BENCHANSWERS');
      const seqs: number[] = [];
      if (state.messages > 0) for (let s = state.first_seq; s <= state.last_seq; s++) seqs.push(s);
      const out = [];
      for (let from = 0; from < seqs.length; from += 200) {
        const got = await Promise.all(seqs.slice(from, from + 200).map((seq) => jsm.streams.getMessage('BENCHANSWERS', { seq }).catch(() => undefined)));
        for (const m of got) {
          if (m === undefined || m.subject !== subject) continue;
          out.push({ subject: m.subject, seq: m.seq, key: m.header.get('Nats-Msg-Id'), t: m.time.getTime(), source: m.header.get('Shoal-Source'), data: m.data });
        }
      }
      return out;
    };
    const conn = nc;
    return {
      name: 'nats',
      exportName: 'natsBenchApp',
      // Each worker's client keeps a pull request waiting (one may briefly hold two while it renews one).
      consuming: async () => ((await jsm.consumers.info('BENCHJOBS', durable).catch(() => undefined))?.num_waiting ?? 0) >= 2,
      async publish(n) {
        const js = conn.jetstream();
        const enc = new TextEncoder();
        for (let from = 0; from < n; from += 200) {
          await Promise.all(Array.from({ length: Math.min(n, from + 200) - from }, (_, k) => js.publish('bench.jobs', enc.encode(JSON.stringify({ i: from + k })), { msgID: `job-${from + k}` })));
        }
      },
      published: async () => (await jsm.streams.info('BENCHJOBS')).state.messages,
      answeredCount: async () => (await jsm.streams.info('BENCHANSWERS')).state.messages,
      async victim(alive) {
        // Any worker: both hold messages while the stream is being answered (a pull consumer's deliveries name no client).
        return (await jsm.consumers.info('BENCHJOBS', durable)).num_ack_pending > 0 ? alive[0] : undefined;
      },
      async killed() { /* the ack subscription tells the redeliveries */ },
      async watch() { /* likewise */ },
      async settled() {
        const info = await jsm.consumers.info('BENCHJOBS', durable);
        return info.num_pending === 0 && info.num_ack_pending === 0;
      },
      async answers() {
        const dec = new TextDecoder();
        return (await stored('bench.answers')).map((m) => ({ key: m.key, t: m.t, source: m.source, result: JSON.parse(dec.decode(m.data)) as unknown }));
      },
      deadLettered: async () => (await stored('bench.answers.dead')).length,
      // The answers' Shoal-Source header is <stream>:<sequence>.
      redelivered(killAt) {
        const out = new Map<string, number>();
        for (const a of acks) if (a.t >= killAt && !out.has(`BENCHJOBS:${a.seq}`)) out.set(`BENCHJOBS:${a.seq}`, a.t);
        return out;
      },
      async close() {
        delete process.env.SHOAL_BENCH_BROKER_NATS;
        sub.unsubscribe();
        await conn.close().catch(() => undefined);
        await server.stop();
      },
    };
  } catch (err) {
    await nc?.close().catch(() => undefined);
    await server.stop();
    throw err;
  }
}

async function until(what: string, cond: () => Promise<boolean>, timeoutMs: number, everyMs = 50): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`bench/streaming broker: timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

async function measure(d: Driver): Promise<Row & { lost: number; duplicated: number }> {
  const head = new Head({ port: 0, httpPort: 0, workers: 2, workerCommand: localWorkerCommand(), workerCpus: 4, logger: silentLogger });
  const started = new Set<number>();
  const alive = (): number[] => head.controller.status().workers.filter((w) => w.state === 'ALIVE' && w.pid !== undefined).map((w) => w.pid!);
  try {
    await head.start();
    await head.waitForWorkers(2);
    for (const p of alive()) started.add(p);
    const spec = await loadAppSpec(APP, { exportName: d.exportName, name: `bench${d.name}` });
    await head.deploy(spec);
    await head.waitReady(spec.name, 60_000);
    await until(`both workers consuming from ${d.name}`, () => d.consuming(), 30_000);

    await d.publish(MESSAGES);
    const inCount = await d.published();
    let victim: number | undefined;
    await until('a quarter of the messages answered, and a worker holding messages', async () => {
      const n = await d.answeredCount();
      if (n >= MESSAGES) throw new Error(`bench/streaming broker: ${d.name}: every message was answered before a worker could be killed`);
      if (n < MESSAGES * KILL_AT) return false;
      victim = await d.victim(alive());
      return victim !== undefined;
    }, 60_000, 5);
    process.kill(victim!, 'SIGKILL');
    const killAt = Date.now();
    const answeredAtKill = await d.answeredCount();
    await d.killed(victim!);

    let complete = true;
    try {
      await until('every message answered', async () => {
        for (const p of alive()) started.add(p);
        await d.watch();
        return (await d.answeredCount()) >= inCount && await d.settled();
      }, WAIT_MS, 20);
    } catch {
      complete = false;
    }
    const answers = await d.answers();
    const keys = new Set(answers.map((a) => a.key));
    const missing: string[] = [];
    for (let i = 0; i < MESSAGES && missing.length < 5; i++) if (!keys.has(`job-${i}`)) missing.push(`job-${i}`);
    const wrong = answers.filter((a) => {
      const r = a.result as { i?: number; score?: number };
      return a.key !== `job-${r.i}` || r.score !== r.i! * 2;
    }).length;
    const times = answers.map((a) => a.t).sort((a, b) => a - b);
    const before = times.filter((t) => t <= killAt);
    const after = times.filter((t) => t > killAt);
    const last = times[times.length - 1] ?? killAt;
    const redelivered = d.redelivered(killAt);
    const again = answers.filter((a) => redelivered.has(a.source)).map((a) => redelivered.get(a.source) ?? a.t).sort((a, b) => a - b);
    // Answered before the kill, but not acknowledged (the worker died between the two): delivered again, and the
    // second answer was not written.
    const reanswered = answers.filter((a) => redelivered.has(a.source) && a.t <= killAt).length;
    // The answers after the kill of messages delivered once: what the remaining workers kept answering meanwhile.
    const fresh = answers.filter((a) => a.t > killAt && !redelivered.has(a.source)).map((a) => a.t).sort((a, b) => a - b);
    return {
      broker: d.name,
      in: inCount,
      answered: answers.length,
      distinct: keys.size,
      lost: inCount - keys.size,
      duplicated: answers.length - keys.size,
      wrong,
      dead_lettered: await d.deadLettered(),
      complete,
      missing: missing.join(' '),
      answered_at_kill: answeredAtKill,
      answers_per_s_before: before.length < 2 ? null : round(before.length / ((killAt - times[0]!) / 1000), 0),
      answers_per_s_after: after.length === 0 ? null : round(after.length / ((last - killAt) / 1000), 0),
      first_delivery_answers_per_s_after: fresh.length === 0 ? null : round(fresh.length / ((fresh[fresh.length - 1]! - killAt) / 1000), 0),
      redelivered: again.length,
      redelivered_already_answered: reanswered,
      kill_to_first_redelivered_ms: again.length === 0 ? null : Math.max(0, again[0]! - killAt),
      kill_to_last_redelivered_ms: again.length === 0 ? null : Math.max(0, again[again.length - 1]! - killAt),
      kill_to_all_answered_ms: after.length === 0 ? null : last - killAt,
    };
  } finally {
    await head.stop().catch(() => undefined);
    // Workers this head started and did not stop (one may have been mid-replacement).
    for (const p of started) {
      try { process.kill(p, 0); process.kill(p, 'SIGKILL'); } catch { /* gone */ }
    }
  }
}

export async function section(): Promise<{ rows: Row[]; goals: Goal[] }> {
  const rows: Row[] = [];
  const goals: Goal[] = [];
  // Local workers inherit this process's environment: their info lines would flood the bench's output.
  const logLevel = process.env.SHOAL_LOG_LEVEL;
  process.env.SHOAL_LOG_LEVEL ??= 'warn';
  const drivers: Driver[] = [];
  try {
    // Both servers first: broker-app.ts reads both addresses when it is first imported (here, by loadAppSpec).
    for (const [name, command, make] of [['redis', 'redis-server', redisDriver], ['nats', 'nats-server', natsDriver]] as const) {
      if (available(command)) drivers.push(await make());
      else process.stderr.write(`bench/streaming broker: ${name} skipped: no ${command} on PATH (Debian: apt-get install ${command})\n`);
    }
    const app = await import('./broker-app.ts');
    for (const d of drivers) {
      const row = { ...await measure(d), redeliver_after_ms: app.REDELIVER_MS, work_ms: app.WORK_MS, concurrency: app.CONCURRENCY };
      rows.push(row);
      goals.push({ goal: `${d.name}: messages lost under a worker kill`, value: row.lost, target: '0', unit: 'messages', met: row.lost === 0 });
      goals.push({ goal: `${d.name}: messages duplicated under a worker kill`, value: row.duplicated, target: '0', unit: 'messages', met: row.duplicated === 0 });
    }
  } finally {
    for (const d of drivers) await d.close().catch(() => undefined);
    if (logLevel === undefined) delete process.env.SHOAL_LOG_LEVEL; else process.env.SHOAL_LOG_LEVEL = logLevel;
  }
  return { rows, goals };
}
