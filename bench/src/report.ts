import { barChart } from '../../common/src/svg-chart.js';
import { scaleChecks, scaleSection, type Check, type ScaleResult } from './scale-report.js';
import { spreadOf, spreadText } from './spread.js';

/** One load run against one target. */
export interface Measurement {
  target: string;
  throughputRps: number;
  latencyMs: { p50: number; p90: number; p99: number };
  /** N / the backends' own mean service time; null without a service time. */
  limitRps: number | null;
  meanServiceMs: number;
  /** The backends' mean wait from answering to receiving their next request (the proxy's hand-over). */
  meanGapMs: number;
  /** Fewest and most requests one backend served. */
  spread: { min: number; max: number };
  maxBackendConcurrency: number;
}

export interface ScenarioResult {
  scenario: string;
  serviceMs: number;
  concurrency: number;
  runs: Measurement[];
}

/** One load run against the model image: directly, through the orchestrator or through HAProxy. */
export interface ModelMeasurement {
  target: string;
  concurrency: number;
  throughputRps: number;
  latencyMs: { p50: number; p90: number; p99: number };
}

/** The example Python model image, one container, called directly, through the orchestrator and through HAProxy. */
export interface ModelResult {
  image: string;
  /** Short image id. */
  imageId: string;
  /** The base image it was built on. */
  base: string;
  /** The model's name and version, as the image reports it. */
  model: string;
  /** The held-out digit sent as every request's body: its label and the model's prediction. */
  sample: { label: number; prediction: number };
  /** The model's own time per request (median of the app's `inference_ms`), in ms. */
  inferenceMs: number;
  /** Requests per measured run, by concurrency. */
  requests: Record<string, number>;
  runs: ModelMeasurement[];
}

export interface BenchResult {
  date: string;
  machine: { cores: number; cpu: string; node: string; haproxy: string };
  backends: number;
  rounds: number;
  scenarios: ScenarioResult[];
  /** HAProxy against itself: the noise floor of a ratio. */
  noise: ScenarioResult;
  reference: Measurement;
  burst: {
    requests: number;
    answered: number;
    failed: number;
    seconds: number;
    peakRssBytes: number | null;
    eventLoopDelayP99Ms: number;
    eventLoopDelayMaxMs: number;
    statusWritesPerSecond: number;
    maxBackendConcurrency: number;
  };
  model: ModelResult;
  scale: ScaleResult;
}

const runsOf = (s: ScenarioResult, target: string): Measurement[] => s.runs.filter((r) => r.target === target);
const fmt = (n: number, digits = 0): string => n.toFixed(digits);

/** Median of a metric for one target in one scenario. */
function median(s: ScenarioResult, target: string, pick: (m: Measurement) => number): number {
  return spreadOf(runsOf(s, target).map(pick)).median;
}

function checks(r: BenchResult): Check[] {
  const [atN, , at256, zero] = r.scenarios as [ScenarioResult, ScenarioResult, ScenarioResult, ScenarioResult];
  const fractionOf = (target: string): number => median(at256, target, (m) => m.throughputRps / m.limitRps!);
  const fraction = fractionOf('orchestrator');
  const vsHaproxy256 = median(at256, 'orchestrator', (m) => m.throughputRps) / median(at256, 'haproxy', (m) => m.throughputRps);
  const addedP50Of = (target: string): number => median(atN, target, (m) => m.latencyMs.p50 - m.meanServiceMs);
  const addedP50 = addedP50Of('orchestrator');
  const vsHaproxy0 = median(zero, 'orchestrator', (m) => m.throughputRps) / median(zero, 'haproxy', (m) => m.throughputRps);
  const b = r.burst;
  const rssMb = b.peakRssBytes === null ? NaN : b.peakRssBytes / 1e6;
  return [
    { target: 'S = 20 ms, C = 256: throughput ≥ 98% of the measured limit', value: `${fmt(fraction * 100, 1)}% (HAProxy: ${fmt(fractionOf('haproxy') * 100, 1)}%)`, met: fraction >= 0.98 },
    { target: 'S = 20 ms, C = 256: throughput ≥ HAProxy’s', value: `${fmt(vsHaproxy256 * 100, 2)}% of HAProxy (A/A noise: ${fmt(Math.abs(1 - noiseRatio(r)) * 100, 2)}%)`, met: vsHaproxy256 >= 1 },
    { target: `C = N: added p50 latency ≤ 1 ms over the service time`, value: `${fmt(addedP50, 2)} ms (HAProxy: ${fmt(addedP50Of('haproxy'), 2)} ms)`, met: addedP50 <= 1 },
    { target: 'S = 0, C = 64: ≥ 50% of HAProxy’s requests per second', value: `${fmt(vsHaproxy0 * 100, 1)}% of HAProxy`, met: vsHaproxy0 >= 0.5 },
    { target: '10,000 queued requests: all answered', value: `${b.answered} answered, ${b.failed} failed`, met: b.answered === b.requests },
    { target: '10,000 queued requests: peak RSS < 300 MB', value: `${fmt(rssMb, 0)} MB`, met: rssMb < 300 },
    { target: '10,000 queued requests: event-loop delay p99 < 50 ms', value: `${fmt(b.eventLoopDelayP99Ms, 1)} ms (max ${fmt(b.eventLoopDelayMaxMs, 0)} ms)`, met: b.eventLoopDelayP99Ms < 50 },
    { target: 'Status store: ≤ 10 writes per second at any load', value: `${fmt(b.statusWritesPerSecond, 1)} per second`, met: b.statusWritesPerSecond <= 10 },
    ...scaleChecks(r.scale),
  ];
}

/** What no proxy can go below on this machine: the direct call's own overhead, and HAProxy's share of the limit. */
function floors(r: BenchResult): string[] {
  const atN = r.scenarios[0]!;
  const directAdded = r.reference.latencyMs.p50 - r.reference.meanServiceMs;
  const share = (target: string): string => fmt(median(atN, target, (m) => m.latencyMs.p50) - r.reference.latencyMs.p50, 2);
  return [
    `Calling one backend directly, with no proxy at all, already adds ${fmt(directAdded, 2)} ms to the p50 over the service time`,
    `(the load generator's and the backend's own HTTP stacks). A proxy's own share of the C = N latency is its p50 minus the`,
    `direct p50: orchestrator ${share('orchestrator')} ms, HAProxy ${share('haproxy')} ms.`,
  ];
}

function scenarioTable(s: ScenarioResult): string[] {
  const targets = [...new Set(s.runs.map((r) => r.target))];
  const lines = [
    `### ${s.scenario}`,
    '',
    '| target | throughput, req/s (min / **median** / max) | % of limit | p50 ms | p90 ms | p99 ms | hand-over gap ms | requests per backend (min–max) | max backend concurrency |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const target of targets) {
    const runs = runsOf(s, target);
    const limit = runs[0]!.limitRps === null ? '–' : `${fmt(median(s, target, (m) => (m.throughputRps / m.limitRps!) * 100), 1)}%`;
    lines.push(
      `| ${target} | ${spreadText(spreadOf(runs.map((m) => m.throughputRps)))} | ${limit} | ${fmt(median(s, target, (m) => m.latencyMs.p50), 1)} | ` +
        `${fmt(median(s, target, (m) => m.latencyMs.p90), 1)} | ${fmt(median(s, target, (m) => m.latencyMs.p99), 1)} | ${fmt(median(s, target, (m) => m.meanGapMs), 2)} | ` +
        `${Math.min(...runs.map((m) => m.spread.min))}–${Math.max(...runs.map((m) => m.spread.max))} | ${Math.max(...runs.map((m) => m.maxBackendConcurrency))} |`,
    );
  }
  if (targets.length === 2) {
    const ratio = median(s, targets[0]!, (m) => m.throughputRps) / median(s, targets[1]!, (m) => m.throughputRps);
    lines.push('', `Throughput ratio ${targets[0]} / ${targets[1]} (medians): **${fmt(ratio, 3)}**`);
  }
  return [...lines, ''];
}

/** A bar chart of median throughput per scenario and target (each scenario on its own scale), as an SVG image. */
function chart(r: BenchResult): string {
  const targets = ['orchestrator', 'haproxy'];
  return barChart({
    series: [
      { name: 'orchestrator', color: '#2b6cb0' },
      { name: 'haproxy', color: '#c05621' },
    ],
    rows: r.scenarios.map((s) => ({ label: s.scenario, values: targets.map((t) => median(s, t, (m) => m.throughputRps)) })),
    unit: 'req/s',
    scalePerRow: true,
  });
}

/** The model image's runs at one concurrency for one target. */
const modelRuns = (m: ModelResult, concurrency: number, target: string): ModelMeasurement[] => m.runs.filter((r) => r.concurrency === concurrency && r.target === target);
const modelMedian = (m: ModelResult, concurrency: number, target: string, pick: (r: ModelMeasurement) => number): number =>
  spreadOf(modelRuns(m, concurrency, target).map(pick)).median;
const concurrenciesOf = (m: ModelResult): number[] => [...new Set(m.runs.map((r) => r.concurrency))];

/** Targets of the model image's runs, in the order shown. */
const MODEL_TARGETS = ['direct', 'orchestrator', 'haproxy'];

/** The model image: direct beside through the orchestrator and through HAProxy, per concurrency. */
function modelSection(r: BenchResult): string[] {
  const m = r.model;
  const lines = [
    '## A real Python model: examples/flask-model, one container',
    '',
    `The example model image \`${m.image}\` (image ${m.imageId}, base \`${m.base}\`): the model \`${m.model}\` on Flask under gunicorn with one sync worker,`,
    'which computes one request at a time and closes each connection after its answer. One container of it, called directly',
    '(`POST /predict`), through the orchestrator (`POST /new_request`, over that container with the contract `/predict`, `/healthz`)',
    'and through HAProxy configured as above (`maxconn 1`, checks on `/healthz`), at the same concurrency, A B C over',
    `${r.rounds} rounds after a warm-up; every request answered 200 (the run fails otherwise).`,
    `Every body is one held-out digit (label ${m.sample.label}, predicted ${m.sample.prediction}); the model's own time per request is`,
    `${fmt(m.inferenceMs, 2)} ms (median of the app's \`inference_ms\`), the rest is HTTP, JSON and Flask. The load generator, the orchestrator and`,
    `the container share the same ${r.machine.cores} cores.`,
    '',
    '![model image: median throughput, direct, through the orchestrator and through HAProxy](benchmarks-model.svg)',
    '',
    '| concurrency | target | requests per run | throughput, req/s (min / **median** / max) | p50 ms | p90 ms | p99 ms |',
    '| --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const c of concurrenciesOf(m)) {
    for (const target of MODEL_TARGETS) {
      const pick = (f: (x: ModelMeasurement) => number): string => fmt(modelMedian(m, c, target, f), 2);
      lines.push(
        `| ${c} | ${target} | ${m.requests[String(c)]} | ${spreadText(spreadOf(modelRuns(m, c, target).map((x) => x.throughputRps)))} | ` +
          `${pick((x) => x.latencyMs.p50)} | ${pick((x) => x.latencyMs.p90)} | ${pick((x) => x.latencyMs.p99)} |`,
      );
    }
  }
  lines.push(
    '',
    '| concurrency | throughput / direct: orchestrator | throughput / direct: HAProxy | orchestrator / HAProxy | added p50 ms: orchestrator | added p50 ms: HAProxy |',
    '| --- | --- | --- | --- | --- | --- |',
  );
  const signed = (n: number): string => `${n >= 0 ? '+' : ''}${fmt(n, 2)}`;
  for (const c of concurrenciesOf(m)) {
    const rps = (target: string): number => modelMedian(m, c, target, (x) => x.throughputRps);
    const p50 = (target: string): number => modelMedian(m, c, target, (x) => x.latencyMs.p50);
    lines.push(
      `| ${c} | **${fmt(rps('orchestrator') / rps('direct'), 3)}** | ${fmt(rps('haproxy') / rps('direct'), 3)} | **${fmt(rps('orchestrator') / rps('haproxy'), 3)}** | ` +
        `${signed(p50('orchestrator') - p50('direct'))} | ${signed(p50('haproxy') - p50('direct'))} |`,
    );
  }
  lines.push(
    '',
    'At concurrency 1 the difference to direct is the cost of one more hop per request. Above 1, direct calls wait in gunicorn’s accept',
    'backlog, so its worker takes the next connection the moment it answers; through a proxy that gives each container one request at',
    'a time they wait in the proxy’s queue, and each is sent only once the previous answer is back, over a new connection (gunicorn',
    'closes every one): the proxy’s hand-over is time the single worker waits. The orchestrator / HAProxy column compares the two',
    'proxies doing the same job on the same container.',
    '',
  );
  return lines;
}

/** The model image's median throughput per concurrency, direct and through each proxy, on one scale. */
function modelChart(m: ModelResult): string {
  return barChart({
    series: [
      { name: 'direct', color: '#718096' },
      { name: 'orchestrator', color: '#2b6cb0' },
      { name: 'haproxy', color: '#c05621' },
    ],
    rows: concurrenciesOf(m).map((c) => ({
      label: `C = ${c}`,
      values: MODEL_TARGETS.map((t) => modelMedian(m, c, t, (x) => x.throughputRps)),
    })),
    unit: 'req/s',
  });
}

/** Throughput ratio of two identical HAProxy instances (medians): what no cause looks like. */
function noiseRatio(r: BenchResult): number {
  return median(r.noise, r.noise.runs[0]!.target, (m) => m.throughputRps) / median(r.noise, r.noise.runs[1]!.target, (m) => m.throughputRps);
}

/** docs/BENCHMARKS.md, its chart, and the model image's chart. */
export function formatReport(r: BenchResult): { markdown: string; svg: string; modelSvg: string } {
  const noise = noiseRatio(r);
  const lines = [
    '# Benchmarks',
    '',
    `Written by \`npm run bench\` on ${r.date}. ${r.machine.cores} cores (${r.machine.cpu}), Node ${r.machine.node}, ${r.machine.haproxy}.`,
    `The load generator (${2} worker threads), the proxy under test and ${r.backends} emulated backends all share these ${r.machine.cores} cores: absolute numbers are noisy,`,
    'ratios measured in the same run are what count. Each backend serves one request at a time in arrival order, on a timer (no CPU spent),',
    'and reports what it served, its own mean service time and the highest concurrency it ever saw (the run fails if that is ever above 1).',
    `Targets alternate (A B A B) over ${r.rounds} rounds after a warm-up; figures are min / **median** / max over the rounds.`,
    'HAProxy runs with one thread, `maxconn 1` per server, `balance leastconn`, health checks and no `option abortonclose`.',
    '',
    '![median throughput per scenario](benchmarks.svg)',
    '',
    '## Targets',
    '',
    '| target | measured | met |',
    '| --- | --- | --- |',
    ...checks(r).map((c) => `| ${c.target} | ${c.value} | ${c.met ? 'yes' : '**no**'} |`),
    '',
    ...floors(r),
    '',
    '## Scenarios',
    '',
    ...r.scenarios.flatMap(scenarioTable),
    '### Noise floor (HAProxy against itself, S = 20 ms, C = 256)',
    '',
    `Throughput ratio of two identical HAProxy instances (medians): **${fmt(noise, 3)}**, a ${fmt(Math.abs(1 - noise) * 100, 1)}% difference with no cause: differences between proxies within that are noise.`,
    '',
    '### Reference: one backend called directly, one request at a time',
    '',
    `${fmt(r.reference.throughputRps, 1)} req/s, p50 ${fmt(r.reference.latencyMs.p50, 2)} ms, p99 ${fmt(r.reference.latencyMs.p99, 2)} ms (the backend's own mean service time: ${fmt(r.reference.meanServiceMs, 2)} ms).`,
    '',
    '### Burst: 10,000 requests at once (S = 20 ms, a fresh orchestrator)',
    '',
    `${r.burst.answered} of ${r.burst.requests} answered (${r.burst.failed} failed) in ${fmt(r.burst.seconds, 1)} s; peak RSS ${r.burst.peakRssBytes === null ? 'unknown' : `${fmt(r.burst.peakRssBytes / 1e6, 0)} MB`}; ` +
      `event-loop delay p99 ${fmt(r.burst.eventLoopDelayP99Ms, 1)} ms, max ${fmt(r.burst.eventLoopDelayMaxMs, 0)} ms; ` +
      `status file written ${fmt(r.burst.statusWritesPerSecond, 1)} times per second; highest backend concurrency ${r.burst.maxBackendConcurrency}.`,
    '',
    ...scaleSection(r.scale, r.machine.cores),
    ...modelSection(r),
    'Raw results: [benchmarks.json](benchmarks.json).',
    '',
  ];
  return { markdown: lines.join('\n'), svg: chart(r), modelSvg: modelChart(r.model) };
}
