import { describe, expect, it, vi } from 'vitest';
import { ContainerPool } from '../../orchestrator/src/container-pool.js';
import { QueueFullError } from '../../orchestrator/src/errors.js';
import { RequestQueue, type ClientWatch } from '../../orchestrator/src/request-queue.js';
import { containerRecordSchema } from '../../status/src/schema.js';
import { startBackend } from '../helpers/backend.js';
import { startOrchestrator, useRig } from '../helpers/orchestrator-fixture.js';
import { waitFor } from '../helpers/wait-for.js';

const rig = useRig();

const post = (url: string, seq: number, signal?: AbortSignal): Promise<Response> =>
  fetch(`${url}/new_request`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-seq': String(seq) },
    body: JSON.stringify({ text: `request ${seq}` }),
    signal,
  });

describe('request queue, proven from the containers', () => {
  it('never gives a container more than one request at a time and answers every request', async () => {
    rig.backends = await Promise.all(['a', 'b', 'c', 'd'].map((id) => startBackend(id, { delayMs: 5 })));
    rig.running = await startOrchestrator(rig.backends);
    const responses = await Promise.all(Array.from({ length: 200 }, (_, i) => post(rig.running!.url, i)));
    expect(responses.map((r) => r.status)).toEqual(Array(200).fill(200));
    for (const b of rig.backends) expect(b.stats.maxInFlight).toBe(1);
    expect(rig.backends.reduce((n, b) => n + b.stats.served, 0)).toBe(200);
    // Every container took part: nobody sat idle while 196 requests waited.
    for (const b of rig.backends) expect(b.stats.served).toBeGreaterThan(20);
  });

  it('serves waiting requests in arrival order', async () => {
    const only = await startBackend('only', { manual: true });
    rig.backends = [only];
    rig.running = await startOrchestrator(rig.backends);
    const pending: Promise<Response>[] = [];
    for (let seq = 1; seq <= 5; seq++) {
      pending.push(post(rig.running.url, seq));
      // Each request is queued before the next is sent, so arrival order is known.
      await waitFor(() => only.stats.arrivals.length + rig.running!.orchestrator.queue.length === seq);
    }
    for (let i = 0; i < 5; i++) {
      await waitFor(() => only.held === 1);
      only.answerNext();
    }
    await Promise.all(pending);
    expect(only.stats.arrivals).toEqual(['1', '2', '3', '4', '5']);
    expect(only.stats.maxInFlight).toBe(1);
  });

  it('hands a freed container to the head of the queue at once, whichever container frees up', async () => {
    const a = await startBackend('a', { manual: true });
    const b = await startBackend('b', { manual: true });
    rig.backends = [a, b];
    rig.running = await startOrchestrator(rig.backends);
    const pending = [post(rig.running.url, 1), post(rig.running.url, 2)];
    await waitFor(() => a.held === 1 && b.held === 1);
    pending.push(post(rig.running.url, 3));
    await waitFor(() => rig.running!.orchestrator.queue.length === 1);
    b.answerNext();
    await waitFor(() => b.held === 1);
    expect(b.stats.arrivals.at(-1)).toBe('3');
    expect(rig.running.orchestrator.queue.length).toBe(0);
    a.answerNext();
    b.answerNext();
    await Promise.all(pending);
  });

  it('answers 503 QUEUE_FULL with Retry-After past maxQueue, and keeps what it accepted', async () => {
    const only = await startBackend('only', { manual: true });
    rig.backends = [only];
    rig.running = await startOrchestrator(rig.backends, { maxQueue: 2 });
    const accepted = [post(rig.running.url, 1), post(rig.running.url, 2), post(rig.running.url, 3)];
    await waitFor(() => only.held === 1 && rig.running!.orchestrator.queue.length === 2);
    const rejected = await post(rig.running.url, 4);
    expect(rejected.status).toBe(503);
    expect(rejected.headers.get('retry-after')).toBe('1');
    expect(await rejected.json()).toMatchObject({ error: 'QUEUE_FULL' });
    for (let i = 0; i < 3; i++) {
      await waitFor(() => only.held === 1);
      only.answerNext();
    }
    expect((await Promise.all(accepted)).map((r) => r.status)).toEqual([200, 200, 200]);
    expect(only.stats.arrivals).toEqual(['1', '2', '3']);
  });

  it('answers 504 QUEUE_TIMEOUT to a request that waited longer than queueTimeoutMs', async () => {
    const only = await startBackend('only', { manual: true });
    rig.backends = [only];
    rig.running = await startOrchestrator(rig.backends, { queueTimeoutMs: 150 });
    const first = post(rig.running.url, 1);
    await waitFor(() => only.held === 1);
    const late = await post(rig.running.url, 2);
    expect(late.status).toBe(504);
    expect(await late.json()).toMatchObject({ error: 'QUEUE_TIMEOUT' });
    only.answerNext();
    expect((await first).status).toBe(200);
    expect(only.stats.arrivals).toEqual(['1']);
    expect(rig.running.orchestrator.stats.counters.timedOut).toBe(1);
  });

  it('drops a queued request whose client disconnected; it never reaches a container', async () => {
    const only = await startBackend('only', { manual: true });
    rig.backends = [only];
    rig.running = await startOrchestrator(rig.backends);
    const first = post(rig.running.url, 1);
    await waitFor(() => only.held === 1);
    const abort = new AbortController();
    const gone = post(rig.running.url, 2, abort.signal).catch((error: unknown) => error);
    await waitFor(() => rig.running!.orchestrator.queue.length === 1);
    abort.abort();
    await gone;
    await waitFor(() => rig.running!.orchestrator.queue.length === 0);
    const third = post(rig.running.url, 3);
    await waitFor(() => rig.running!.orchestrator.queue.length === 1);
    only.answerNext();
    await waitFor(() => only.held === 1);
    only.answerNext();
    expect((await first).status).toBe(200);
    expect((await third).status).toBe(200);
    expect(only.stats.arrivals).toEqual(['1', '3']);
    expect(rig.running.orchestrator.stats.counters.cancelled).toBe(1);
  });

  it('keeps a container busy until it answered, even when its client left', async () => {
    const only = await startBackend('only', { manual: true });
    rig.backends = [only];
    rig.running = await startOrchestrator(rig.backends);
    const abort = new AbortController();
    const gone = post(rig.running.url, 1, abort.signal).catch((error: unknown) => error);
    await waitFor(() => only.held === 1);
    abort.abort();
    await gone;
    const next = post(rig.running.url, 2);
    await waitFor(() => rig.running!.orchestrator.queue.length === 1);
    // The container is still computing request 1: request 2 must wait for it. A quiet spell, not a
    // stand-in: it gives a wrong hand-over time to show, and no event marks that it never came.
    await new Promise((r) => setTimeout(r, 100));
    expect(only.stats.arrivals).toEqual(['1']);
    only.answerNext();
    await waitFor(() => only.held === 1);
    only.answerNext();
    expect((await next).status).toBe(200);
    expect(only.stats.maxInFlight).toBe(1);
  });
});

describe('request queue, in process', () => {
  const queueOver = (containers: number, options: { maxQueue?: number; queueTimeoutMs?: number } = {}) => {
    const pool = new ContainerPool();
    for (let i = 0; i < containers; i++) {
      const c = pool.add(containerRecordSchema.parse({ id: `c${i}`, workerId: 'w1', host: '127.0.0.1', port: 5000 + i }), 1);
      pool.setHealth(c, 'healthy', 'test');
    }
    const queue = new RequestQueue(pool, { maxQueue: options.maxQueue ?? 100, queueTimeoutMs: options.queueTimeoutMs ?? 60_000 });
    return { pool, queue };
  };
  /** A client that leaves when told to. */
  const client = () => {
    let gone: (() => void) | undefined;
    return { watch: ((g: () => void) => ((gone = g), () => (gone = undefined))) satisfies ClientWatch, leave: () => gone?.() };
  };
  const order = (promises: Promise<unknown>[], log: string[], names: string[]): void =>
    promises.forEach((p, i) => void p.then(() => log.push(names[i]!), (e: Error) => log.push(`${names[i]}: ${e.name}`)));

  it('leases a freed container to the head of the line inside the release that frees it', async () => {
    const { pool, queue } = queueOver(1);
    const first = await queue.acquire(client().watch);
    const leased: string[] = [];
    const waiting = queue.acquire(client().watch, false, (c) => leased.push(c.id));
    expect(leased).toEqual([]);
    pool.release(first, 'served');
    // Synchronously: the caller could write its request before the answer that freed the container is passed on.
    expect(leased).toEqual(['c0']);
    await expect(waiting).resolves.toBe(first);
  });

  it('serves redispatched requests before new ones, each lane in arrival order, and lets a client leave from the middle', async () => {
    const { pool, queue } = queueOver(1);
    const held = await queue.acquire(client().watch);
    const log: string[] = [];
    const leaving = client();
    const waiting = [queue.acquire(client().watch), queue.acquire(leaving.watch), queue.acquire(client().watch), queue.acquire(client().watch, true)];
    order(waiting, log, ['new 1', 'new 2', 'new 3', 'redispatch']);
    leaving.leave();
    expect(queue.length).toBe(3);
    for (let i = 0; i < 3; i++) {
      pool.release(held, 'served');
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(log).toEqual(['new 2: ClientGoneError', 'redispatch', 'new 1', 'new 3']);
    expect(queue.counters).toEqual({ queued: 4 });
  });

  it('times each waiting request out after queueTimeoutMs, oldest first, with one timer', async () => {
    vi.useFakeTimers();
    try {
      let now = 0;
      const pool = new ContainerPool();
      const c = pool.add(containerRecordSchema.parse({ id: 'c0', workerId: 'w1', host: '127.0.0.1', port: 5000 }), 1);
      pool.setHealth(c, 'healthy', 'test');
      const queue = new RequestQueue(pool, { maxQueue: 10, queueTimeoutMs: 1_000, now: () => now });
      await queue.acquire(client().watch);
      const log: string[] = [];
      const a = queue.acquire(client().watch);
      now = 400;
      const b = queue.acquire(client().watch);
      order([a, b], log, ['a', 'b']);
      expect(queue.oldestWaitMs()).toBe(400);
      now = 1_000;
      await vi.advanceTimersByTimeAsync(1_000);
      expect(log).toEqual(['a: QueueTimeoutError']);
      now = 1_400;
      await vi.advanceTimersByTimeAsync(400);
      expect(log).toEqual(['a: QueueTimeoutError', 'b: QueueTimeoutError']);
      expect(queue.counters.queued).toBe(2);
      expect(vi.getTimerCount()).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });

  it('refuses past maxQueue, but never a redispatch (it was already accepted)', async () => {
    const { queue } = queueOver(1, { maxQueue: 1 });
    await queue.acquire(client().watch);
    void queue.acquire(client().watch).catch(() => {});
    await expect(queue.acquire(client().watch)).rejects.toThrow(QueueFullError);
    const redispatch = queue.acquire(client().watch, true);
    expect(queue.length).toBe(2);
    void redispatch.catch(() => {});
  });
});
