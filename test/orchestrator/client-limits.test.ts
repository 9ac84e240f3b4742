import { describe, expect, it } from 'vitest';
import { startBackend } from '../helpers/backend.js';
import { startOrchestrator, useRig } from '../helpers/orchestrator-fixture.js';
import { jsonOf, raw, statusOf } from '../helpers/raw-http.js';

const rig = useRig();

describe('clients that break HTTP or take too long', () => {
  const cases = [
    {
      name: 'a request head over maxHeaderBytes',
      chunks: [`POST /new_request HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(5_000)}\r\n\r\n`],
      status: 431,
      error: 'HEADERS_TOO_LARGE',
    },
    { name: 'a request line that is not HTTP', chunks: ['HELLO THERE\r\n\r\n'], status: 400, error: 'BAD_REQUEST' },
    { name: 'a header without a colon', chunks: ['GET /status HTTP/1.1\r\nHost: x\r\nnot a header\r\n\r\n'], status: 400, error: 'BAD_REQUEST' },
    { name: 'two different Content-Lengths', chunks: ['POST /new_request HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab'], status: 400, error: 'BAD_REQUEST' },
    // A slowloris: the head trickles in and never ends.
    { name: 'a head sent too slowly', chunks: ['POST /new_request HTTP/1.1\r\n', 'Host: x\r\n', 'X-A: 1\r\n', 'X-B: 1\r\n', 'X-C: 1\r\n'], gapMs: 150, status: 408, error: 'REQUEST_TIMEOUT' },
  ];
  it.each(cases)('answers $status $error as JSON to $name, closes the connection, and never bothers a container', async ({ chunks, gapMs, status, error }) => {
    rig.backends = [await startBackend('a')];
    rig.running = await startOrchestrator(rig.backends, { maxHeaderBytes: 4096, clientHeadersTimeoutMs: 400, clientRequestTimeoutMs: 2_000 });
    const { answer, ms } = await raw(rig.running.url, chunks, gapMs);
    expect(statusOf(answer)).toBe(status);
    expect(answer).toMatch(/\r\ncontent-type: application\/json; charset=utf-8\r\n/);
    expect(answer).toMatch(/\r\nconnection: close\r\n/);
    expect(jsonOf(answer)).toEqual({ error, message: expect.any(String) });
    expect(rig.backends[0]!.stats.served).toBe(0);
    if (status === 408) expect(ms).toBeLessThan(2_000);
  });

  it.each([
    ['an absolute URL', 'GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\nConnection: close\r\n\r\n'],
    ['an absolute URL on the hot path', 'POST http://127.0.0.1:1/new_request HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}'],
    ['the asterisk form', 'OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'],
  ])('refuses %s as a request target (400): no client can choose where a request goes', async (_what, request) => {
    rig.backends = [await startBackend('a')];
    rig.running = await startOrchestrator(rig.backends);
    const { answer } = await raw(rig.running.url, [request]);
    expect(statusOf(answer)).toBe(400);
    expect(jsonOf(answer)).toMatchObject({ error: 'BAD_REQUEST', message: expect.stringMatching(/must be a path/) });
    expect(rig.backends[0]!.stats.served).toBe(0);
  });

  it('times out a body that never completes, and the orchestrator keeps serving others', async () => {
    rig.backends = [await startBackend('a')];
    rig.running = await startOrchestrator(rig.backends, { clientHeadersTimeoutMs: 300, clientRequestTimeoutMs: 600 });
    const slow = raw(rig.running.url, ['POST /new_request HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"te']);
    const fine = await fetch(`${rig.running.url}/new_request`, { method: 'POST', body: '{"text":"hi"}', headers: { 'content-type': 'application/json' } });
    expect(fine.status).toBe(200);
    const { answer, ms } = await slow;
    expect(statusOf(answer)).toBe(408);
    expect(ms).toBeGreaterThanOrEqual(550);
    expect(ms).toBeLessThan(2_000);
    expect(rig.backends[0]!.stats.served).toBe(1);
  });
});
