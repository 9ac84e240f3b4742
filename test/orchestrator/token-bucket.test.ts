import { describe, expect, it } from 'vitest';
import { TokenBucket } from '../../orchestrator/src/token-bucket.js';

describe('TokenBucket', () => {
  it('lets a full burst through at once, then one request per 1/rate seconds', () => {
    const bucket = new TokenBucket(2, 3, 0);
    expect([bucket.take(0), bucket.take(0), bucket.take(0)]).toEqual([0, 0, 0]);
    // Empty: the next token is 500 ms away at 2 per second.
    expect(bucket.take(0)).toBe(500);
    expect(bucket.take(200)).toBeCloseTo(300);
    expect(bucket.take(500)).toBe(0);
    expect(bucket.take(500)).toBe(500);
  });

  it('refills to the burst and no further, however long it stays idle', () => {
    const bucket = new TokenBucket(10, 2, 0);
    bucket.take(0);
    bucket.take(0);
    expect(bucket.tokens(60_000)).toBe(2);
    expect([bucket.take(60_000), bucket.take(60_000), bucket.take(60_000) > 0]).toEqual([0, 0, true]);
  });

  it('takes nothing when it refuses: a client that keeps asking is not pushed further back', () => {
    const bucket = new TokenBucket(1, 1, 0);
    bucket.take(0);
    for (let t = 0; t < 1_000; t += 100) expect(bucket.take(t)).toBeCloseTo(1_000 - t);
    expect(bucket.take(1_000)).toBe(0);
  });

  it('lets a slow bucket (one request per 1,000 s) give its one token at any clock value, rounding or not', () => {
    for (const now of [0, 5_100, 123_456.789, 86_400_000.5]) {
      const bucket = new TokenBucket(0.001, 1, now);
      expect(bucket.take(now + 0.3)).toBe(0);
      expect(bucket.take(now + 0.3)).toBeCloseTo(1_000_000, 0);
    }
  });

  it('starts with the tokens it is given (a reload keeps what a key had left)', () => {
    const bucket = new TokenBucket(1, 5, 0, 1);
    expect(bucket.take(0)).toBe(0);
    expect(bucket.take(0)).toBe(1_000);
  });
});
