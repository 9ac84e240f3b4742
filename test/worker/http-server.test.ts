import { afterEach, describe, expect, it } from 'vitest';
import { listen, type ListeningServer } from '../../worker/src/http-server.js';
import { waitFor } from '../helpers/wait-for.js';

let running: ListeningServer | undefined;
afterEach(() => running?.close(1_000));

/** Requests the last slowServer received. */
let received = 0;

/** A server whose answers take `delayMs`. */
function slowServer(delayMs: number): Promise<ListeningServer> {
  received = 0;
  return listen(
    (_req, res) => {
      received++;
      setTimeout(() => res.end('done'), delayMs);
    },
    0,
    '127.0.0.1',
  );
}

describe('listen', () => {
  it('reports a loopback URL with the picked port', async () => {
    running = await slowServer(0);
    expect(running.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(running.url).not.toMatch(/:0$/);
  });

  it('rejects when the port is taken', async () => {
    running = await slowServer(0);
    const port = Number(new URL(running.url).port);
    await expect(listen(() => {}, port, '127.0.0.1')).rejects.toMatchObject({ code: 'EADDRINUSE' });
  });
});

describe('close', () => {
  it('finishes an in-flight keep-alive request, closes its socket, and resolves soon after', async () => {
    running = await slowServer(200);
    const answer = fetch(running.url);
    await waitFor(() => received === 1);

    const closeStartedAt = performance.now();
    const closed = running.close();
    const response = await answer;
    expect(await response.text()).toBe('done');
    expect(response.headers.get('connection')).toBe('close');
    await closed;
    // Well under Node's 5 s keep-alive timeout, which is what a lingering socket would cost.
    expect(performance.now() - closeStartedAt).toBeLessThan(1_000);
  });

  it('is idempotent', async () => {
    running = await slowServer(0);
    const first = running.close();
    expect(running.close()).toBe(first);
    await first;
  });

  it('force-closes requests still running after drainMs', async () => {
    running = await slowServer(5_000);
    const answer = fetch(running.url).then(
      () => 'answered',
      () => 'cut off',
    );
    await waitFor(() => received === 1);
    await running.close(100);
    expect(await answer).toBe('cut off');
  });
});
