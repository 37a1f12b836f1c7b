/** Runs loadgen.mjs in its own process and watches a head's /api/status while it runs. */
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import type { ChaosCluster, Status } from './cluster.ts';
import { sleep } from './cluster.ts';
import type { ProcessTracker } from './procs.ts';

export interface LoadConfig { url: string; loops: number; seconds: number; deadlineMs: number; clientTimeoutMs: number }

export interface LoadSummary {
  requests: number;
  ok: number;
  failed: number;
  failures: Record<string, number>;
  examples: Array<{ atMs: number; ms: number; kind: string; detail?: string }>;
  clientRetries: number;
  retriedOk: number;
  over2s: number;
  overDeadline: number;
  p50Ms: number | null;
  p99Ms: number | null;
  maxMs: number | null;
  seconds: number;
  timeline: Array<{ atMs: number; requests: number; failed: number; maxMs: number }>;
}

/** Starts the load; `onStart` gets the generator's Date.now() at its first request. */
export async function runLoad(tracker: ProcessTracker, cfg: LoadConfig, onStart: (t0: number) => void): Promise<LoadSummary> {
  const child = tracker.spawn(process.execPath, [join(import.meta.dirname, 'loadgen.mjs'), JSON.stringify(cfg)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let summary: LoadSummary | undefined;
  const lines = createInterface({ input: child.stdout! });
  lines.on('line', (line) => {
    const m = JSON.parse(line) as { t0?: number } & Partial<LoadSummary>;
    if (m.t0 !== undefined) onStart(m.t0);
    else summary = m as LoadSummary;
  });
  const limit = setTimeout(() => child.kill('SIGKILL'), (cfg.seconds * 1000) + cfg.clientTimeoutMs + 10_000);
  const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  clearTimeout(limit);
  await new Promise((r) => setImmediate(r)); // the last line's event
  if (summary === undefined) throw new Error(`the load generator exited ${code} without a summary`);
  return summary;
}

/**
 * Polls /api/status back to back (every `everyMs`) and keeps every answer with the time it arrived (the state the
 * head reported is no older than that), recording the worker PIDs it sees so that cleanup finds them.
 */
export class StatusRecorder {
  readonly samples: Array<{ t: number; s: Status | undefined }> = [];
  private stopped = false;
  private readonly loop: Promise<void>;

  constructor(private readonly cluster: ChaosCluster, private readonly tracker: ProcessTracker, private readonly everyMs = 50) {
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const s = await this.cluster.status(500);
      this.samples.push({ t: Date.now(), s });
      for (const w of s?.workers ?? []) this.tracker.remember(w.pid);
      await sleep(this.everyMs);
    }
  }

  /** Time of the first answer at or after `after` for which `pred` holds. */
  first(after: number, pred: (s: Status) => boolean): number | undefined {
    return this.samples.find((x) => x.t >= after && x.s !== undefined && pred(x.s))?.t;
  }

  /** Waits until `cond()` holds or timeoutMs passes. */
  async until(cond: () => boolean, timeoutMs: number): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!cond() && Date.now() < end) await sleep(50);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }
}
