/** Checks that docs/METRICS.md names every shoal_* metric: in a live exposition, and in the sources that define them. */
import { readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..');
export const METRICS_DOC = join(ROOT, 'docs/METRICS.md');

/** Metric names the doc lists, each written as `name` (in backquotes). */
export function documentedMetrics(): Set<string> {
  const doc = readFileSync(METRICS_DOC, 'utf8');
  return new Set([...doc.matchAll(/`(shoal_[a-z0-9_]+)`/g)].map((m) => m[1]!));
}

/** The shoal_* families of a Prometheus text exposition (one per `# TYPE` line). */
export function exportedMetrics(text: string): string[] {
  return [...text.matchAll(/^# TYPE (shoal_[a-z0-9_]+) /gm)].map((m) => m[1]!);
}

/** Every metric name a source file under packages/<pkg>/src defines as a literal (`name: 'shoal_...'`). */
export function definedMetrics(): Map<string, string> {
  const out = new Map<string, string>();
  for (const pkg of readdirSync(join(ROOT, 'packages'))) {
    const src = join(ROOT, 'packages', pkg, 'src');
    let files: string[];
    try { files = readdirSync(src, { recursive: true, encoding: 'utf8' }); } catch { continue; }
    for (const f of files) {
      if (!f.endsWith('.ts')) continue;
      const text = readFileSync(join(src, f), 'utf8');
      for (const m of text.matchAll(/name: '(shoal_[a-z0-9_]+)'/g)) out.set(m[1]!, `packages/${pkg}/src/${f}`);
    }
  }
  return out;
}
