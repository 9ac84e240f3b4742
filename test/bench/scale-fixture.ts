import type { ScaleResult, ScaleRun, ScaleWindow } from '../../bench/src/scale-report.js';

const window = (w: Partial<ScaleWindow> & Pick<ScaleWindow, 'seconds' | 'requests'>): ScaleWindow => ({
  probes: 0,
  statusWrites: 0,
  cpuMs: { proxy: 0, farm: 0, client: 0, machine: 0 },
  ...w,
});

/**
 * A scale run whose figures are easy to check by hand: through the orchestrator (median
 * `throughputRps`, at 20 ms against a 20 ms service time, so a limit of 10,000 req/s) each request
 * costs the orchestrator 100 µs, the farm 50 µs and the client 10 µs; idle, the orchestrator costs
 * 4 ms a second, a probe 0.05 ms more, and with the trickle a status write 2 ms.
 */
export function scaleResult(throughputRps = 9_800): ScaleResult {
  const through = (rps: number): ScaleRun => ({
    target: 'orchestrator',
    throughputRps: rps,
    latencyMs: { p50: 40, p90: 45, p99: 60, max: 90 },
    meanServiceMs: 20,
    meanGapMs: 0.4,
    limitRps: 10_000,
    // 8 s at 9,800 req/s; 200 probes and 4 writes a second.
    window: window({ seconds: 8, requests: 78_400, probes: 1_600, statusWrites: 32, cpuMs: { proxy: 7_840, farm: 3_920, client: 784, machine: 14_400 } }),
  });
  const direct: ScaleRun = {
    target: 'direct',
    throughputRps: 15_000,
    latencyMs: { p50: 26, p90: 30, p99: 50, max: 70 },
    meanServiceMs: 20,
    meanGapMs: 0.4,
    limitRps: 20_000,
    window: window({ seconds: 3, requests: 45_000, probes: 600, cpuMs: { proxy: 30, farm: 1_800, client: 450, machine: 2_400 } }),
  };
  // HAProxy: 9,900 req/s at 30 µs of its CPU per request.
  const haproxy: ScaleRun = {
    target: 'haproxy',
    throughputRps: 9_900,
    latencyMs: { p50: 40, p90: 44, p99: 55, max: 80 },
    meanServiceMs: 20,
    meanGapMs: 0.4,
    limitRps: 10_000,
    window: window({ seconds: 5, requests: 49_500, probes: 1_000, statusWrites: 0, cpuMs: { proxy: 1_485, farm: 2_475, client: 495, machine: 5_000 } }),
  };
  return {
    date: '2026-11-30T05:00:00.000Z',
    containers: 200,
    workers: 50,
    serviceMs: 20,
    connections: 400,
    config: { healthIntervalMs: 1_000, healthProbeConcurrency: 64, statusWriteIntervalMs: 250 },
    unprobed: window({ seconds: 10, requests: 0, cpuMs: { proxy: 40, farm: 10, client: 0, machine: 300 } }),
    // 40 ms unprobed, 100 ms of probes.
    idle: window({ seconds: 10, requests: 0, probes: 2_000, cpuMs: { proxy: 140, farm: 50, client: 0, machine: 400 } }),
    // 40 ms unprobed, 100 ms of probes, 10 ms of requests (100 × 100 µs) and 40 writes of 2 ms.
    trickle: { requestsPerSecond: 10, window: window({ seconds: 10, requests: 100, probes: 2_000, statusWrites: 40, cpuMs: { proxy: 230, farm: 60, client: 0, machine: 500 } }) },
    runs: [through(throughputRps - 100), haproxy, direct, through(throughputRps), haproxy, direct, through(throughputRps + 100), haproxy, direct],
  };
}
