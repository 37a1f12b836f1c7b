/** The CLI's progress renderer and formatter, with a fake terminal and a fake clock. */
import { describe, expect, it } from 'vitest';
import { FakeClock } from '@shoal/core';
import { ProgressRenderer, deploymentSettled, followProgress, formatBytes, formatProgress, truncate, watchProgress, type ProgressStatus, type ProgressStream } from '../../packages/cli/src/progress.ts';

class FakeTerminal implements ProgressStream {
  readonly writes: string[] = [];
  constructor(readonly isTTY: boolean, readonly columns = 80) {}
  write(chunk: string): boolean { this.writes.push(chunk); return true; }
  get text(): string { return this.writes.join(''); }
}

const line = (key: string, text: string): { key: string; text: string } => ({ key, text });

type Deployment = ProgressStatus['applications'][number]['deployments'][number];
function dep(name: string, running: number, numReplicas: number, more: Partial<Deployment> = {}): Deployment {
  return {
    name, status: 'UPDATING', message: '', numReplicas, running, failures: 0, version: 'v2aaaaaaaaaa',
    versions: [{ id: 'v2aaaaaaaaaa', createdAtMs: 0, current: true, running }], decisions: [], ...more,
  };
}
function status(deployments: Deployment[], replicas: ProgressStatus['replicas'] = []): ProgressStatus {
  return { applications: [{ name: 'shop', routePrefix: '/', ingress: deployments[0]!.name, deployments }], replicas };
}

describe('ProgressRenderer', () => {
  it('writes nothing at all when the stream is not a terminal', () => {
    const out = new FakeTerminal(false);
    const r = new ProgressRenderer(out, { clock: new FakeClock() });
    expect(r.active).toBe(false);
    r.update([line('a', 'one')]);
    r.done();
    expect(out.writes).toEqual([]);
  });

  it('redraws its lines in place: cursor up over the last frame, clear, the new lines', () => {
    const out = new FakeTerminal(true);
    const clock = new FakeClock();
    const r = new ProgressRenderer(out, { clock, minIntervalMs: 100 });
    r.update([line('a', 'first'), line('b', 'second')]);
    expect(out.writes).toEqual(['first\nsecond\n']);
    clock.advance(100);
    r.update([line('a', 'third')]);
    expect(out.writes[1]).toBe('\x1b[2A\r\x1b[Jthird\n');
    clock.advance(100);
    r.update([line('a', 'x'), line('b', 'y')]);
    expect(out.writes[2]).toBe('\x1b[1A\r\x1b[Jx\ny\n');
  });

  it('draws at most once per minIntervalMs, the latest frame when the interval ends', () => {
    const out = new FakeTerminal(true);
    const clock = new FakeClock();
    const r = new ProgressRenderer(out, { clock, minIntervalMs: 100 });
    r.update([line('a', '1')]);
    clock.advance(10);
    r.update([line('a', '2')]);
    r.update([line('a', '3')]);
    expect(out.writes).toHaveLength(1);
    clock.advance(89);
    expect(out.writes).toHaveLength(1);
    clock.advance(1);
    expect(out.writes).toEqual(['1\n', '\x1b[1A\r\x1b[J3\n']);
    // done() draws what is pending at once, then nothing more.
    r.update([line('a', '4')]);
    r.done();
    r.update([line('a', '5')]);
    clock.advance(1000);
    expect(out.writes.at(-1)).toBe('\x1b[1A\r\x1b[J4\n');
    expect(out.writes).toHaveLength(3);
  });

  it('truncates lines one column short of the terminal width', () => {
    const out = new FakeTerminal(true, 10);
    const r = new ProgressRenderer(out, { clock: new FakeClock() });
    r.update([line('a', 'abcdefghijklmnop'), line('b', 'short')]);
    expect(out.text).toBe('abcdefgh…\nshort\n');
    // A terminal nobody sized reports 0 columns: 80 then.
    const unsized = new FakeTerminal(true, 0);
    new ProgressRenderer(unsized, { clock: new FakeClock() }).update([line('a', 'x'.repeat(100))]);
    expect(unsized.text).toBe(`${'x'.repeat(78)}…\n`);
    expect(truncate('abc', 3)).toBe('abc');
    expect(truncate('abcd', 1)).toBe('…');
    expect(truncate('abcd', 0)).toBe('');
  });

  it('lines mode appends a line only when its text changed, with no escape codes', () => {
    const out = new FakeTerminal(true);
    const clock = new FakeClock();
    const r = new ProgressRenderer(out, { clock, mode: 'lines', minIntervalMs: 0 });
    r.update([line('a', 'A 0/2'), line('b', 'B 0/1')]);
    r.update([line('a', 'A 0/2'), line('b', 'B 1/1')]);
    r.update([line('a', 'A 0/2'), line('b', 'B 1/1')]);
    r.update([line('a', 'A 2/2'), line('b', 'B 1/1')]);
    expect(out.text).toBe('A 0/2\nB 0/1\nB 1/1\nA 2/2\n');
    expect(out.text).not.toContain('\x1b');
  });

  it('refuses a bad minIntervalMs', () => {
    expect(() => new ProgressRenderer(new FakeTerminal(true), { minIntervalMs: -1 })).toThrow(/minIntervalMs must be a finite number >= 0, got -1/);
  });
});

describe('formatProgress', () => {
  it('shows ready of wanted per deployment, and a starting replica\'s model load', () => {
    const s = status([dep('Api', 1, 1), dep('Model', 1, 2)], [
      { replicaId: 'shop.Model.r7', app: 'shop', deployment: 'Model', version: 'v2aaaaaaaaaa', state: 'STARTING', workerId: 'w2', load: { bytes: 3 * 2 ** 29, total: 2 ** 31 } },
      { replicaId: 'r6', app: 'shop', deployment: 'Model', version: 'v2aaaaaaaaaa', state: 'RUNNING', workerId: 'w1' },
    ]);
    expect(formatProgress(s, 'shop', { elapsedMs: 1500 }).map((l) => l.text)).toEqual([
      'deploying "shop": 1 of 2 deployments ready (1.5s)',
      '  Api    1/1 ready',
      '  Model  1/2 ready',
      '    replica r7 starting on w2  loading model [###############-----] 75%  1.5 GiB of 2.0 GiB',
    ]);
    // Coarse (lines mode): no clock, load in steps of 10%.
    expect(formatProgress(s, 'shop', { coarse: true, elapsedMs: 1500 }).map((l) => l.text)).toEqual([
      'deploying "shop": 1 of 2 deployments ready',
      '  Api    1/1 ready',
      '  Model  1/2 ready',
      '    replica r7 starting on w2  loading model 70% of 2.0 GiB',
    ]);
  });

  it('shows a rollout\'s phase, step and traffic share, and failing starts', () => {
    const s = status([
      dep('Api', 1, 3, { rollout: { from: 'v1bbbbbbbbbb', to: 'v2aaaaaaaaaa', phase: 'canary', percent: 25, step: 1, failures: 0, note: '' } }),
      dep('Bad', 0, 1, { failures: 2, lastError: 'constructor threw: no GPU' }),
    ]);
    expect(formatProgress(s, 'shop').map((l) => l.text)).toEqual([
      'deploying "shop": 0 of 2 deployments ready',
      '  Api  1/3 ready  canary step 1 v1bbbbbb -> v2aaaaaa at 25%',
      '  Bad  0/1 ready  failed to start 2x: constructor threw: no GPU',
    ]);
  });

  it('says so while the head does not list the application yet', () => {
    expect(formatProgress({ applications: [], replicas: [] }, 'shop')).toEqual([{ key: 'app', text: 'deploying "shop": waiting for the head to list it' }]);
  });

  it('formats bytes', () => {
    expect([formatBytes(0), formatBytes(1023), formatBytes(1536), formatBytes(5 * 2 ** 20), formatBytes(2 ** 40)]).toEqual(['0 B', '1023 B', '1.5 KiB', '5.0 MiB', '1.0 TiB']);
  });
});

describe('watchProgress', () => {
  it('reads no status when stdout is not a terminal', async () => {
    let reads = 0;
    const w = watchProgress({ stream: new FakeTerminal(false), app: 'shop', status: () => { reads++; return status([dep('Api', 1, 1)]); }, clock: new FakeClock() });
    await w.stop();
    expect(reads).toBe(0);
  });

  it('polls the status and draws the final state on stop', async () => {
    const out = new FakeTerminal(true);
    const clock = new FakeClock();
    let running = 0;
    const w = watchProgress({ stream: out, app: 'shop', status: () => status([dep('Api', running, 2)]), clock, pollMs: 250 });
    await clock.advanceAsync(0);
    expect(out.text).toContain('0/2 ready');
    running = 1;
    await clock.advanceAsync(250);
    expect(out.writes.at(-1)).toContain('1/2 ready');
    running = 2;
    await w.stop();
    expect(out.writes.at(-1)).toContain('2/2 ready');
    expect(out.writes.at(-1)).toContain('1 of 1 deployments ready');
    const n = out.writes.length;
    await clock.advanceAsync(5000);
    expect(out.writes).toHaveLength(n);
  });

  it('skips a status read that fails', async () => {
    const out = new FakeTerminal(true);
    const clock = new FakeClock();
    let fail = true;
    const w = watchProgress({ stream: out, app: 'shop', status: async () => { if (fail) throw new Error('head away'); return status([dep('Api', 1, 1)]); }, clock });
    await clock.advanceAsync(0);
    expect(out.writes).toEqual([]);
    fail = false;
    await w.stop();
    expect(out.text).toContain('1/1 ready');
  });
});

describe('deploymentSettled', () => {
  const rollout = { from: 'v1bbbbbbbbbb', to: 'v2aaaaaaaaaa', phase: 'rolling' as const, percent: 50, failures: 0, note: '' };
  const starting = { replicaId: 'shop.Api.9', app: 'shop', deployment: 'Api', version: 'v2aaaaaaaaaa', state: 'STARTING' as const, workerId: 'w1' };
  it('holds once no rollout runs, the current version runs at the count and no replica starts or drains', () => {
    expect(deploymentSettled(status([dep('Api', 2, 2)]), 'shop', 'Api')).toBe(true);
    expect(deploymentSettled(status([dep('Api', 2, 2, { rollout })]), 'shop', 'Api')).toBe(false);
    expect(deploymentSettled(status([dep('Api', 1, 2)]), 'shop', 'Api')).toBe(false);
    expect(deploymentSettled(status([dep('Api', 2, 2)], [starting]), 'shop', 'Api')).toBe(false);
    expect(deploymentSettled(status([dep('Api', 2, 2)], [{ ...starting, state: 'DRAINING' }]), 'shop', 'Api')).toBe(false);
    expect(deploymentSettled(status([dep('Api', 2, 2)], [{ ...starting, state: 'RUNNING' }]), 'shop', 'Api')).toBe(true);
    // Gone (deleted meanwhile): nothing left to wait for.
    expect(deploymentSettled(status([dep('Api', 2, 2)]), 'shop', 'Other')).toBe(true);
  });
});

describe('followProgress', () => {
  it('draws until the condition holds, then stops reading', async () => {
    const out = new FakeTerminal(true);
    const clock = new FakeClock();
    let running = 1;
    let reads = 0;
    const followed = followProgress({ stream: out, app: 'shop', verb: 'rolling back', clock, pollMs: 250, timeoutMs: 60_000, status: () => { reads++; return status([dep('Api', running, 2)]); }, until: (s) => deploymentSettled(s, 'shop', 'Api') });
    await clock.advanceAsync(0);
    expect(out.text).toContain('rolling back "shop": 0 of 1 deployments ready');
    running = 2;
    await clock.advanceAsync(250);
    expect(await followed).toBe(true);
    expect(out.writes.at(-1)).toContain('Api  2/2 ready');
    const n = reads;
    await clock.advanceAsync(5000);
    expect(reads).toBe(n);
  });

  it('gives up after timeoutMs, and reads nothing when not a terminal', async () => {
    const clock = new FakeClock();
    const followed = followProgress({ stream: new FakeTerminal(true), app: 'shop', clock, pollMs: 250, timeoutMs: 1000, status: () => status([dep('Api', 0, 2)]), until: () => false });
    await clock.advanceAsync(1000);
    expect(await followed).toBe(false);
    let reads = 0;
    expect(await followProgress({ stream: new FakeTerminal(false), app: 'shop', clock, timeoutMs: 1000, status: () => { reads++; return status([]); }, until: () => true })).toBe(false);
    expect(reads).toBe(0);
  });
});

describe('shoal status', () => {
  it('shows a starting replica\'s model load next to its state', async () => {
    const { formatStatus } = await import('../../packages/cli/src/main.ts');
    const s = status([dep('Model', 0, 1)], [{ replicaId: 'shop.Model.r1', app: 'shop', deployment: 'Model', version: 'v2aaaaaaaaaa', state: 'STARTING', workerId: 'w1', load: { bytes: 3 << 28, total: 1 << 30 } }]);
    const text = formatStatus({ ...s, workers: [], cluster: 'ws://h:1', http: 'http://h:2' } as Parameters<typeof formatStatus>[0]);
    expect(text).toMatch(/shop\.Model\.r1\s+shop\s+Model\s+STARTING \(75% of 1\.0 GiB\)\s+w1/);
  });
});
