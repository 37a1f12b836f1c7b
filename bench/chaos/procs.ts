/**
 * Every process bench/chaos starts, and its cleanup. Heads are spawned as process-group leaders, so their local
 * workers (spawned by the head, not detached) share the head's group; after a head is SIGKILLed those workers are
 * orphans that no parent reaps or stops. Cleanup therefore kills, one PID at a time: every child this bench spawned,
 * every worker PID the bench saw in a head's /api/status, and every live process whose group is one of its heads'
 * groups or whose parent is one of its heads, each checked to be one of this repository's processes first.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

interface ProcStat { state: string; ppid: number; pgrp: number }

/** /proc/PID/stat, or undefined once the process is gone. The command name may hold spaces and parentheses. */
function procStat(pid: number): ProcStat | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return { state: f[0]!, ppid: Number(f[1]), pgrp: Number(f[2]) };
  } catch {
    return undefined;
  }
}

function cmdline(pid: number): string {
  try { return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' '); } catch { return ''; }
}

/** Alive and not a zombie (an orphan's zombie can linger where PID 1 does not reap). */
export function isRunning(pid: number): boolean {
  const st = procStat(pid);
  return st !== undefined && st.state !== 'Z' && st.state !== 'X';
}

export class ProcessTracker {
  private readonly children = new Set<ChildProcess>();
  private readonly seen = new Set<number>();
  private readonly groups = new Set<number>();

  /** @param repo only processes whose command line names this directory are ever killed */
  constructor(private readonly repo: string) {}

  /** Spawns and records a child; `group: true` makes it a process-group leader (heads). */
  spawn(command: string, args: string[], opts: SpawnOptions & { group?: boolean }): ChildProcess {
    const { group, ...rest } = opts;
    const child = spawn(command, args, { ...rest, detached: group === true });
    this.children.add(child);
    if (group === true && child.pid !== undefined) this.groups.add(child.pid);
    child.on('error', () => undefined);
    return child;
  }

  /** Records a PID this bench did not spawn but must stop (a head's worker, seen in /api/status). */
  remember(pid: number | undefined): void {
    if (pid !== undefined && pid > 1) this.seen.add(pid);
  }

  /** Every live process to stop, found as the class comment says. */
  private targets(): number[] {
    const out = new Set<number>();
    for (const c of this.children) if (c.pid !== undefined && c.exitCode === null && c.signalCode === null) out.add(c.pid);
    for (const pid of this.seen) out.add(pid);
    const heads = new Set([...this.children].map((c) => c.pid).filter((p): p is number => p !== undefined));
    for (const name of readdirSync('/proc')) {
      const pid = Number(name);
      if (!Number.isInteger(pid) || pid === process.pid) continue;
      const st = procStat(pid);
      if (st !== undefined && (this.groups.has(st.pgrp) || heads.has(st.ppid))) out.add(pid);
    }
    return [...out].filter((pid) => isRunning(pid) && cmdline(pid).includes(this.repo));
  }

  /** SIGCONT (a SIGSTOPped worker) and SIGKILL each target by PID; synchronous, for exit handlers too. */
  killAllSync(): number[] {
    const pids = this.targets();
    for (const pid of pids) {
      try { process.kill(pid, 'SIGCONT'); } catch { /* gone */ }
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
    return pids;
  }

  /** Kills every target and waits (up to timeoutMs) until none runs; returns the PIDs still running. */
  async killAll(timeoutMs = 5000): Promise<number[]> {
    const end = Date.now() + timeoutMs;
    let pids = this.killAllSync();
    while (pids.some(isRunning) && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 50));
      pids = [...new Set([...pids, ...this.killAllSync()])];
    }
    this.seen.clear();
    return pids.filter(isRunning);
  }
}
