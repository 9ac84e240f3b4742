import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { pollUntil, pollWithin } from '../../common/src/poll-until.js';

class Late extends Error {}

describe('pollUntil', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('resolves with the first value an attempt returns, one interval apart', async () => {
    const rounds: Array<{ round: number; at: number }> = [];
    const start = performance.now();
    const polled = pollUntil(
      async (round) => {
        rounds.push({ round, at: performance.now() - start });
        return round === 2 ? 'ready' : undefined;
      },
      { timeoutMs: 10_000, intervalMs: 100, onTimeout: () => new Late() },
    );
    await vi.advanceTimersByTimeAsync(200);
    await expect(polled).resolves.toBe('ready');
    expect(rounds).toEqual([
      { round: 0, at: 0 },
      { round: 1, at: 100 },
      { round: 2, at: 200 },
    ]);
  });

  it("rejects with onTimeout()'s error after a last attempt at the deadline", async () => {
    const attempt = vi.fn(async () => undefined);
    const polled = pollUntil(attempt, { timeoutMs: 250, intervalMs: 100, onTimeout: () => new Late() });
    const outcome = expect(polled).rejects.toBeInstanceOf(Late);
    await vi.advanceTimersByTimeAsync(250);
    await outcome;
    // 0, 100, 200, and one at 250 rather than none past 200.
    expect(attempt).toHaveBeenCalledTimes(4);
  });

  it("rejects with the signal's reason at once when aborted mid-pause, and tries no more", async () => {
    const controller = new AbortController();
    const attempt = vi.fn(async () => undefined);
    const polled = pollUntil(attempt, { timeoutMs: 60_000, intervalMs: 10_000, signal: controller.signal, onTimeout: () => new Late() });
    const outcome = expect(polled).rejects.toBe('gone');
    await vi.advanceTimersByTimeAsync(10);
    controller.abort('gone');
    await outcome;
    await vi.advanceTimersByTimeAsync(60_000);
    expect(attempt).toHaveBeenCalledTimes(1);
  });

  it('lets an abort win over a value returned at the same time', async () => {
    const controller = new AbortController();
    const polled = pollUntil(
      async () => {
        controller.abort('unwanted');
        return 'value';
      },
      { timeoutMs: 1_000, intervalMs: 100, signal: controller.signal, onTimeout: () => new Late() },
    );
    await expect(polled).rejects.toBe('unwanted');
  });

  it('ends the wait with the error an attempt throws', async () => {
    const polled = pollUntil(
      async (round) => {
        if (round === 1) throw new RangeError('broken');
        return undefined;
      },
      { timeoutMs: 1_000, intervalMs: 100, onTimeout: () => new Late() },
    );
    const outcome = expect(polled).rejects.toBeInstanceOf(RangeError);
    await vi.advanceTimersByTimeAsync(100);
    await outcome;
  });
});

describe('pollWithin', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('resolves undefined past the deadline instead of rejecting, after a last attempt at it', async () => {
    const attempt = vi.fn(async () => undefined);
    const polled = pollWithin(attempt, { timeoutMs: 250, intervalMs: 100 });
    await vi.advanceTimersByTimeAsync(250);
    await expect(polled).resolves.toBeUndefined();
    expect(attempt).toHaveBeenCalledTimes(4);
  });

  it('resolves with the value once an attempt returns one', async () => {
    const polled = pollWithin(async (round) => (round === 1 ? true : undefined), { timeoutMs: 1_000, intervalMs: 100 });
    await vi.advanceTimersByTimeAsync(100);
    await expect(polled).resolves.toBe(true);
  });
});
