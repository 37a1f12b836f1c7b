/**
 * A/B experiments in the head: the statistics behind the per-variant report (distributions, fixed-sample tests,
 * streaming accumulators, the always-valid mSPRT, sample sizes).
 *
 *   twoProportionZTest({ successes: 100, trials: 1000 }, { successes: 130, trials: 1000 }).pValue   // 0.035
 */
export {
  normalCdf, normalQuantile, normalTwoSidedP, studentTCdf, studentTQuantile, studentTTwoSidedP, twoProportionZTest, welchTTest,
  wilsonInterval, meanInterval, type TestResult, type WelchResult, type RateSample, type MeanSample,
} from './stats.ts';
export { RateAccumulator, MeanAccumulator } from './accumulators.ts';
export { SequentialComparison, msprtStep, type MsprtStep } from './sequential.ts';
export { sampleSizeForRate, sampleSizeForMean, powerForRate, powerForMean } from './sample-size.ts';
