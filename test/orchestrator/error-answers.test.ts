import { describe, expect, it } from 'vitest';
import { startBackend, type Backend } from '../helpers/backend.js';
import { capturingLogger } from '../helpers/captured-log.js';
import { startOrchestrator, useRig, type Rig } from '../helpers/orchestrator-fixture.js';
import { headerOf, jsonOf, raw, statusOf } from '../helpers/raw-http.js';
import { waitFor } from '../helpers/wait-for.js';

const rig = useRig();

/** One row of the error table: how to bring the orchestrator to it, and the request that gets it. */
interface Case {
  status: number;
  error: string;
  what: string;
  /** Config for the orchestrator over one backend. */
  config?: Record<string, unknown>;
  manual?: boolean;
  /** After the start: bring the cluster to the state the row needs. */
  prepare?: (rig: Rig, backend: Backend, path: string) => Promise<void>;
  /** The request sent, head and body, for `path`; by default a small JSON POST that closes its connection. */
  request?: (path: string, id: string) => string[];
  /** Answered on the socket by the HTTP server itself, before any route (no request id in the body). */
  bySocket?: boolean;
  /** The connection is closed although the client asked to keep it. */
  closes?: boolean;
}

const post = (path: string, id: string, body = '{"text":"hi"}', connection = 'close'): string[] => [
  `POST ${path} HTTP/1.1\r\nHost: x\r\nConnection: ${connection}\r\nx-request-id: ${id}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
];

/** A request the backend holds, so the one container is busy. */
async function holdTheContainer(r: Rig, backend: Backend, path: string): Promise<void> {
  void fetch(`${r.running!.url}${path}`, { method: 'POST', body: '{}' }).catch(() => {});
  await waitFor(() => backend.held === 1);
}

const CASES: Case[] = [
  {
    status: 413,
    error: 'PAYLOAD_TOO_LARGE',
    what: 'a body over maxBodyBytes',
    config: { maxBodyBytes: 16 },
    request: (path, id) => post(path, id, JSON.stringify({ text: 'x'.repeat(100) }), 'keep-alive'),
    closes: true,
  },
  {
    status: 400,
    error: 'BAD_REQUEST',
    what: 'two Host headers',
    request: (path, id) => [`POST ${path} HTTP/1.1\r\nHost: a\r\nHost: b\r\nx-request-id: ${id}\r\nContent-Length: 2\r\n\r\n{}`],
    closes: true,
  },
  {
    status: 408,
    error: 'REQUEST_TIMEOUT',
    what: 'a body that never completes',
    config: { clientHeadersTimeoutMs: 100, clientRequestTimeoutMs: 300 },
    request: (path, id) => [`POST ${path} HTTP/1.1\r\nHost: x\r\nx-request-id: ${id}\r\nContent-Length: 100\r\n\r\n{"te`],
    bySocket: true,
    closes: true,
  },
  {
    status: 503,
    error: 'QUEUE_FULL',
    what: 'a full queue',
    config: { maxQueue: 0 },
    manual: true,
    prepare: holdTheContainer,
  },
  {
    status: 503,
    error: 'SHUTTING_DOWN',
    what: 'a queue closed for shutdown',
    prepare: async (r) => r.running!.orchestrator.queue.close(),
  },
  {
    status: 503,
    error: 'NO_CONTAINERS',
    what: 'no container at all',
    prepare: async (r) => {
      const { pool } = r.running!.orchestrator;
      for (const c of [...pool.containers()]) pool.remove(c);
    },
  },
  {
    status: 504,
    error: 'QUEUE_TIMEOUT',
    what: 'no container free within queueTimeoutMs',
    config: { queueTimeoutMs: 100 },
    manual: true,
    prepare: holdTheContainer,
  },
  {
    status: 504,
    error: 'UPSTREAM_TIMEOUT',
    what: 'a container silent past upstreamTimeoutMs',
    config: { upstreamTimeoutMs: 100, maxAttempts: 1 },
    manual: true,
  },
  {
    status: 502,
    error: 'CONTAINER_UNAVAILABLE',
    what: 'a container gone since its last probe',
    config: { maxAttempts: 1, healthIntervalMs: 60_000 },
    prepare: async (_r, backend) => backend.kill(),
  },
];

/** `/new_request` goes straight to the proxy; any other forwarded path goes through Koa. */
const PATHS = ['/new_request', '/run_model'];

describe.each([false, true])('the error table (access log %s)', (accessLog) => {
  describe.each(PATHS)('on %s', (path) => {
    it.each(CASES)('answers $status $error to $what, as JSON with the request id, logged once', async (c) => {
      const { log, entries } = capturingLogger();
      const backend = await startBackend('b1', { manual: c.manual });
      rig.backends = [backend];
      rig.running = await startOrchestrator(rig.backends, { accessLog, ...c.config }, log);
      await c.prepare?.(rig, backend, path);
      const id = `err-${c.status}-${c.error}`;

      const { answer } = await raw(rig.running.url, (c.request ?? post)(path, id));

      expect(statusOf(answer)).toBe(c.status);
      expect(jsonOf(answer)).toMatchObject(c.bySocket ? { error: c.error } : { error: c.error, requestId: id });
      expect(headerOf(answer, 'content-type')).toBe('application/json; charset=utf-8');
      if (!c.bySocket) expect(headerOf(answer, 'x-request-id')).toBe(id);
      expect(headerOf(answer, 'retry-after')).toBe(c.status === 503 ? '1' : undefined);
      if (c.closes) expect(headerOf(answer, 'connection')).toBe('close');
      // An expected rejection: one rate-limited line, never an error with a stack.
      const logged = c.bySocket ? { requestId: '-', path: '-' } : { requestId: id, path };
      expect(entries().filter((e) => e.msg === 'request rejected')).toEqual([expect.objectContaining({ ...logged, status: c.status, error: c.error })]);
      expect(entries().filter((e) => e.msg === 'request failed')).toEqual([]);
      if (accessLog) {
        await waitFor(() => entries().some((e) => e.msg === 'request' && e.requestId === id));
        expect(entries().filter((e) => e.msg === 'request' && e.requestId === id)).toEqual([
          expect.objectContaining({ method: 'POST', path, status: c.status, completed: !c.bySocket }),
        ]);
      } else {
        expect(entries().filter((e) => e.msg === 'request')).toEqual([]);
      }
      backend.answerNext();
    });
  });
});

describe('the access log', () => {
  it('writes one line per exchange on /new_request (the direct path) as on routed paths: id, method, path, status, duration, container', async () => {
    const { log, entries } = capturingLogger();
    rig.backends = [await startBackend('b1')];
    rig.running = await startOrchestrator(rig.backends, { accessLog: true }, log);
    for (const [path, id] of [['/new_request?v=2', 'a1'], ['/run_model', 'a2'], ['/health', 'a3']] as const) {
      const response = await fetch(`${rig.running.url}${path}`, { method: path === '/health' ? 'GET' : 'POST', headers: { 'x-request-id': id }, body: path === '/health' ? undefined : '{}' });
      expect(response.status).toBe(200);
      await response.arrayBuffer();
    }
    await waitFor(() => entries().filter((e) => e.msg === 'request').length === 3);
    const lines = entries().filter((e) => e.msg === 'request');
    expect(lines).toEqual([
      expect.objectContaining({ requestId: 'a1', method: 'POST', path: '/new_request', status: 200, container: 'b1', completed: true, ms: expect.any(Number) }),
      expect.objectContaining({ requestId: 'a2', method: 'POST', path: '/run_model', status: 200, container: 'b1', completed: true }),
      expect.objectContaining({ requestId: 'a3', method: 'GET', path: '/health', status: 200, completed: true }),
    ]);
    expect(lines[2]!.container).toBeUndefined();
  });
});
