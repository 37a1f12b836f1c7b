/**
 * A/B experiments in the head: sticky weighted assignment, outcomes by request id, and per-variant statistics
 * with verdicts that peeking cannot inflate (a fixed horizon, or the always-valid mSPRT).
 *
 *   const exp = new Experiment({ name: 'checkout', variants: [{ name: 'A' }, { name: 'B' }], metric: 'conversion' });
 *   exp.recordAssignment('req-1', exp.assign('user-42'));
 *   exp.recordOutcome({ requestId: 'req-1', value: true });
 *   console.log(exp.format());
 */
export { Experiment, MAX_REQUEST_ID_CHARS, type ExperimentDeps, type OutcomeInput, type OutcomeReceipt } from './experiment.ts';
export {
  compileExperimentOptions, MAX_VARIANTS, type ExperimentOptions, type CompiledExperimentOptions, type VariantOptions, type CompiledVariant,
  type MetricKind, type ExperimentMode,
} from './experiment-options.ts';
export {
  formatExperimentReport, type ExperimentReport, type VariantReport, type ComparisonReport, type SampleSizeHint, type Verdict, type TestName,
} from './experiment-report.ts';
export { DuplicateOutcomeError } from './errors.ts';
export {
  normalCdf, normalQuantile, normalTwoSidedP, studentTCdf, studentTQuantile, studentTTwoSidedP, twoProportionZTest, welchTTest,
  wilsonInterval, meanInterval, type TestResult, type WelchResult, type RateSample, type MeanSample,
} from './stats.ts';
export { RateAccumulator, MeanAccumulator } from './accumulators.ts';
export { SequentialComparison, msprtStep, type MsprtStep } from './sequential.ts';
export { sampleSizeForRate, sampleSizeForMean, powerForRate, powerForMean } from './sample-size.ts';
