/**
 * The HTTP series every ingress records (the head's when it serves HTTP itself, every worker's): answered
 * requests per application and status code, and their latency. One definition, registered in whichever registry
 * the process exposes, so the merged exposition has one HELP and TYPE per name.
 */
import { Counter, Histogram, type Registry } from 'prom-client';

/** Request latency buckets, in seconds: from a cache hit to a slow generation. */
export const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export class HttpMetrics {
  private readonly requests: Counter<'app' | 'code'>;
  private readonly duration: Histogram<'app'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.requests = new Counter({ name: 'shoal_http_requests_total', help: 'HTTP requests the ingress answered, per application and status code (499: the client left first).', labelNames: ['app', 'code'], registers });
    this.duration = new Histogram({ name: 'shoal_http_request_duration_seconds', help: 'Time from an HTTP request\'s arrival at the ingress to its answer, per application.', labelNames: ['app'], buckets: DURATION_BUCKETS, registers });
  }

  /** Records one answered HTTP request of an application. */
  observeHttp(app: string, code: number, seconds: number): void {
    this.requests.inc({ app, code: String(code) });
    this.duration.observe({ app }, seconds);
  }
}
