import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { startBackend } from '../helpers/backend.js';
import { startOrchestrator, useRig } from '../helpers/orchestrator-fixture.js';
import { waitFor } from '../helpers/wait-for.js';

const rig = useRig();

async function post(url: string, path = '/new_request'): Promise<{ status: number; servedBy: string | undefined; body: string }> {
  const response = await request(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"text":"hello"}' });
  return { status: response.statusCode, servedBy: response.headers['x-served-by'] as string | undefined, body: await response.body.text() };
}

describe('a container dying under load', () => {
  it('loses no request: those in flight on it are redispatched, the rest avoid it', async () => {
    rig.backends = await Promise.all(['a', 'b', 'c'].map((id) => startBackend(id, { delayMs: 10 })));
    rig.running = await startOrchestrator(rig.backends);
    const victim = rig.backends[1]!;
    const results: Array<Promise<{ status: number; servedBy: string | undefined }>> = [];
    for (let i = 0; i < 300; i++) {
      results.push(post(rig.running.url));
      if (i === 100) await waitFor(() => victim.stats.inFlight === 1).then(() => victim.kill());
    }
    const settled = await Promise.all(results);
    expect(settled.filter((r) => r.status !== 200)).toEqual([]);
    const container = rig.running.orchestrator.pool.get('b')!;
    expect(container.health).toBe('unhealthy');
    expect(rig.running.orchestrator.stats.counters.redispatched).toBeGreaterThanOrEqual(1);
    for (const b of rig.backends) expect(b.stats.maxInFlight).toBe(1);
  });

  it('resends a non-idempotent route only when the container never got it', async () => {
    const dead = await startBackend('dead');
    const alive = await startBackend('alive', { delayMs: 5 });
    rig.backends = [dead, alive];
    rig.running = await startOrchestrator(rig.backends, { healthIntervalMs: 60_000 });
    await dead.kill();
    // Connection refused: nothing was sent, so even a generic POST is safe to resend.
    for (let i = 0; i < 4; i++) expect((await post(rig.running.url, '/generic')).status).toBe(200);
    expect(rig.running.orchestrator.pool.get('dead')!.health).toBe('unhealthy');
  });

  it('answers 502 when a non-idempotent request dies on a container that received it', async () => {
    const breaker = await startBackend('breaker', {
      handler: (req) => {
        req.socket.destroy();
        return true;
      },
    });
    const alive = await startBackend('alive');
    rig.backends = [breaker, alive];
    rig.running = await startOrchestrator(rig.backends, { healthIntervalMs: 60_000 });
    // Take `alive` out of the way so the request surely lands on `breaker`.
    rig.running.orchestrator.pool.drain(rig.running.orchestrator.pool.get('alive')!, 'test');
    const generic = await post(rig.running.url, '/generic');
    expect(generic.status).toBe(502);
    expect(JSON.parse(generic.body)).toMatchObject({ error: 'CONTAINER_UNAVAILABLE' });
    expect(breaker.stats.arrivals).toHaveLength(1);
  });

  it('answers 504 UPSTREAM_TIMEOUT when a container never answers a request that may not be resent', async () => {
    // Accepts the request and never answers it.
    const hanging = await startBackend('hanging', { handler: () => true });
    rig.backends = [hanging];
    rig.running = await startOrchestrator(rig.backends, { upstreamTimeoutMs: 300, healthIntervalMs: 60_000 });
    const generic = await post(rig.running.url, '/generic');
    expect(generic.status).toBe(504);
    expect(JSON.parse(generic.body)).toMatchObject({ error: 'UPSTREAM_TIMEOUT', message: 'the container did not answer within 300 ms' });
    expect(rig.running.orchestrator.pool.get('hanging')!.health).toBe('unhealthy');
  });

  it('takes a container out of rotation after `fall` failed probes and back after `rise` good ones', async () => {
    const flaky = await startBackend('flaky');
    rig.backends = [flaky, await startBackend('steady')];
    rig.running = await startOrchestrator(rig.backends, { healthIntervalMs: 50, healthFall: 2, healthRise: 2 });
    const port = flaky.port;
    await flaky.kill();
    await waitFor(() => rig.running!.orchestrator.pool.get('flaky')!.health === 'unhealthy');
    rig.backends[0] = await startBackend('flaky', { port });
    await waitFor(() => rig.running!.orchestrator.pool.get('flaky')!.health === 'healthy');
    expect(rig.running.orchestrator.pool.get('flaky')!.failures).toBe(0);
  });
});
