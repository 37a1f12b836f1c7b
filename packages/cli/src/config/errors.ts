/**
 * The error of a config file that cannot be applied as written: a YAML syntax error, a field of the wrong type or
 * value, a deployment the application does not have. Its message names the file, then one line per problem with the
 * path in the file and, when the file has that node, its line and column:
 *
 *   config.yaml: applications[0].deployments[1].numReplicas: expected a non-negative integer, got "two" (line 9, column 22)
 *
 * Branded with Symbol.for, as shoal's other errors are, so `instanceof` holds across two copies of the package.
 */
const BRAND = Symbol.for('shoal.config-error');

/** One problem in a config file. */
export interface ConfigProblem {
  /** Where in the file: `applications[0].deployments[1].numReplicas`; '' for the whole file. */
  path: string;
  message: string;
  /** 1-based position of the node in the file, when the file has it. */
  line?: number;
  column?: number;
}

export class ConfigError extends Error {
  readonly code = 'ERR_INVALID_CONFIG';
  /** The command exits with 2: nothing was applied. */
  readonly exitCode = 2;

  constructor(readonly file: string, readonly problems: readonly ConfigProblem[]) {
    super(problems.map((p) => formatProblem(file, p)).join('\n'));
    this.name = new.target.name;
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    if (typeof value !== 'object' || value === null) return false;
    for (let p: unknown = Object.getPrototypeOf(value); p !== null && p !== undefined; p = Object.getPrototypeOf(p)) {
      if (Object.prototype.hasOwnProperty.call(p, BRAND)) return true;
    }
    return false;
  }
}
Object.defineProperty(ConfigError.prototype, BRAND, { value: 'ConfigError' });

function formatProblem(file: string, p: ConfigProblem): string {
  const at = p.line === undefined ? '' : ` (line ${p.line}${p.column === undefined ? '' : `, column ${p.column}`})`;
  return `${file}: ${p.path === '' ? '' : `${p.path}: `}${p.message}${at}`;
}

/** `applications[0].deployments[1].numReplicas` from its segments. */
export function pathString(segments: ReadonlyArray<string | number>): string {
  let out = '';
  for (const s of segments) out += typeof s === 'number' ? `[${s}]` : out === '' ? s : `.${s}`;
  return out;
}

/** The segments of a path pathString() wrote (and of an option path core's compilers name). */
export function pathSegments(path: string): Array<string | number> {
  const out: Array<string | number> = [];
  for (const m of path.matchAll(/([^.[\]]+)|\[(\d+)\]/g)) out.push(m[2] !== undefined ? Number(m[2]) : m[1]!);
  return out;
}
