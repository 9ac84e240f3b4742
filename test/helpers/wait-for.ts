/** Poll `condition` every 5 ms until true; fail after `timeoutMs` naming what was awaited. */
export async function waitFor(condition: () => boolean, timeoutMs = 5_000, what = condition.toString()): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
