import { describe, expect, it } from 'vitest';
import { scaleChecks, scaleSection } from '../../bench/src/scale-report.js';
import { scaleResult } from './scale-fixture.js';

const section = (throughputRps?: number): string => scaleSection(scaleResult(throughputRps), 2).join('\n');

describe('the scale section of the report', () => {
  it('sets the median throughput against the limit of the measured service time, and says whether the 3% target is met', () => {
    expect(section()).toContain('| orchestrator | 9700 / **9800** / 9900 | 10,000 (20.00 ms) | 98.0% | 0.40 | 40.0 | 45.0 | 60.0 |');
    expect(section()).toContain('| haproxy | 9900 / **9900** / 9900 | 10,000 (20.00 ms) | 99.0% | 0.40 | 40.0 | 44.0 | 55.0 |');
    expect(section()).toContain('| direct (no proxy) | 15000 / **15000** / 15000 | 20,000 (20.00 ms) | 75.0% | – | 26.0 | 30.0 | 50.0 |');
    expect(section()).toContain('**Throughput within 3% of the physical limit: met on these 2 cores.**');
    expect(section(9_500)).toContain('**Throughput within 3% of the physical limit: not met on these 2 cores.** The orchestrator answered 9,500 req/s, 95.0%');
    expect(section()).not.toContain('HAProxy falls short');
    const slowFarm = scaleResult();
    for (const run of slowFarm.runs) if (run.target === 'haproxy') Object.assign(run, { throughputRps: 9_000, meanGapMs: 2.2 });
    expect(scaleSection(slowFarm, 2).join('\n')).toContain('HAProxy falls short of 97% too: its containers waited 2.20 ms on average from answering to their next request');
    expect(scaleChecks(scaleResult()).map((c) => c.met)).toEqual([true, true]);
    expect(scaleChecks(scaleResult(9_500))[0]).toMatchObject({ value: '95.0% of 10,000 req/s (95.0% of 10,000); HAProxy: 99.0%; no proxy: 15,000 req/s', met: false });
  });

  it('says where the CPU goes: per request and per core for each process and target, and what 10,000 req/s would need', () => {
    const text = section();
    expect(text).toContain('(98.0% of the nominal 10,000; HAProxy, doing the same job here, 99.0% at 30 µs of its CPU per request)');
    expect(text).toContain('while the machine was 90% busy (in cores: orchestrator 0.98, backend farm 0.49, client (wrk) 0.10, rest of the machine 0.23)');
    expect(text).toContain('the orchestrator alone needs 100% of one core for 10,000 req/s');
    expect(text).toContain('the client together 1.60 of the 2 cores');
    expect(text).toContain('without a proxy the same wrk drove the same farm to 15,000 req/s at 10 µs of its CPU per request');
    expect(text).toContain('| proxy (direct: the idle orchestrator) | 100 | 98% | 30 | 30% | – | 1% |');
    expect(text).toContain('| backend farm | 50 | 49% | 50 | 50% | 40 | 60% |');
    expect(text).toContain('| client (wrk) | 10 | 10% | 10 | 10% | 10 | 15% |');
    expect(text).toContain('| rest of the machine | – | 23% | – | 11% | – | 4% |');
    expect(text).toContain('| whole machine (2 cores) | – | 180% | – | 100% | – | 80% |');
    expect(text).not.toContain('Other work held');
  });

  it('warns when other work held a good part of the cores during the runs', () => {
    const result = scaleResult();
    // 0.23 cores elsewhere, then 0.5.
    for (const run of result.runs) if (run.target === 'orchestrator') run.window.cpuMs.machine += 2_160;
    expect(scaleSection(result, 2).join('\n')).toContain('Other work held 0.50 cores during these runs: the figures come from a busy machine');
  });

  it('prices a probe and a status write, and states their bound and their share of the orchestrator under load', () => {
    const text = section();
    expect(text).toContain('| idle, not probing | 0 | 0 | 0.0 | 4.0 |');
    expect(text).toContain('| idle | 0 | 200 | 0.0 | 14.0 |');
    expect(text).toContain('| idle, 10 requests/s | 10 | 200 | 4.0 | 23.0 |');
    expect(text).toContain('| under load (median of 3) | 9,800 | 200 | 4.0 | 980.0 |');
    // (140 − 40 ms unprobed) over 2,000 idle probes; (230 − 40 ms unprobed − 100 ms of probes − 100 requests × 100 µs) over 40 writes.
    expect(text).toContain('One probe costs 0.050 ms');
    expect(text).toContain('one status write 2.00 ms');
    // 200 × 0.05 + 4 × 2 = 18 ms per second, 18 / 980 of the orchestrator's CPU under load.
    expect(text).toContain('at most 200 probes (200 containers × 1000 / 1000) and 4 writes (1000 / 250) per second');
    expect(text).toContain('at most 18 ms of CPU per second, 1.8% of one core');
    expect(text).toContain('**1.8% of the orchestrator\'s CPU**');
    expect(scaleChecks(scaleResult())[1]!.value).toBe("≤ 200 probes/s, ≤ 4 writes/s: ≤ 18 ms CPU per second; under load 1.8% of the orchestrator's CPU");
  });

  it('says so when status writes are lost in the noise, rather than pricing them below 0', () => {
    const result = scaleResult();
    // 140 ms: no more than the unprobed orchestrator and the trickle's probes, less its requests.
    result.trickle.window.cpuMs.proxy = 140;
    const text = scaleSection(result, 2).join('\n');
    expect(text).toContain('a status write too little to tell from the noise here');
    // 200 × 0.05 ms, writes counted as 0.
    expect(text).toContain('at most 10 ms of CPU per second');
  });

  it('fails the bound when a window holds more probes or writes than the settings allow', () => {
    const result = scaleResult();
    // 10 s may hold 11 passes of 200 probes, not 12.
    result.idle.probes = 2_400;
    expect(scaleChecks(result)[1]!.met).toBe(false);
    const writes = scaleResult();
    // 10 s at one write per 250 ms: at most 41.
    writes.trickle.window.statusWrites = 42;
    expect(scaleChecks(writes)[1]!.met).toBe(false);
  });
});
