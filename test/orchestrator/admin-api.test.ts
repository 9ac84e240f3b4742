import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { NotFoundError } from '../../common/src/http-errors.js';
import { createLogger } from '../../common/src/logger.js';
import { AccessControl } from '../../orchestrator/src/access-control.js';
import { createRequestListener, type AdminActions } from '../../orchestrator/src/app.js';
import { ConflictError, MachinesUnavailableError } from '../../orchestrator/src/errors.js';
import type { ProxyHandler } from '../../orchestrator/src/proxy-handler.js';
import { emptyState, workerRecordSchema } from '../../status/src/schema.js';
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

/** Calls the fake admin actions got, and what they answer. */
interface FakeAdmin extends AdminActions {
  calls: Array<[string, ...unknown[]]>;
}

/**
 * The orchestrator's request listener over a fake AdminActions: the unit boundary of the worker
 * routes (launching and releasing machines is the orchestrator's, tested end to end in
 * test/e2e/worker-handover.test.ts).
 */
async function startAdminApp(admin: Partial<AdminActions>): Promise<{ url: string; admin: FakeAdmin; close(): Promise<void> }> {
  const calls: FakeAdmin['calls'] = [];
  const fake: FakeAdmin = {
    token: TOKEN,
    calls,
    scaleTo: () => {
      throw new Error('not in this test');
    },
    drain: () => undefined,
    remove: async () => undefined,
    setPaused: () => undefined,
    addWorker: async (id, reason) => {
      calls.push(['addWorker', id, reason]);
      return workerRecordSchema.parse({ id: id ?? 'w3', provider: 'local', host: '127.0.0.1', runtime: { driver: 'process' } });
    },
    removeWorker: async (id, reason) => {
      calls.push(['removeWorker', id, reason]);
      return { worker: id, containers: [`${id}-1`, `${id}-2`] };
    },
    ...admin,
  };
  const server = createServer(
    createRequestListener({
      // Nothing here is forwarded: every request of these tests is an admin one.
      proxy: { forward: () => Promise.reject(new Error('forwarded')) } as unknown as ProxyHandler,
      status: () => emptyState('test', 'orchestrator'),
      metrics: async () => ({ contentType: 'text/plain', body: '' }),
      dashboard: { subscribe: () => undefined },
      access: new AccessControl({ clientKeys: [], clientRatePerSecond: 0 }),
      clientCounts: { clientRequest: () => undefined },
      admin: fake,
      healthy: () => true,
      log: createLogger('orchestrator', 'silent'),
      rejections: { record: () => undefined },
      retryAfterSeconds: 1,
      closing: () => false,
    }),
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    admin: fake,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

describe('admin API: workers', () => {
  let app: Awaited<ReturnType<typeof startAdminApp>> | undefined;
  afterEach(async () => {
    await app?.close();
    app = undefined;
  });

  async function send(method: string, path: string, options: { token?: string; body?: string } = {}) {
    const response = await request(`${app!.url}${path}`, {
      method: method as 'POST',
      headers: { ...(options.token ? { authorization: `Bearer ${options.token}` } : {}), ...(options.body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: options.body,
    });
    return { status: response.statusCode, body: (await response.body.json()) as Record<string, unknown> };
  }

  it('adds the worker asked for: 201 with its record, once the orchestrator has it in rotation', async () => {
    app = await startAdminApp({});
    const result = await send('POST', '/admin/workers', { token: TOKEN, body: '{"id":"w12"}' });
    expect(result).toMatchObject({ status: 201, body: { worker: { id: 'w12', provider: 'local' } } });
    expect(app.admin.calls).toEqual([['addWorker', 'w12', 'admin request']]);
  });

  it.each([
    ['no body', undefined],
    ['an empty object', '{}'],
  ])('adds the next worker the orchestrator picks with %s', async (_what, body) => {
    app = await startAdminApp({});
    expect(await send('POST', '/admin/workers', { token: TOKEN, body })).toMatchObject({ status: 201, body: { worker: { id: 'w3' } } });
    expect(app.admin.calls).toEqual([['addWorker', undefined, 'admin request']]);
  });

  it.each([
    ['an id that is not w<k>', '{"id":"worker-3"}'],
    ['w0', '{"id":"w0"}'],
    ['a leading zero', '{"id":"w01"}'],
    ['five digits', '{"id":"w10000"}'],
    ['an id that is not a string', '{"id":3}'],
    ['a path in the id', '{"id":"w1/../w2"}'],
    ['a body that is not an object', '"w3"'],
    ['an array', '[{"id":"w3"}]'],
    ['a body that is not JSON', '{"id":'],
  ])('refuses %s 400, launching nothing', async (_what, body) => {
    app = await startAdminApp({});
    expect(await send('POST', '/admin/workers', { token: TOKEN, body })).toMatchObject({ status: 400, body: { error: 'BAD_REQUEST', message: expect.any(String) } });
    expect(app.admin.calls).toEqual([]);
  });

  it('removes a worker: 200 with its containers, once it was drained and released', async () => {
    app = await startAdminApp({});
    expect(await send('DELETE', '/admin/workers/w2', { token: TOKEN })).toEqual({ status: 200, body: { worker: 'w2', containers: ['w2-1', 'w2-2'] } });
    expect(app.admin.calls).toEqual([['removeWorker', 'w2', 'admin request']]);
  });

  it.each([
    ['POST', '/admin/workers', 401],
    ['DELETE', '/admin/workers/w2', 401],
  ])('%s %s without the token: %i, nothing asked of the orchestrator', async (method, path, status) => {
    app = await startAdminApp({});
    expect(await send(method, path, { body: method === 'POST' ? '{"id":"w3"}' : undefined })).toMatchObject({ status, body: { error: 'UNAUTHORIZED' } });
    expect(await send(method, path, { token: 'x'.repeat(TOKEN.length), body: method === 'POST' ? '{"id":"w3"}' : undefined })).toMatchObject({ status, body: { error: 'UNAUTHORIZED' } });
    expect(app.admin.calls).toEqual([]);
  });

  it('is off (403) without a configured token, nothing asked of the orchestrator', async () => {
    app = await startAdminApp({ token: undefined });
    expect(await send('POST', '/admin/workers', { token: TOKEN })).toMatchObject({ status: 403, body: { error: 'ADMIN_DISABLED' } });
    expect(await send('DELETE', '/admin/workers/w1', { token: TOKEN })).toMatchObject({ status: 403, body: { error: 'ADMIN_DISABLED' } });
    expect(app.admin.calls).toEqual([]);
  });

  it.each([
    ['an unknown worker', new NotFoundError('no worker w9'), 404, 'NOT_FOUND'],
    ['a worker already leaving', new ConflictError('w2 is already being removed'), 409, 'CONFLICT'],
    ['no provisioning config to make workers with', new MachinesUnavailableError(), 409, 'MACHINES_UNAVAILABLE'],
  ])('answers %s with the typed error as JSON', async (_what, error, status, code) => {
    app = await startAdminApp({ addWorker: () => Promise.reject(error), removeWorker: () => Promise.reject(error) });
    expect(await send('POST', '/admin/workers', { token: TOKEN, body: '{"id":"w9"}' })).toMatchObject({ status, body: { error: code, message: expect.any(String) } });
    expect(await send('DELETE', '/admin/workers/w9', { token: TOKEN })).toMatchObject({ status, body: { error: code, message: expect.any(String) } });
  });

  it('answers a method the route does not take 405', async () => {
    app = await startAdminApp({});
    expect(await send('GET', '/admin/workers', { token: TOKEN })).toMatchObject({ status: 405, body: { error: 'METHOD_NOT_ALLOWED' } });
    expect(await send('POST', '/admin/workers/w2', { token: TOKEN })).toMatchObject({ status: 405, body: { error: 'METHOD_NOT_ALLOWED' } });
  });
});
