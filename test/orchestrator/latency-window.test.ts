import { describe, expect, it } from 'vitest';
import { LatencyWindow } from '../../orchestrator/src/latency-window.js';

describe('LatencyWindow', () => {
  it('gives nearest-rank percentiles of the latencies that ended within the window only', () => {
    let now = 0;
    const window = new LatencyWindow({ now: () => now });
    expect(window.percentile(90, 1_000)).toBeNull();
    for (let ms = 1; ms <= 10; ms++) window.record(ms * 100);
    expect(window.percentile(90, 1_000)).toBe(900);
    expect(window.percentile(50, 1_000)).toBe(500);
    now = 2_000;
    window.record(7);
    expect(window.percentile(90, 1_000)).toBe(7);
  });

  it('keeps the latest `capacity` latencies only', () => {
    const window = new LatencyWindow({ capacity: 100, now: () => 0 });
    for (let i = 0; i < 1_050; i++) window.record(i);
    // Only the latest 100 remain: 950 to 1049.
    expect(window.percentiles([0.1, 100], 1)).toEqual([950, 1049]);
  });
});
