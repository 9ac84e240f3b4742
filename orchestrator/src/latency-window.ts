/**
 * Latencies of the latest requests with their end times, for percentiles over a recent window
 * (the autoscaler's p90 rule). Bounded: the oldest entries go first past `capacity`.
 */
export class LatencyWindow {
  readonly #capacity: number;
  readonly #now: () => number;
  #entries: Array<{ at: number; ms: number }> = [];

  constructor(options: { capacity?: number; now?: () => number } = {}) {
    this.#capacity = options.capacity ?? 10_000;
    this.#now = options.now ?? performance.now.bind(performance);
  }

  record(ms: number): void {
    this.#entries.push({ at: this.#now(), ms });
    // Trim in batches: one splice per capacity/10 records, not one shift per record.
    if (this.#entries.length > this.#capacity * 1.1) this.#entries = this.#entries.slice(-this.#capacity);
  }

  /** The nearest-rank `p`th percentile (0-100) of latencies that ended within the last `windowMs`; null when none did. */
  percentile(p: number, windowMs: number): number | null {
    return this.percentiles([p], windowMs)[0]!;
  }

  /** Several percentiles over the same window, sorting once. */
  percentiles(ps: readonly number[], windowMs: number): Array<number | null> {
    const since = this.#now() - windowMs;
    const recent = this.#entries.filter((e) => e.at >= since).map((e) => e.ms);
    if (recent.length === 0) return ps.map(() => null);
    recent.sort((a, b) => a - b);
    return ps.map((p) => recent[Math.max(0, Math.ceil((p / 100) * recent.length) - 1)]!);
  }
}
