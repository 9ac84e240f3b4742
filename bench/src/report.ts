import { AppError } from '../../common/src/errors.js';
import { barChart } from '../../common/src/svg-chart.js';
import { instructionsSection, type InstructionsResult } from './instructions-report.js';
import { machinesSection, type MachinesResult } from './machines-report.js';
import { scaleChecks, scaleSection, type Check, type ScaleResult } from './scale-report.js';
import { NODE_FLOOR } from './targets.js';
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
  /** CPU time per request answered over the run's middle, in µs (/proc): the proxy's (null with none), wrk's and the backend farm's. */
  cpuUsPerRequest: { proxy: number | null; client: number; farm: number };
}

/** The targets of the proxy scenarios: the orchestrator on both forwarded routes, and HAProxy. */
export const ROUTES = ['orchestrator /new_request', 'orchestrator /run_model'] as const;
export const HAPROXY = 'haproxy';
/** wrk straight to a backend, no proxy. */
export const DIRECT = 'direct';

/** The shape of docs/benchmarks.json; raised whenever a field the report reads changes. */
export const BENCH_RESULT_VERSION = 2;

/** docs/benchmarks.json written by an older `npm run bench`, whose shape this report cannot read. */
export class StaleBenchResultError extends AppError {
  constructor(found: unknown) {
    super('BENCH_RESULT_STALE', `docs/benchmarks.json has version ${JSON.stringify(found ?? null)}, not ${BENCH_RESULT_VERSION}: it was written by an older \`npm run bench\`; run the full \`npm run bench\` once first`, { expose: true });
  }
}

/** A BenchResult from its JSON, refusing one of another shape (`--only scale` merges into the last one). */
export function parseBenchResult(json: string): BenchResult {
  const parsed = JSON.parse(json) as Partial<BenchResult>;
  if (parsed.version !== BENCH_RESULT_VERSION) throw new StaleBenchResultError(parsed.version);
  return parsed as BenchResult;
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
  /** BENCH_RESULT_VERSION when written. */
  version: number;
  date: string;
  /** `wrk`: its version as `wrk -v` prints it. */
  machine: { cores: number; cpu: string; node: string; haproxy: string; wrk: string };
  backends: number;
  rounds: number;
  /** Length of one measured wrk run of the proxy scenarios, in seconds. */
  runSeconds: number;
  /**
   * S = 20 ms at C = N, 64 and 256, then S = 0 at C = 64: ROUTES and HAPROXY, alternating; at S = 0
   * also DIRECT, wrk straight to one backend serving all 64 at once (the client's own ceiling).
   */
  scenarios: ScenarioResult[];
  /** HAProxy against itself: the noise floor of a ratio. */
  noise: ScenarioResult;
  /** S = 20 ms, C = 1 with no proxy: one single-request backend called directly. */
  reference: Measurement;
  /** Instructions per request under callgrind: the orchestrator's routes, HAProxy and Node's own floor. */
  instructions: InstructionsResult;
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
  /** Absent from results written before the scenario existed: `--only machines` adds it. */
  machines?: MachinesResult;
}

const runsOf = (s: ScenarioResult, target: string): Measurement[] => s.runs.filter((r) => r.target === target);
const fmt = (n: number, digits = 0): string => n.toFixed(digits);

/** Median of a metric for one target in one scenario. */
function median(s: ScenarioResult, target: string, pick: (m: Measurement) => number): number {
  return spreadOf(runsOf(s, target).map(pick)).median;
}

/** Targets of the proxy scenarios, in the order shown. */
const PROXY_TARGETS = [...ROUTES, HAPROXY];
/** Direct throughput over the fastest proxy's below which the client cannot be said to outrun every proxy. */
const CLIENT_HEADROOM = 1.25;

const pct = (fraction: number, digits = 1): string => `${fmt(fraction * 100, digits)}%`;
const signed = (n: number, digits = 2): string => `${n >= 0 ? '+' : ''}${fmt(n, digits)}`;
const rpsOf = (s: ScenarioResult, target: string): number => median(s, target, (m) => m.throughputRps);
const proxyCpuOf = (s: ScenarioResult, target: string): number => median(s, target, (m) => m.cpuUsPerRequest.proxy ?? NaN);

/** The scenarios by what they are for. */
function scenariosOf(r: BenchResult) {
  const [atN, at64, at256, zero] = r.scenarios as [ScenarioResult, ScenarioResult, ScenarioResult, ScenarioResult];
  return { atN, at64, at256, zero };
}

/** What the direct run says of the client: its throughput, its CPU per request, and how far above the fastest proxy at S = 0. */
function clientFigures(r: BenchResult) {
  const { zero } = scenariosOf(r);
  const directRps = rpsOf(zero, DIRECT);
  const wrkUs = median(zero, DIRECT, (m) => m.cpuUsPerRequest.client);
  const fastest = PROXY_TARGETS.map((target) => ({ target, rps: rpsOf(zero, target) })).reduce((a, b) => (b.rps > a.rps ? b : a));
  return { directRps, wrkUs, ceilingRps: 1e6 / wrkUs, fastest, ratio: directRps / fastest.rps };
}

/** `; a minimal Node proxy: …` when Node's floor ran in the scenario: how far Node itself gets with the same job. */
const floorNote = (s: ScenarioResult, describe: (floor: string) => string): string => (runsOf(s, NODE_FLOOR).length > 0 ? `; a minimal Node proxy: ${describe(NODE_FLOOR)}` : '');

/** Issue 17's targets per route, beside HAProxy (and Node's floor where it ran), then the burst's, the status store's and the scale scenario's. */
function checks(r: BenchResult): Check[] {
  const { atN, at64, at256, zero } = scenariosOf(r);
  const noise = Math.abs(1 - noiseRatio(r));
  const addedP50 = (target: string): number => median(atN, target, (m) => m.latencyMs.p50 - m.meanServiceMs);
  const fractionOf = (target: string): number => median(at256, target, (m) => m.throughputRps / m.limitRps!);
  const client = clientFigures(r);
  const b = r.burst;
  const rssMb = b.peakRssBytes === null ? NaN : b.peakRssBytes / 1e6;
  return [
    ...ROUTES.map((route): Check => {
      const ratio = rpsOf(zero, route) / rpsOf(zero, HAPROXY);
      const value = `${fmt(rpsOf(zero, route))} req/s: ${pct(ratio)} of HAProxy’s ${fmt(rpsOf(zero, HAPROXY))}`;
      return { target: `${zero.scenario}, ${route}: throughput ≥ 50% of HAProxy’s`, value: value + floorNote(zero, (f) => `${pct(rpsOf(zero, f) / rpsOf(zero, HAPROXY))}`), met: ratio >= 0.5 };
    }),
    ...ROUTES.map((route): Check => {
      const ratio = proxyCpuOf(zero, route) / proxyCpuOf(zero, HAPROXY);
      const value = `${fmt(proxyCpuOf(zero, route))} µs: ${fmt(ratio, 2)}× HAProxy’s ${fmt(proxyCpuOf(zero, HAPROXY))} µs`;
      const floor = (f: string): string => `${fmt(proxyCpuOf(zero, f))} µs, ${fmt(proxyCpuOf(zero, f) / proxyCpuOf(zero, HAPROXY), 2)}×`;
      return { target: `${zero.scenario}, ${route}: proxy CPU per request ≤ 2.5× HAProxy’s`, value: value + floorNote(zero, floor), met: ratio <= 2.5 };
    }),
    ...ROUTES.map((route): Check => {
      const over = addedP50(route) - addedP50(HAPROXY);
      return {
        target: `${atN.scenario} (C = N), ${route}: added p50 within 0.2 ms of HAProxy’s`,
        value: `${fmt(addedP50(route), 2)} ms; HAProxy: ${fmt(addedP50(HAPROXY), 2)} ms (${signed(over)} ms)` + floorNote(atN, (f) => `${fmt(addedP50(f), 2)} ms`),
        met: over <= 0.2,
      };
    }),
    ...[at64, at256].flatMap((s) =>
      ROUTES.map((route): Check => {
        const ratio = rpsOf(s, route) / rpsOf(s, HAPROXY);
        return { target: `${s.scenario}, ${route}: throughput within the A/A noise of HAProxy’s`, value: `${pct(ratio, 2)} of HAProxy (≥ ${pct(1 - noise, 2)} needed; A/A noise ${pct(noise, 2)})`, met: ratio >= 1 - noise };
      }),
    ),
    ...ROUTES.map((route): Check => ({
      target: `${at256.scenario}, ${route}: throughput ≥ 98% of the measured limit`,
      value: `${pct(fractionOf(route))} (HAProxy: ${pct(fractionOf(HAPROXY))})`,
      met: fractionOf(route) >= 0.98,
    })),
    {
      target: `The client is not the bottleneck: wrk with no proxy ≥ ${CLIENT_HEADROOM}× the fastest proxy (${zero.scenario})`,
      value: `${fmt(client.directRps)} req/s: ${fmt(client.ratio, 2)}× ${client.fastest.target}’s ${fmt(client.fastest.rps)}`,
      met: client.ratio >= CLIENT_HEADROOM,
    },
    { target: '10,000 queued requests: all answered', value: `${b.answered} answered, ${b.failed} failed`, met: b.answered === b.requests },
    { target: '10,000 queued requests: peak RSS < 300 MB', value: `${fmt(rssMb, 0)} MB`, met: rssMb < 300 },
    { target: '10,000 queued requests: event-loop delay p99 < 50 ms', value: `${fmt(b.eventLoopDelayP99Ms, 1)} ms (max ${fmt(b.eventLoopDelayMaxMs, 0)} ms)`, met: b.eventLoopDelayP99Ms < 50 },
    { target: 'Status store: ≤ 10 writes per second at any load', value: `${fmt(b.statusWritesPerSecond, 1)} per second`, met: b.statusWritesPerSecond <= 10 },
    ...scaleChecks(r.scale),
  ];
}

/** What no proxy can go below on this machine: the direct call's own overhead, and each proxy's share of the C = N latency. */
function floors(r: BenchResult): string[] {
  const { atN } = scenariosOf(r);
  const directAdded = r.reference.latencyMs.p50 - r.reference.meanServiceMs;
  const share = (target: string): string => `${target} ${fmt(median(atN, target, (m) => m.latencyMs.p50) - r.reference.latencyMs.p50, 2)} ms`;
  return [
    `Calling one backend directly, with no proxy at all, already adds ${fmt(directAdded, 2)} ms to the p50 over the service time`,
    `(the client's and the backend's own HTTP stacks). A proxy's own share of the C = N latency is its p50 minus the`,
    `direct p50: ${PROXY_TARGETS.map(share).join(', ')}.`,
  ];
}

/** The direct run: wrk's own ceiling, and how far above every proxy it drove the same farm. */
function clientSection(r: BenchResult): string[] {
  const c = clientFigures(r);
  const d = scenariosOf(r).zero;
  const verdict =
    c.ratio >= CLIENT_HEADROOM
      ? `**${fmt(c.ratio, 2)}×** the fastest proxy at ${d.scenario} (${c.fastest.target}, ${fmt(c.fastest.rps)} req/s): the client outran every proxy, so their figures are theirs, not wrk's.`
      : `only **${fmt(c.ratio, 2)}×** the fastest proxy at ${d.scenario} (${c.fastest.target}, ${fmt(c.fastest.rps)} req/s), less than ${CLIENT_HEADROOM}×: **the client may be what limits the fastest proxies here**, and their ratios are not to be trusted.`;
  return [
    '### The client: wrk with no proxy',
    '',
    `wrk straight to one backend of the same farm that serves all ${d.concurrency} connections at once (${d.scenario}, no proxy, in the same rounds as the proxies):`,
    `${spreadText(spreadOf(runsOf(d, DIRECT).map((m) => m.throughputRps)))} req/s, with ${fmt(c.wrkUs, 1)} µs of wrk's CPU per request`,
    `(its own ceiling on its one thread: 1e6 / ${fmt(c.wrkUs, 1)} µs = ${fmt(c.ceilingRps)} req/s, ${fmt(c.ceilingRps / c.fastest.rps, 1)}× the fastest proxy; the farm,`,
    `one Node process serving both, spent ${fmt(median(d, DIRECT, (m) => m.cpuUsPerRequest.farm), 1)} µs per request).`,
    `That is ${verdict}`,
    '',
  ];
}

function scenarioTable(s: ScenarioResult): string[] {
  const targets = [...new Set(s.runs.map((r) => r.target))];
  const lines = [
    `### ${s.scenario}`,
    '',
    '| target | throughput, req/s (min / **median** / max) | % of limit | p50 ms | p90 ms | p99 ms | proxy CPU µs/request | wrk CPU µs/request | hand-over gap ms | requests per backend (min–max) | max backend concurrency |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const target of targets) {
    const runs = runsOf(s, target);
    const at = (pick: (m: Measurement) => number, digits: number): string => fmt(median(s, target, pick), digits);
    const limit = runs[0]!.limitRps === null ? '–' : `${at((m) => (m.throughputRps / m.limitRps!) * 100, 1)}%`;
    const proxyCpu = runs[0]!.cpuUsPerRequest.proxy === null ? '–' : at((m) => m.cpuUsPerRequest.proxy!, 1);
    lines.push(
      `| ${target} | ${spreadText(spreadOf(runs.map((m) => m.throughputRps)))} | ${limit} | ${at((m) => m.latencyMs.p50, 2)} | ${at((m) => m.latencyMs.p90, 2)} | ` +
        `${at((m) => m.latencyMs.p99, 2)} | ${proxyCpu} | ${at((m) => m.cpuUsPerRequest.client, 1)} | ${at((m) => m.meanGapMs, 2)} | ` +
        `${Math.min(...runs.map((m) => m.spread.min))}–${Math.max(...runs.map((m) => m.spread.max))} | ${Math.max(...runs.map((m) => m.maxBackendConcurrency))} |`,
    );
  }
  // Each target against HAProxy when it is there; otherwise (HAProxy against itself) the first against the second.
  const pairs = targets.includes(HAPROXY) ? targets.filter((t) => t !== HAPROXY).map((t) => [t, HAPROXY] as const) : targets.length === 2 ? [[targets[0]!, targets[1]!] as const] : [];
  if (pairs.length > 0) lines.push('');
  for (const [a, b] of pairs) lines.push(`Throughput ratio ${a} / ${b} (medians): **${fmt(rpsOf(s, a) / rpsOf(s, b), 3)}**  `);
  return [...lines, ''];
}

/** A bar chart of median throughput per scenario and target (each scenario on its own scale), as an SVG image. */
function chart(r: BenchResult): string {
  // The legend's short names: each entry has about 130 px.
  const series = [
    { name: 'orch. /new_request', color: '#2b6cb0' },
    { name: 'orch. /run_model', color: '#2f855a' },
    { name: 'haproxy', color: '#c05621' },
  ];
  return barChart({
    series,
    rows: r.scenarios.map((s) => ({ label: s.scenario, values: PROXY_TARGETS.map((t) => rpsOf(s, t)) })),
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
    '',
    `**Which client measured what.** \`${r.machine.wrk}\` (C, one thread, bench/src/wrk-post.lua: a POST of a small JSON body on every request)`,
    `drives the proxy scenarios (${r.runSeconds} s a run) and the scale scenario, and the bench fails on any error it counts (connect, read,`,
    'write, timeout, or an answer other than 2xx/3xx). The project\'s own load script (`npm run load`, a Node generator that tops out near',
    '10,000 requests per second here) drives the 10,000-request burst, which needs 10,000 connections at once, and the model image.',
    '',
    `The client, the proxy under test and ${r.backends} emulated backends all share these ${r.machine.cores} cores: absolute numbers are noisy,`,
    'ratios measured in the same run are what count. Each backend serves one request at a time in arrival order, on a timer (no CPU spent),',
    'and reports what it served, its own mean service time and the highest concurrency it ever saw (the run fails if that is ever above 1).',
    `Three targets alternate (A B C) over ${r.rounds} rounds after a warm-up each: the orchestrator on \`POST /new_request\` (${ROUTES[0]}), the same`,
    `orchestrator on \`POST /run_model\`, the generic path it forwards as is (${ROUTES[1]}), and HAProxy; figures are min / **median** / max`,
    'over the rounds. CPU per request is each process\'s CPU time from /proc over a run\'s middle, divided by the requests answered in it.',
    'The added p50 is a target\'s p50 minus the backends\' own mean service time measured in the same run.',
    `At C = N and S = 0, where the targets are about what Node can do, \`${NODE_FLOOR}\` runs in the same rounds: the least a Node proxy can do`,
    '(bench/src/node-floor.ts, compiled: node:http and the orchestrator\'s upstream client, a FIFO over free backends, no check of any kind).',
    'HAProxy runs with one thread, `maxconn 1` per server, `balance leastconn`, health checks and no `option abortonclose`.',
    '',
    '![median throughput per scenario: the orchestrator on /new_request and on /run_model, and HAProxy](benchmarks.svg)',
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
    ...clientSection(r),
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
    ...instructionsSection(r.instructions),
    ...scaleSection(r.scale, r.machine.cores),
    ...machinesSection(r.machines, r.machine.cores),
    ...modelSection(r),
    'Raw results: [benchmarks.json](benchmarks.json).',
    '',
  ];
  return { markdown: lines.join('\n'), svg: chart(r), modelSvg: modelChart(r.model) };
}
