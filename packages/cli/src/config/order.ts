/**
 * In which order `shoal deploy CONFIG` applies a plan, so that each request is one the head accepts when it arrives.
 * Pure: the plan (diff.ts) and what the head runs.
 *
 * - Applications --prune deletes go first: they may hold the capacity, or the route prefixes, the file's new ones
 *   need (sent first, a new application would wait for replicas that cannot be placed until the deploy times out).
 * - A route prefix is freed before it is taken: an application moving to a prefix another one of the file still
 *   serves is sent after that one has moved away. The head refuses (409) a prefix another application serves.
 * - A cycle (a: /a -> /b while b: /b -> /a) has no such order: one application of it is first parked, given no
 *   route prefix (its running spec with routePrefix null: the route prefix is not part of a deployment's version,
 *   so no replica restarts), which frees its prefix for the next; it gets its new one at its turn.
 */
import type { AppSpec } from '@shoal/core';
import type { ApplicationChange, ConfigPlan } from './diff.ts';

export type Step =
  | { kind: 'delete'; name: string }
  /** Running `spec` under its name with no route prefix, for now: `from` goes to `for`. */
  | { kind: 'park'; name: string; from: string; for: string; spec: AppSpec }
  /** The application as the file has it; `from` is the route prefix it ran with (undefined: it is new). */
  | { kind: 'send'; name: string; change: ApplicationChange; spec: AppSpec; from?: string | null; parked: boolean };

/** The steps that apply `plan` to a head running `running`, in an order the head accepts. */
export function orderSteps(plan: ConfigPlan, running: readonly AppSpec[]): Step[] {
  const steps: Step[] = plan.deleted.map((name) => ({ kind: 'delete', name }));
  const holder = new Map<string, string>();
  for (const r of running) if (r.routePrefix !== null && !plan.deleted.includes(r.name)) holder.set(r.routePrefix, r.name);
  const pending = plan.applications.filter((a): a is ApplicationChange & { spec: AppSpec } => a.spec !== undefined);
  const parked = new Set<string>();
  const free = (a: { name: string; spec: AppSpec }): boolean => {
    const p = a.spec.routePrefix;
    const h = p === null ? undefined : holder.get(p);
    return h === undefined || h === a.name;
  };
  const release = (name: string): void => {
    for (const [p, n] of holder) if (n === name) holder.delete(p);
  };
  while (pending.length > 0) {
    let i = pending.findIndex(free);
    if (i === -1) {
      // Every one left waits for a prefix another one left holds: follow the chain from the first to a cycle, and
      // park the member found there.
      const byName = new Map(pending.map((a) => [a.name, a]));
      const seen = new Set<string>();
      let cur = pending[0]!.name;
      while (!seen.has(cur)) {
        seen.add(cur);
        const next = holder.get(byName.get(cur)!.spec.routePrefix!);
        if (next === undefined || !byName.has(next)) break;
        cur = next;
      }
      const spec = running.find((r) => r.name === cur);
      const from = spec?.routePrefix ?? null;
      const taker = pending.find((a) => a.name !== cur && a.spec.routePrefix === from);
      if (spec === undefined || from === null || taker === undefined || parked.has(cur)) {
        // Not a cycle of the file's own applications (cannot happen after checkPrefixes): send in the file's order
        // and let the head say what holds the prefix.
        i = 0;
      } else {
        steps.push({ kind: 'park', name: cur, from, for: taker.name, spec: { ...spec, routePrefix: null } });
        parked.add(cur);
        release(cur);
        continue;
      }
    }
    const [a] = pending.splice(i, 1) as [ApplicationChange & { spec: AppSpec }];
    const before = running.find((r) => r.name === a.name);
    release(a.name);
    if (a.spec.routePrefix !== null) holder.set(a.spec.routePrefix, a.name);
    steps.push({ kind: 'send', name: a.name, change: a, spec: a.spec, ...(before !== undefined ? { from: before.routePrefix } : {}), parked: parked.has(a.name) });
  }
  return steps;
}

const prefix = (p: string | null | undefined): string => (p === null || p === undefined ? 'none' : `"${p}"`);

/** One step as the deploy's output names it. */
export function describeStep(step: Step): string {
  switch (step.kind) {
    case 'delete': return `delete application "${step.name}" (not in config, --prune)`;
    case 'park': return `application "${step.name}": no route prefix for now, so that "${step.for}" can take "${step.from}"`;
    case 'send': {
      const moved = step.from !== undefined && step.from !== step.spec.routePrefix ? ` (route prefix ${prefix(step.from)} -> ${prefix(step.spec.routePrefix)})` : '';
      return `application "${step.name}": ${step.change.action}${moved}`;
    }
  }
}

/** The numbered steps, one a line. */
export function formatSteps(steps: readonly Step[], from = 0): string {
  return steps.map((s, i) => `  ${from + i + 1}. ${describeStep(s)}\n`).join('');
}
