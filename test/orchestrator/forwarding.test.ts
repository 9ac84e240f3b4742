import http, { type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { sampleProcess } from '../../bench/src/process-metrics.js';
import { startBackend } from '../helpers/backend.js';
import { startOrchestrator, useRig } from '../helpers/orchestrator-fixture.js';
import { waitFor } from '../helpers/wait-for.js';

const rig = useRig();

describe('forwarding fidelity', () => {
  it('forwards method, path, query, end-to-end headers and body bytes unchanged, and the answer back', async () => {
    const backend = await startBackend('fid', {
      handler: (_req, res) => {
        res.statusCode = 201;
        res.setHeader('content-type', 'text/plain; charset=utf-8');
        res.setHeader('x-model-version', '7');
        res.setHeader('keep-alive', 'timeout=99');
        res.end('created');
        return true;
      },
    });
    rig.backends = [backend];
    rig.running = await startOrchestrator(rig.backends);
    const body = Buffer.from([0, 1, 2, 250, 251, 252, 10, 13]);
    // node:http sends the Connection header exactly as given (undici filters it).
    const response = await rawRequest(`${rig.running.url}/v2/predict/batch?x=1&y=%20two&x=3`, {
      method: 'PUT',
      headers: {
        'content-type': 'application/octet-stream',
        'x-custom': 'kept',
        'x-hop': 'dropped',
        connection: 'keep-alive, x-hop',
        'proxy-authorization': 'Basic c2VjcmV0',
        te: 'trailers',
        'x-forwarded-for': '203.0.113.9',
      },
      body,
    });
    const seen = backend.stats.last!;
    expect(seen.method).toBe('PUT');
    expect(seen.url).toBe('/v2/predict/batch?x=1&y=%20two&x=3');
    expect(seen.body.equals(body)).toBe(true);
    expect(seen.headers['content-type']).toBe('application/octet-stream');
    expect(seen.headers['x-custom']).toBe('kept');
    expect(seen.headers['x-hop']).toBeUndefined();
    expect(seen.headers['proxy-authorization']).toBeUndefined();
    expect(seen.headers.te).toBeUndefined();
    expect(seen.headers['x-forwarded-for']).toBe('203.0.113.9, 127.0.0.1');
    expect(seen.headers['x-request-id']).toBeTruthy();

    expect(response.statusCode).toBe(201);
    expect(response.headers['content-type']).toBe('text/plain; charset=utf-8');
    expect(response.headers['x-model-version']).toBe('7');
    expect(response.headers['content-length']).toBe('7');
    expect(response.headers['keep-alive']).not.toBe('timeout=99');
    expect(response.headers['x-served-by']).toBe('fid');
    expect(Number(response.headers['x-queue-wait-ms'])).toBeGreaterThanOrEqual(0);
    expect(response.body).toBe('created');
  });

  it('sends POST /new_request to POST /run_model with its query string and passes the status through', async () => {
    const backend = await startBackend('nr', {
      handler: (_req, res) => {
        res.statusCode = 400;
        res.setHeader('content-type', 'application/json');
        res.end('{"error":"INVALID_INPUT","message":"text is required"}');
        return true;
      },
    });
    rig.backends = [backend];
    rig.running = await startOrchestrator(rig.backends);
    const response = await request(`${rig.running.url}/new_request?explain=1`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(backend.stats.last).toMatchObject({ method: 'POST', url: '/run_model?explain=1' });
    expect(response.statusCode).toBe(400);
    expect(await response.body.json()).toEqual({ error: 'INVALID_INPUT', message: 'text is required' });
  });

  it('keeps a client-supplied request id and propagates it to the container', async () => {
    const backend = await startBackend('rid');
    rig.backends = [backend];
    rig.running = await startOrchestrator(rig.backends);
    const response = await request(`${rig.running.url}/new_request`, { method: 'POST', headers: { 'x-request-id': 'abc-123' }, body: '{"text":"x"}' });
    await response.body.dump();
    expect(backend.stats.last!.headers['x-request-id']).toBe('abc-123');
    expect(response.headers['x-request-id']).toBe('abc-123');
  });
});

describe('the orchestrator’s own routes and errors', () => {
  const cases: Array<{ name: string; method: string; path: string; body?: string | Buffer; status: number; error: string; overrides?: Record<string, unknown> }> = [
    { name: 'a body over maxBodyBytes', method: 'POST', path: '/new_request', body: Buffer.alloc(2048, 97), status: 413, error: 'PAYLOAD_TOO_LARGE', overrides: { maxBodyBytes: 1024 } },
    { name: 'GET on /new_request', method: 'GET', path: '/new_request', status: 405, error: 'METHOD_NOT_ALLOWED' },
    { name: 'POST on /status', method: 'POST', path: '/status', status: 405, error: 'METHOD_NOT_ALLOWED' },
    { name: 'POST on /metrics', method: 'POST', path: '/metrics', status: 405, error: 'METHOD_NOT_ALLOWED' },
    { name: 'POST on /dashboard/events', method: 'POST', path: '/dashboard/events', status: 405, error: 'METHOD_NOT_ALLOWED' },
    { name: 'the reserved admin prefix, admin API off', method: 'POST', path: '/admin/anything', status: 403, error: 'ADMIN_DISABLED' },
  ];
  it.each(cases)('answers $status $error for $name, without touching a container', async ({ method, path, body, status, error, overrides }) => {
    const backend = await startBackend('err');
    rig.backends = [backend];
    rig.running = await startOrchestrator(rig.backends, overrides);
    const response = await request(`${rig.running.url}${path}`, { method: method as 'GET', body });
    expect(response.statusCode).toBe(status);
    expect(response.headers['content-type']).toMatch(/application\/json/);
    expect(await response.body.json()).toMatchObject({ error, message: expect.any(String) });
    expect(backend.stats.arrivals).toEqual([]);
  });

  it('answers GET /health with its status alone, 200 ok or 503 unavailable: nothing of the inventory', async () => {
    rig.backends = [await startBackend('h1'), await startBackend('h2')];
    rig.running = await startOrchestrator(rig.backends);
    const { orchestrator, url } = rig.running;
    const ok = await request(`${url}/health`);
    expect(ok.statusCode).toBe(200);
    expect(await ok.body.json()).toEqual({ status: 'ok' });
    await Promise.all(rig.backends.map((b) => b.kill()));
    await waitFor(() => orchestrator.pool.capacity() === 0);
    const unavailable = await request(`${url}/health`);
    expect(unavailable.statusCode).toBe(503);
    expect(await unavailable.body.json()).toEqual({ status: 'unavailable' });
  });

  it("carries its process's load on /metrics, where the benchmark reads it: memory and event-loop delay", async () => {
    rig.backends = [await startBackend('m1')];
    rig.running = await startOrchestrator(rig.backends);
    const load = await sampleProcess(rig.running.url, 0);
    expect(load.rssBytes).toBeGreaterThan(10_000_000);
    expect(load.eventLoopLagP99Ms).toBeGreaterThanOrEqual(0);
    expect(load.eventLoopLagMaxMs).toBeGreaterThanOrEqual(0);
  });
});

function rawRequest(url: string, options: { method: string; headers: OutgoingHttpHeaders; body: Buffer }): Promise<{ statusCode: number; headers: IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: options.method, headers: options.headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ statusCode: res.statusCode ?? 0, headers: res.headers, body: text }));
    });
    req.on('error', reject);
    req.end(options.body);
  });
}
