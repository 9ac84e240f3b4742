import { runLoad } from '../../load/src/run-load.js';
import { BackendFarm } from './backend-farm-process.js';
import { measure, type LoadTarget } from './measure.js';
import type { Stoppable } from './model-bench.js';
import { sampleProcess } from './process-metrics.js';
import { DIRECT, HAPROXY, ROUTES, type BenchResult, type Measurement, type ScenarioResult } from './report.js';
import { countStatusWrites } from './status-writes.js';
import { peakRss, startHaproxy, startNodeFloor, startOrchestrator } from './targets.js';

const BACKENDS = 8;
/** Length of one measured wrk run, and of the unmeasured warm-up before each target's first in a scenario, in seconds. */
const RUN_SECONDS = 3;
const WARM_UP_SECONDS = 2;
/** Connections at S = 0, and of the direct run, which the farm's `direct` backend serves all at once. */
const S0_CONNECTIONS = 64;

interface Scenario {
  name: string;
  serviceMs: number;
  concurrency: number;
}

const SCENARIOS: Scenario[] = [
  { name: `S = 20 ms, C = ${BACKENDS}`, serviceMs: 20, concurrency: BACKENDS },
  { name: 'S = 20 ms, C = 64', serviceMs: 20, concurrency: 64 },
  { name: 'S = 20 ms, C = 256', serviceMs: 20, concurrency: 256 },
  { name: `S = 0, C = ${S0_CONNECTIONS}`, serviceMs: 0, concurrency: S0_CONNECTIONS },
];

export interface ProxiesOptions {
  /** Where the state files and HAProxy's configurations go. */
  dir: string;
  rounds: number;
  /** runLoad's worker threads, for the burst. */
  threads: number;
  /** Called with each process as soon as it exists, for the bench's cleanup. */
  track(running: Stoppable): void;
}

/** A B C A B C ... for `rounds` rounds, after one unmeasured warm-up each. */
async function alternate(farm: BackendFarm, targets: LoadTarget[], scenario: Scenario, rounds: number): Promise<ScenarioResult> {
  const spec = { serviceMs: scenario.serviceMs, concurrency: scenario.concurrency };
  for (const target of targets) await measure(farm, target, { ...spec, seconds: WARM_UP_SECONDS });
  const runs: Measurement[] = [];
  for (let round = 0; round < rounds; round++) {
    for (const target of targets) {
      const m = await measure(farm, target, { ...spec, seconds: RUN_SECONDS });
      runs.push(m);
      const cpu = m.cpuUsPerRequest;
      process.stderr.write(
        `[bench] ${scenario.name}  ${m.target.padEnd(26)} ${m.throughputRps.toFixed(0).padStart(6)} req/s  p50 ${m.latencyMs.p50.toFixed(2)} ms  ` +
          `CPU µs/request: proxy ${cpu.proxy === null ? '–' : cpu.proxy.toFixed(0)}, wrk ${cpu.client.toFixed(0)}\n`,
      );
    }
  }
  return { scenario: scenario.name, serviceMs: scenario.serviceMs, concurrency: scenario.concurrency, runs };
}

/** 10,000 requests at once (runLoad) on a fresh orchestrator: all answered? its peak memory, event-loop delay, and status writes. */
async function burst(farm: BackendFarm, dir: string, threads: number): Promise<BenchResult['burst']> {
  const target = await startOrchestrator(dir, farm.ports, 'orchestrator (burst)');
  try {
    await farm.reset(20);
    const writes = countStatusWrites(target.statePath!);
    const started = performance.now();
    const result = await runLoad({ url: target.url, requests: 10_000, threads, concurrency: 10_000, method: 'POST', body: '{"text":"burst"}', timeoutMs: 120_000 });
    const seconds = (performance.now() - started) / 1000;
    writes.close();
    // The first scrape of this fresh orchestrator: prom-client's event-loop window covers its whole life.
    const load = await sampleProcess(target.url.replace(/\/new_request$/, ''), seconds);
    const stats = await farm.stats();
    return {
      requests: 10_000,
      answered: result.statusCodes['200'] ?? 0,
      failed: result.failed,
      seconds,
      peakRssBytes: await peakRss(target.pid),
      eventLoopDelayP99Ms: load.eventLoopLagP99Ms,
      eventLoopDelayMaxMs: load.eventLoopLagMaxMs,
      statusWritesPerSecond: writes.count / seconds,
      maxBackendConcurrency: Math.max(...stats.map((s) => s.maxConcurrency)),
    };
  } finally {
    await target.stop();
  }
}

/**
 * The proxy scenarios on one farm of 8 single-request backends, driven by wrk: the orchestrator on
 * both forwarded routes and HAProxy, alternating, and at S = 0 wrk straight to the farm too (the
 * client's ceiling); HAProxy against itself (the noise); the no-proxy reference at C = 1; then the
 * burst. Stops all it started.
 */
export async function benchProxies(options: ProxiesOptions): Promise<Pick<BenchResult, 'backends' | 'runSeconds' | 'scenarios' | 'noise' | 'reference' | 'burst'>> {
  const { dir, track, rounds } = options;
  const farm = new BackendFarm(BACKENDS, { directSlots: S0_CONNECTIONS });
  track(farm);
  await farm.start();
  try {
    const orchestrator = await startOrchestrator(dir, farm.ports);
    track(orchestrator);
    const haproxy = await startHaproxy(dir, farm.ports, HAPROXY);
    track(haproxy);
    const haproxyAgain = await startHaproxy(dir, farm.ports, 'haproxy (A/A)');
    track(haproxyAgain);
    const floor = await startNodeFloor(farm.ports);
    track(floor);
    // The same orchestrator on its benchmark route and on the generic path, which it forwards as is.
    const [newRequest, runModel] = ROUTES;
    const targets: LoadTarget[] = [
      { name: newRequest, url: orchestrator.url, pid: orchestrator.pid },
      { name: runModel, url: orchestrator.url.replace(/\/new_request$/, '/run_model'), pid: orchestrator.pid },
      haproxy,
    ];
    // At S = 0, no proxy too, in the same rounds: wrk alone on one backend serving every connection at once (the proxies idle meanwhile).
    const direct: LoadTarget = { name: DIRECT, url: `http://127.0.0.1:${farm.directPort}/run_model`, pid: null, direct: true };
    // Where the targets are Node's to reach (C = N latency, S = 0 cost), the least a Node proxy can do runs in the same rounds.
    const extra = (s: Scenario): LoadTarget[] => (s.serviceMs === 0 ? [floor, direct] : s.concurrency === BACKENDS ? [floor] : []);
    const scenarios: ScenarioResult[] = [];
    for (const scenario of SCENARIOS) scenarios.push(await alternate(farm, [...targets, ...extra(scenario)], scenario, rounds));
    const noise = await alternate(farm, [haproxy, haproxyAgain], SCENARIOS[2]!, rounds);
    for (const running of [floor, haproxyAgain, haproxy, orchestrator]) await running.stop();
    // The reference: one single-request backend called directly, one request at a time.
    const reference = await measure(farm, { name: DIRECT, url: `http://127.0.0.1:${farm.ports[0]}/run_model`, pid: null }, { serviceMs: 20, concurrency: 1, seconds: RUN_SECONDS });
    return { backends: BACKENDS, runSeconds: RUN_SECONDS, scenarios, noise, reference, burst: await burst(farm, dir, options.threads) };
  } finally {
    await farm.stop();
  }
}
