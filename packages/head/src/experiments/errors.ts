/**
 * The experiments' own error. The others an outcome can meet are core's: NotFoundError (404) for a request id
 * never assigned, forgotten past maxAssignments or expired, and BadRequestError (400) for a value of the wrong kind.
 *
 * The code is not (yet) a member of core's ErrorCode union, which this package does not edit; the constructor
 * casts it once, as the state store's errors do. The HTTP API answers with its httpStatus and message.
 */
import { ShoalError, type ErrorCode } from '@shoal/core';

// The same brand core's errors carry (core does not export its helper), so `instanceof` survives two copies.
const BRAND = Symbol.for('shoal.error');

/**
 * ERR_DUPLICATE_OUTCOME (409): a second outcome for a request id that already has one. The first one counts;
 * this one was not counted. `details` has the experiment, the request id and its variant.
 */
export class DuplicateOutcomeError extends ShoalError {
  constructor(experiment: string, requestId: string, variant: string) {
    super(
      'ERR_DUPLICATE_OUTCOME' as unknown as ErrorCode,
      `experiment "${experiment}": request id ${JSON.stringify(requestId)} (variant "${variant}") already has an outcome; the first one counts, this one was not counted`,
      { httpStatus: 409, details: { experiment, requestId, variant } },
    );
  }
}
Object.defineProperty(DuplicateOutcomeError.prototype, BRAND, { value: DuplicateOutcomeError.name });
