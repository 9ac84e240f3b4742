import { barChart, lineChart } from '../../common/src/svg-chart.js';
import type { LoadResult } from './run-load.js';

const escape = (text: string): string => text.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

/**
 * A load run as one self-contained HTML page (inline SVG, no script): the summary, latency
 * percentiles and throughput over time, and requests per container. Needs the run's timeline.
 */
export function formatHtmlReport(result: LoadResult): string {
  const timeline = result.timeline ?? [];
  // Each second's figures sit in its middle.
  const x = timeline.map((s) => s.second + 0.5);
  const xMax = timeline.length;
  const latency = lineChart({
    series: [
      { name: 'p50', color: '#2e9d5b' },
      { name: 'p90', color: '#e0a100' },
      { name: 'p99', color: '#d64545' },
    ],
    x,
    xMax,
    values: (['p50', 'p90', 'p99'] as const).map((p) => timeline.map((s) => s.latencyMs?.[p] ?? null)),
    yUnit: 'ms',
  });
  const throughput = lineChart({
    series: [
      { name: 'answered per second', color: '#2b6cb0' },
      { name: 'failed per second', color: '#d64545' },
    ],
    x,
    xMax,
    values: [timeline.map((s) => s.answered), timeline.map((s) => s.failed)],
    yUnit: 'req/s',
  });
  const containers = Object.entries(result.servedBy);
  const spread = barChart({
    series: [{ name: 'requests', color: '#2b6cb0' }],
    rows: containers.map(([id, n]) => ({ label: id, values: [n] })),
    unit: 'requests',
  });
  const l = result.latencyMs;
  const rows: Array<[string, string]> = [
    ['target', `${result.method} ${result.url}`],
    ['started', result.startedAt],
    ['requests', `${result.requests} from ${result.threads} threads, ${result.concurrency} in flight at most`],
    ['duration', `${(result.durationMs / 1000).toFixed(2)} s`],
    ['throughput', `${result.throughputRps.toFixed(1)} req/s`],
    ['succeeded / failed', `${result.succeeded} / ${result.failed}`],
    ['status codes', Object.entries(result.statusCodes).map(([code, n]) => `${code}: ${n}`).join(', ') || '–'],
    ['errors', Object.entries(result.errors).map(([kind, n]) => `${kind}: ${n}`).join(', ') || '–'],
    ['latency, ms', l ? `min ${l.min} · p50 ${l.p50} · p90 ${l.p90} · p99 ${l.p99} · max ${l.max}` : 'no answer'],
  ];
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Load run ${escape(result.startedAt)}</title>
<style>body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1d2330;max-width:780px}table{border-collapse:collapse}td{padding:3px 12px 3px 0;vertical-align:top}td:first-child{color:#687083}h2{font-size:15px;margin:24px 0 8px}svg{max-width:100%;height:auto}</style>
</head><body>
<h1>Load run</h1>
<table>${rows.map(([k, v]) => `<tr><td>${escape(k)}</td><td>${escape(v)}</td></tr>`).join('')}</table>
<h2>Latency percentiles per second</h2>
${latency}<h2>Throughput per second (the last second may be partial)</h2>
${throughput}<h2>Requests per container (x-served-by)</h2>
${containers.length ? spread : '<p>No answer named its container.</p>'}
</body></html>
`;
}
