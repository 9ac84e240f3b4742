import { request } from 'undici';
import { describe, expect, it, vi } from 'vitest';
import { RejectionLog } from '../../orchestrator/src/rejection-log.js';
import { keyHash } from '../../orchestrator/src/access-control.js';
import { startBackend } from '../helpers/backend.js';
import { startOrchestrator, stopRig, useRig } from '../helpers/orchestrator-fixture.js';
import { waitFor } from '../helpers/wait-for.js';
import { capturingLogger } from '../helpers/captured-log.js';

const rig = useRig();

const TOKEN = 'admin-token-that-must-never-be-logged';

describe('structured logs', () => {
  it('redacts secrets by key name, at the top level and one level down', () => {
    const { log, lines } = capturingLogger();
    const secret = 'do-not-print-me-0123456789';
    log.info({ adminToken: secret, password: secret, aws: { secretAccessKey: secret, sessionToken: secret }, headers: { authorization: `Bearer ${secret}` }, ssh: { privateKey: secret } }, 'config');
    expect(lines).toHaveLength(1);
    expect(lines[0]).not.toContain(secret);
    expect(JSON.parse(lines[0]!)).toMatchObject({ adminToken: '[redacted]', aws: { secretAccessKey: '[redacted]' }, headers: { authorization: '[redacted]' } });
  });

  it('writes one JSON line per significant event, with ids, and never a secret', async () => {
    const { log, lines, entries } = capturingLogger();
    const only = await startBackend('only', { manual: true });
    const spare = await startBackend('spare', { manual: true });
    rig.backends = [only, spare];
    rig.running = await startOrchestrator(rig.backends, { maxQueue: 1, healthFall: 2, adminToken: TOKEN }, log);
    const post = (id: string) => request(`${rig.running!.url}/new_request`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-request-id': id }, body: '{}' });

    // Both containers busy, one request queued: the next is rejected.
    const held = [post('r1'), post('r2'), post('r3')];
    for (const h of held) h.catch(() => {});
    await waitFor(() => only.held + spare.held === 2 && rig.running!.orchestrator.queue.length === 1);
    const refused = await post('r4');
    expect(refused.statusCode).toBe(503);
    await refused.body.dump();
    expect(entries()).toContainEqual(expect.objectContaining({ msg: 'request rejected', level: 40, requestId: 'r4', status: 503, error: 'QUEUE_FULL', path: '/new_request' }));

    // A crashed container: one line for its change of state, saying why.
    await spare.kill();
    await waitFor(() => entries().some((e) => e.msg === 'container unhealthy'), 5_000);
    expect(entries().find((e) => e.msg === 'container unhealthy')).toMatchObject({ level: 40, container: 'spare', worker: 'w1', to: 'unhealthy', reason: expect.stringMatching(/./) });

    // An admin action, authenticated with the token.
    const pause = await request(`${rig.running.url}/admin/autoscaler/pause`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
    expect(pause.statusCode).toBe(200);
    await pause.body.dump();
    expect(entries()).toContainEqual(expect.objectContaining({ msg: 'autoscaler paused', paused: true }));

    // Answer what is left, each request as it reaches the container, until every client has its answer.
    let settled = false;
    const allSettled = Promise.allSettled(held).then(() => (settled = true));
    while (!settled) {
      await waitFor(() => only.held > 0 || settled);
      only.answerNext();
    }
    await allSettled;
    await stopRig(rig.running, rig.backends);
    rig.running = undefined;
    for (const line of lines) {
      const entry = JSON.parse(line) as Record<string, unknown>;
      expect(entry).toMatchObject({ name: 'orchestrator', level: expect.any(Number), time: expect.any(Number), msg: expect.any(String) });
    }
    expect(lines.join('\n')).not.toContain(TOKEN);
    expect(entries().at(-1)!.msg).toBe('orchestrator stopped');
  });

  it("names the client key in the access and rejection logs (its name, never the key), for answers and refusals alike", async () => {
    const { log, lines, entries } = capturingLogger();
    const key = 'orch_logged-key-name-only-0123456789';
    const viewer = 'orch_logged-viewer-key-0123456789';
    rig.backends = [await startBackend('a')];
    rig.running = await startOrchestrator(
      rig.backends,
      {
        accessLog: true,
        clientKeys: [
          { name: 'app', sha256: keyHash(key), scopes: ['infer'], ratePerSecond: 0.001, burst: 1 },
          { name: 'viewer', sha256: keyHash(viewer), scopes: ['read'] },
        ],
      },
      log,
    );
    const send = async (id: string, path: string, authorization?: string) => {
      const headers = { 'x-request-id': id, ...(authorization ? { authorization } : {}) };
      const response = await request(`${rig.running!.url}${path}`, { method: path === '/status' ? 'GET' : 'POST', headers, body: path === '/status' ? undefined : '{}' });
      await response.body.dump();
    };
    await send('ok', '/new_request', `Bearer ${key}`);
    await send('limited', '/new_request', `Bearer ${key}`);
    await send('none', '/new_request');
    await send('wrong', '/new_request', `Bearer ${key}x`);
    await send('read', '/status', `Basic ${Buffer.from(`me:${viewer}`).toString('base64')}`);
    await waitFor(() => entries().filter((e) => e.msg === 'request').length === 5);
    const byId = new Map(entries().filter((e) => e.msg === 'request').map((e) => [e.requestId, e]));
    expect(byId.get('ok')).toMatchObject({ status: 200, client: 'app', container: 'a' });
    expect(byId.get('limited')).toMatchObject({ status: 429, client: 'app' });
    // The rejection log names the key too.
    expect(entries().find((e) => e.msg === 'request rejected' && e.requestId === 'limited')).toMatchObject({ status: 429, error: 'RATE_LIMITED', client: 'app' });
    expect(byId.get('read')).toMatchObject({ status: 200, client: 'viewer' });
    for (const id of ['none', 'wrong']) {
      expect(byId.get(id)).toMatchObject({ status: 401 });
      expect(byId.get(id)).not.toHaveProperty('client');
    }
    await stopRig(rig.running, rig.backends);
    rig.running = undefined;
    for (const secret of [key, viewer, keyHash(key)]) expect(lines.join('\n')).not.toContain(secret);
  });

  it('logs rejections one by one up to a rate, then counts the rest once a second', () => {
    vi.useFakeTimers();
    try {
      const { log, entries } = capturingLogger();
      const rejections = new RejectionLog(log, { perSecond: 3 });
      for (let i = 0; i < 10; i++) rejections.record({ requestId: `r${i}`, path: '/new_request', status: 503, error: i < 8 ? 'QUEUE_FULL' : 'QUEUE_TIMEOUT' });
      expect(entries().filter((e) => e.msg === 'request rejected')).toHaveLength(3);
      vi.advanceTimersByTime(1_000);
      expect(entries().at(-1)).toMatchObject({ msg: 'more requests rejected than logged one by one', rejected: { QUEUE_FULL: 5, QUEUE_TIMEOUT: 2 } });
      // A new second starts over.
      rejections.record({ requestId: 'r10', path: '/new_request', status: 400, error: 'BAD_REQUEST' });
      expect(entries().at(-1)).toMatchObject({ msg: 'request rejected', level: 30, requestId: 'r10' });
    } finally {
      vi.useRealTimers();
    }
  });
});
