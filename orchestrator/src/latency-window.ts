/**
 * Latencies of the latest requests with their end times, for percentiles over a recent window
 * (the autoscaler's p90 rule). A ring of the latest `capacity`: recording allocates nothing.
 */
export class LatencyWindow {
  readonly #now: () => number;
  readonly #at: Float64Array;
  readonly #ms: Float64Array;
  /** Where the next record goes. */
  #next = 0;
  #size = 0;

  constructor(options: { capacity?: number; now?: () => number } = {}) {
    const capacity = options.capacity ?? 10_000;
    this.#now = options.now ?? performance.now.bind(performance);
    this.#at = new Float64Array(capacity);
    this.#ms = new Float64Array(capacity);
  }

  record(ms: number): void {
    this.#at[this.#next] = this.#now();
    this.#ms[this.#next] = ms;
    this.#next = (this.#next + 1) % this.#at.length;
    if (this.#size < this.#at.length) this.#size++;
  }

  /** The nearest-rank `p`th percentile (0-100) of latencies that ended within the last `windowMs`; null when none did. */
  percentile(p: number, windowMs: number): number | null {
    return this.percentiles([p], windowMs)[0]!;
  }

  /** Several percentiles over the same window, sorting once. */
  percentiles(ps: readonly number[], windowMs: number): Array<number | null> {
    const since = this.#now() - windowMs;
    const recent: number[] = [];
    for (let i = 0; i < this.#size; i++) if (this.#at[i]! >= since) recent.push(this.#ms[i]!);
    if (recent.length === 0) return ps.map(() => null);
    recent.sort((a, b) => a - b);
    return ps.map((p) => recent[Math.max(0, Math.ceil((p / 100) * recent.length) - 1)]!);
  }
}
