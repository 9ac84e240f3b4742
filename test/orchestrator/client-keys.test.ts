import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keyHash } from '../../orchestrator/src/access-control.js';
import type { ClientKeyEntry } from '../../orchestrator/src/config.js';
import { startBackend, type Backend } from '../helpers/backend.js';
import { startOrchestrator, stopRig, useRig, type RunningOrchestrator } from '../helpers/orchestrator-fixture.js';
import { headerOf, jsonOf, raw, statusOf } from '../helpers/raw-http.js';

const APP = 'orch_app-key-0123456789abcdefghij';
const VIEWER = 'orch_viewer-key-0123456789abcdefghij';
const LIMITED = 'orch_limited-key-0123456789abcdefghij';
const ADMIN_TOKEN = 'client-keys-admin-token-0123456789';

const KEYS: ClientKeyEntry[] = [
  { name: 'app', sha256: keyHash(APP), scopes: ['infer'] },
  { name: 'viewer', sha256: keyHash(VIEWER), scopes: ['read'] },
  // Two requests, then one every 1000 s: the third is refused.
  { name: 'limited', sha256: keyHash(LIMITED), scopes: ['infer'], ratePerSecond: 0.001, burst: 2 },
];

const bearer = (key: string) => ({ authorization: `Bearer ${key}` });
const basic = (key: string) => ({ authorization: `Basic ${Buffer.from(`anyone:${key}`).toString('base64')}` });

let backend: Backend;
let running: RunningOrchestrator;

beforeAll(async () => {
  backend = await startBackend('a');
  running = await startOrchestrator([backend], { clientKeys: KEYS, adminToken: ADMIN_TOKEN });
});
afterAll(() => stopRig(running, [backend]));

/** Requests the container got. */
const reached = (): number => backend.stats.served;

async function call(method: string, path: string, headers: Record<string, string> = {}, body?: string, on = running) {
  const response = await request(`${on.url}${path}`, { method: method as 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
  const text = await response.body.text();
  return { status: response.statusCode, headers: response.headers, text };
}

/** The challenges of a 401, one per WWW-Authenticate line. */
const challenges = (headers: Record<string, string | string[] | undefined>): string[] => [headers['www-authenticate'] ?? []].flat();

describe('a client key at the edge', () => {
  it.each([
    ['POST', '/new_request'],
    ['POST', '/run_model'],
    ['GET', '/some/model/path?x=1'],
  ])('lets %s %s through with an infer key; the container never sees the key', async (method, path) => {
    const before = reached();
    const { status } = await call(method, path, bearer(APP), method === 'POST' ? '{"text":"hi"}' : undefined);
    expect(status).toBe(200);
    expect(reached()).toBe(before + 1);
    expect(backend.stats.last?.headers.authorization).toBeUndefined();
    expect(JSON.stringify(backend.stats.last?.headers)).not.toContain(APP);
  });

  it.each([
    ['no Authorization header', {}],
    ['a wrong key', bearer(`${APP.slice(0, -1)}x`)],
    ['an empty header', { authorization: '' }],
    ['no scheme', { authorization: APP }],
    ['another scheme', { authorization: `Token ${APP}` }],
    ['two keys in one header', { authorization: `Bearer ${APP} ${VIEWER}` }],
    ['an over-long header', bearer(APP + 'x'.repeat(2_000))],
    ['Basic that is not base64', { authorization: `Basic ${APP}` }],
    ['the admin token', bearer(ADMIN_TOKEN)],
  ])('refuses an inference request with %s: 401 with a Bearer challenge, JSON error, nothing forwarded', async (_what, headers) => {
    const before = reached();
    for (const [method, path] of [
      ['POST', '/new_request'],
      ['PUT', '/run_model'],
      ['GET', '/favicon.ico'],
      ['POST', '/api/v1/_crash'],
    ] as const) {
      const { status, headers: answer, text } = await call(method, path, headers, '{"text":"hi"}');
      expect(status, `${method} ${path}`).toBe(401);
      expect(JSON.parse(text)).toEqual({ error: 'UNAUTHORIZED', message: expect.any(String), requestId: expect.any(String) });
      expect(challenges(answer)).toEqual(['Bearer realm="orchestrator"']);
    }
    expect(reached()).toBe(before);
  });

  it('refuses two Authorization headers, even when one holds the key', async () => {
    for (const order of [
      [APP, 'nope'],
      ['nope', APP],
      [APP, APP],
    ]) {
      const head = ['POST /new_request HTTP/1.1', 'Host: 127.0.0.1', 'Connection: close', ...order.map((k) => `Authorization: Bearer ${k}`), 'Content-Length: 2'];
      const { answer } = await raw(running.url, [`${head.join('\r\n')}\r\n\r\n{}`]);
      expect(statusOf(answer)).toBe(401);
    }
  });

  it('refuses a read key on the model and an infer key on the status with 403 FORBIDDEN', async () => {
    const before = reached();
    const infer = await call('POST', '/new_request', bearer(VIEWER), '{}');
    expect(infer.status).toBe(403);
    expect(JSON.parse(infer.text).error).toBe('FORBIDDEN');
    expect(reached()).toBe(before);
    for (const path of ['/status', '/metrics', '/dashboard', '/dashboard/events']) {
      const read = await call('GET', path, bearer(APP));
      expect(read.status, path).toBe(403);
      expect(JSON.parse(read.text).error).toBe('FORBIDDEN');
    }
  });

  it('refuses /status, /metrics and /dashboard without a read key, offering Bearer and Basic (a browser asks for the key)', async () => {
    for (const path of ['/status', '/metrics', '/dashboard', '/dashboard/events']) {
      const { status, headers, text } = await call('GET', path);
      expect(status, path).toBe(401);
      expect(JSON.parse(text).error).toBe('UNAUTHORIZED');
      expect(challenges(headers)).toEqual(['Bearer realm="orchestrator"', 'Basic realm="orchestrator", charset="UTF-8"']);
    }
  });

  it('answers /status, /metrics and /dashboard with a read key, as Bearer or as the Basic password', async () => {
    for (const auth of [bearer(VIEWER), basic(VIEWER)]) {
      expect(JSON.parse((await call('GET', '/status', auth)).text).cluster).toBe('test');
      expect((await call('GET', '/metrics', auth)).text).toContain('orchestrator_requests_total');
      expect((await call('GET', '/dashboard', auth)).text).toContain('<html');
      const events = await request(`${running.url}/dashboard/events`, { headers: auth });
      expect(events.statusCode).toBe(200);
      expect(events.headers['content-type']).toMatch(/^text\/event-stream/);
      events.body.destroy();
    }
  });

  it('answers /status and /metrics to the admin token too (what provisioning reads during a handover), and nothing to it as a Basic password', async () => {
    expect(JSON.parse((await call('GET', '/status', bearer(ADMIN_TOKEN))).text).cluster).toBe('test');
    expect((await call('GET', '/metrics', bearer(ADMIN_TOKEN))).status).toBe(200);
    expect((await call('GET', '/status', basic(ADMIN_TOKEN))).status).toBe(401);
    expect((await call('GET', '/status', bearer(`${ADMIN_TOKEN}x`))).status).toBe(401);
  });

  it('checks the key before the method: a wrong method on a guarded route is 401 without a key, 405 with one', async () => {
    expect((await call('DELETE', '/status')).status).toBe(401);
    expect((await call('DELETE', '/status', bearer(VIEWER))).status).toBe(405);
    expect((await call('GET', '/new_request')).status).toBe(401);
    expect((await call('GET', '/new_request', bearer(APP))).status).toBe(405);
    // A container's control route is refused (404) only to a caller with a key.
    expect((await call('POST', '/api/v1/_fault', bearer(APP), '{}')).status).toBe(404);
  });

  it('refuses before reading the body: a request whose body never comes is answered at once and its connection closed', async () => {
    const head = ['POST /new_request HTTP/1.1', 'Host: 127.0.0.1', 'Content-Type: application/json', 'Content-Length: 1000'];
    const { answer } = await raw(running.url, [`${head.join('\r\n')}\r\n\r\n{"text":`]);
    expect(statusOf(answer)).toBe(401);
    expect(headerOf(answer, 'connection')).toBe('close');
  });

  it('keeps /health open without a key', async () => {
    for (const path of ['/health', '/HEALTH', '//health/', '/%68ealth']) {
      const { status, text } = await call('GET', path);
      expect(status, path).toBe(200);
      expect(JSON.parse(text).status).toBe('ok');
    }
  });

  it('leaves the admin API to its own token: a client key does not open it, the token does without one', async () => {
    expect((await call('POST', '/admin/autoscaler/pause', bearer(APP))).status).toBe(401);
    expect((await call('POST', '/admin/autoscaler/pause', bearer(VIEWER))).status).toBe(401);
    expect((await call('POST', '/admin/autoscaler/resume', bearer(ADMIN_TOKEN))).status).toBe(200);
  });

  it("answers 429 RATE_LIMITED with Retry-After and the JSON error once a key's burst is spent, before its body is read; other keys go on", async () => {
    for (let i = 0; i < 2; i++) expect((await call('POST', '/new_request', bearer(LIMITED), '{}')).status).toBe(200);
    const before = reached();
    const refused = await call('POST', '/new_request', bearer(LIMITED), '{}');
    expect(refused.status).toBe(429);
    expect(JSON.parse(refused.text)).toEqual({ error: 'RATE_LIMITED', message: expect.any(String), requestId: expect.any(String) });
    // One token every 1000 s.
    expect(Number(refused.headers['retry-after'])).toBeGreaterThan(900);
    // The body is never waited for.
    const head = ['POST /new_request HTTP/1.1', 'Host: 127.0.0.1', `Authorization: Bearer ${LIMITED}`, 'Content-Length: 1000'];
    const { answer } = await raw(running.url, [`${head.join('\r\n')}\r\n\r\n`]);
    expect(statusOf(answer)).toBe(429);
    expect(jsonOf(answer).error).toBe('RATE_LIMITED');
    expect(reached()).toBe(before);
    expect((await call('POST', '/new_request', bearer(APP), '{}')).status).toBe(200);
  });
});

describe('keys changed while running', () => {
  const rig = useRig();

  it('refuses a key as soon as a reload drops it, and takes one it adds', async () => {
    rig.backends = [await startBackend('a')];
    rig.running = await startOrchestrator(rig.backends, { clientKeys: KEYS });
    expect((await call('POST', '/new_request', bearer(APP), '{}', rig.running)).status).toBe(200);
    const added = 'orch_rotated-key-0123456789abcdefghij';
    rig.running.orchestrator.access.reload({ clientKeys: [...KEYS.slice(1), { name: 'app', sha256: keyHash(added), scopes: ['infer'] }], clientRatePerSecond: 0, clientBurst: undefined });
    expect((await call('POST', '/new_request', bearer(APP), '{}', rig.running)).status).toBe(401);
    expect((await call('POST', '/new_request', bearer(added), '{}', rig.running)).status).toBe(200);
  });

  it("forwards the client's own Authorization header while the model needs no key (read keys only)", async () => {
    rig.backends = [await startBackend('a')];
    rig.running = await startOrchestrator(rig.backends, { clientKeys: [KEYS[1]] });
    expect((await call('POST', '/new_request', { authorization: 'Bearer the-models-own-token' }, '{}', rig.running)).status).toBe(200);
    expect(rig.backends[0]!.stats.last?.headers.authorization).toBe('Bearer the-models-own-token');
    expect((await request(`${rig.running.url}/status`)).statusCode).toBe(401);
  });
});
