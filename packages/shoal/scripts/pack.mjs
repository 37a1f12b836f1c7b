#!/usr/bin/env node
/**
 * `pnpm run pack [--out DIR] [--no-clean]`: builds every public package of the repository (packages/*) and packs
 * each with `pnpm pack` (which turns workspace:* into the real versions; npm pack would not), then checks every
 * tarball and prints their paths, one a line, on stdout (progress goes to stderr).
 *
 *   --out DIR    where the tarballs go (default .pack/ at the repository root, which ignores itself in git)
 *   --no-clean   keep the existing dist/ and build incrementally; for a caller whose other processes are running
 *                the compiled packages (the install test, inside the test suite). Output whose source is gone (left
 *                over from a removed or renamed file; only a clean build would drop it) is deleted instead.
 *
 * By default dist/ and tsconfig.tsbuildinfo of every packed package are removed first, so nothing stale ships.
 * The check of each tarball: no src/, test/ or TypeScript source inside, every file that "exports" (its types and
 * import conditions) and "bin" name is there, and no workspace: range is left in its package.json.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const ROOT = resolve(import.meta.dirname, '..', '..', '..');
const log = (msg) => process.stderr.write(`pack: ${msg}\n`);

class PackError extends Error {}

function options() {
  const { values } = parseArgs({
    options: { out: { type: 'string' }, 'no-clean': { type: 'boolean', default: false } },
    strict: true,
  });
  if (values.out === '') throw new PackError('--out needs a directory');
  return { out: values.out !== undefined ? resolve(values.out) : undefined, clean: !values['no-clean'] };
}

/** The packages under packages/ that are not private: { name, dir, manifest }. */
function publicPackages() {
  const base = join(ROOT, 'packages');
  return readdirSync(base)
    .map((d) => join(base, d))
    .filter((dir) => existsSync(join(dir, 'package.json')))
    .map((dir) => ({ dir, manifest: JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) }))
    .filter((p) => p.manifest.private !== true)
    .map((p) => ({ name: p.manifest.name, ...p }))
    .sort((a, b) => a.name.localeCompare(b.name));
}

function run(cmd, args, cwd) {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20 });
  if (r.error !== undefined) throw new PackError(`${cmd} ${args.join(' ')} could not start: ${r.error.message}`);
  if (r.status !== 0) {
    throw new PackError(`${cmd} ${args.join(' ')} (in ${relative(ROOT, cwd) || '.'}) exited with ${r.status ?? r.signal}:\n${r.stdout}${r.stderr}`);
  }
  return r.stdout;
}

function filesUnder(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true }).map(String).filter((f) => statSync(join(dir, f)).isFile());
}

/** x.ts, x.mjs, x.d.ts, x.js.map, ... -> x */
const stem = (f) => f.replace(/(\.d)?\.[mc]?[jt]s(\.map)?$/, '');

/** dist/ files whose source is gone: an incremental build keeps them, and they would ship. */
function staleOutputs(pkg) {
  const sources = new Set(filesUnder(join(pkg.dir, 'src')).map(stem));
  return filesUnder(join(pkg.dir, 'dist')).filter((f) => !sources.has(stem(f))).map((f) => join(pkg.dir, 'dist', f));
}

function build(packages, clean) {
  if (clean) {
    for (const p of packages) {
      rmSync(join(p.dir, 'dist'), { recursive: true, force: true });
      rmSync(join(p.dir, 'tsconfig.tsbuildinfo'), { force: true });
    }
  }
  const tsc = createRequire(join(ROOT, 'package.json')).resolve('typescript/bin/tsc');
  log(`${clean ? 'clean build' : 'incremental build'} of ${packages.length} packages (tsc -b)`);
  run(process.execPath, [tsc, '-b', ...packages.map((p) => relative(ROOT, p.dir))], ROOT);
  if (!clean) {
    const stale = packages.flatMap(staleOutputs);
    for (const f of stale) rmSync(f);
    if (stale.length > 0) log(`deleted ${stale.length} build outputs whose source is gone: ${stale.map((f) => relative(ROOT, f)).join(', ')}`);
  }
}

/** The file paths (relative to the package root) an "exports" value names, "source" conditions left out. */
function exportTargets(value) {
  if (typeof value === 'string') return [value];
  if (value === null || typeof value !== 'object') return [];
  return Object.entries(value).flatMap(([key, v]) => (key === 'source' ? [] : exportTargets(v)));
}

/** Problems of one tarball, one line each; an empty list when it is fine. */
function checkTarball(tarball) {
  const entries = run('tar', ['tzf', tarball], ROOT).split('\n').filter((l) => l !== '' && !l.endsWith('/'));
  const files = new Set(entries.map((e) => e.replace(/^package\//, '')));
  const manifest = JSON.parse(run('tar', ['xzfO', tarball, 'package/package.json'], ROOT));
  const problems = [];
  for (const f of files) {
    if (/^(src|test)\//.test(f)) problems.push(`ships ${f} (src/ and test/ stay out)`);
    else if (/\.(ts|mts|cts)$/.test(f) && !/\.d\.(ts|mts|cts)$/.test(f)) problems.push(`ships the TypeScript source ${f}`);
    else if (/(^|\/)(node_modules\/|[^/]*\.tsbuildinfo$|[^/]*\.test\.)/.test(f)) problems.push(`ships ${f}`);
  }
  const named = [
    ...exportTargets(manifest.exports ?? {}),
    ...(typeof manifest.bin === 'string' ? [manifest.bin] : Object.values(manifest.bin ?? {})),
  ];
  for (const target of named) {
    const path = target.replace(/^\.\//, '');
    if (!files.has(path)) problems.push(`"exports"/"bin" names ${target}, which is not in the tarball`);
  }
  for (const field of ['dependencies', 'optionalDependencies', 'peerDependencies']) {
    for (const [dep, range] of Object.entries(manifest[field] ?? {})) {
      if (String(range).startsWith('workspace:')) problems.push(`${field}.${dep} is still ${range}`);
    }
  }
  if (manifest.name === '@shoal/native') {
    if (!files.has('cpp/CMakeLists.txt')) problems.push('has no cpp/CMakeLists.txt (the C++ sources the install builds)');
    if ([...files].some((f) => f.startsWith('cpp/tests/'))) problems.push('ships the C++ tests (cpp/tests/)');
  }
  return problems;
}

/** One `pnpm -r pack` for all of them (one pnpm start instead of one per package); the tarball paths by name. */
function pack(packages, out) {
  const filters = packages.flatMap((p) => ['--filter', p.name]);
  const text = run('npx', ['-y', 'pnpm@10', '-r', ...filters, 'pack', '--pack-destination', out, '--json'], ROOT);
  // pnpm prints lifecycle output (@shoal/native's prepack and postpack) before the JSON array.
  const start = text.search(/^\[/m);
  if (start < 0) throw new PackError(`pnpm pack printed no JSON:\n${text}`);
  const packed = new Map(JSON.parse(text.slice(start)).map((r) => [r.name, resolve(ROOT, r.filename)]));
  return packages.map((p) => {
    const tarball = packed.get(p.name);
    if (tarball === undefined) throw new PackError(`pnpm pack did not pack ${p.name}:\n${text}`);
    return { pkg: p, tarball };
  });
}

function main() {
  const opts = options();
  const out = opts.out ?? join(ROOT, '.pack');
  mkdirSync(out, { recursive: true });
  // The default folder is inside the repository: keep it out of git without touching the root .gitignore.
  if (opts.out === undefined) writeFileSync(join(out, '.gitignore'), '*\n');
  const packages = publicPackages();
  build(packages, opts.clean);
  const packed = pack(packages, out);
  const problems = [];
  for (const { pkg, tarball } of packed) {
    log(`${pkg.name} -> ${relative(process.cwd(), tarball)}`);
    problems.push(...checkTarball(tarball).map((line) => `${pkg.name}: ${line}`));
  }
  if (problems.length > 0) throw new PackError(`${problems.length} problem(s) in the tarballs:\n  ${problems.join('\n  ')}`);
  process.stdout.write(`${packed.map((p) => p.tarball).join('\n')}\n`);
}

try {
  main();
} catch (err) {
  if (!(err instanceof PackError) && !(err instanceof TypeError && 'code' in err)) throw err;
  log(err.message);
  process.exit(1);
}
