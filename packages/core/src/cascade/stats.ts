/**
 * What a cascade counts. The runner reports events to a {@link CascadeObserver}; {@link CascadeStats} keeps them
 * as plain numbers for the JSON `cascadeStats()` answer, and the Prometheus sink (metrics.ts) keeps them as series.
 */
import type { EscalationReason } from './options.ts';

export type CascadeModel = 'small' | 'large';
/** Why a model was called: to answer the caller, or to audit a confident small answer in the background. */
export type CascadeCallPurpose = 'serve' | 'audit';
/** An audit that compared both answers ('agree', 'disagree'), or one sampled that never compared them. */
export type AuditResult = 'agree' | 'disagree' | 'busy' | 'error';

export interface CascadeObserver {
  /** A call into the cascade's method began. */
  request(): void;
  /** The request goes on to the large model. */
  escalated(reason: EscalationReason): void;
  /** One call to a model finished after `ms` (ok: it answered). */
  modelCall(model: CascadeModel, purpose: CascadeCallPurpose, ms: number, ok: boolean): void;
  /** The caller got its answer from `model` after `ms` end to end. */
  answered(model: CascadeModel, ms: number): void;
  /** The caller got an error; `model` is the one whose call failed. */
  failed(model: CascadeModel, ms: number): void;
  /**
   * Latency accounting of one answered request against sending it straight to the large model: `savedMs` and
   * `addedMs` (at most one of them non-zero), or `estimated: false` when no large-model latency was known yet.
   */
  latency(savedMs: number, addedMs: number, estimated: boolean): void;
  /** A sampled audit ended. */
  audit(result: AuditResult): void;
  /** An escalation for low confidence whose small answer agree()d, or not, with the large answer. */
  escalationAgreement(agreed: boolean): void;
}

export interface LatencyJson {
  count: number;
  sumMs: number;
  /** null before the first observation. */
  meanMs: number | null;
}

/** One replica's cascade counters, as `cascadeStats()` answers them. */
export interface CascadeStatsJson {
  app: string;
  deployment: string;
  replicaId: string;
  threshold: number;
  auditSampleRate: number;
  /** Calls into the cascade's method (answered, failed, or still running). */
  requests: number;
  answered: { small: number; large: number };
  errors: { small: number; large: number };
  escalations: { total: number; lowConfidence: number; smallError: number; invalidConfidence: number };
  /** What the last invalid confidence was (confidence() threw, or gave a value outside the range), or null. */
  lastInvalidConfidence: string | null;
  /** escalations.total / requests, or null before the first request. */
  escalationRate: number | null;
  audits: {
    /** Confident answers whose large-model audit compared both answers. */
    compared: number;
    agreements: number;
    /** agreements / compared: the small model's confident answers' agreement with the large model; null before one. */
    agreementRate: number | null;
    /** Audits sampled but skipped: maxConcurrentAudits were already running. */
    lostBusy: number;
    /** Audits whose large call, or agree(), failed. */
    lostError: number;
    /** Audits running now. */
    inflight: number;
  };
  /** Low-confidence escalations whose small answer agree()d with the large one anyway (only with `agree`). */
  escalationAgreements: { compared: number; agreements: number };
  latency: { small: LatencyJson; large: LatencyJson; endToEnd: LatencyJson };
  latencySaved: {
    /** Sum over answers of the small model of (mean large latency - what the caller waited), where positive. */
    savedMs: number;
    /** Sum of what callers waited beyond the large model's time: escalations' detour, and slow small answers. */
    addedMs: number;
    /** savedMs - addedMs: end-to-end time saved against sending every request straight to the large model. */
    netMs: number;
    /** Small answers given before any large-model latency was measured, so left out of savedMs. */
    unestimated: number;
    /** Mean latency of the large model's successful calls (escalations and audits), or null before one. */
    largeMeanMs: number | null;
  };
}

class Latency {
  count = 0;
  sumMs = 0;
  add(ms: number): void { this.count++; this.sumMs += ms; }
  get meanMs(): number | null { return this.count === 0 ? null : this.sumMs / this.count; }
  json(): LatencyJson { return { count: this.count, sumMs: this.sumMs, meanMs: this.meanMs }; }
}

const REASON_KEY = { low_confidence: 'lowConfidence', small_error: 'smallError', invalid_confidence: 'invalidConfidence' } as const;

/** The JSON counters of one replica's cascade. */
export class CascadeStats implements CascadeObserver {
  private requests = 0;
  private readonly answeredBy = { small: 0, large: 0 };
  private readonly errors = { small: 0, large: 0 };
  private readonly escalations = { total: 0, lowConfidence: 0, smallError: 0, invalidConfidence: 0 };
  private readonly audits = { compared: 0, agreements: 0, lostBusy: 0, lostError: 0 };
  private readonly escalationAgreements = { compared: 0, agreements: 0 };
  private readonly small = new Latency();
  /** Successful large-model calls only: the counterfactual latency of a small answer is the large model's. */
  private readonly largeOk = new Latency();
  private readonly large = new Latency();
  private readonly endToEnd = new Latency();
  private readonly saved = { savedMs: 0, addedMs: 0, unestimated: 0 };
  private lastInvalid: string | null = null;

  constructor(private readonly identity: { app: string; deployment: string; replicaId: string; threshold: number; auditSampleRate: number }) {}

  /** Mean of the large model's successful calls so far, or undefined before one. */
  largeMeanMs(): number | undefined { return this.largeOk.meanMs ?? undefined; }

  /** Keeps a description of an invalid confidence, for the JSON stats (the count is in escalations). */
  invalidConfidence(description: string): void { this.lastInvalid = description; }

  request(): void { this.requests++; }
  escalated(reason: EscalationReason): void { this.escalations.total++; this.escalations[REASON_KEY[reason]]++; }
  modelCall(model: CascadeModel, _purpose: CascadeCallPurpose, ms: number, ok: boolean): void {
    if (model === 'small') { this.small.add(ms); return; }
    this.large.add(ms);
    if (ok) this.largeOk.add(ms);
  }
  answered(model: CascadeModel, ms: number): void { this.answeredBy[model]++; this.endToEnd.add(ms); }
  failed(model: CascadeModel, ms: number): void { this.errors[model]++; this.endToEnd.add(ms); }
  latency(savedMs: number, addedMs: number, estimated: boolean): void {
    if (!estimated) { this.saved.unestimated++; return; }
    this.saved.savedMs += savedMs;
    this.saved.addedMs += addedMs;
  }
  audit(result: AuditResult): void {
    if (result === 'busy') this.audits.lostBusy++;
    else if (result === 'error') this.audits.lostError++;
    else { this.audits.compared++; if (result === 'agree') this.audits.agreements++; }
  }
  escalationAgreement(agreed: boolean): void { this.escalationAgreements.compared++; if (agreed) this.escalationAgreements.agreements++; }

  json(inflightAudits: number): CascadeStatsJson {
    const a = this.audits;
    return {
      ...this.identity,
      requests: this.requests,
      answered: { ...this.answeredBy },
      errors: { ...this.errors },
      escalations: { ...this.escalations },
      lastInvalidConfidence: this.lastInvalid,
      escalationRate: this.requests === 0 ? null : this.escalations.total / this.requests,
      audits: { ...a, agreementRate: a.compared === 0 ? null : a.agreements / a.compared, inflight: inflightAudits },
      escalationAgreements: { ...this.escalationAgreements },
      latency: { small: this.small.json(), large: this.large.json(), endToEnd: this.endToEnd.json() },
      latencySaved: { ...this.saved, netMs: this.saved.savedMs - this.saved.addedMs, largeMeanMs: this.largeOk.meanMs },
    };
  }
}

/** Reports every event to each observer in turn. */
export function fanOut(observers: readonly CascadeObserver[]): CascadeObserver {
  return {
    request: () => { for (const o of observers) o.request(); },
    escalated: (r) => { for (const o of observers) o.escalated(r); },
    modelCall: (m, p, ms, ok) => { for (const o of observers) o.modelCall(m, p, ms, ok); },
    answered: (m, ms) => { for (const o of observers) o.answered(m, ms); },
    failed: (m, ms) => { for (const o of observers) o.failed(m, ms); },
    latency: (s, a, e) => { for (const o of observers) o.latency(s, a, e); },
    audit: (r) => { for (const o of observers) o.audit(r); },
    escalationAgreement: (a) => { for (const o of observers) o.escalationAgreement(a); },
  };
}
