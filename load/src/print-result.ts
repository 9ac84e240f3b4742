import type { LoadResult } from './run-load.js';

const formatCounts = (counts: Record<string, number>): string =>
  Object.entries(counts)
    .map(([key, count]) => `${key}: ${count}`)
    .join('   ');

const ms = (value: number): string => `${value.toFixed(value < 10 ? 2 : 1)} ms`;

/** The human summary of a run, several lines ending with a newline. */
export function formatResult(result: LoadResult): string {
  const lines = [
    `${result.method} ${result.url}`,
    `  requests     ${result.requests} (${result.threads} thread${result.threads === 1 ? '' : 's'}, concurrency ${result.concurrency})`,
    `  succeeded    ${result.succeeded}   failed ${result.failed}`,
    `  status       ${formatCounts(result.statusCodes) || '(no answers)'}`,
  ];
  if (Object.keys(result.errors).length > 0) lines.push(`  errors       ${formatCounts(result.errors)}`);
  lines.push(
    `  duration     ${(result.durationMs / 1000).toFixed(2)} s`,
    `  throughput   ${result.throughputRps.toFixed(1)} req/s`,
  );
  const latency = result.latencyMs;
  lines.push(
    latency
      ? `  latency      p50 ${ms(latency.p50)}   p90 ${ms(latency.p90)}   p99 ${ms(latency.p99)}   max ${ms(latency.max)}   (min ${ms(latency.min)}, mean ${ms(latency.mean)})`
      : '  latency      (no answers)',
  );
  const containers = Object.entries(result.servedBy);
  const answered = containers.reduce((sum, [, count]) => sum + count, 0);
  if (containers.length > 0) {
    lines.push('  per container');
    const width = Math.max(...containers.map(([name]) => name.length));
    const countWidth = String(Math.max(...containers.map(([, count]) => count))).length;
    for (const [name, count] of containers) {
      lines.push(`    ${name.padEnd(width)}  ${String(count).padStart(countWidth)}  ${((100 * count) / answered).toFixed(1).padStart(5)}%`);
    }
  }
  return `${lines.join('\n')}\n`;
}
