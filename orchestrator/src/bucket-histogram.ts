import type { Metric, Registry } from 'prom-client';

/** One line of the exposition, as the registry reads it from a metric's get(). */
interface Sample {
  metricName: string;
  labels: Record<string, string | number>;
  value: number;
}

/**
 * A Prometheus histogram without labels whose observation is one bucket search and three
 * additions. prom-client's own Histogram validates and hashes its labels on every observation,
 * which cost a tenth of the orchestrator's CPU per forwarded request; this one does that work at
 * scrape time instead, and renders the same exposition (test/orchestrator/bucket-histogram.test.ts).
 */
export class BucketHistogram {
  readonly name: string;
  readonly help: string;
  readonly type = 'histogram' as const;
  readonly aggregator = 'sum' as const;
  readonly #bounds: readonly number[];
  /** Observations per bucket (not cumulative); the last one is +Inf. */
  readonly #counts: Float64Array;
  #sum = 0;
  #count = 0;

  constructor(options: { name: string; help: string; buckets: readonly number[]; registers: Registry[] }) {
    this.name = options.name;
    this.help = options.help;
    this.#bounds = [...options.buckets].sort((a, b) => a - b);
    this.#counts = new Float64Array(this.#bounds.length + 1);
    // The registry reads any metric through get(); it has no type for one of our own.
    for (const registry of options.registers) registry.registerMetric(this as unknown as Metric);
  }

  observe(value: number): void {
    let i = 0;
    while (i < this.#bounds.length && value > this.#bounds[i]!) i++;
    this.#counts[i]!++;
    this.#sum += value;
    this.#count++;
  }

  /** What the registry renders: cumulative buckets, then sum and count, as prom-client's Histogram gives them. */
  get(): Promise<{ name: string; help: string; type: 'histogram'; aggregator: 'sum'; values: Sample[] }> {
    const values: Sample[] = [];
    let cumulative = 0;
    this.#bounds.forEach((bound, i) => {
      cumulative += this.#counts[i]!;
      values.push({ metricName: `${this.name}_bucket`, labels: { le: bound }, value: cumulative });
    });
    values.push({ metricName: `${this.name}_bucket`, labels: { le: '+Inf' }, value: this.#count });
    values.push({ metricName: `${this.name}_sum`, labels: {}, value: this.#sum });
    values.push({ metricName: `${this.name}_count`, labels: {}, value: this.#count });
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values });
  }
}
