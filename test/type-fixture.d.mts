/** A diagnostic of the fixture file: its 1-based line, TypeScript's error code and message. */
export interface FixtureDiagnostic {
  line: number;
  code: number;
  message: string;
}

/** One `// @ts-expect-error TSnnnn: why` of the fixture. */
export interface FixtureExpectation {
  /** Line of the directive. */
  line: number;
  /** The line it covers (the next one). */
  target: number;
  /** The error code the directive names. */
  code: number;
  /** The directive as written. */
  text: string;
  /** Error codes on `target` once the directive is disabled: exactly [code] when the check holds. */
  got: number[];
}

export interface TypeFixtureResult {
  /** Diagnostics of the fixture as written: none when every positive check holds and every directive is used. */
  errors: FixtureDiagnostic[];
  expectations: FixtureExpectation[];
  /** Diagnostics, with the directives disabled, on lines no directive covers: none expected. */
  stray: FixtureDiagnostic[];
}

/** Type-checks `fixture` with the options of `tsconfig` (the project including it); see type-fixture.mjs. */
export function checkTypeFixture(fixture: string, tsconfig: string): TypeFixtureResult;
