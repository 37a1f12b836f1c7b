/**
 * bench/streaming: issue 13's measurements in one run, one section after another (each starts and stops what it
 * needs, so they do not load one another):
 *   - ttfc.ts: time to first chunk against time to the whole answer, a streamed generator over SSE through a cluster;
 *   - continuous.ts: continuous against static batching of one step-wise model on a mix of short and long sequences;
 *   - cache-exact.ts: exact response cache lookups at 100,000 entries (memory, Redis);
 *   - cache-semantic.ts: semantic cache lookups at 100,000 entries (flat scan, HNSW).
 *   - broker.ts: broker ingress (Redis Streams, NATS JetStream) under a worker kill: messages lost, duplicated, redelivered.
 *
 *   pnpm bench streaming [--only ttfc,continuous,cache-exact,cache-semantic,broker] [--out FILE]
 */
import { parseArgs } from 'node:util';
import { printGoals, printTable, writeResult, type Goal, type Row } from '../lib.ts';

type Section = () => Promise<{ rows: Row[]; goals: Goal[] }>;
const SECTIONS: Record<string, () => Promise<Section>> = {
  ttfc: async () => (await import('./ttfc.ts')).section,
  continuous: async () => (await import('./continuous.ts')).section,
  'cache-exact': async () => (await import('./cache-exact.ts')).section,
  'cache-semantic': async () => (await import('./cache-semantic.ts')).section,
  broker: async () => (await import('./broker.ts')).section,
};

const { values } = parseArgs({ options: { only: { type: 'string' }, out: { type: 'string' } } });
const names = values.only === undefined ? Object.keys(SECTIONS) : values.only.split(',').map((s) => s.trim());
for (const n of names) {
  if (SECTIONS[n] === undefined) {
    process.stderr.write(`bench/streaming: unknown section "${n}" (sections: ${Object.keys(SECTIONS).join(', ')})\n`);
    process.exit(2);
  }
}

const rows: Row[] = [];
const goals: Goal[] = [];
for (const n of names) {
  process.stderr.write(`== ${n}\n`);
  const t0 = Date.now();
  const out = await (await SECTIONS[n]!())();
  for (const r of out.rows) rows.push({ section: n, ...r });
  goals.push(...out.goals);
  process.stderr.write(`== ${n} done in ${Math.round((Date.now() - t0) / 1000)} s\n`);
  printTable(out.rows);
}
printGoals(goals);
const file = writeResult('streaming', rows, goals, { sections: names }, values.out);
process.stderr.write(`wrote ${file}\n`);
process.exit(0);
