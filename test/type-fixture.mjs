/**
 * Compile-time checks that fail a vitest run, not only `tsc -b`: a type fixture is a .ts file that is compiled and
 * never run, with negative checks written as `// @ts-expect-error TSnnnn: why`. checkTypeFixture compiles it with
 * the compiler options of the project that includes it, twice: as written (no diagnostic expected, so an unused
 * directive or a failed expectTypeOf shows), and with every directive disabled, where each directive's next line
 * must report exactly the error code it names and no other line may report anything.
 *
 * Plain JavaScript with a .d.mts beside it, so the test projects of every package can import it without taking
 * this file into their rootDir.
 */
import { resolve } from 'node:path';
import ts from 'typescript';

const DIRECTIVE = /\/\/\s*@ts-expect-error\b(.*)$/;

/** @param {readonly ts.Diagnostic[]} diags @param {ts.SourceFile} sf */
function located(diags, sf) {
  return diags.map((d) => ({
    line: d.start === undefined ? 0 : sf.getLineAndCharacterOfPosition(d.start).line + 1,
    code: d.code,
    message: ts.flattenDiagnosticMessageText(d.messageText, '\n'),
  }));
}

/**
 * @param {string} fixture path of the fixture file
 * @param {string} tsconfig path of the tsconfig.json whose project includes it (its compiler options are used)
 * @returns {import('./type-fixture.d.mts').TypeFixtureResult}
 */
export function checkTypeFixture(fixture, tsconfig) {
  const file = resolve(fixture);
  const parsed = ts.getParsedCommandLineOfConfigFile(resolve(tsconfig), {}, {
    ...ts.sys,
    onUnRecoverableConfigFileDiagnostic: (d) => { throw new Error(`${tsconfig}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`); },
  });
  if (parsed === undefined) throw new Error(`${tsconfig}: cannot be read`);
  if (!parsed.fileNames.map((f) => resolve(f)).includes(file)) throw new Error(`${fixture} is not in the project of ${tsconfig}`);
  // One file of the project, checked on its own: no build outputs, no project bookkeeping.
  const options = { ...parsed.options, noEmit: true, composite: false, incremental: false, declaration: false, tsBuildInfoFile: undefined, rootDir: undefined };

  const original = ts.sys.readFile(file);
  if (original === undefined) throw new Error(`${fixture}: cannot be read`);
  const lines = original.split('\n');
  const directives = [];
  lines.forEach((text, i) => {
    const m = DIRECTIVE.exec(text);
    if (m === null) return;
    const code = /^\s*TS(\d+)\b/.exec(m[1] ?? '');
    if (code === null) throw new Error(`${fixture}:${i + 1}: a @ts-expect-error here must name the error it expects (// @ts-expect-error TSnnnn: why)`);
    directives.push({ line: i + 1, target: i + 2, code: Number(code[1]), text: text.trim() });
  });
  // Same length and lines, so positions and line numbers do not move.
  const disabled = lines.map((text) => text.replace(/@ts-expect-error/, '@no-expect-error')).join('\n');

  const base = ts.createCompilerHost(options, true);
  const cache = new Map();
  const compile = (text) => {
    const host = {
      ...base,
      getSourceFile(name, languageVersion, onError, shouldCreate) {
        if (resolve(name) === file) return ts.createSourceFile(name, text, languageVersion, true);
        const key = resolve(name);
        if (!cache.has(key)) cache.set(key, base.getSourceFile(name, languageVersion, onError, shouldCreate));
        return cache.get(key);
      },
    };
    const program = ts.createProgram({ rootNames: [file], options, host });
    const sf = program.getSourceFile(file);
    return located([...program.getOptionsDiagnostics(), ...program.getSyntacticDiagnostics(sf), ...program.getSemanticDiagnostics(sf)], sf);
  };

  const errors = compile(original);
  const withoutDirectives = compile(disabled);
  const targets = new Set(directives.map((d) => d.target));
  return {
    errors,
    expectations: directives.map((d) => ({ ...d, got: withoutDirectives.filter((e) => e.line === d.target).map((e) => e.code) })),
    stray: withoutDirectives.filter((e) => !targets.has(e.line)),
  };
}
