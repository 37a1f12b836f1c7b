/** The InvalidOptionError compileDeploymentOptions throws for `input`; fails the test when it accepts it. */
import { expect } from 'vitest';
import { compileDeploymentOptions, InvalidOptionError, type DeploymentOptions } from '../src/index.ts';

export function errorFor(input: unknown): InvalidOptionError {
  try {
    compileDeploymentOptions(input as DeploymentOptions, 'Model');
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidOptionError);
    return err as InvalidOptionError;
  }
  throw new Error(`accepted ${JSON.stringify(input)}`);
}
