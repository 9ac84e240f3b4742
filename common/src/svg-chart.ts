/** Small, dependency-free SVG charts for the reports the benchmark and the load script write. */

export interface Series {
  name: string;
  color: string;
}

export interface BarRow {
  label: string;
  /** One bar per series, in the same order. */
  values: number[];
}

const escape = (text: string): string => text.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

const frame = (width: number, height: number, body: string[]): string =>
  `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>${body.join('')}</svg>\n`;

const legend = (series: readonly Series[], x: number, y: number): string[] =>
  series.map(
    (s, j) => `<rect x="${x + j * 150}" y="${y}" width="12" height="12" fill="${s.color}"/><text x="${x + j * 150 + 18}" y="${y + 10}" font-size="12">${escape(s.name)}</text>`,
  );

/**
 * Horizontal grouped bars, one group per row. With `scalePerRow`, each row is scaled to its own
 * largest value (rows of very different magnitudes stay readable); otherwise all share one scale.
 */
export function barChart(options: { series: readonly Series[]; rows: readonly BarRow[]; unit: string; scalePerRow?: boolean; width?: number }): string {
  const { series, rows, unit } = options;
  const width = options.width ?? 720;
  const left = 170;
  const barHeight = 16;
  const rowHeight = series.length * (barHeight + 4) + 16;
  const height = rows.length * rowHeight + 50;
  const overall = Math.max(1e-9, ...rows.flatMap((r) => r.values));
  const body = [...(series.length > 1 ? legend(series, left, 12) : [])];
  rows.forEach((row, i) => {
    const max = options.scalePerRow ? Math.max(1e-9, ...row.values) : overall;
    const y = 40 + i * rowHeight;
    body.push(`<text x="10" y="${y + 13}" font-size="13">${escape(row.label)}</text>`);
    row.values.forEach((value, j) => {
      const w = ((width - left - 120) * value) / max;
      const top = y + j * (barHeight + 4);
      body.push(`<rect x="${left}" y="${top}" width="${w.toFixed(1)}" height="${barHeight}" fill="${series[j]!.color}"/>`);
      body.push(`<text x="${(left + w + 6).toFixed(1)}" y="${top + 13}" font-size="12">${value.toFixed(0)} ${escape(unit)}</text>`);
    });
  });
  return frame(width, height, body);
}

/** Lines over a shared x axis (seconds from the start, up to `xMax`); null values leave gaps. */
export function lineChart(options: {
  series: readonly Series[];
  x: readonly number[];
  xMax?: number;
  values: ReadonlyArray<ReadonlyArray<number | null>>;
  yUnit: string;
  width?: number;
  height?: number;
}): string {
  const width = options.width ?? 720;
  const height = options.height ?? 240;
  const [left, right, top, bottom] = [56, 16, 32, 28];
  const xs = options.x;
  const xMax = Math.max(1e-9, options.xMax ?? xs.at(-1) ?? 1);
  const yMax = Math.max(1e-9, ...options.values.flat().filter((v): v is number => v !== null));
  const px = (x: number): number => left + (x / xMax) * (width - left - right);
  const py = (y: number): number => height - bottom - (y / yMax) * (height - top - bottom);
  const body = [
    ...legend(options.series, left, 8),
    `<line x1="${left}" x2="${width - right}" y1="${height - bottom}" y2="${height - bottom}" stroke="#999"/>`,
    `<line x1="${left}" x2="${left}" y1="${top}" y2="${height - bottom}" stroke="#999"/>`,
    `<text x="${left - 6}" y="${top + 4}" font-size="11" text-anchor="end">${fmtAxis(yMax)}</text>`,
    `<text x="${left - 6}" y="${height - bottom}" font-size="11" text-anchor="end">0</text>`,
    `<text x="${left - 6}" y="${(top + height - bottom) / 2}" font-size="11" text-anchor="end">${escape(options.yUnit)}</text>`,
    `<text x="${left}" y="${height - 8}" font-size="11">0 s</text>`,
    `<text x="${width - right}" y="${height - 8}" font-size="11" text-anchor="end">${fmtAxis(xMax)} s</text>`,
  ];
  options.values.forEach((values, k) => {
    // A gap (null) starts a new polyline.
    const runs: string[][] = [[]];
    values.forEach((v, i) => {
      if (v === null) runs.push([]);
      else runs.at(-1)!.push(`${px(xs[i]!).toFixed(1)},${py(v).toFixed(1)}`);
    });
    for (const run of runs.filter((r) => r.length > 0)) {
      body.push(`<polyline fill="none" stroke="${options.series[k]!.color}" stroke-width="1.5" points="${run.join(' ')}"/>`);
    }
  });
  return frame(width, height, body);
}

const fmtAxis = (v: number): string => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));
