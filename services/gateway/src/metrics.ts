/**
 * The gateway's Prometheus metrics, kept in a prom-client registry of its own (one per gateway, so a test or a
 * bench can run several in one process) and written out by `GET /metrics` in the text exposition format.
 * Names and labels are part of the gateway's interface: dashboards and alerts read them.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Latency buckets in seconds: a tiny model on CPU answers in milliseconds, a large one in tens of seconds. */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export class GatewayMetrics {
  readonly registry = new Registry();
  private readonly registers = [this.registry];

  readonly requests = new Counter({
    name: 'tempered_gateway_requests_total',
    help: 'Requests answered, by model name, serving version (none: not routed) and HTTP status.',
    labelNames: ['model', 'version', 'status'] as const,
    registers: this.registers,
  });
  readonly errors = new Counter({
    name: 'tempered_gateway_errors_total',
    help: 'Requests a model version failed: upstream_unreachable, upstream_timeout, upstream_error (5xx) or upstream_bad_response.',
    labelNames: ['model', 'version', 'reason'] as const,
    registers: this.registers,
  });
  readonly latency = new Histogram({
    name: 'tempered_gateway_request_duration_seconds',
    help: 'Whole request time in the gateway, by model and version.',
    labelNames: ['model', 'version'] as const,
    buckets: LATENCY_BUCKETS,
    registers: this.registers,
  });
  readonly upstreamLatency = new Histogram({
    name: 'tempered_gateway_upstream_duration_seconds',
    help: 'Time spent waiting for the model server, by model and version (the rest of the request time is the gateway).',
    labelNames: ['model', 'version'] as const,
    buckets: LATENCY_BUCKETS,
    registers: this.registers,
  });
  readonly flagged = new Counter({
    name: 'tempered_gateway_flagged_total',
    help: 'Responses in which the blocklist replaced something, by model and version.',
    labelNames: ['model', 'version'] as const,
    registers: this.registers,
  });
  readonly feedback = new Counter({
    name: 'tempered_gateway_feedback_total',
    help: 'Thumbs up/down on served responses, by model, version and rating.',
    labelNames: ['model', 'version', 'rating'] as const,
    registers: this.registers,
  });
  readonly routeWeight = new Gauge({
    name: 'tempered_gateway_route_weight',
    help: 'Current routing weight of each model version.',
    labelNames: ['model', 'version'] as const,
    registers: this.registers,
  });
  readonly logPending = new Gauge({
    name: 'tempered_gateway_request_log_pending',
    help: 'Served requests waiting to be written to the database.',
    registers: this.registers,
  });
  readonly logDropped = new Counter({
    name: 'tempered_gateway_request_log_dropped_total',
    help: 'Request records dropped because the database stayed unreachable.',
    registers: this.registers,
  });
  readonly logRejected = new Counter({
    name: 'tempered_gateway_request_log_rejected_total',
    help: 'Request records set aside because the database refused them on their own (the rest of their batch was written).',
    registers: this.registers,
  });

  /** The exposition's content type (text format 0.0.4). */
  get contentType(): string {
    return this.registry.contentType;
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }
}
