import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBackend, type Backend } from '../helpers/backend.js';
import { startOrchestrator, stopRig, type RunningOrchestrator } from '../helpers/orchestrator-fixture.js';
import { headerOf, jsonOf, raw, statusOf } from '../helpers/raw-http.js';
import { spellings } from '../helpers/path-spellings.js';
import { keyHash } from '../../orchestrator/src/access-control.js';

const TOKEN = 'edge-spellings-token-0123456789';

let backend: Backend;
let running: RunningOrchestrator;

beforeAll(async () => {
  backend = await startBackend('a');
  running = await startOrchestrator([backend], { adminToken: TOKEN });
});
afterAll(() => stopRig(running, [backend]));

/** One request exactly as written (target, headers), on its own connection. */
async function send(method: string, target: string, options: { token?: string; body?: string; type?: string; head?: string; to?: RunningOrchestrator } = {}) {
  const body = options.body ?? '';
  const head =
    options.head ??
    [
      `${method} ${target} HTTP/1.1`,
      'Host: 127.0.0.1',
      'Connection: close',
      ...(options.token ? [`Authorization: Bearer ${options.token}`] : []),
      ...(body ? [`Content-Type: ${options.type ?? 'application/json'}`, `Content-Length: ${Buffer.byteLength(body)}`] : []),
    ].join('\r\n');
  const { answer } = await raw((options.to ?? running).url, [`${head}\r\n\r\n${body}`]);
  return { status: statusOf(answer), answer };
}

/** Requests the backend got besides health probes. */
const reached = (): number => backend.stats.arrivals.length;

describe('every spelling of an admin path needs the token', () => {
  const routes = [
    { method: 'POST', path: '/admin/scale', body: '{"containers":1}', ok: [202] },
    { method: 'POST', path: '/admin/autoscaler/resume', ok: [200] },
    // The id is case-sensitive: an upper-case spelling names no container (404); the right one is unmanaged (409).
    { method: 'DELETE', path: '/admin/containers/a', ok: [404, 409] },
    // This orchestrator's state file records no provisioning config: it cannot make workers (409), but the route is reached.
    { method: 'POST', path: '/admin/workers', body: '{"id":"w9"}', ok: [409] },
    { method: 'DELETE', path: '/admin/workers/w9', ok: [404, 409] },
    { method: 'POST', path: '/admin/nothing-here', ok: [404] },
    { method: 'GET', path: '/admin', ok: [404] },
  ];
  const cases = routes.flatMap((route) => spellings(route.path).map(([how, target]) => ({ ...route, how, target })));

  it.each(cases)('$method $target ($how): 401 without the token, no container reached', async ({ method, target, body }) => {
    const before = reached();
    const { status, answer } = await send(method, target, { body });
    expect(status).toBe(401);
    expect(jsonOf(answer).error).toBe('UNAUTHORIZED');
    expect(headerOf(answer, 'www-authenticate')).toMatch(/^Bearer/);
    expect(reached()).toBe(before);
    expect(running.orchestrator.pool.get('a')?.draining).toBe(false);
  });

  it.each(cases)('$method $target ($how): the admin route itself with the token', async ({ method, target, body, ok }) => {
    const before = reached();
    const { status } = await send(method, target, { body, token: TOKEN });
    expect(ok).toContain(status);
    expect(reached()).toBe(before);
  });

  it('answers a wrong method on an admin route 405 with Allow, after the token', async () => {
    expect((await send('GET', '/admin/scale')).status).toBe(401);
    const { status, answer } = await send('GET', '/ADMIN//scale/', { token: TOKEN });
    expect(status).toBe(405);
    expect(jsonOf(answer).error).toBe('METHOD_NOT_ALLOWED');
    expect(headerOf(answer, 'allow')).toBe('POST');
  });

  it.each([
    ['text/plain', 'text/plain'],
    ['a form', 'application/x-www-form-urlencoded'],
    ['multipart', 'multipart/form-data; boundary=x'],
  ])('refuses a %s body 415, even with the token; 401 without it', async (_what, type) => {
    const scaled = running.orchestrator.autoscaler.decisions.length;
    expect((await send('POST', '/admin/scale', { body: '{"containers":0}', type })).status).toBe(401);
    const { status, answer } = await send('POST', '/admin/scale', { body: '{"containers":0}', type, token: TOKEN });
    expect(status).toBe(415);
    expect(jsonOf(answer).error).toBe('UNSUPPORTED_MEDIA_TYPE');
    expect(running.orchestrator.autoscaler.decisions.length).toBe(scaled);
  });
});

describe("every spelling of the orchestrator's own routes is answered by the orchestrator", () => {
  const routes = [
    { method: 'GET', path: '/status', check: (a: string) => expect(jsonOf<{ cluster: string }>(a).cluster).toBe('test') },
    { method: 'GET', path: '/health', check: (a: string) => expect(jsonOf<unknown>(a)).toEqual({ status: 'ok' }) },
    { method: 'GET', path: '/metrics', check: (a: string) => expect(a).toContain('orchestrator_requests_total') },
    { method: 'GET', path: '/dashboard', check: (a: string) => expect(a).toContain('<html') },
  ];
  const cases = routes.flatMap((route) => spellings(route.path).map(([how, target]) => ({ ...route, how, target })));

  it.each(cases)('$method $target ($how)', async ({ method, target, check }) => {
    const before = reached();
    const { status, answer } = await send(method, target);
    expect(status).toBe(200);
    check(answer);
    expect(reached()).toBe(before);
  });

  it.each(spellings('/new_request'))('POST /new_request %s goes to the model as /run_model', async (_how, target) => {
    const before = reached();
    const { status } = await send('POST', target, { body: '{"text":"x"}' });
    expect(status).toBe(200);
    expect(reached()).toBe(before + 1);
    expect(backend.stats.last?.url).toMatch(/^\/run_model(\?x=1)?$/);
  });
});

describe("containers' control routes are never forwarded", () => {
  const cases = ['/api/v1/_crash', '/api/v1/_fault'].flatMap((path) => spellings(path).map(([how, target]) => ({ how, target })));
  it.each(cases)('POST $target ($how): 404, no container reached', async ({ target }) => {
    const before = reached();
    const { status, answer } = await send('POST', target, { body: '{"mode":"hang"}' });
    expect(status).toBe(404);
    expect(jsonOf(answer).error).toBe('NOT_FOUND');
    expect(reached()).toBe(before);
  });
});

describe('other paths are forwarded exactly as sent', () => {
  it.each(['/run_model', '/administrator', '/statuses?x=1', '/api/v1/_crashes', '/Models//v2/%7Eme/./x;y'])('%s', async (target) => {
    const before = reached();
    const { status } = await send('POST', target, { body: '{}' });
    expect(status).toBe(200);
    expect(reached()).toBe(before + 1);
    expect(backend.stats.last?.url).toBe(target);
  });
});

describe('request heads no client should send get a JSON 400/405', () => {
  it.each([
    ['a malformed percent-encoding', 'GET /status%zz HTTP/1.1\r\nHost: x\r\nConnection: close', 400, 'BAD_REQUEST'],
    ['an encoded NUL', 'GET /admin%00/scale HTTP/1.1\r\nHost: x\r\nConnection: close', 400, 'BAD_REQUEST'],
    ['a fragment', 'GET /status#x HTTP/1.1\r\nHost: x\r\nConnection: close', 400, 'BAD_REQUEST'],
    ['an absolute URL', 'GET http://127.0.0.1:1/admin/scale HTTP/1.1\r\nHost: x\r\nConnection: close', 400, 'BAD_REQUEST'],
    ['HTTP/1.1 without Host', 'GET /status HTTP/1.1\r\nConnection: close', 400, 'BAD_REQUEST'],
    ['two Host headers', 'GET /status HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close', 400, 'BAD_REQUEST'],
    ['two Host headers on the hot path', 'POST /new_request HTTP/1.1\r\nHost: a\r\nhost: b\r\nContent-Length: 0', 400, 'BAD_REQUEST'],
    ['CONNECT', 'CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22', 405, 'METHOD_NOT_ALLOWED'],
  ])('%s', async (_what, head, status, error) => {
    const before = reached();
    const { answer } = await send('', '', { head });
    expect(statusOf(answer)).toBe(status);
    expect(jsonOf(answer).error).toBe(error);
    expect(reached()).toBe(before);
  });

  it('takes HTTP/1.0 without Host', async () => {
    const { answer } = await send('', '', { head: 'GET /status HTTP/1.0' });
    expect(answer).toMatch(/^HTTP\/1\.1 200/);
  });
});

describe('with client keys, every spelling of a guarded route needs its key; /health needs none', () => {
  const INFER_KEY = 'orch_edge-infer-key-0123456789abcdef';
  const READ_KEY = 'orch_edge-read-key-0123456789abcdef';
  let locked: RunningOrchestrator;
  beforeAll(async () => {
    locked = await startOrchestrator([backend], {
      clientKeys: [
        { name: 'infer', sha256: keyHash(INFER_KEY), scopes: ['infer'] },
        { name: 'read', sha256: keyHash(READ_KEY), scopes: ['read'] },
      ],
    });
  });
  afterAll(() => locked.close());

  const routes = [
    { method: 'GET', path: '/status', key: READ_KEY },
    { method: 'GET', path: '/metrics', key: READ_KEY },
    { method: 'GET', path: '/dashboard', key: READ_KEY },
    // An event stream never ends: only its refusal is read here (client-keys.test.ts opens it with the key).
    { method: 'GET', path: '/dashboard/events', key: undefined },
    { method: 'POST', path: '/new_request', key: INFER_KEY },
    { method: 'POST', path: '/run_model', key: INFER_KEY },
    { method: 'POST', path: '/api/v1/_crash', key: INFER_KEY },
  ];
  const cases = routes.flatMap((route) => spellings(route.path).map(([how, target]) => ({ ...route, how, target })));

  it.each(cases)('$method $target ($how): 401 without a key, nothing reached; not 401 with it', async ({ method, target, key }) => {
    const before = reached();
    const { status, answer } = await send(method, target, { body: '{}', to: locked });
    expect(status).toBe(401);
    expect(jsonOf(answer).error).toBe('UNAUTHORIZED');
    expect(headerOf(answer, 'www-authenticate')).toMatch(/^Bearer/);
    expect(reached()).toBe(before);
    if (key === undefined) return;
    // The key a route needs opens every spelling of it (a spelling of a forwarded path may be forwarded and answered by the model).
    const keyed = await send(method, target, { body: '{}', to: locked, token: key });
    expect(keyed.status).not.toBe(401);
    expect(keyed.status).not.toBe(403);
  });

  it.each(spellings('/health'))('GET /health %s: 200 without a key', async (_how, target) => {
    const { status, answer } = await send('GET', target, { to: locked });
    expect(status).toBe(200);
    expect(jsonOf<{ status: string }>(answer).status).toBe('ok');
  });
});
