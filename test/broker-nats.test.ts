/**
 * Broker ingress from a NATS JetStream stream, with real processes: a cluster of two workers consumes a stream
 * through one durable pull consumer, one worker is SIGKILLed while messages are in flight, and every message is
 * answered exactly once in the output stream: as many messages as were published, one per idempotency key
 * (Nats-Msg-Id), none dead-lettered.
 *
 * Starts its own nats-server (JetStream, storage in a temp folder) on a free port, stopped by its pid. Without
 * nats-server it is skipped with a logged reason, unless SHOAL_REQUIRE_NATS=1 (CI sets it).
 */
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { env } from '@shoal/core';
import type { Head } from '@shoal/head';
import { available, connectNats, startNatsServer, type JetStreamManager, type NatsConnection, type StoredMsg, type TestServer } from '../packages/broker/test/servers.ts';
import { deployFixture, isAlive, samples, startCluster, waitFor } from './helpers.ts';

const APP = resolve(import.meta.dirname, 'fixtures/broker-app.ts');
const MESSAGES = 400;
const DURABLE = 'shoal_nats_scorer';
const REQUIRE = env.requireNats();
const missing = !available('nats-server');
if (missing && !REQUIRE) process.stderr.write('broker-nats.test.ts: skipped: no nats-server on PATH (Debian: apt-get install nats-server; SHOAL_REQUIRE_NATS=1 makes this a failure)\n');
// Local workers inherit this process's environment: their info lines are not what this test reads.
process.env.SHOAL_LOG_LEVEL ??= 'warn';

describe.skipIf(missing && !REQUIRE)('broker ingress: NATS JetStream', () => {
  let server: TestServer;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let head: Head | undefined;
  const workerPids = new Set<number>();

  beforeAll(async () => {
    if (missing) throw new Error('SHOAL_REQUIRE_NATS=1 but nats-server is not on PATH (Debian: apt-get install nats-server)');
    server = await startNatsServer();
    nc = await connectNats({ servers: server.url });
    jsm = await nc.jetstreamManager();
    await jsm.streams.add({ name: 'JOBS', subjects: ['jobs'] });
    // Answers and dead letters (answers.dead), with JetStream's default duplicate window (2 minutes).
    await jsm.streams.add({ name: 'ANSWERS', subjects: ['answers', 'answers.>'] });
    // Local workers inherit it: the fixture's deployment reads its broker's address from there.
    process.env.SHOAL_TEST_BROKER_NATS = server.url;
  });
  afterAll(async () => {
    await head?.stop();
    for (const pid of workerPids) if (isAlive(pid)) process.kill(pid, 'SIGKILL');
    await nc?.close();
    await server?.stop();
  });

  /** Every message of ANSWERS on `subject`. */
  const stored = async (subject: string): Promise<StoredMsg[]> => {
    const { state } = await jsm.streams.info('ANSWERS');
    const out: StoredMsg[] = [];
    if (state.messages === 0) return out;
    for (let seq = state.first_seq; seq <= state.last_seq; seq++) {
      const m = await jsm.streams.getMessage('ANSWERS', { seq }).catch(() => undefined);
      if (m !== undefined && m.subject === subject) out.push(m);
    }
    return out;
  };
  const answered = async (): Promise<number> => (await jsm.streams.info('ANSWERS')).state.messages;

  it('answers every message exactly once although a worker is SIGKILLed mid-stream', async () => {
    const h = await startCluster({ workers: 2 });
    head = h;
    const pids = (): number[] => h.controller.status().workers.filter((w) => w.state === 'ALIVE' && w.pid !== undefined).map((w) => w.pid!);
    for (const p of pids()) workerPids.add(p);
    await deployFixture(h, { module: APP, exportName: 'natsApp', name: 'brokernats' });
    // Both workers pull from the durable consumer before anything is published: at least two pull requests wait
    // (one per worker's client; a client may briefly hold two while it renews one).
    await waitFor('both workers consuming', async () => ((await jsm.consumers.info('JOBS', DURABLE).catch(() => undefined))?.num_waiting ?? 0) >= 2);

    const js = nc.jetstream();
    const enc = new TextEncoder();
    for (let i = 0; i < MESSAGES; i++) await js.publish('jobs', enc.encode(JSON.stringify({ i })), { msgID: `job-${i}` });

    let inFlightAtKill = 0;
    await waitFor('mid-stream, with messages in flight', async () => {
      const n = await answered();
      if (n >= MESSAGES) throw new Error('the stream was answered before a worker could be killed mid-stream');
      inFlightAtKill = (await jsm.consumers.info('JOBS', DURABLE)).num_ack_pending;
      return n >= 40 && inFlightAtKill > 0;
    }, 30_000);
    const victim = pids()[0]!;
    process.kill(victim, 'SIGKILL');
    const answeredAtKill = await answered();

    await waitFor('every message answered', async () => {
      for (const p of pids()) workerPids.add(p);
      if ((await answered()) < MESSAGES) return false;
      const info = await jsm.consumers.info('JOBS', DURABLE);
      return info.num_pending === 0 && info.num_ack_pending === 0;
    }, 60_000);
    expect(isAlive(victim)).toBe(false);

    const dec = new TextDecoder();
    const out = await stored('answers');
    expect(out).toHaveLength(MESSAGES);
    const keys = out.map((m) => m.header.get('Nats-Msg-Id'));
    expect(new Set(keys).size).toBe(MESSAGES);
    const results = out.map((m) => JSON.parse(dec.decode(m.data)) as { i: number; score: number });
    expect(results.every((r, k) => keys[k] === `job-${r.i}` && r.score === r.i * 2)).toBe(true);
    expect(new Set(results.map((r) => r.i)).size).toBe(MESSAGES);
    expect(await stored('answers.dead')).toHaveLength(0);
    expect(answeredAtKill).toBeLessThan(MESSAGES);

    const metricsUrl = `${h.clusterAddress.replace('ws://', 'http://')}/-/metrics`;
    await waitFor('lag 0 in the metrics', async () => {
      const lag = samples(await (await fetch(metricsUrl)).text(), 'shoal_broker_lag', { app: 'brokernats', deployment: 'nats_scorer', source: 'nats:JOBS' });
      return lag.length > 0 && lag.every((v) => v === 0);
    });
    const text = await (await fetch(metricsUrl)).text();
    const count = (result: string): number => samples(text, 'shoal_broker_messages_total', { deployment: 'nats_scorer', result }).reduce((a, b) => a + b, 0);
    expect(count('answered')).toBeGreaterThan(0);
    expect(count('dead_lettered')).toBe(0);
    process.stdout.write(`[broker] nats ${JSON.stringify({ messages: MESSAGES, answeredAtKill, inFlightAtKill, survivors: { answered: count('answered'), duplicate: count('duplicate'), failed: count('failed') } })}\n`);
  }, 120_000);
});
