/** How long and how often `pollUntil` and `pollWithin` try. */
export interface PollOptions {
  /** Give up once this long has passed since the first attempt, in ms. */
  timeoutMs: number;
  /** Pause between two attempts, in ms. */
  intervalMs: number;
  /** Aborting ends the wait at once (even mid-pause) and rejects with the signal's reason. */
  signal?: AbortSignal;
}

/**
 * Calls `attempt` (round 0, 1, ...) until it returns a value other than undefined; rejects with
 * `onTimeout()`'s error past the deadline, or with the signal's reason when aborted. An attempt
 * that throws ends the wait with that error. An abort wins over a value an attempt returned at the
 * same time: whoever aborted no longer wants it.
 */
export async function pollUntil<T>(
  attempt: (round: number) => Promise<T | undefined>,
  options: PollOptions & { onTimeout: () => Error },
): Promise<T> {
  const value = await pollWithin(attempt, options);
  if (value === undefined) throw options.onTimeout();
  return value;
}

/**
 * pollUntil for waits that go on either way once the time is up (a drain, a grace period):
 * resolves undefined past the deadline instead of rejecting.
 */
export async function pollWithin<T>(attempt: (round: number) => Promise<T | undefined>, options: PollOptions): Promise<T | undefined> {
  const { timeoutMs, intervalMs, signal } = options;
  const deadline = performance.now() + timeoutMs;
  for (let round = 0; ; round++) {
    signal?.throwIfAborted();
    const value = await attempt(round);
    signal?.throwIfAborted();
    if (value !== undefined) return value;
    if (performance.now() >= deadline) return undefined;
    // Never pause past the deadline: the last attempt comes right at it.
    await pause(Math.min(intervalMs, Math.max(0, deadline - performance.now())), signal);
  }
}

/** Resolves after `ms`, or at once on `signal`. The global setTimeout (not timers/promises), so tests' fake timers drive it. */
function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
