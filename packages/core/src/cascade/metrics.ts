/**
 * Cascade series in a process's Prometheus registry. A worker registers its registry once
 * (`registerCascadeMetrics`); every cascade replica in the process then records into it, labelled
 * app=<app>, deployment=<cascade deployment>. The series are created on the first event, so a process without a
 * cascade exposes none of them. Counters and histograms, so the head's merge keeps them per worker and sums in
 * PromQL work:
 *
 *   escalation rate      rate(shoal_cascade_escalations_total[5m]) / rate(shoal_cascade_requests_total[5m])
 *   audit agreement      rate(shoal_cascade_audit_agreements_total[5m]) / rate(shoal_cascade_audits_total[5m])
 *   net latency saved    shoal_cascade_latency_saved_seconds_total - shoal_cascade_latency_added_seconds_total
 */
import type { Registry } from 'prom-client';
import { Counter, Histogram } from '../prom.ts';
import type { EscalationReason } from './options.ts';
import type { AuditResult, CascadeCallPurpose, CascadeModel, CascadeObserver } from './stats.ts';

export interface CascadeMetricsOptions {
  /** Histogram buckets, in seconds. @default prom-client's default buckets */
  buckets?: number[];
}

type Labels = { app: string; deployment: string };
const BASE = ['app', 'deployment'] as const;

class CascadeSeries {
  readonly requests: Counter<'app' | 'deployment'>;
  readonly escalations: Counter<'app' | 'deployment' | 'reason'>;
  readonly errors: Counter<'app' | 'deployment' | 'model'>;
  readonly audits: Counter<'app' | 'deployment'>;
  readonly auditAgreements: Counter<'app' | 'deployment'>;
  readonly auditsLost: Counter<'app' | 'deployment' | 'reason'>;
  readonly escalationAgreements: Counter<'app' | 'deployment'>;
  readonly modelDuration: Histogram<'app' | 'deployment' | 'model' | 'call' | 'result'>;
  readonly requestDuration: Histogram<'app' | 'deployment' | 'answered_by'>;
  readonly saved: Counter<'app' | 'deployment'>;
  readonly added: Counter<'app' | 'deployment'>;
  readonly unestimated: Counter<'app' | 'deployment'>;

  constructor(registry: Registry, buckets: number[] | undefined) {
    const registers = [registry];
    const b = buckets === undefined ? {} : { buckets };
    this.requests = new Counter({ name: 'shoal_cascade_requests_total', help: 'Calls into a cascade.', labelNames: BASE, registers });
    this.escalations = new Counter({ name: 'shoal_cascade_escalations_total', help: 'Cascade calls sent on to the large model, by reason (low_confidence, small_error, invalid_confidence).', labelNames: [...BASE, 'reason'], registers });
    this.errors = new Counter({ name: 'shoal_cascade_errors_total', help: 'Cascade calls that failed, by the model whose call failed.', labelNames: [...BASE, 'model'], registers });
    this.audits = new Counter({ name: 'shoal_cascade_audits_total', help: 'Confident small-model answers compared with a background large-model answer.', labelNames: BASE, registers });
    this.auditAgreements = new Counter({ name: 'shoal_cascade_audit_agreements_total', help: 'Audited small-model answers that agreed with the large model.', labelNames: BASE, registers });
    this.auditsLost = new Counter({ name: 'shoal_cascade_audits_lost_total', help: 'Audits sampled but not compared: busy (maxConcurrentAudits running) or error (the large call or agree() failed).', labelNames: [...BASE, 'reason'], registers });
    this.escalationAgreements = new Counter({ name: 'shoal_cascade_escalation_agreements_total', help: 'Low-confidence escalations whose small answer agreed with the large answer anyway.', labelNames: BASE, registers });
    this.modelDuration = new Histogram({ name: 'shoal_cascade_model_duration_seconds', help: 'Duration of a cascade\'s calls to its models, by model, purpose (serve or audit) and result (ok or error).', labelNames: [...BASE, 'model', 'call', 'result'], registers, ...b });
    this.requestDuration = new Histogram({ name: 'shoal_cascade_request_duration_seconds', help: 'End-to-end duration of answered cascade calls, by the model that answered.', labelNames: [...BASE, 'answered_by'], registers, ...b });
    this.saved = new Counter({ name: 'shoal_cascade_latency_saved_seconds_total', help: 'Sum over small-model answers of the large model\'s mean latency minus what the caller waited, where positive.', labelNames: BASE, registers });
    this.added = new Counter({ name: 'shoal_cascade_latency_added_seconds_total', help: 'Sum of what callers waited beyond the large model\'s latency: the small call before an escalation, or a small answer slower than the large mean.', labelNames: BASE, registers });
    this.unestimated = new Counter({ name: 'shoal_cascade_latency_unestimated_total', help: 'Small-model answers given before any large-model latency was measured (left out of the saved seconds).', labelNames: BASE, registers });
  }

  private readonly started = new Set<string>();

  /**
   * Makes every counter series of a cascade exist at 0 from its first event, so a ratio of two of them reads 0
   * (no escalation yet) rather than no data.
   */
  start(l: Labels): this {
    const key = `${l.app}\u0000${l.deployment}`;
    if (this.started.has(key)) return this;
    this.started.add(key);
    for (const c of [this.requests, this.audits, this.auditAgreements, this.escalationAgreements, this.saved, this.added, this.unestimated]) c.inc(l, 0);
    for (const reason of ESCALATION_REASONS) this.escalations.inc({ ...l, reason }, 0);
    for (const model of MODELS) this.errors.inc({ ...l, model }, 0);
    for (const reason of ['busy', 'error']) this.auditsLost.inc({ ...l, reason }, 0);
    return this;
  }
}

const ESCALATION_REASONS: readonly EscalationReason[] = ['low_confidence', 'small_error', 'invalid_confidence'];
const MODELS: readonly CascadeModel[] = ['small', 'large'];

interface Sink { series: CascadeSeries | undefined; registry: Registry; buckets: number[] | undefined; refs: number }

const SINKS_KEY = Symbol.for('shoal.cascadeMetricSinks');
const g = globalThis as unknown as Record<symbol, Map<Registry, Sink> | undefined>;
/** One table per process even if two copies of this package are loaded. */
const sinks: Map<Registry, Sink> = g[SINKS_KEY] ??= new Map<Registry, Sink>();

/**
 * Makes every cascade replica of this process record its series into `registry` (from the next event on).
 * `close()` stops that (the series already made stay in the registry). Registering one registry twice shares it.
 */
export function registerCascadeMetrics(registry: Registry, opts: CascadeMetricsOptions = {}): { close(): void } {
  const sink = sinks.get(registry) ?? { series: undefined, registry, buckets: opts.buckets, refs: 0 };
  sink.refs++;
  sinks.set(registry, sink);
  let closed = false;
  return {
    close: () => {
      if (closed) return;
      closed = true;
      if (--sink.refs === 0) sinks.delete(registry);
    },
  };
}

function each(l: Labels, fn: (s: CascadeSeries) => void): void {
  for (const sink of sinks.values()) fn((sink.series ??= new CascadeSeries(sink.registry, sink.buckets)).start(l));
}

/** An observer that records one cascade's events into every registered registry. */
export function prometheusObserver(labels: Labels): CascadeObserver {
  const l = { app: labels.app, deployment: labels.deployment };
  return {
    request: () => each(l, (s) => s.requests.inc(l)),
    escalated: (reason: EscalationReason) => each(l, (s) => s.escalations.inc({ ...l, reason })),
    modelCall: (model: CascadeModel, call: CascadeCallPurpose, ms: number, ok: boolean) => each(l, (s) => s.modelDuration.observe({ ...l, model, call, result: ok ? 'ok' : 'error' }, ms / 1e3)),
    answered: (model: CascadeModel, ms: number) => each(l, (s) => s.requestDuration.observe({ ...l, answered_by: model }, ms / 1e3)),
    failed: (model: CascadeModel) => each(l, (s) => s.errors.inc({ ...l, model })),
    latency: (savedMs: number, addedMs: number, estimated: boolean) => each(l, (s) => {
      if (!estimated) { s.unestimated.inc(l); return; }
      if (savedMs > 0) s.saved.inc(l, savedMs / 1e3);
      if (addedMs > 0) s.added.inc(l, addedMs / 1e3);
    }),
    audit: (result: AuditResult) => each(l, (s) => {
      if (result === 'busy' || result === 'error') { s.auditsLost.inc({ ...l, reason: result }); return; }
      s.audits.inc(l);
      if (result === 'agree') s.auditAgreements.inc(l);
    }),
    escalationAgreement: (agreed: boolean) => each(l, (s) => { if (agreed) s.escalationAgreements.inc(l); }),
  };
}
