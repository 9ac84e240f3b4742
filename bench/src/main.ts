import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { runFlagsCli } from '../../common/src/cli.js';
import { UsageError } from '../../common/src/errors.js';
import { runLoad, type LoadResult } from '../../load/src/run-load.js';
import { BackendFarm } from './backend-farm-process.js';
import { benchModel, MODEL_IMAGE, type Stoppable } from './model-bench.js';
import { buildModelImage } from './model-image.js';
import { formatReport, type BenchResult, type Measurement, type ScenarioResult } from './report.js';
import { benchScale } from './scale.js';
import { countStatusWrites } from './status-writes.js';
import { peakRss, startHaproxy, startOrchestrator, type Target } from './targets.js';
import { ensureWrk } from './wrk.js';

const BACKENDS = 8;
const ROUNDS = 3;
const THREADS = 2;

interface Scenario {
  name: string;
  serviceMs: number;
  concurrency: number;
  requests: number;
}

const SCENARIOS: Scenario[] = [
  { name: `S = 20 ms, C = ${BACKENDS}`, serviceMs: 20, concurrency: BACKENDS, requests: 1_200 },
  { name: 'S = 20 ms, C = 64', serviceMs: 20, concurrency: 64, requests: 1_600 },
  { name: 'S = 20 ms, C = 256', serviceMs: 20, concurrency: 256, requests: 2_400 },
  { name: 'S = 0, C = 64', serviceMs: 0, concurrency: 64, requests: 20_000 },
];

/** One load run against one target, checked from the backends' side. */
async function measure(farm: BackendFarm, target: Target, scenario: Scenario, requests = scenario.requests): Promise<Measurement> {
  await farm.reset(scenario.serviceMs);
  const result: LoadResult = await runLoad({
    url: target.url,
    requests,
    threads: THREADS,
    concurrency: scenario.concurrency,
    method: 'POST',
    body: '{"text":"benchmark"}',
    timeoutMs: 120_000,
  });
  const stats = await farm.stats();
  const overloaded = stats.filter((s) => s.maxConcurrency > 1);
  if (overloaded.length > 0) {
    throw new Error(`${target.name} sent concurrent requests to a single-concurrency backend (${overloaded.map((s) => `${s.id}: ${s.maxConcurrency}`).join(', ')}): the contract is broken`);
  }
  if (result.failed > 0) throw new Error(`${target.name}: ${result.failed} of ${requests} requests failed (${JSON.stringify(result.statusCodes)} ${JSON.stringify(result.errors)})`);
  if (!result.latencyMs) throw new Error(`${target.name}: no request completed`);
  const served = stats.map((s) => s.served);
  const meanServiceMs = stats.reduce((n, s) => n + s.meanServiceMs * s.served, 0) / Math.max(1, served.reduce((a, b) => a + b, 0));
  return {
    target: target.name,
    throughputRps: result.throughputRps,
    latencyMs: { p50: result.latencyMs.p50, p90: result.latencyMs.p90, p99: result.latencyMs.p99 },
    // The physical limit: N backends, each busy for its own measured service time per request.
    limitRps: scenario.serviceMs > 0 ? (BACKENDS * 1000) / meanServiceMs : null,
    meanServiceMs,
    meanGapMs: stats.reduce((n, s) => n + s.meanGapMs, 0) / stats.length,
    spread: { min: Math.min(...served), max: Math.max(...served) },
    maxBackendConcurrency: Math.max(...stats.map((s) => s.maxConcurrency)),
  };
}

/** A B A B ... for ROUNDS rounds, after one unmeasured warm-up each. */
async function alternate(farm: BackendFarm, targets: Target[], scenario: Scenario): Promise<ScenarioResult> {
  for (const target of targets) await measure(farm, target, scenario, Math.min(scenario.requests, 400));
  const runs: Measurement[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    for (const target of targets) {
      const m = await measure(farm, target, scenario);
      runs.push(m);
      process.stderr.write(`[bench] ${scenario.name}  ${m.target.padEnd(12)} ${m.throughputRps.toFixed(0).padStart(6)} req/s  p50 ${m.latencyMs.p50.toFixed(1)} ms\n`);
    }
  }
  return { scenario: scenario.name, serviceMs: scenario.serviceMs, concurrency: scenario.concurrency, runs };
}

/** 10,000 requests at once on a fresh orchestrator: all answered? its peak memory, event-loop delay, and status writes. */
async function burst(farm: BackendFarm, dir: string): Promise<BenchResult['burst']> {
  const target = await startOrchestrator(dir, farm.ports, 'orchestrator (burst)');
  try {
    await farm.reset(20);
    const writes = countStatusWrites(target.statePath!);
    const started = performance.now();
    const result = await runLoad({ url: target.url, requests: 10_000, threads: THREADS, concurrency: 10_000, method: 'POST', body: '{"text":"burst"}', timeoutMs: 120_000 });
    const seconds = (performance.now() - started) / 1000;
    writes.close();
    const health = (await (await request(target.url.replace('/new_request', '/health'))).body.json()) as { eventLoopDelayMs: { p99: number; max: number } };
    const stats = await farm.stats();
    return {
      requests: 10_000,
      answered: result.statusCodes['200'] ?? 0,
      failed: result.failed,
      seconds,
      peakRssBytes: await peakRss(target.pid),
      eventLoopDelayP99Ms: health.eventLoopDelayMs.p99,
      eventLoopDelayMaxMs: health.eventLoopDelayMs.max,
      statusWritesPerSecond: writes.count / seconds,
      maxBackendConcurrency: Math.max(...stats.map((s) => s.maxConcurrency)),
    };
  } finally {
    await target.stop();
  }
}

const HELP = `Usage: npm run bench [-- --only scale]

Runs every scenario and writes docs/BENCHMARKS.md, docs/benchmarks.json and the charts (about 12 minutes).
  --only scale   run the scale scenario alone (under 2 minutes) and put its results into the
                 docs/benchmarks.json written last, then write the docs from it
`;

/** Every scenario: the proxies on one 8-backend farm, then the scale scenario and the model image. */
async function everything(dir: string, track: (running: Stoppable) => void): Promise<BenchResult> {
  execFileSync('bash', ['scripts/haproxy.sh'], { stdio: 'inherit' });
  // Built before anything is measured: a machine that cannot build it fails in seconds, not after the scenarios.
  execFileSync('bash', ['scripts/docker-engine.sh'], { stdio: 'inherit' });
  const modelImage = buildModelImage(MODEL_IMAGE);
  const farm = new BackendFarm(BACKENDS);
  track(farm);
  await farm.start();
  const orchestrator = await startOrchestrator(dir, farm.ports);
  track(orchestrator);
  const haproxy = await startHaproxy(dir, farm.ports);
  track(haproxy);
  const haproxyAgain = await startHaproxy(dir, farm.ports, 'haproxy (A/A)');
  track(haproxyAgain);

  const scenarios: ScenarioResult[] = [];
  for (const scenario of SCENARIOS) scenarios.push(await alternate(farm, [orchestrator, haproxy], scenario));
  const noise = await alternate(farm, [haproxy, haproxyAgain], SCENARIOS[2]!);
  // The reference: one backend called directly, one request at a time.
  const direct: Target = { name: 'direct', url: `http://127.0.0.1:${farm.ports[0]}/run_model`, pid: 0, stop: async () => {} };
  const reference = await measure(farm, direct, { name: 'direct', serviceMs: 20, concurrency: 1, requests: 200 });
  const burstResult = await burst(farm, dir);
  // The scale scenario and the model image have the cores to themselves.
  for (const running of [haproxyAgain, haproxy, orchestrator, farm]) await running.stop();
  const scale = await benchScale({ dir, track });
  const model = await benchModel({ dir, image: modelImage, rounds: ROUNDS, threads: THREADS, track });
  return {
    date: new Date().toISOString(),
    machine: { cores: cpus().length, cpu: cpus()[0]?.model ?? 'unknown', node: process.version, haproxy: execFileSync('haproxy', ['-v']).toString().split('\n')[0]!.trim() },
    backends: BACKENDS,
    rounds: ROUNDS,
    scenarios,
    noise,
    reference,
    burst: burstResult,
    model,
    scale,
  };
}

runFlagsCli(HELP, { only: { type: 'string' } }, async ({ only }) => {
  if (only !== undefined && only !== 'scale') throw new UsageError(`--only takes "scale", not "${only}"`);
  ensureWrk();
  // The orchestrator is measured as \`npm start\` runs it: compiled.
  execFileSync('npm', ['run', '--silent', 'build'], { stdio: 'inherit' });
  const dir = await mkdtemp(join(tmpdir(), 'bench-'));
  const running: Stoppable[] = [];
  const track = (r: Stoppable): void => void running.push(r);
  const cleanup = async (): Promise<void> => {
    for (const r of running.splice(0).reverse()) await r.stop();
    await rm(dir, { recursive: true, force: true });
  };
  // Interrupted, it still stops every process it started.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => void cleanup().finally(() => process.exit(130)));
  }
  try {
    const result: BenchResult = only
      ? { ...(JSON.parse(await readFile('docs/benchmarks.json', 'utf8')) as BenchResult), scale: await benchScale({ dir, track }) }
      : await everything(dir, track);
    await mkdir('docs', { recursive: true });
    const { markdown, svg, modelSvg } = formatReport(result);
    await writeFile('docs/benchmarks.json', `${JSON.stringify(result, null, 2)}\n`);
    await writeFile('docs/benchmarks.svg', svg);
    await writeFile('docs/benchmarks-model.svg', modelSvg);
    await writeFile('docs/BENCHMARKS.md', markdown);
    process.stdout.write(markdown);
    return 0;
  } finally {
    await cleanup();
  }
});
