/** Min, median and max of some runs' values. */
export interface Spread {
  min: number;
  median: number;
  max: number;
}

export function spreadOf(values: number[]): Spread {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { min: sorted[0]!, median, max: sorted.at(-1)! };
}

/** `min / **median** / max`, for a Markdown table. */
export function spreadText(s: Spread, digits = 0): string {
  return `${s.min.toFixed(digits)} / **${s.median.toFixed(digits)}** / ${s.max.toFixed(digits)}`;
}
