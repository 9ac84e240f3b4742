import { Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { BucketHistogram } from '../../orchestrator/src/bucket-histogram.js';

const BUCKETS = [0.001, 0.01, 0.1, 1];

describe('BucketHistogram', () => {
  it("renders exactly the exposition prom-client's own Histogram renders for the same observations", async () => {
    const ours = new Registry();
    const theirs = new Registry();
    const histogram = new BucketHistogram({ name: 'x_seconds', help: 'Some time.', buckets: BUCKETS, registers: [ours] });
    const reference = new Histogram({ name: 'x_seconds', help: 'Some time.', buckets: BUCKETS, registers: [theirs] });
    expect(await ours.metrics()).toBe(await theirs.metrics());
    // On a bound, between bounds, below the first, past the last.
    for (const v of [0, 0.001, 0.0011, 0.05, 0.1, 0.99, 1, 7.5, 120]) {
      histogram.observe(v);
      reference.observe(v);
    }
    expect(await ours.metrics()).toBe(await theirs.metrics());
    expect(await ours.metrics()).toContain('x_seconds_bucket{le="0.001"} 2');
  });
});
