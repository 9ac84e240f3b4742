import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { startBackend, type Backend } from '../helpers/backend.js';
import { startOrchestrator, stopRig, type RunningOrchestrator } from '../helpers/orchestrator-fixture.js';
import { waitFor } from '../helpers/wait-for.js';

let backends: Backend[] = [];
let running: RunningOrchestrator | undefined;

afterEach(async () => {
  await stopRig(running, backends);
  [running, backends] = [undefined, []];
});

async function post(url: string, path = '/new_request'): Promise<{ status: number; servedBy: string | undefined; body: string }> {
  const response = await request(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"text":"hello"}' });
  return { status: response.statusCode, servedBy: response.headers['x-served-by'] as string | undefined, body: await response.body.text() };
}

describe('a container dying under load', () => {
  it('loses no request: those in flight on it are redispatched, the rest avoid it', async () => {
    backends = await Promise.all(['a', 'b', 'c'].map((id) => startBackend(id, { delayMs: 10 })));
    running = await startOrchestrator(backends);
    const victim = backends[1]!;
    const results: Array<Promise<{ status: number; servedBy: string | undefined }>> = [];
    for (let i = 0; i < 300; i++) {
      results.push(post(running.url));
      if (i === 100) await waitFor(() => victim.stats.inFlight === 1).then(() => victim.kill());
    }
    const settled = await Promise.all(results);
    expect(settled.filter((r) => r.status !== 200)).toEqual([]);
    const container = running.orchestrator.pool.get('b')!;
    expect(container.health).toBe('unhealthy');
    expect(running.orchestrator.proxy.counters.redispatched).toBeGreaterThanOrEqual(1);
    for (const b of backends) expect(b.stats.maxInFlight).toBe(1);
  });

  it('resends a non-idempotent route only when the container never got it', async () => {
    const dead = await startBackend('dead');
    const alive = await startBackend('alive', { delayMs: 5 });
    backends = [dead, alive];
    running = await startOrchestrator(backends, { healthIntervalMs: 60_000 });
    await dead.kill();
    // Connection refused: nothing was sent, so even a generic POST is safe to resend.
    for (let i = 0; i < 4; i++) expect((await post(running.url, '/generic')).status).toBe(200);
    expect(running.orchestrator.pool.get('dead')!.health).toBe('unhealthy');
  });

  it('answers 502 when a non-idempotent request dies on a container that received it', async () => {
    const breaker = await startBackend('breaker', {
      handler: (req) => {
        req.socket.destroy();
        return true;
      },
    });
    const alive = await startBackend('alive');
    backends = [breaker, alive];
    running = await startOrchestrator(backends, { healthIntervalMs: 60_000 });
    // Take `alive` out of the way so the request surely lands on `breaker`.
    running.orchestrator.pool.get('alive')!.draining = true;
    const generic = await post(running.url, '/generic');
    expect(generic.status).toBe(502);
    expect(JSON.parse(generic.body)).toMatchObject({ error: 'CONTAINER_UNAVAILABLE' });
    expect(breaker.stats.arrivals).toHaveLength(1);
  });

  it('takes a container out of rotation after `fall` failed probes and back after `rise` good ones', async () => {
    const flaky = await startBackend('flaky');
    backends = [flaky, await startBackend('steady')];
    running = await startOrchestrator(backends, { healthIntervalMs: 50, healthFall: 2, healthRise: 2 });
    const port = flaky.port;
    await flaky.kill();
    await waitFor(() => running!.orchestrator.pool.get('flaky')!.health === 'unhealthy');
    backends[0] = await startBackend('flaky', { port });
    await waitFor(() => running!.orchestrator.pool.get('flaky')!.health === 'healthy');
    expect(running.orchestrator.pool.get('flaky')!.failures).toBe(0);
  });
});
