/** The InvalidOptionError an options compiler throws for an input; fails the test when it accepts it. */
import { expect } from 'vitest';
import { compileDeploymentOptions, InvalidOptionError, type DeploymentOptions } from '../src/index.ts';

/** The InvalidOptionError `compile(input)` throws; fails the test when it accepts `input`. */
export function optionErrorOf(compile: (input: never) => unknown, input: unknown): InvalidOptionError {
  try {
    compile(input as never);
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidOptionError);
    return err as InvalidOptionError;
  }
  throw new Error(`accepted ${JSON.stringify(input)}`);
}

/** The InvalidOptionError compileDeploymentOptions throws for `input`. */
export function errorFor(input: unknown): InvalidOptionError {
  return optionErrorOf((x: DeploymentOptions) => compileDeploymentOptions(x, 'Model'), input);
}
