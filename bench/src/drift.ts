import { spreadOf } from './spread.js';

/** Largest least-squares slope, per minute, that still counts as flat: this share of the median. */
export const FLAT_SLOPE_PER_MIN = 0.01;
/**
 * Largest change from the first to the last window's median that still counts as flat: this share
 * of the first. 10% is what the slope limit allows over a ten-minute run's nine settled minutes.
 */
export const FLAT_CHANGE = 0.1;

/** How one series moved over a run, from its samples after the warm-up. */
export interface Drift {
  /** Median over the first window after the warm-up. */
  firstMedian: number;
  /** Median over the last window of the run. */
  lastMedian: number;
  /** (last - first) / first. */
  change: number;
  /** Median of every sample after the warm-up. */
  median: number;
  /** Least-squares slope over the samples after the warm-up, in units per minute. */
  slopePerMin: number;
  /** slopePerMin / median. */
  relativeSlopePerMin: number;
  /** The same fit over the later half of the samples after the warm-up: near 0 when a rise was settling, not growth. */
  secondHalfSlopePerMin: number;
  /** |relativeSlopePerMin| ≤ FLAT_SLOPE_PER_MIN and |change| ≤ FLAT_CHANGE. */
  flat: boolean;
}

/** The windows a drift compares: [warmUpS, warmUpS + windowS) against [endS - windowS, endS]. */
export interface DriftWindows {
  warmUpS: number;
  windowS: number;
  endS: number;
}

/** One minute of warm-up and one-minute windows; a run shorter than four minutes gets a quarter of its length for each. */
export function driftWindows(durationS: number): DriftWindows {
  const windowS = Math.min(60, durationS / 4);
  return { warmUpS: windowS, windowS, endS: durationS };
}

/** Least-squares slope of y over x. */
function slope(points: ReadonlyArray<{ x: number; y: number }>): number {
  const n = points.length;
  const meanX = points.reduce((s, p) => s + p.x, 0) / n;
  const meanY = points.reduce((s, p) => s + p.y, 0) / n;
  const sxx = points.reduce((s, p) => s + (p.x - meanX) ** 2, 0);
  const sxy = points.reduce((s, p) => s + (p.x - meanX) * (p.y - meanY), 0);
  return sxx === 0 ? 0 : sxy / sxx;
}

/** The drift of `value` over samples taken at `t` seconds; throws when a window holds no sample. */
export function driftOf<S extends { t: number }>(samples: readonly S[], value: (s: S) => number, windows: DriftWindows): Drift {
  const { warmUpS, windowS, endS } = windows;
  const settled = samples.filter((s) => s.t >= warmUpS);
  const first = settled.filter((s) => s.t < warmUpS + windowS).map(value);
  const last = settled.filter((s) => s.t >= endS - windowS).map(value);
  if (first.length === 0 || last.length === 0) throw new Error(`no sample in a drift window (warm-up ${warmUpS} s, windows of ${windowS} s, end ${endS} s)`);
  const firstMedian = spreadOf(first).median;
  const lastMedian = spreadOf(last).median;
  const median = spreadOf(settled.map(value)).median;
  const perMin = (from: readonly S[]): number => slope(from.map((s) => ({ x: s.t / 60, y: value(s) })));
  const slopePerMin = perMin(settled);
  const secondHalfSlopePerMin = perMin(settled.filter((s) => s.t >= (warmUpS + endS) / 2));
  // Relative to zero, no movement is 0 and any movement is unbounded.
  const relative = (delta: number, base: number): number => (base === 0 ? (delta === 0 ? 0 : Math.sign(delta) * Infinity) : delta / base);
  const change = relative(lastMedian - firstMedian, firstMedian);
  const relativeSlopePerMin = relative(slopePerMin, median);
  return {
    firstMedian,
    lastMedian,
    change,
    median,
    slopePerMin,
    relativeSlopePerMin,
    secondHalfSlopePerMin,
    flat: Math.abs(relativeSlopePerMin) <= FLAT_SLOPE_PER_MIN && Math.abs(change) <= FLAT_CHANGE,
  };
}
