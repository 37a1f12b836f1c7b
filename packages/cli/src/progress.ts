/**
 * Deploy progress in a terminal: per deployment its replicas ready of wanted, a rollout's phase, step and traffic
 * share, and each starting replica's model load (bytes loaded of total, as its code reports them with
 * reportLoadProgress). Drawn only when the stream is a TTY; anywhere else (a pipe, a file, CI) nothing is written,
 * so scripts read exactly the lines the commands always printed.
 *
 * Two ways of drawing. `redraw` rewrites a few lines in place (cursor up, clear to the end of the screen) at most
 * every minIntervalMs, truncated to the terminal's width. `lines` appends a line only when what it says changed,
 * without escape codes: for `shoal run` with local workers, whose processes write their logs to the same terminal
 * at any moment (a redraw would move the cursor over their lines and erase them).
 */
import { realClock, type Clock, type TimerHandle } from '@shoal/core';
import type { ClusterStatus } from '@shoal/head';

/** What the renderer writes to: process.stdout, or a fake in tests. */
export interface ProgressStream {
  readonly isTTY?: boolean | undefined;
  /** Terminal width; 80 when unknown (or 0: a pseudo-terminal nobody sized). */
  readonly columns?: number | undefined;
  write(chunk: string): boolean;
}

/** One line of progress; `key` says which line it is from one frame to the next (`lines` mode prints changes). */
export interface ProgressLine {
  key: string;
  text: string;
}

export type ProgressMode = 'redraw' | 'lines';

export interface ProgressRendererOptions {
  /** @default 'redraw' */
  mode?: ProgressMode;
  /** Least time between two redraws. @default 100 */
  minIntervalMs?: number;
  /** @default realClock */
  clock?: Clock;
}

const ESC = '\x1b[';

/** Cuts a line to `width` columns (one character each), marking the cut. */
export function truncate(text: string, width: number): string {
  if (width < 1) return '';
  if (text.length <= width) return text;
  return width === 1 ? '…' : `${text.slice(0, width - 1)}…`;
}

export class ProgressRenderer {
  private readonly mode: ProgressMode;
  private readonly minIntervalMs: number;
  private readonly clock: Clock;
  /** Lines on screen from the last redraw (cursor sits below them). */
  private drawn = 0;
  private lastDrawAt = Number.NEGATIVE_INFINITY;
  private pending: ProgressLine[] | undefined;
  private timer: TimerHandle | undefined;
  /** `lines` mode: the last text printed per key. */
  private readonly printed = new Map<string, string>();
  private finished = false;

  constructor(private readonly stream: ProgressStream, opts: ProgressRendererOptions = {}) {
    this.mode = opts.mode ?? 'redraw';
    this.minIntervalMs = opts.minIntervalMs ?? 100;
    this.clock = opts.clock ?? realClock;
    if (!Number.isFinite(this.minIntervalMs) || this.minIntervalMs < 0) throw new RangeError(`minIntervalMs must be a finite number >= 0, got ${this.minIntervalMs}`);
  }

  /** True when it draws at all: the stream is a terminal. */
  get active(): boolean {
    return this.stream.isTTY === true;
  }

  /** The frame to show; drawn now, or when minIntervalMs has passed since the last draw. */
  update(lines: ProgressLine[]): void {
    if (!this.active || this.finished) return;
    this.pending = lines;
    const wait = this.lastDrawAt + this.minIntervalMs - this.clock.monoNow();
    if (wait <= 0) { this.flush(); return; }
    this.timer ??= this.clock.setTimeout(() => { this.timer = undefined; this.flush(); }, wait);
  }

  /** Draws the latest frame now and stops; what it drew stays on screen, and later output goes below it. */
  done(): void {
    if (this.finished) return;
    if (this.timer !== undefined) { this.clock.clearTimeout(this.timer); this.timer = undefined; }
    this.flush();
    this.finished = true;
  }

  private flush(): void {
    const lines = this.pending;
    this.pending = undefined;
    if (lines === undefined || !this.active) return;
    this.lastDrawAt = this.clock.monoNow();
    if (this.mode === 'lines') {
      let out = '';
      for (const l of lines) {
        if (this.printed.get(l.key) === l.text) continue;
        this.printed.set(l.key, l.text);
        out += `${l.text}\n`;
      }
      if (out !== '') this.stream.write(out);
      return;
    }
    // One column short of the width: a line that fills the last column leaves the cursor pending a wrap, and
    // terminals disagree on where the next cursor-up then lands.
    const columns = this.stream.columns;
    const width = (columns !== undefined && columns > 1 ? columns : 80) - 1;
    let out = this.drawn > 0 ? `${ESC}${this.drawn}A\r${ESC}J` : '';
    for (const l of lines) out += `${truncate(l.text, width)}\n`;
    this.drawn = lines.length;
    this.stream.write(out);
  }
}

/** What progress reads of GET /api/status (or the controller's status()). */
export type ProgressStatus = Pick<ClusterStatus, 'applications' | 'replicas'>;

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
/** 1536 -> "1.5 KiB". */
export function formatBytes(n: number): string {
  let v = n;
  let u = 0;
  while (v >= 1024 && u < UNITS.length - 1) { v /= 1024; u++; }
  return u === 0 ? `${v} B` : `${v.toFixed(1)} ${UNITS[u]}`;
}

function bar(fraction: number, width = 20): string {
  const full = Math.round(Math.min(1, Math.max(0, fraction)) * width);
  return `[${'#'.repeat(full)}${'-'.repeat(width - full)}]`;
}

type DeploymentView = ProgressStatus['applications'][number]['deployments'][number];

/** Replicas of the deployment's current version running: during a rollout, the new version's. */
function readyOf(d: DeploymentView): number {
  return d.versions.find((v) => v.id === d.version)?.running ?? d.running;
}

/** Share of a model load done, 0..1 (a total of 0 bytes: done). */
export function loadFraction(load: { bytes: number; total: number }): number {
  return load.total > 0 ? load.bytes / load.total : 1;
}

export interface FormatProgressOptions {
  /** `lines` mode: no elapsed time, and load in steps of 10%, so a line is printed when something moved. */
  coarse?: boolean;
  /** Shown in the header (redraw mode). */
  elapsedMs?: number;
  /** The header's first word(s). @default 'deploying' */
  verb?: string;
}

/**
 * The progress of application `app`: a header, one line per deployment (ready of wanted, the rollout if one
 * runs, the last start error while starts fail) and one per starting replica (its model load when reported).
 */
export function formatProgress(status: ProgressStatus, app: string, opts: FormatProgressOptions = {}): ProgressLine[] {
  const a = status.applications.find((x) => x.name === app);
  const verb = opts.verb ?? 'deploying';
  if (a === undefined) return [{ key: 'app', text: `${verb} "${app}": waiting for the head to list it` }];
  const ready = a.deployments.filter((d) => readyOf(d) >= d.numReplicas).length;
  const elapsed = opts.coarse === true || opts.elapsedMs === undefined ? '' : ` (${(opts.elapsedMs / 1000).toFixed(1)}s)`;
  const out: ProgressLine[] = [{ key: 'app', text: `${verb} "${app}": ${ready} of ${a.deployments.length} deployments ready${elapsed}` }];
  const nameWidth = Math.max(...a.deployments.map((d) => d.name.length));
  for (const d of a.deployments) {
    let text = `  ${d.name.padEnd(nameWidth)}  ${readyOf(d)}/${d.numReplicas} ready`;
    const r = d.rollout;
    if (r !== undefined) text += `  ${r.phase}${r.step !== undefined ? ` step ${r.step}` : ''} ${r.from.slice(0, 8)} -> ${r.to.slice(0, 8)} at ${r.percent}%`;
    if (d.failures > 0) text += `  failed to start ${d.failures}x: ${d.lastError ?? d.message}`;
    out.push({ key: `d:${d.name}`, text });
    for (const rep of status.replicas) {
      if (rep.app !== app || rep.deployment !== d.name || rep.state !== 'STARTING') continue;
      // Under its deployment's line the id's `app.Deployment.` prefix says nothing new.
      const prefix = `${app}.${d.name}.`;
      const id = rep.replicaId.startsWith(prefix) ? rep.replicaId.slice(prefix.length) : rep.replicaId;
      let line = `    replica ${id} starting on ${rep.workerId}`;
      const load = rep.load;
      if (load !== undefined) {
        const f = loadFraction(load);
        line += opts.coarse === true
          ? `  loading model ${Math.floor(f * 10) * 10}% of ${formatBytes(load.total)}`
          : `  loading model ${bar(f)} ${Math.floor(f * 100)}%  ${formatBytes(load.bytes)} of ${formatBytes(load.total)}`;
      }
      out.push({ key: `r:${rep.replicaId}`, text: line });
    }
  }
  return out;
}

/**
 * True once a deployment's change has played out: no rollout in progress, its current version running at the
 * count, and none of its replicas starting or draining (or the deployment is gone).
 */
export function deploymentSettled(status: ProgressStatus, app: string, deployment: string): boolean {
  const d = status.applications.find((a) => a.name === app)?.deployments.find((x) => x.name === deployment);
  if (d === undefined) return true;
  const ready = readyOf(d);
  const moving = status.replicas.some((r) => r.app === app && r.deployment === deployment && (r.state === 'STARTING' || r.state === 'DRAINING'));
  return d.rollout === undefined && ready >= d.numReplicas && !moving;
}

export interface WatchOptions {
  stream: ProgressStream;
  app: string;
  /** The cluster's status now; a failed read is skipped (the command's own request reports the error). */
  status: () => ProgressStatus | Promise<ProgressStatus>;
  mode?: ProgressMode;
  /** How often status is read. @default 250 */
  pollMs?: number;
  /** The header's first word(s). @default 'deploying' */
  verb?: string;
  clock?: Clock;
}

/**
 * Shows an application's deploy progress until stop(), which draws the final state once more. Reads no status
 * at all when the stream is not a terminal.
 */
export function watchProgress(opts: WatchOptions): { stop(): Promise<void> } {
  const clock = opts.clock ?? realClock;
  const mode = opts.mode ?? 'redraw';
  const renderer = new ProgressRenderer(opts.stream, { mode, clock });
  if (!renderer.active) return { stop: async () => undefined };
  const started = clock.monoNow();
  const pollMs = opts.pollMs ?? 250;
  let timer: TimerHandle | undefined;
  let stopped = false;
  let inflight: Promise<void> = Promise.resolve();
  const poll = async (): Promise<void> => {
    try {
      const s = await opts.status();
      renderer.update(formatProgress(s, opts.app, { coarse: mode === 'lines', elapsedMs: clock.monoNow() - started, ...(opts.verb !== undefined ? { verb: opts.verb } : {}) }));
    } catch {
      // The head did not answer this time; the deploy request itself says why if it fails.
    }
  };
  const tick = (): void => {
    inflight = poll().finally(() => { if (!stopped) timer = clock.setTimeout(tick, pollMs); });
  };
  tick();
  return {
    stop: async () => {
      stopped = true;
      if (timer !== undefined) clock.clearTimeout(timer);
      await inflight;
      await poll();
      renderer.done();
    },
  };
}

/**
 * Shows an application's progress until `until(status)` holds or `timeoutMs` passes, then draws the final state;
 * resolves whether it held. Returns at once, reading nothing, when the stream is not a terminal.
 */
export async function followProgress(opts: WatchOptions & { until: (s: ProgressStatus) => boolean; timeoutMs: number }): Promise<boolean> {
  if (opts.stream.isTTY !== true) return false;
  const clock = opts.clock ?? realClock;
  let held = false;
  let done!: () => void;
  const finished = new Promise<void>((r) => { done = r; });
  const timer = clock.setTimeout(done, opts.timeoutMs);
  // The clock's timers are unref'd, and a status read in flight is all that runs between polls: this one keeps
  // the process alive until the end (with a fake clock the test holds it).
  const hold = opts.clock === undefined ? setTimeout(() => undefined, opts.timeoutMs) : undefined;
  const w = watchProgress({
    ...opts,
    status: async () => {
      const s = await opts.status();
      if (opts.until(s)) { held = true; done(); }
      return s;
    },
  });
  await finished;
  clock.clearTimeout(timer);
  clearTimeout(hold);
  await w.stop();
  return held;
}

/** Runs `work` while the deploy progress of `app` shows on stdout, when stdout is a terminal (nothing otherwise). */
export async function withProgress<T>(app: string, status: () => ProgressStatus | Promise<ProgressStatus>, mode: ProgressMode, work: () => Promise<T>): Promise<T> {
  const progress = watchProgress({ stream: process.stdout, app, status, mode });
  try {
    return await work();
  } finally {
    await progress.stop();
  }
}
