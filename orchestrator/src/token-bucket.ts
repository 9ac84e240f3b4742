/**
 * A token bucket: `burst` tokens at most, refilled at `ratePerSecond`; each request takes one.
 * Kept as the one moment the bucket was (or would have been) empty, so the count is derived
 * from the clock on each call: an idle bucket costs nothing, and a refused request changes
 * nothing (no rounding builds up from one call to the next).
 */
/** Less than this apart, two times are one (float rounding of large clock values). */
const ROUNDING_MS = 0.001;

export class TokenBucket {
  readonly ratePerSecond: number;
  readonly burst: number;
  /** The time the bucket held no token, counting the tokens taken since. */
  #emptyAt: number;

  constructor(ratePerSecond: number, burst: number, now: number, tokens = burst) {
    this.ratePerSecond = ratePerSecond;
    this.burst = burst;
    this.#emptyAt = now - this.#msFor(Math.min(burst, tokens));
  }

  /** Tokens in the bucket at `now`. */
  tokens(now: number): number {
    return Math.min(this.burst, ((now - this.#emptyAt) * this.ratePerSecond) / 1000);
  }

  /** Take one token at `now`: 0 when taken, else the ms until one is there (nothing taken). */
  take(now: number): number {
    const full = now - this.#msFor(this.burst);
    const emptyAt = Math.max(this.#emptyAt, full);
    const nextAt = emptyAt + this.#msFor(1);
    // Within a microsecond is now: the sums above round at the scale of the clock and the refill period.
    if (nextAt - now > ROUNDING_MS) return nextAt - now;
    this.#emptyAt = nextAt;
    return 0;
  }

  #msFor(tokens: number): number {
    return (tokens * 1000) / this.ratePerSecond;
  }
}
