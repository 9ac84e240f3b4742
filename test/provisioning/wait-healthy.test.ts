import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { waitHealthy, type HealthTarget } from '../../provisioning/src/wait-healthy.js';

const servers: Server[] = [];

/** A /health server on a free port answering as `container` once `readyAfterMs` passed. */
async function healthServer(container: string, readyAfterMs = 0): Promise<number> {
  const readyAt = Date.now() + readyAfterMs;
  const server = createServer((_req, res) => {
    if (Date.now() < readyAt) return void res.writeHead(503).end();
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ status: 'ok', container }));
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

const target = (name: string, port: number): HealthTarget => ({ name, host: '127.0.0.1', port });

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
});

describe('waitHealthy', () => {
  it('resolves once every target answers as itself, reporting progress as the count grows', async () => {
    const targets = [target('a', await healthServer('a')), target('b', await healthServer('b', 300))];
    const progress: string[] = [];
    await waitHealthy(targets, { timeoutMs: 5_000, intervalMs: 50, onProgress: (healthy, total) => progress.push(`${healthy}/${total}`) });
    expect(progress).toEqual(['1/2', '2/2']);
  });

  it('does not take a port answered by another container for healthy, and names it on timeout', async () => {
    const targets = [target('a', await healthServer('a')), target('b', await healthServer('someone-else'))];
    const error = await waitHealthy(targets, { timeoutMs: 300, intervalMs: 50 }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'HEALTH_TIMEOUT' });
    expect((error as { pending: string[] }).pending).toHaveLength(1);
    expect((error as { pending: string[] }).pending[0]).toMatch(/^b: /);
  });

  it('gives up on a target whose process is gone without waiting for the timeout', async () => {
    const before = Date.now();
    const error = waitHealthy([target('dead', 1)], { timeoutMs: 10_000, intervalMs: 50, exited: async () => 'exit code 1' });
    await expect(error).rejects.toMatchObject({ code: 'CONTAINER_EXITED' });
    expect(Date.now() - before).toBeLessThan(5_000);
  });

  it('stops waiting when aborted', async () => {
    const controller = new AbortController();
    // Aborted while it waits, whenever that is: the signal is what is tested.
    setTimeout(() => controller.abort(), 100);
    await expect(waitHealthy([target('never', 1)], { timeoutMs: 10_000, intervalMs: 50, signal: controller.signal })).rejects.toMatchObject({
      code: 'ABORTED',
    });
  });
});
