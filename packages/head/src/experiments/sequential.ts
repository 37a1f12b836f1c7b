/**
 * The mixture sequential probability ratio test (mSPRT) of Johari, Koomen, Pekelis and Walsh, "Always Valid
 * Inference: Continuous Monitoring of A/B Tests" (Operations Research, 2022), with a normal mixture N(0, tau²)
 * over the difference of the two arms' means (or rates). Its p-value and confidence sequence stay valid however
 * often, and whenever, they are looked at: P(the p-value ever falls to alpha | no difference) <= alpha.
 *
 *   const seq = new SequentialComparison(tau, alpha);
 *   // after every outcome, once both arms have minSamples:
 *   seq.observe(treatmentMean - controlMean, controlVar / n1 + treatmentVar / n2);
 *   seq.pValue;        // the always-valid p-value: running minimum of 1 / Λ
 *   seq.interval;      // the running intersection of the confidence sequence
 *
 * With Δ the observed difference and V its variance (σ1²/n1 + σ2²/n2, each arm's variance estimated from its
 * data: the plug-in of the paper's section 4), the mixture likelihood ratio against "difference = θ0" is
 *
 *   Λ = sqrt(V / (V + τ²)) · exp(τ² (Δ - θ0)² / (2 V (V + τ²)))
 *
 * and the confidence sequence, the θ0 not rejected, is Δ ± sqrt(V (V + τ²) / τ² · (ln((V + τ²) / V) + 2 ln(1/α))).
 * τ sets where the test is most powerful: near an effect of size τ. The plug-in variance makes validity
 * asymptotic; the experiment waits for minSamples per arm before its first update, and the unit tests measure the
 * false positive rate under continuous monitoring by simulation.
 */

/** One evaluation of the mixture likelihood ratio: Λ, 1/Λ capped at 1, and the (1 - alpha) confidence sequence. */
export interface MsprtStep {
  readonly logLambda: number;
  readonly pValue: number;
  readonly ci: readonly [number, number];
}

/** Λ, p = min(1, 1/Λ) and the confidence sequence at one time; `variance` is V, the difference's variance (> 0). */
export function msprtStep(difference: number, variance: number, tau: number, alpha: number, theta0 = 0): MsprtStep {
  const tau2 = tau * tau;
  const vt = variance + tau2;
  const d = difference - theta0;
  const logLambda = 0.5 * Math.log(variance / vt) + (tau2 * d * d) / (2 * variance * vt);
  const half = Math.sqrt(((variance * vt) / tau2) * (Math.log(vt / variance) + 2 * Math.log(1 / alpha)));
  return { logLambda, pValue: Math.min(1, Math.exp(-logLambda)), ci: [difference - half, difference + half] };
}

/**
 * The running state of one treatment-versus-control mSPRT: the always-valid p-value (the minimum of 1/Λ over
 * every update) and the intersection of the confidence sequences. Once the p-value reaches alpha it stays there:
 * the test stopped, and later data do not take the verdict back.
 */
export class SequentialComparison {
  private minP = 1;
  private lo = Number.NEGATIVE_INFINITY;
  private hi = Number.POSITIVE_INFINITY;
  private latest: readonly [number, number] | undefined;
  /** Updates taken (those with V = 0, no spread yet, are skipped). */
  updates = 0;

  constructor(readonly tau: number, readonly alpha: number) {}

  /** One update with the current difference and its variance; a variance that is not > 0 is skipped. */
  observe(difference: number, variance: number): void {
    if (!(variance > 0) || !Number.isFinite(difference)) return;
    const step = msprtStep(difference, variance, this.tau, this.alpha);
    this.updates += 1;
    if (step.pValue < this.minP) this.minP = step.pValue;
    this.lo = Math.max(this.lo, step.ci[0]);
    this.hi = Math.min(this.hi, step.ci[1]);
    this.latest = step.ci;
  }

  /** The always-valid p-value: 1 before the first update. */
  get pValue(): number {
    return this.minP;
  }

  /** True once the p-value has reached alpha. */
  get significant(): boolean {
    return this.minP <= this.alpha;
  }

  /**
   * The intersection of every confidence sequence so far; null before the first update. The plug-in variance can,
   * rarely, leave the intersection empty: then the latest interval, which is valid by itself.
   */
  get interval(): readonly [number, number] | null {
    if (this.latest === undefined) return null;
    return this.lo <= this.hi ? [this.lo, this.hi] : this.latest;
  }
}
