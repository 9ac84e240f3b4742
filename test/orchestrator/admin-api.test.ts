import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { startBackend } from '../helpers/backend.js';
import { startOrchestrator, useRig } from '../helpers/orchestrator-fixture.js';

const TOKEN = 'a-test-token-of-some-length';

const rig = useRig();

async function call(method: string, path: string, options: { token?: string; body?: string } = {}) {
  const response = await request(`${rig.running!.url}${path}`, {
    method: method as 'POST',
    headers: { ...(options.token ? { authorization: `Bearer ${options.token}` } : {}), 'content-type': 'application/json' },
    body: options.body,
  });
  return { status: response.statusCode, headers: response.headers, body: (await response.body.json()) as Record<string, unknown> };
}

describe('admin API', () => {
  it('is off without a configured token', async () => {
    rig.backends = [await startBackend('a')];
    rig.running = await startOrchestrator(rig.backends);
    const result = await call('POST', '/admin/autoscaler/pause', { token: TOKEN });
    expect(result).toMatchObject({ status: 403, body: { error: 'ADMIN_DISABLED' } });
  });

  it.each([
    ['no token', 'POST', '/admin/autoscaler/pause', undefined, undefined, 401, 'UNAUTHORIZED'],
    ['a wrong token', 'POST', '/admin/autoscaler/pause', 'x'.repeat(TOKEN.length), undefined, 401, 'UNAUTHORIZED'],
    ['a body that is not JSON', 'POST', '/admin/scale', TOKEN, '{"containers":', 400, 'BAD_REQUEST'],
    ['a negative count', 'POST', '/admin/scale', TOKEN, '{"containers":-1}', 400, 'BAD_REQUEST'],
    ['a count that is not a whole number', 'POST', '/admin/scale', TOKEN, '{"containers":"2"}', 400, 'BAD_REQUEST'],
    ['an unknown container', 'POST', '/admin/containers/nope/drain', TOKEN, undefined, 404, 'NOT_FOUND'],
    ['removing an unmanaged container', 'DELETE', '/admin/containers/a', TOKEN, undefined, 409, 'CONFLICT'],
    ['an unknown admin path', 'POST', '/admin/nothing', TOKEN, undefined, 404, 'NOT_FOUND'],
  ])('answers %s with a JSON error', async (_what, method, path, token, body, status, error) => {
    rig.backends = [await startBackend('a')];
    rig.running = await startOrchestrator(rig.backends, { adminToken: TOKEN });
    const result = await call(method, path, { token, body });
    expect(result).toMatchObject({ status, body: { error, message: expect.any(String) } });
    if (status === 401) expect(result.headers['www-authenticate']).toMatch(/^Bearer/);
    // Nothing it refused changed the cluster.
    expect([...rig.running!.orchestrator.pool.containers()].map((c) => [c.id, c.draining])).toEqual([['a', false]]);
  });

  it('takes the Bearer scheme name in any case', async () => {
    rig.backends = [await startBackend('a')];
    rig.running = await startOrchestrator(rig.backends, { adminToken: TOKEN });
    const response = await request(`${rig.running.url}/admin/autoscaler/pause`, { method: 'POST', headers: { authorization: `bearer ${TOKEN}` } });
    expect(response.statusCode).toBe(200);
    await response.body.dump();
  });

  it('pauses and resumes the autoscaler, shown in GET /status', async () => {
    rig.backends = [await startBackend('a')];
    rig.running = await startOrchestrator(rig.backends, { adminToken: TOKEN });
    expect(await call('POST', '/admin/autoscaler/pause', { token: TOKEN })).toMatchObject({ status: 200, body: { paused: true } });
    expect((await call('GET', '/status')).body.autoscaler).toMatchObject({ paused: true, policy: 'none' });
    expect(await call('POST', '/admin/autoscaler/resume', { token: TOKEN })).toMatchObject({ status: 200, body: { paused: false } });
    expect((await call('GET', '/status')).body.autoscaler).toMatchObject({ paused: false });
  });

  it('drains a container: it finishes nothing new, and the others take the traffic', async () => {
    rig.backends = [await startBackend('a'), await startBackend('b')];
    rig.running = await startOrchestrator(rig.backends, { adminToken: TOKEN });
    expect(await call('POST', '/admin/containers/a/drain', { token: TOKEN })).toMatchObject({ status: 202, body: { draining: true } });
    for (let i = 0; i < 4; i++) {
      const response = await request(`${rig.running.url}/new_request`, { method: 'POST', body: '{"text":"x"}' });
      await response.body.dump();
      expect(response.headers['x-served-by']).toBe('b');
    }
    const status = await call('GET', '/status');
    expect((status.body.containers as Array<{ id: string; state: string }>).find((c) => c.id === 'a')?.state).toBe('draining');
  });
});
