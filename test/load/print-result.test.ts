import { describe, expect, it } from 'vitest';
import { formatResult } from '../../load/src/print-result.js';
import type { LoadResult } from '../../load/src/run-load.js';

const result: LoadResult = {
  url: 'http://127.0.0.1:8080/new_request',
  method: 'POST',
  requests: 100,
  threads: 4,
  concurrency: 8,
  startedAt: '2025-01-01T00:00:00.000Z',
  durationMs: 2_500,
  throughputRps: 38,
  succeeded: 90,
  failed: 10,
  statusCodes: { '200': 90, '503': 5 },
  errors: { ECONNREFUSED: 5 },
  latencyMs: { min: 1.5, mean: 20, p50: 12.25, p90: 40, p99: 80.5, max: 120 },
  servedBy: { 'w1-c1': 45, 'w1-c2': 45, '(none)': 5 },
};

describe('formatResult', () => {
  it('prints totals, status codes, errors, duration, throughput, percentiles and containers', () => {
    const text = formatResult(result);
    expect(text).toContain('POST http://127.0.0.1:8080/new_request');
    expect(text).toMatch(/requests +100 \(4 threads, concurrency 8\)/);
    expect(text).toMatch(/succeeded +90 +failed 10/);
    expect(text).toMatch(/status +200: 90 +503: 5/);
    expect(text).toMatch(/errors +ECONNREFUSED: 5/);
    expect(text).toMatch(/duration +2\.50 s/);
    expect(text).toMatch(/throughput +38\.0 req\/s/);
    expect(text).toMatch(/p50 12\.3 ms +p90 40\.0 ms +p99 80\.5 ms +max 120\.0 ms/);
    expect(text).toMatch(/w1-c1 +45 +47\.4%/);
    expect(text).toMatch(/\(none\) +5 +5\.3%/);
    expect(text.endsWith('\n')).toBe(true);
  });

  it('says so when nothing answered', () => {
    const text = formatResult({ ...result, succeeded: 0, failed: 100, statusCodes: {}, errors: { ECONNREFUSED: 100 }, latencyMs: null, servedBy: {} });
    expect(text).toMatch(/status +\(no answers\)/);
    expect(text).toMatch(/latency +\(no answers\)/);
    expect(text).not.toContain('per container');
  });
});
