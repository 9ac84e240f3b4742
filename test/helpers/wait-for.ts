import { pollUntil } from '../../common/src/poll-until.js';

/** Poll `condition` every 5 ms until true; fail after `timeoutMs` naming what was awaited. */
export async function waitFor(condition: () => boolean, timeoutMs = 5_000, what = condition.toString()): Promise<void> {
  await pollUntil(async () => (condition() ? true : undefined), {
    timeoutMs,
    intervalMs: 5,
    onTimeout: () => new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`),
  });
}
