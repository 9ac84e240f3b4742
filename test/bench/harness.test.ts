import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { EmulatedBackend } from '../../bench/src/backend-farm.js';
import { formatReport, type BenchResult, type Measurement, type ModelMeasurement } from '../../bench/src/report.js';
import { spreadOf } from '../../bench/src/spread.js';
import { haproxyConfig } from '../../bench/src/targets.js';
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

describe('the report', () => {
  const run = (target: string, rps: number, p50: number): Measurement => ({
    target,
    throughputRps: rps,
    latencyMs: { p50, p90: p50, p99: p50 },
    limitRps: 400,
    meanServiceMs: 20,
    meanGapMs: 0.5,
    spread: { min: 90, max: 110 },
    maxBackendConcurrency: 1,
  });
  const scenario = (name: string, orch: number, haproxy: number, p50 = 20.5) => ({
    scenario: name,
    serviceMs: 20,
    concurrency: 8,
    runs: [run('orchestrator', orch, p50), run('haproxy', haproxy, p50), run('orchestrator', orch, p50), run('haproxy', haproxy, p50)],
  });
  const modelRun = (target: string, concurrency: number, rps: number, p50: number): ModelMeasurement => ({
    target,
    concurrency,
    throughputRps: rps,
    latencyMs: { p50, p90: p50 * 2, p99: p50 * 4 },
  });
  const result: BenchResult = {
    date: '2026-11-23T00:00:00.000Z',
    machine: { cores: 2, cpu: 'test cpu', node: 'v20.20.2', haproxy: 'HAProxy version 2.6' },
    backends: 8,
    rounds: 2,
    scenarios: [scenario('S = 20 ms, C = 8', 390, 380), scenario('S = 20 ms, C = 64', 390, 380), scenario('S = 20 ms, C = 256', 395, 380), scenario('S = 0, C = 64', 1000, 3000)],
    noise: scenario('noise', 380, 381),
    reference: run('direct', 48, 20.3),
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
  };

  it('judges each target from the medians and says which are not met', () => {
    const { markdown } = formatReport(result);
    expect(markdown).toContain('| S = 20 ms, C = 256: throughput ≥ 98% of the measured limit | 98.8% (HAProxy: 95.0%) | yes |');
    expect(markdown).toContain('| S = 0, C = 64: ≥ 50% of HAProxy’s requests per second | 33.3% of HAProxy | **no** |');
    expect(markdown).toContain('| C = N: added p50 latency ≤ 1 ms over the service time | 0.50 ms (HAProxy: 0.50 ms) | yes |');
    expect(markdown).toContain('| 10,000 queued requests: peak RSS < 300 MB | 150 MB | yes |');
    expect(markdown).toContain('Throughput ratio orchestrator / haproxy (medians): **1.039**');
    // The direct reference answers at p50 20.3 ms for a 20 ms service time; both proxies answer at 20.5 ms.
    expect(markdown).toContain('already adds 0.30 ms to the p50');
    expect(markdown).toContain('direct p50: orchestrator 0.20 ms, HAProxy 0.20 ms.');
  });

  it('lists the scale scenario among the targets, and its section before the model image', () => {
    const { markdown } = formatReport(result);
    expect(markdown).toContain('| 200 containers on 50 workers, S = 20 ms: throughput ≥ 97% of the physical limit | 98.0% of 10,000 req/s (98.0% of 10,000); HAProxy: 99.0%; no proxy: 15,000 req/s | yes |');
    expect(markdown).toContain('| 200 containers: health probes and status writes within their bound |');
    expect(markdown.indexOf('## Scale: 200 containers on 50 workers, S = 20 ms')).toBeGreaterThan(markdown.indexOf('### Burst'));
    expect(markdown.indexOf('## Scale: 200 containers on 50 workers, S = 20 ms')).toBeLessThan(markdown.indexOf('## A real Python model'));
  });

  it('charts the median throughput of both proxies per scenario', () => {
    const { svg } = formatReport(result);
    expect(svg).toMatch(/^<svg /);
    expect(svg.match(/height="16"/g)).toHaveLength(8);
    expect(svg).toContain('395 req/s');
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
