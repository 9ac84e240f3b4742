import { lineChart } from '../../common/src/svg-chart.js';
import type { Counters } from '../../status/src/schema.js';
import { FLAT_CHANGE, FLAT_SLOPE_PER_MIN, type Drift, type DriftWindows } from './drift.js';
import type { ProcessSample } from './process-metrics.js';
import { spreadOf } from './spread.js';
import type { SteadyLoadResult } from './steady-load.js';

/** One SIGKILL of a container process. */
export interface Kill {
  /** Seconds since the load started. */
  atS: number;
  container: string;
  pid: number;
  /** From the kill to the slot taking requests again with a new process, in ms; null when that did not happen within the wait. */
  backInRotationAfterMs: number | null;
}

/** A series of the orchestrator's samples whose drift is judged. */
export interface SeriesSpec {
  name: string;
  /** Unit of `value`, empty for a count. */
  unit: string;
  color: string;
  value: (s: ProcessSample) => number;
}

export const SERIES: readonly SeriesSpec[] = [
  { name: 'RSS', unit: 'MB', color: '#2b6cb0', value: (s) => s.rssBytes / 1e6 },
  { name: 'heap used', unit: 'MB', color: '#c05621', value: (s) => s.heapUsedBytes / 1e6 },
  { name: 'open fds', unit: '', color: '#2f855a', value: (s) => s.openFds },
  { name: 'active handles', unit: '', color: '#6b46c1', value: (s) => s.activeHandles },
];

export interface SoakResult {
  date: string;
  command: string;
  /** The commit the orchestrator was built from, and whether the working tree differed from it. */
  revision: string;
  machine: { cores: number; cpu: string; node: string; os: string; memoryGiB: number };
  setup: {
    workers: number;
    containersPerWorker: number;
    workMs: number;
    concurrency: number;
    threads: number;
    durationS: number;
    killEveryS: number;
    /** The orchestrator's restartBackoffResetMs in this run. */
    restartBackoffResetMs: number;
    sampleEveryS: number;
    sliceS: number;
  };
  load: SteadyLoadResult;
  /** Requests that did not get the model's answer (see `notModelAnswers`); the run fails when it is not 0. */
  lost: number;
  /** The orchestrator's own counts at the end (GET /status). */
  counters: Counters | null;
  kills: Kill[];
  /** Replacements the orchestrator made, summed over its containers' `restarts`. */
  replacements: number;
  windows: DriftWindows;
  drift: Array<Drift & { series: string; unit: string }>;
  samples: ProcessSample[];
}

const sumOf = (counts: Record<string, number>): number => Object.values(counts).reduce((a, b) => a + b, 0);

/**
 * Requests of a load on /new_request that did not get the model's answer: any answer but a 2xx
 * (a 502, 503 or 504 of the orchestrator counts as much as a container's 500), and no answer at
 * all. The orchestrator's own answers there are all errors, so a 2xx is a container's.
 */
export function notModelAnswers(load: Pick<SteadyLoadResult, 'requests' | 'statusCodes'>): number {
  return load.requests - sumOf(Object.fromEntries(Object.entries(load.statusCodes).filter(([code]) => /^2\d\d$/.test(code))));
}

const fmt = (n: number, digits = 0): string => (Number.isFinite(n) ? n.toFixed(digits) : String(n));
const pct = (share: number, digits = 2): string => `${share >= 0 ? '+' : ''}${fmt(share * 100, digits)}%`;
const withUnit = (value: string, unit: string): string => (unit ? `${value} ${unit}` : value);

function verdictLine(d: SoakResult['drift'][number]): string {
  const signed = (n: number): string => withUnit(`${n >= 0 ? '+' : ''}${fmt(n, 3)}`, d.unit);
  const slope = `${signed(d.slopePerMin)} per minute (${pct(d.relativeSlopePerMin)} of its median), ${signed(d.secondHalfSlopePerMin)} per minute over the second half`;
  const change = `${withUnit(fmt(d.firstMedian, 1), d.unit)} → ${withUnit(fmt(d.lastMedian, 1), d.unit)} (${pct(d.change, 1)})`;
  if (d.flat) return `- **${d.series}: flat.** First to last window ${change}; slope ${slope}.`;
  const direction = d.lastMedian > d.firstMedian || d.slopePerMin > 0 ? 'grows' : 'falls';
  return `- **${d.series}: not flat, ${direction}.** First to last window ${change}; slope ${slope}.`;
}

/** The SVG chart: every series over the run, MB and counts on one axis. */
function chart(r: SoakResult): string {
  return lineChart({
    series: SERIES.map((s) => ({ name: s.unit ? `${s.name} (${s.unit})` : s.name, color: s.color })),
    x: r.samples.map((s) => s.t),
    xMax: r.setup.durationS,
    values: SERIES.map((s) => r.samples.map(s.value)),
    yUnit: 'MB, n',
  });
}

/** docs/SOAK.md and its chart. */
export function formatSoakReport(r: SoakResult): { markdown: string; svg: string } {
  const { setup, load, windows } = r;
  const answered = sumOf(load.statusCodes);
  // Every way a request missed the model's answer: an answer of another status, or none.
  const misses = [
    ...Object.entries(load.statusCodes).filter(([code]) => !/^2\d\d$/.test(code)).map(([code, n]) => `${n} × ${code}`),
    ...Object.entries(load.errors).map(([kind, n]) => `${n} × no answer (${kind})`),
  ];
  const slices = load.slices.filter((s) => s.latencyMs);
  const back = r.kills.map((k) => k.backInRotationAfterMs).filter((ms): ms is number => ms !== null);
  const backSpread = back.length > 0 ? spreadOf(back) : null;
  const w = (from: number, to: number): string => `${fmt(from)}–${fmt(to)} s`;
  const lines = [
    '# Soak: steady load with container kills',
    '',
    `Written by \`${r.command}\` on ${r.date}, built from ${r.revision}.`,
    '',
    `- **Machine**: ${r.machine.cores} cores (${r.machine.cpu}), ${fmt(r.machine.memoryGiB)} GiB, ${r.machine.os}, Node ${r.machine.node}. Everything below shares these cores.`,
    `- **Cluster**: ${setup.workers} workers × ${setup.containersPerWorker} model containers, run as local processes by the project's provisioning (the worker app:`,
    `  VADER sentiment plus a ${setup.workMs} ms timer per request, WORK_MS), and the compiled orchestrator over them.`,
    `- **Load**: ${setup.concurrency} requests in flight (POST /new_request, ${setup.threads} load threads) for ${setup.durationS} s, as consecutive load-script runs of about`,
    `  ${setup.sliceS} s each (the script sends a fixed number of requests per run). Between two runs, for a fraction of a second, in-flight`,
    `  requests drain and the ${setup.concurrency} client connections close and reopen.`,
    `- **Kills**: every ${setup.killEveryS} s, SIGKILL to one container process in rotation, picked at random; the orchestrator finds the failure`,
    '  and replaces the container on the same port on its own.',
    `- **Orchestrator settings**: the defaults, except \`--restart-backoff-reset-ms ${setup.restartBackoffResetMs}\` (half the kill interval), so that a slot killed`,
    '  again after serving that long counts as a new failure and is replaced at once. With the default (10 minutes), random kills every',
    '  20 s over four slots hit each slot again well within that: its back-off doubles on every kill and reaches minutes before the run',
    '  ends, taking slots out of rotation. That is right for a real crash loop, but the soak would no longer run at a steady size.',
    `- **Samples**: the orchestrator's GET /metrics (prom-client's process metrics) every ${setup.sampleEveryS} s, each taken at full load (not between two load`,
    '  runs), so that open fds and active handles, one each per client connection, compare like with like.',
    '',
    '![orchestrator RSS, heap used, open fds and active handles over the run](soak.svg)',
    '',
    '## Requests and kills',
    '',
    '| | |',
    '| --- | --- |',
    `| requests sent | ${load.requests} |`,
    `| the model's answer (a 2xx from a container) | ${load.requests - r.lost} |`,
    `| **lost**: not the model's answer (any other status, the orchestrator's 502, 503 and 504 included, or no answer) | **${r.lost}**${misses.length > 0 ? ` (${misses.join(', ')})` : ''} |`,
    `| throughput | ${fmt((answered * 1000) / load.durationMs)} answers/s over ${fmt(load.durationMs / 1000)} s |`,
    `| latency | p50 ${slices.length ? fmt(spreadOf(slices.map((s) => s.latencyMs!.p50)).median, 1) : '–'} ms (median over runs), worst run's p99 ${slices.length ? fmt(Math.max(...slices.map((s) => s.latencyMs!.p99)), 1) : '–'} ms, max ${slices.length ? fmt(Math.max(...slices.map((s) => s.latencyMs!.max)), 0) : '–'} ms |`,
    `| requests the orchestrator sent again after their container died | ${r.counters?.redispatched ?? 'unknown'} |`,
    `| containers killed | ${r.kills.length} |`,
    `| replacements (sum of \`restarts\` in GET /status) | ${r.replacements} |`,
    `| containers in rotation (free or busy) at the samples | ${Math.min(...r.samples.map((s) => s.containersInRotation))}–${Math.max(...r.samples.map((s) => s.containersInRotation))} of ${setup.workers * setup.containersPerWorker} |`,
    `| kill → slot back in rotation with a new process | ${backSpread ? `median ${fmt(backSpread.median)} ms, max ${fmt(backSpread.max)} ms` : '–'}${back.length < r.kills.length ? `; ${r.kills.length - back.length} not back within the wait` : ''} |`,
    '',
    '## Memory and handles of the orchestrator',
    '',
    `Samples before ${fmt(windows.warmUpS)} s are warm-up and left out. "First" is the median over ${w(windows.warmUpS, windows.warmUpS + windows.windowS)}, "last" over ${w(windows.endS - windows.windowS, windows.endS)}.`,
    'The slope is a least-squares fit over every sample after the warm-up, and, to tell settling from steady growth, over the second half',
    `of them alone. A series is called **flat** when its slope over all of them is within ±${fmt(FLAT_SLOPE_PER_MIN * 100)}% of its median per minute **and** its last`,
    `median is within ±${fmt(FLAT_CHANGE * 100)}% of its first (about what that slope adds up to over the nine settled minutes of a ten-minute run).`,
    'Heap used is a sawtooth (it grows between two garbage collections), so single samples of it say little; the medians and the fits do.',
    '',
    '| series | first | last | change | slope per minute | slope, % of median per minute | slope per minute, second half | verdict |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
    ...r.drift.map(
      (d) =>
        `| ${d.series} | ${withUnit(fmt(d.firstMedian, 1), d.unit)} | ${withUnit(fmt(d.lastMedian, 1), d.unit)} | ${pct(d.change, 1)} | ` +
        `${withUnit(fmt(d.slopePerMin, 3), d.unit)} | ${pct(d.relativeSlopePerMin)} | ${withUnit(fmt(d.secondHalfSlopePerMin, 3), d.unit)} | ${d.flat ? 'flat' : '**not flat**'} |`,
    ),
    '',
    ...r.drift.map(verdictLine),
    '',
    'Raw samples, kills and per-run load figures: [soak.json](soak.json).',
    '',
  ];
  return { markdown: lines.join('\n'), svg: chart(r) };
}
