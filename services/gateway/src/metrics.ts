/**
 * Counters, gauges and histograms with labels, written out in Prometheus' text exposition format (0.0.4).
 * Small on purpose: the gateway needs a handful of series per model version, and this keeps the hot path to
 * a map lookup and an increment.
 */

type Labels = Record<string, string>;

const escape = (v: string) => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
const labelText = (labels: Labels, extra = '') => {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${escape(v)}"`);
  if (extra) parts.push(extra);
  return parts.length ? `{${parts.join(',')}}` : '';
};
const key = (labels: Labels) => JSON.stringify(Object.entries(labels));
const num = (n: number) => (n === Infinity ? '+Inf' : n === -Infinity ? '-Inf' : String(n));

abstract class Metric {
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'gauge' | 'histogram',
  ) {}
  abstract lines(): string[];
  render(): string {
    return [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} ${this.type}`, ...this.lines()].join('\n');
  }
}

export class Counter extends Metric {
  private readonly values = new Map<string, { labels: Labels; value: number }>();
  constructor(name: string, help: string, type: 'counter' | 'gauge' = 'counter') {
    super(name, help, type);
  }
  inc(labels: Labels = {}, by = 1): void {
    const k = key(labels);
    const entry = this.values.get(k);
    if (entry) entry.value += by;
    else this.values.set(k, { labels, value: by });
  }
  set(labels: Labels, value: number): void {
    this.values.set(key(labels), { labels, value });
  }
  /** Drops every series (a gauge that is rebuilt from scratch, such as route weights). */
  reset(): void {
    this.values.clear();
  }
  get(labels: Labels = {}): number {
    return this.values.get(key(labels))?.value ?? 0;
  }
  lines(): string[] {
    return [...this.values.values()].map(({ labels, value }) => `${this.name}${labelText(labels)} ${num(value)}`);
  }
}

export class Histogram extends Metric {
  private readonly series = new Map<string, { labels: Labels; counts: number[]; sum: number; count: number }>();
  constructor(
    name: string,
    help: string,
    readonly buckets: number[],
  ) {
    super(name, help, 'histogram');
  }
  observe(labels: Labels, value: number): void {
    const k = key(labels);
    let s = this.series.get(k);
    if (!s) this.series.set(k, (s = { labels, counts: new Array(this.buckets.length).fill(0), sum: 0, count: 0 }));
    for (let i = 0; i < this.buckets.length; i++) if (value <= this.buckets[i]) s.counts[i]++;
    s.sum += value;
    s.count++;
  }
  lines(): string[] {
    const out: string[] = [];
    for (const { labels, counts, sum, count } of this.series.values()) {
      this.buckets.forEach((le, i) => out.push(`${this.name}_bucket${labelText(labels, `le="${num(le)}"`)} ${counts[i]}`));
      out.push(`${this.name}_bucket${labelText(labels, 'le="+Inf"')} ${count}`);
      out.push(`${this.name}_sum${labelText(labels)} ${sum}`);
      out.push(`${this.name}_count${labelText(labels)} ${count}`);
    }
    return out;
  }
}

/** Latency buckets in seconds: a tiny model on CPU answers in milliseconds, a large one in tens of seconds. */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export class GatewayMetrics {
  readonly requests = new Counter('tempered_gateway_requests_total', 'Requests answered, by model name, serving version (none: not routed) and HTTP status.');
  readonly errors = new Counter(
    'tempered_gateway_errors_total',
    'Requests a model version failed: upstream_unreachable, upstream_timeout, upstream_error (5xx) or upstream_bad_response.',
  );
  readonly latency = new Histogram('tempered_gateway_request_duration_seconds', 'Whole request time in the gateway, by model and version.', LATENCY_BUCKETS);
  readonly upstreamLatency = new Histogram(
    'tempered_gateway_upstream_duration_seconds',
    'Time spent waiting for the model server, by model and version (the rest of the request time is the gateway).',
    LATENCY_BUCKETS,
  );
  readonly flagged = new Counter('tempered_gateway_flagged_total', 'Responses in which the blocklist replaced something, by model and version.');
  readonly feedback = new Counter('tempered_gateway_feedback_total', 'Thumbs up/down on served responses, by model, version and rating.');
  readonly routeWeight = new Counter('tempered_gateway_route_weight', 'Current routing weight of each model version.', 'gauge');
  readonly logPending = new Counter('tempered_gateway_request_log_pending', 'Served requests waiting to be written to the database.', 'gauge');
  readonly logDropped = new Counter('tempered_gateway_request_log_dropped_total', 'Request records dropped because the database stayed unreachable.');

  render(): string {
    return `${[this.requests, this.errors, this.latency, this.upstreamLatency, this.flagged, this.feedback, this.routeWeight, this.logPending, this.logDropped]
      .map((m) => m.render())
      .join('\n')}\n`;
  }
}
