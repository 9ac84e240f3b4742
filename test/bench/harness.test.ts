import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { EmulatedBackend } from '../../bench/src/backend-farm.js';
import {
  BENCH_RESULT_VERSION,
  formatReport,
  HAPROXY,
  parseBenchResult,
  ROUTES,
  StaleBenchResultError,
  type BenchResult,
  type Measurement,
  type ModelMeasurement,
  type ScenarioResult,
} from '../../bench/src/report.js';
import { spreadOf } from '../../bench/src/spread.js';
import { haproxyConfig, NODE_FLOOR } from '../../bench/src/targets.js';
import { scaleResult } from './scale-fixture.js';

let backend: EmulatedBackend | undefined;
afterEach(async () => {
  await backend?.close();
  backend = undefined;
});

const post = (port: number) => request(`http://127.0.0.1:${port}/run_model`, { method: 'POST', body: '{}' }).then((r) => r.body.text());

describe('EmulatedBackend', () => {
  it('serves one request at a time in arrival order, and reports the concurrency it was sent', async () => {
    backend = new EmulatedBackend('b1', 30);
    const port = await backend.listen();
    const started = performance.now();
    await Promise.all([post(port), post(port), post(port)]);
    // Three requests sent at once were served one after another, not in parallel.
    expect(performance.now() - started).toBeGreaterThanOrEqual(85);
    expect(backend.stats()).toMatchObject({ served: 3, maxConcurrency: 3 });
    expect(backend.stats().meanServiceMs).toBeGreaterThanOrEqual(29);
  });

  it('sees concurrency 1 from a well-behaved client, and measures the gap before each next request', async () => {
    backend = new EmulatedBackend('b1', 5);
    const port = await backend.listen();
    for (let i = 0; i < 4; i++) {
      await post(port);
      // The gap between requests is what the backend measures here.
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const stats = backend.stats();
    expect(stats).toMatchObject({ served: 4, maxConcurrency: 1 });
    expect(stats.meanGapMs).toBeGreaterThanOrEqual(19);
    backend.reset(0);
    expect(backend.stats()).toMatchObject({ served: 0, maxConcurrency: 0, meanGapMs: 0, meanServiceMs: 0 });
  });

  it('answers /health at once, as the container it is, without counting it', async () => {
    backend = new EmulatedBackend('b7', 1_000);
    const port = await backend.listen();
    const health = await request(`http://127.0.0.1:${port}/health`);
    expect(await health.body.json()).toEqual({ status: 'ok', container: 'b7' });
    expect(backend.stats()).toMatchObject({ served: 0, probes: 1 });
  });

  it('serves `slots` requests at once, the rest in arrival order', async () => {
    backend = new EmulatedBackend('direct', 200, 2);
    const port = await backend.listen();
    const started = performance.now();
    await Promise.all([post(port), post(port), post(port), post(port)]);
    // Four requests of 200 ms, two at a time: two rounds (400 ms), not one (200) and not four (800).
    const elapsed = performance.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(395);
    expect(elapsed).toBeLessThan(700);
    expect(backend.stats()).toMatchObject({ served: 4, maxConcurrency: 4 });
  });
});

describe('the HAProxy reference configuration', () => {
  it('is the fair one: one thread, maxconn 1 per server, leastconn, health checks, no abortonclose', () => {
    const config = haproxyConfig(8000, [9001, 9002]);
    expect(config).toContain('  nbthread 1\n');
    expect(config).toContain('  balance leastconn\n');
    expect(config).toContain('  option httpchk GET /health\n');
    expect(config).toContain('  server b1 127.0.0.1:9001 maxconn 1 check inter 1s\n  server b2 127.0.0.1:9002 maxconn 1 check inter 1s\n');
    expect(config).not.toContain('abortonclose');
  });
});

const PROXY_TARGETS = [...ROUTES, HAPROXY];

describe('the report', () => {
  const run = (target: string, rps: number, p50 = 20.5, proxyUs: number | null = 50, clientUs = 20): Measurement => ({
    target,
    throughputRps: rps,
    latencyMs: { p50, p90: p50, p99: p50 },
    limitRps: 400,
    meanServiceMs: 20,
    meanGapMs: 0.5,
    spread: { min: 90, max: 110 },
    maxBackendConcurrency: 1,
    cpuUsPerRequest: { proxy: proxyUs, client: clientUs, farm: 30 },
  });
  /** Two rounds of the three targets; `of` gives each target's run. */
  const scenario = (name: string, concurrency: number, of: (target: string) => Measurement): ScenarioResult => {
    const serviceMs = name.startsWith('S = 0') ? 0 : 20;
    return { scenario: name, serviceMs, concurrency, runs: [...PROXY_TARGETS, ...PROXY_TARGETS].map((t) => ({ ...of(t), limitRps: serviceMs > 0 ? 400 : null })) };
  };
  const byTarget = (values: Record<string, [rps: number, p50?: number, proxyUs?: number]>) => (target: string) => run(target, ...values[target]!);
  // C = N: added p50 0.80 (0.40 over HAProxy's 0.40: not met) and 0.50 (0.10 over: met).
  const atN = scenario('S = 20 ms, C = 8', 8, byTarget({ 'orchestrator /new_request': [360, 20.8], 'orchestrator /run_model': [370, 20.5], haproxy: [380, 20.4] }));
  // The A/A noise is 380 / 381: 0.26%. At C = 64, /new_request at 97.4% of HAProxy is outside it; /run_model at 100% is within.
  const at64 = scenario('S = 20 ms, C = 64', 64, byTarget({ 'orchestrator /new_request': [380], 'orchestrator /run_model': [390], haproxy: [390] }));
  const at256 = scenario('S = 20 ms, C = 256', 256, byTarget({ 'orchestrator /new_request': [395], 'orchestrator /run_model': [380], haproxy: [380] }));
  // S = 0: /new_request at 56% of HAProxy and 2× its CPU per request (both met); /run_model at 25% and 5.5× (neither).
  // wrk alone, in the same rounds: `directRps` at 20 µs of wrk's CPU per request.
  const zero = (directRps: number): ScenarioResult => {
    const s = scenario('S = 0, C = 64', 64, byTarget({ 'orchestrator /new_request': [9_000, 6, 40], 'orchestrator /run_model': [4_000, 12, 110], haproxy: [16_000, 3, 20] }));
    return { ...s, runs: [...s.runs, run('direct', directRps, 2, null, 20), run('direct', directRps, 2, null, 20)].map((m) => ({ ...m, limitRps: null })) };
  };
  const modelRun = (target: string, concurrency: number, rps: number, p50: number): ModelMeasurement => ({
    target,
    concurrency,
    throughputRps: rps,
    latencyMs: { p50, p90: p50 * 2, p99: p50 * 4 },
  });
  const result: BenchResult = {
    version: BENCH_RESULT_VERSION,
    date: '2026-11-23T00:00:00.000Z',
    machine: { cores: 2, cpu: 'test cpu', node: 'v20.20.2', haproxy: 'HAProxy version 2.6', wrk: 'wrk debian/4.1.0-3+b2' },
    backends: 8,
    rounds: 2,
    runSeconds: 3,
    // 30,000 req/s with no proxy: 1.88× the fastest proxy (HAProxy, 16,000); wrk's ceiling 50,000.
    scenarios: [atN, at64, at256, zero(30_000)],
    noise: { scenario: 'noise', serviceMs: 20, concurrency: 256, runs: [run('haproxy', 380), run('haproxy (A/A)', 381), run('haproxy', 380), run('haproxy (A/A)', 381)] },
    reference: run('direct', 48, 20.3, null),
    burst: {
      requests: 10_000,
      answered: 10_000,
      failed: 0,
      seconds: 26,
      peakRssBytes: 150e6,
      eventLoopDelayP99Ms: 12,
      eventLoopDelayMaxMs: 40,
      statusWritesPerSecond: 4,
      maxBackendConcurrency: 1,
    },
    model: {
      image: 'flask-model:latest',
      imageId: 'a3d55eb8b489',
      base: 'local/python-ml-base:bookworm',
      model: 'digits-logistic-regression@1',
      sample: { label: 2, prediction: 2 },
      inferenceMs: 0.364,
      requests: { '1': 600, '16': 1200 },
      // Medians: C = 1 direct 250 (p50 3.5), orchestrator 125 (p50 7), HAProxy 200 (p50 4); C = 16 direct 480 (p50 30), orchestrator 240 (p50 60), HAProxy 320 (p50 45).
      runs: [
        modelRun('direct', 1, 250, 3.5),
        modelRun('orchestrator', 1, 125, 7),
        modelRun('haproxy', 1, 200, 4),
        modelRun('direct', 1, 240, 3.6),
        modelRun('orchestrator', 1, 120, 7.5),
        modelRun('haproxy', 1, 190, 4.1),
        modelRun('direct', 1, 260, 3.4),
        modelRun('orchestrator', 1, 130, 6.9),
        modelRun('haproxy', 1, 210, 3.9),
        modelRun('direct', 16, 480, 30),
        modelRun('orchestrator', 16, 240, 60),
        modelRun('haproxy', 16, 320, 45),
      ],
    },
    scale: scaleResult(),
    instructions: {
      valgrind: 'valgrind-3.19.0',
      warmUp: 12_000,
      counted: 5_000,
      connections: 8,
      counts: [
        { target: 'orchestrator /new_request', what: 'the orchestrator', instructionsPerRequest: 160_400 },
        { target: 'haproxy', what: 'HAProxy', instructionsPerRequest: 32_080 },
      ],
    },
  };

  it('judges each target per route from the medians, beside HAProxy, and says which are not met', () => {
    const { markdown } = formatReport(result);
    const row = (target: string, value: string, met: boolean): string => `| ${target} | ${value} | ${met ? 'yes' : '**no**'} |`;
    expect(markdown).toContain(row('S = 0, C = 64, orchestrator /new_request: throughput ≥ 50% of HAProxy’s', '9000 req/s: 56.3% of HAProxy’s 16000', true));
    expect(markdown).toContain(row('S = 0, C = 64, orchestrator /run_model: throughput ≥ 50% of HAProxy’s', '4000 req/s: 25.0% of HAProxy’s 16000', false));
    expect(markdown).toContain(row('S = 0, C = 64, orchestrator /new_request: proxy CPU per request ≤ 2.5× HAProxy’s', '40 µs: 2.00× HAProxy’s 20 µs', true));
    expect(markdown).toContain(row('S = 0, C = 64, orchestrator /run_model: proxy CPU per request ≤ 2.5× HAProxy’s', '110 µs: 5.50× HAProxy’s 20 µs', false));
    expect(markdown).toContain(row('S = 20 ms, C = 8 (C = N), orchestrator /new_request: added p50 within 0.2 ms of HAProxy’s', '0.80 ms; HAProxy: 0.40 ms (+0.40 ms)', false));
    expect(markdown).toContain(row('S = 20 ms, C = 8 (C = N), orchestrator /run_model: added p50 within 0.2 ms of HAProxy’s', '0.50 ms; HAProxy: 0.40 ms (+0.10 ms)', true));
    expect(markdown).toContain(row('S = 20 ms, C = 64, orchestrator /new_request: throughput within the A/A noise of HAProxy’s', '97.44% of HAProxy (≥ 99.74% needed; A/A noise 0.26%)', false));
    expect(markdown).toContain(row('S = 20 ms, C = 64, orchestrator /run_model: throughput within the A/A noise of HAProxy’s', '100.00% of HAProxy (≥ 99.74% needed; A/A noise 0.26%)', true));
    expect(markdown).toContain(row('S = 20 ms, C = 256, orchestrator /new_request: throughput within the A/A noise of HAProxy’s', '103.95% of HAProxy (≥ 99.74% needed; A/A noise 0.26%)', true));
    expect(markdown).toContain(row('S = 20 ms, C = 256, orchestrator /new_request: throughput ≥ 98% of the measured limit', '98.8% (HAProxy: 95.0%)', true));
    expect(markdown).toContain(row('S = 20 ms, C = 256, orchestrator /run_model: throughput ≥ 98% of the measured limit', '95.0% (HAProxy: 95.0%)', false));
    expect(markdown).toContain(row('10,000 queued requests: peak RSS < 300 MB', '150 MB', true));
    // The rows the per-route ones replace are gone.
    expect(markdown).not.toContain('added p50 latency ≤ 1 ms');
    expect(markdown).not.toContain('≥ HAProxy’s');
    expect(markdown).toContain('Throughput ratio orchestrator /new_request / haproxy (medians): **1.039**');
    expect(markdown).toContain('Throughput ratio orchestrator /run_model / haproxy (medians): **1.000**');
    expect(markdown).toContain('| orchestrator /run_model | 4000 / **4000** / 4000 | – | 12.00 | 12.00 | 12.00 | 110.0 | 20.0 |');
    expect(markdown).toContain('| direct | 30000 / **30000** / 30000 | – | 2.00 | 2.00 | 2.00 | – | 20.0 |');
    expect(markdown).toContain('Throughput ratio direct / haproxy (medians): **1.875**');
    // The direct reference answers at p50 20.3 ms for a 20 ms service time.
    expect(markdown).toContain('already adds 0.30 ms to the p50');
    expect(markdown).toContain('direct p50: orchestrator /new_request 0.50 ms, orchestrator /run_model 0.20 ms, haproxy 0.10 ms.');
  });

  it("sets Node's own floor beside the C = N and S = 0 targets when it ran there", () => {
    // A minimal Node proxy: added p50 1.40 ms at C = N; at S = 0 10,000 req/s (62.5% of HAProxy's 16,000) at 35 µs (1.75×).
    const floor = (rps: number, p50: number, us: number): Measurement => run(NODE_FLOOR, rps, p50, us);
    const [atN, at64, at256, zero] = result.scenarios;
    const withFloor: BenchResult = {
      ...result,
      scenarios: [{ ...atN!, runs: [...atN!.runs, floor(350, 21.4, 90), floor(350, 21.4, 90)] }, at64!, at256!, { ...zero!, runs: [...zero!.runs, { ...floor(10_000, 5, 35), limitRps: null }] }],
    };
    const { markdown } = formatReport(withFloor);
    expect(markdown).toContain('| 0.80 ms; HAProxy: 0.40 ms (+0.40 ms); a minimal Node proxy: 1.40 ms | **no** |');
    expect(markdown).toContain('| 9000 req/s: 56.3% of HAProxy’s 16000; a minimal Node proxy: 62.5% | yes |');
    expect(markdown).toContain('| 40 µs: 2.00× HAProxy’s 20 µs; a minimal Node proxy: 35 µs, 1.75× | yes |');
  });

  it('gives instructions per request with their multiple of HAProxy, before the scale scenario', () => {
    const { markdown } = formatReport(result);
    expect(markdown).toContain('| orchestrator /new_request | the orchestrator | 160k | 5.0 |');
    expect(markdown).toContain('| haproxy | HAProxy | 32k | 1.0 |');
    expect(markdown.indexOf("## Where a request's CPU goes")).toBeLessThan(markdown.indexOf('## Scale'));
  });

  it('says which client measured what', () => {
    const { markdown } = formatReport(result);
    expect(markdown).toContain('`wrk debian/4.1.0-3+b2` (C, one thread, bench/src/wrk-post.lua');
    expect(markdown).toContain('drives the proxy scenarios (3 s a run) and the scale scenario');
    expect(markdown).toContain('(`npm run load`, a Node generator');
    expect(markdown).toContain('drives the 10,000-request burst, which needs 10,000 connections at once, and the model image.');
  });

  it('proves the client outran every proxy, or says plainly that it did not', () => {
    const { markdown } = formatReport(result);
    expect(markdown).toContain('30000 / **30000** / 30000 req/s, with 20.0 µs of wrk\'s CPU per request');
    expect(markdown).toContain('(its own ceiling on its one thread: 1e6 / 20.0 µs = 50000 req/s, 3.1× the fastest proxy;');
    expect(markdown).toContain('That is **1.88×** the fastest proxy at S = 0, C = 64 (haproxy, 16000 req/s): the client outran every proxy');
    expect(markdown).toContain('| The client is not the bottleneck: wrk with no proxy ≥ 1.25× the fastest proxy (S = 0, C = 64) | 30000 req/s: 1.88× haproxy’s 16000 | yes |');
    const slow = formatReport({ ...result, scenarios: [atN, at64, at256, zero(18_000)] }).markdown;
    expect(slow).toContain('That is only **1.13×** the fastest proxy at S = 0, C = 64 (haproxy, 16000 req/s), less than 1.25×: **the client may be what limits the fastest proxies here**');
    expect(slow).toContain('| 18000 req/s: 1.13× haproxy’s 16000 | **no** |');
  });

  it('refuses a docs/benchmarks.json of another shape, asking for a full run', () => {
    expect(parseBenchResult(JSON.stringify(result))).toEqual(result);
    const { version: _, ...old } = result;
    expect(() => parseBenchResult(JSON.stringify(old))).toThrow(StaleBenchResultError);
    expect(() => parseBenchResult(JSON.stringify({ ...result, version: 1 }))).toThrow(expect.objectContaining({ code: 'BENCH_RESULT_STALE' }));
  });

  it('lists the scale scenario among the targets, and its section before the model image', () => {
    const { markdown } = formatReport(result);
    expect(markdown).toContain('| 200 containers on 50 workers, S = 20 ms: throughput ≥ 97% of the physical limit | 98.0% of 10,000 req/s (98.0% of 10,000); HAProxy: 99.0%; no proxy: 15,000 req/s | yes |');
    expect(markdown).toContain('| 200 containers: health probes and status writes within their bound |');
    expect(markdown.indexOf('## Scale: 200 containers on 50 workers, S = 20 ms')).toBeGreaterThan(markdown.indexOf('### Burst'));
    expect(markdown.indexOf('## Scale: 200 containers on 50 workers, S = 20 ms')).toBeLessThan(markdown.indexOf('## A real Python model'));
  });

  it('charts the median throughput of the three targets per scenario', () => {
    const { svg } = formatReport(result);
    expect(svg).toMatch(/^<svg /);
    expect(svg.match(/height="16"/g)).toHaveLength(12);
    expect(svg).toContain('395 req/s');
    expect(svg).toContain('orch. /run_model');
  });

  it('sets the model image through the orchestrator beside its direct calls and HAProxy, per concurrency, on shared cores', () => {
    const { markdown, modelSvg } = formatReport(result);
    expect(markdown).toContain('The example model image `flask-model:latest` (image a3d55eb8b489, base `local/python-ml-base:bookworm`)');
    expect(markdown).toContain("the model's own time per request is\n0.36 ms (median of the app's `inference_ms`)");
    expect(markdown).toContain('The load generator, the orchestrator and\nthe container share the same 2 cores.');
    expect(markdown).toContain('| 1 | direct | 600 | 240 / **250** / 260 | 3.50 | 7.00 | 14.00 |');
    expect(markdown).toContain('| 1 | orchestrator | 600 | 120 / **125** / 130 | 7.00 | 14.00 | 28.00 |');
    expect(markdown).toContain('| 16 | orchestrator | 1200 | 240 / **240** / 240 | 60.00 | 120.00 | 240.00 |');
    expect(markdown).toContain('| 1 | haproxy | 600 | 190 / **200** / 210 | 4.00 | 8.00 | 16.00 |');
    expect(markdown).toContain('| 1 | **0.500** | 0.800 | **0.625** | +3.50 | +0.50 |');
    expect(markdown).toContain('| 16 | **0.500** | 0.667 | **0.750** | +30.00 | +15.00 |');
    expect(markdown).toContain('![model image: median throughput, direct, through the orchestrator and through HAProxy](benchmarks-model.svg)');
    // Two concurrencies, three targets: six bars on one scale.
    expect(modelSvg.match(/height="16"/g)).toHaveLength(6);
    expect(modelSvg).toContain('480 req/s');
    expect(modelSvg).toContain('C = 16');
  });

  it('gives min, median and max', () => {
    expect(spreadOf([3, 1, 2])).toEqual({ min: 1, median: 2, max: 3 });
    expect(spreadOf([4, 1, 2, 3])).toEqual({ min: 1, median: 2.5, max: 4 });
  });
});
