import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { parseExposition } from '../../common/src/prometheus-text.js';
import { createLogger } from '../../common/src/logger.js';
import { ProxyHandler } from '../../orchestrator/src/proxy-handler.js';
import { RequestQueue } from '../../orchestrator/src/request-queue.js';
import { RequestStats } from '../../orchestrator/src/request-stats.js';
import { UpstreamClient } from '../../orchestrator/src/upstream/upstream-client.js';
import { startBackend, type Backend } from '../helpers/backend.js';
import { fakeCluster } from '../helpers/fake-runtime.js';
import { startOrchestrator, useRig } from '../helpers/orchestrator-fixture.js';
import { raw, statusOf } from '../helpers/raw-http.js';
import { upstreamOptions } from '../helpers/upstream.js';
import { waitFor } from '../helpers/wait-for.js';

const rig = useRig();

const post = (path = '/new_request', init: { body?: string; signal?: AbortSignal } = {}) =>
  fetch(`${rig.running!.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: init.body ?? '{"text":"hi"}', signal: init.signal });

/** Send a request head and part of its body, then close the connection once `left` says so. */
async function closeMidBody(url: string, left: () => boolean): Promise<void> {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  await new Promise<void>((resolve) => socket.once('connect', resolve));
  socket.write('POST /new_request HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"te');
  await waitFor(left);
  socket.destroy();
}

describe('outcomes', () => {
  it('ends every accepted request in exactly one outcome counter, and /metrics labels each with the status its client got', async () => {
    const only: Backend = await startBackend('only', { manual: true });
    rig.backends = [only];
    rig.running = await startOrchestrator(rig.backends, {
      maxQueue: 1,
      queueTimeoutMs: 400,
      maxBodyBytes: 1_024,
      clientHeadersTimeoutMs: 300,
      clientRequestTimeoutMs: 600,
    });
    const { orchestrator } = rig.running;
    const counters = orchestrator.stats.counters;

    // Completed: one on the hot path, one through Koa (a non-canonical spelling of the same route).
    for (const path of ['/new_request', '/NEW_REQUEST']) {
      const answered = post(path);
      await waitFor(() => only.held === 1);
      only.answerNext();
      expect((await answered).status).toBe(200);
    }
    // Refused with 413: a declared length over the limit, and a chunked body that grows past it, on both paths.
    expect((await post('/new_request', { body: 'x'.repeat(2_000) })).status).toBe(413);
    const chunked = await raw(rig.running.url, [
      `POST /new_request/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n${'x'.repeat(2_048)}\r\n0\r\n\r\n`,
    ]);
    expect(statusOf(chunked.answer)).toBe(413);
    // Refused by the server itself: a body too slow (408) and broken chunking (400).
    const slow = await raw(rig.running.url, ['POST /new_request HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"te']);
    expect(statusOf(slow.answer)).toBe(408);
    const broken = await raw(rig.running.url, ['POST /new_request HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{"te\r\nzz\r\n']);
    expect(statusOf(broken.answer)).toBe(400);
    // A client that closes its side mid-body is answered 400 like nginx does (the request can never complete).
    const before = counters.accepted;
    await closeMidBody(rig.running.url, () => counters.accepted === before + 1);
    // Cancelled: a client gone while it waited.
    const held = post();
    await waitFor(() => only.held === 1);
    const abort = new AbortController();
    const leaving = post('/new_request', { signal: abort.signal }).catch(() => 'left');
    await waitFor(() => orchestrator.queue.length === 1);
    abort.abort();
    expect(await leaving).toBe('left');
    // Rejected (the queue is full) and timed out (it waited too long).
    const waiting = post();
    await waitFor(() => orchestrator.queue.length === 1);
    expect((await post()).status).toBe(503);
    expect((await waiting).status).toBe(504);
    only.answerNext();
    expect((await held).status).toBe(200);
    await waitFor(() => orchestrator.stats.active === 0);

    expect(counters).toMatchObject({ completed: 3, failed: 0, rejected: 1, timedOut: 1, cancelled: 1, refused: 5 });
    const { accepted, completed, failed, rejected, timedOut, cancelled, refused } = counters;
    expect(accepted).toBe(completed + failed + rejected + timedOut + cancelled + refused);

    const metrics = parseExposition(await (await fetch(`${rig.running.url}/metrics`)).text());
    const byStatus = (status: number): number => metrics.sum('orchestrator_requests_total', { status: String(status) });
    expect([200, 413, 408, 400, 499, 503, 504].map(byStatus)).toEqual([3, 2, 1, 2, 1, 1, 1]);
    expect(metrics.sum('orchestrator_requests_refused_total', {})).toBe(5);
    expect(metrics.sum('orchestrator_queue_cancelled_total', {})).toBe(1);

    const status = (await (await fetch(`${rig.running.url}/status`)).json()) as { counters: Record<string, number> };
    expect(status.counters).toMatchObject({ accepted, completed, rejected, timedOut, cancelled, refused, queued: 2 });
  });

  it('does not send a request to another container once its client has left', async () => {
    const hung = await startBackend('hung', { manual: true });
    const other = await startBackend('other');
    rig.backends = [hung, other];
    rig.running = await startOrchestrator(rig.backends, { upstreamTimeoutMs: 500, maxAttempts: 3 });
    // The hung container takes the first request (both are free; the first listed wins a tie).
    const abort = new AbortController();
    const leaving = post('/new_request', { signal: abort.signal }).catch(() => 'left');
    await waitFor(() => hung.held === 1 || other.stats.served === 1);
    if (other.stats.served === 1) throw new Error('the request went to the other container first; the test needs it on the hung one');
    abort.abort();
    expect(await leaving).toBe('left');
    // The upstream timeout passes: before, the request was sent again to `other` for nobody.
    await waitFor(() => rig.running!.orchestrator.stats.active === 0, 5_000);
    expect(other.stats.served).toBe(0);
    expect(rig.running.orchestrator.stats.counters).toMatchObject({ redispatched: 0, cancelled: 1, completed: 0 });
  });
});

describe('a container removed past its drain deadline', () => {
  it('still hands its answer to the client', async () => {
    const backend = await startBackend('slow', { manual: true });
    const cluster = fakeCluster(1, { drainTimeoutMs: 100 });
    const container = cluster.add('w1', backend.port);
    const upstream = new UpstreamClient(upstreamOptions({ timeoutMs: 10_000, connectTimeoutMs: 1_000 }));
    const proxy = new ProxyHandler({
      pool: cluster.pool,
      queue: new RequestQueue(cluster.pool, { maxQueue: 10, queueTimeoutMs: 5_000 }),
      upstream,
      stats: new RequestStats(),
      log: createLogger('test', 'silent'),
      options: { maxBodyBytes: 1_024, maxAttempts: 1, idempotentPaths: [], upstreamTimeoutMs: 10_000, healthFall: 3 },
    });
    const server: Server = createServer((req, res) => {
      proxy.forward({ req, res }, 'POST', '/run_model', 'r1').catch(() => res.writeHead(500).end('proxy failed'));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const answer = fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`, { method: 'POST', body: '{}' });
      await waitFor(() => backend.held === 1);
      await cluster.operations.drainAndRemove(container, 'test');
      expect(cluster.pool.get(container.id)).toBeUndefined();
      backend.answerNext();
      const response = await answer;
      expect(response.status).toBe(200);
      expect(await response.json()).toMatchObject({ backend: 'slow' });
    } finally {
      server.closeAllConnections();
      server.close();
      await upstream.close();
      await backend.kill();
    }
  });
});
