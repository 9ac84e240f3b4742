import { describe, expect, it, vi } from 'vitest';
import { ContainerPool, type Container } from '../../orchestrator/src/container-pool.js';
import { QueueFullError, QueueShareExceededError } from '../../orchestrator/src/errors.js';
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
  const queueOver = (containers: number, options: { maxQueue?: number; queueTimeoutMs?: number; clientQueueShare?: number; now?: () => number } = {}) => {
    const pool = new ContainerPool();
    for (let i = 0; i < containers; i++) {
      const c = pool.add(containerRecordSchema.parse({ id: `c${i}`, workerId: 'w1', host: '127.0.0.1', port: 5000 + i }), 1);
      pool.setHealth(c, 'healthy', 'test');
    }
    const queue = new RequestQueue(pool, { maxQueue: 100, queueTimeoutMs: 60_000, ...options });
    return { pool, queue };
  };
  /** A client that leaves when told to. */
  const client = () => {
    let gone: (() => void) | undefined;
    return { watch: ((g: () => void) => ((gone = g), () => (gone = undefined))) satisfies ClientWatch, leave: () => gone?.() };
  };
  const order = (promises: Promise<unknown>[], log: string[], names: string[]): void =>
    promises.forEach((p, i) => void p.then(() => log.push(names[i]!), (e: Error) => log.push(`${names[i]}: ${e.name}`)));
  /** Queue one request per name, each of the client its name starts with ('a1' of client 'a'), logging what becomes of each. */
  const line = (queue: RequestQueue, log: string[], names: string[]) =>
    names.map((name) => {
      const waiting = client();
      const p = queue.acquire(name.replace(/\d+$/, ''), waiting.watch);
      order([p], log, [name]);
      return { name, leave: waiting.leave };
    });
  /** Free the held container `times` times, letting each lease settle. */
  const serve = async (pool: ContainerPool, held: Container, times: number): Promise<void> => {
    for (let i = 0; i < times; i++) {
      pool.release(held, 'served');
      await new Promise((resolve) => setImmediate(resolve));
    }
  };

  /**
   * Run `body` over a one-container queue (queueTimeoutMs 1 s, its container held by client a)
   * whose clock and timer the test moves with `at(ms)`; serving still waits on a real setImmediate.
   */
  const onClock = async (body: (q: { pool: ContainerPool; queue: RequestQueue; held: Container; at: (ms: number) => Promise<void> }) => Promise<void>): Promise<void> => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      let now = 0;
      const { pool, queue } = queueOver(1, { queueTimeoutMs: 1_000, now: () => now });
      const held = await queue.acquire('a', client().watch);
      const at = async (ms: number): Promise<void> => {
        const step = ms - now;
        now = ms;
        await vi.advanceTimersByTimeAsync(step);
      };
      await body({ pool, queue, held, at });
    } finally {
      vi.useRealTimers();
    }
  };

  it('leases a freed container to the head of the line inside the release that frees it', async () => {
    const { pool, queue } = queueOver(1);
    const first = await queue.acquire(undefined, client().watch);
    const leased: string[] = [];
    const waiting = queue.acquire(undefined, client().watch, false, (c) => leased.push(c.id));
    expect(leased).toEqual([]);
    pool.release(first, 'served');
    // Synchronously: the caller could write its request before the answer that freed the container is passed on.
    expect(leased).toEqual(['c0']);
    await expect(waiting).resolves.toBe(first);
  });

  it('serves redispatched requests before new ones, each lane in arrival order, and lets a client leave from the middle', async () => {
    const { pool, queue } = queueOver(1);
    const held = await queue.acquire(undefined, client().watch);
    const log: string[] = [];
    const leaving = client();
    const waiting = [
      queue.acquire(undefined, client().watch),
      queue.acquire(undefined, leaving.watch),
      queue.acquire(undefined, client().watch),
      queue.acquire(undefined, client().watch, true),
    ];
    order(waiting, log, ['new 1', 'new 2', 'new 3', 'redispatch']);
    leaving.leave();
    expect(queue.length).toBe(3);
    await serve(pool, held, 3);
    expect(log).toEqual(['new 2: ClientGoneError', 'redispatch', 'new 1', 'new 3']);
    expect(queue.counters).toEqual({ queued: 4 });
  });

  it('serves requests without a client name in plain arrival order (the anonymous lane alone is a FIFO)', async () => {
    const { pool, queue } = queueOver(1);
    const held = await queue.acquire(undefined, client().watch);
    const log: string[] = [];
    const names = ['1', '2', '3', '4', '5', '6'];
    order(names.map(() => queue.acquire(undefined, client().watch)), log, names);
    await serve(pool, held, 3);
    // Newcomers while the line is served go behind it.
    order([queue.acquire(undefined, client().watch)], log, ['7']);
    await serve(pool, held, 4);
    expect(log).toEqual(['1', '2', '3', '4', '5', '6', '7']);
    expect(queue.length).toBe(0);
  });

  it('keeps the requests of one client in arrival order', async () => {
    const { pool, queue } = queueOver(1);
    const held = await queue.acquire('a', client().watch);
    const log: string[] = [];
    line(queue, log, ['a1', 'a2', 'a3', 'a4']);
    await serve(pool, held, 4);
    expect(log).toEqual(['a1', 'a2', 'a3', 'a4']);
  });

  it('lets two clients take turns, one request each, whoever queued first and most', async () => {
    const { pool, queue } = queueOver(1);
    const held = await queue.acquire('a', client().watch);
    const log: string[] = [];
    line(queue, log, ['a1', 'a2', 'a3', 'a4', 'b1', 'b2']);
    await serve(pool, held, 6);
    expect(log).toEqual(['a1', 'b1', 'a2', 'b2', 'a3', 'a4']);
  });

  it('lets three clients take turns, and a client that starts waiting joins at the back of the round', async () => {
    const { pool, queue } = queueOver(1);
    const held = await queue.acquire('a', client().watch);
    const log: string[] = [];
    line(queue, log, ['a1', 'a2', 'a3', 'b1', 'b2', 'c1']);
    await serve(pool, held, 2);
    expect(log).toEqual(['a1', 'b1']);
    // c, a and b still have turns in this round: d goes after them, and the anonymous lane takes turns like a client.
    line(queue, log, ['d1', 'd2']);
    order([queue.acquire(undefined, client().watch)], log, ['anonymous']);
    await serve(pool, held, 7);
    expect(log).toEqual(['a1', 'b1', 'c1', 'a2', 'b2', 'd1', 'anonymous', 'a3', 'd2']);
    expect(queue.length).toBe(0);
  });

  it('serves a redispatched request before every client lane', async () => {
    const { pool, queue } = queueOver(1);
    const held = await queue.acquire('a', client().watch);
    const log: string[] = [];
    line(queue, log, ['a1', 'a2', 'b1']);
    order([queue.acquire('b', client().watch, true)], log, ['b redispatched']);
    await serve(pool, held, 4);
    expect(log).toEqual(['b redispatched', 'a1', 'b1', 'a2']);
  });

  it('refuses a named client past its share of maxQueue with 429 QUEUE_SHARE_EXCEEDED, and everyone past maxQueue with 503 QUEUE_FULL', async () => {
    const { pool, queue } = queueOver(1, { maxQueue: 5, clientQueueShare: 0.5 });
    const held = await queue.acquire('a', client().watch);
    const log: string[] = [];
    // floor(5 * 0.5) = 2 each.
    line(queue, log, ['a1', 'a2']);
    const refused = queue.acquire('a', client().watch);
    await expect(refused).rejects.toBeInstanceOf(QueueShareExceededError);
    await expect(refused).rejects.toMatchObject({ code: 'QUEUE_SHARE_EXCEEDED', status: 429, expose: true, retryAfterSeconds: 1 });
    line(queue, log, ['b1', 'b2']);
    // Requests without a key have no share; the total is still bounded.
    order([queue.acquire(undefined, client().watch)], log, ['anonymous']);
    await expect(queue.acquire('c', client().watch)).rejects.toMatchObject({ code: 'QUEUE_FULL', status: 503 });
    await expect(queue.acquire(undefined, client().watch)).rejects.toBeInstanceOf(QueueFullError);
    // A redispatch was already accepted: neither bound applies.
    order([queue.acquire('a', client().watch, true)], log, ['a redispatched']);
    expect(queue.length).toBe(6);
    // The share counts waiting requests only: one of a's served, a may queue one more.
    await serve(pool, held, 2);
    expect(log).toEqual(['a redispatched', 'a1']);
    line(queue, log, ['a3']);
    await expect(queue.acquire('a', client().watch)).rejects.toBeInstanceOf(QueueShareExceededError);
    await serve(pool, held, 5);
    expect(log).toEqual(['a redispatched', 'a1', 'b1', 'anonymous', 'a2', 'b2', 'a3']);
  });

  it('lets a named client hold at least one waiting request, whatever the share', async () => {
    const { queue } = queueOver(1, { maxQueue: 3, clientQueueShare: 0.1 });
    await queue.acquire('a', client().watch);
    const log: string[] = [];
    line(queue, log, ['a1']);
    await expect(queue.acquire('a', client().watch)).rejects.toBeInstanceOf(QueueShareExceededError);
    line(queue, log, ['b1']);
    expect(queue.length).toBe(2);
  });

  it('times each waiting request out after queueTimeoutMs, oldest first, with one timer', async () => {
    vi.useFakeTimers();
    try {
      let now = 0;
      const { queue } = queueOver(1, { maxQueue: 10, queueTimeoutMs: 1_000, now: () => now });
      await queue.acquire(undefined, client().watch);
      const log: string[] = [];
      const a = queue.acquire(undefined, client().watch);
      now = 400;
      const b = queue.acquire(undefined, client().watch);
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

  it('times out the oldest request of every lane, with one timer due at the oldest head among them', () =>
    onClock(async ({ pool, queue, held, at }) => {
      const log: string[] = [];
      const arrive = async (ms: number, names: string[]): Promise<void> => {
        await at(ms);
        line(queue, log, names);
      };
      await arrive(0, ['b1']);
      await arrive(200, ['a1']);
      await arrive(300, ['c1', 'b2']);
      await arrive(600, ['a2']);
      expect(queue.oldestWaitMs()).toBe(600);
      expect(vi.getTimerCount()).toBe(1);
      await at(1_000);
      expect(log).toEqual(['b1: QueueTimeoutError']);
      // a1 (200) is now the oldest, due at 1,200; then c1 and b2 of two lanes together.
      expect(queue.oldestWaitMs()).toBe(800);
      await at(1_200);
      expect(log).toEqual(['b1: QueueTimeoutError', 'a1: QueueTimeoutError']);
      await at(1_300);
      expect(log.slice(2).sort()).toEqual(['b2: QueueTimeoutError', 'c1: QueueTimeoutError']);
      expect(queue.length).toBe(1);
      expect(queue.oldestWaitMs()).toBe(700);
      // The lanes that timed out left the round: a2 gets the next container.
      await serve(pool, held, 1);
      expect(log.at(-1)).toBe('a2');
      expect(queue.oldestWaitMs()).toBe(0);
      // The timer due for a2 finds nobody and is not set again.
      await at(1_600);
      expect(vi.getTimerCount()).toBe(0);
    }));

  it('lets a client leave from the middle of its lane, keeping its other requests in order and the turns as they were', async () => {
    const { pool, queue } = queueOver(1);
    const held = await queue.acquire('a', client().watch);
    const log: string[] = [];
    const waiting = line(queue, log, ['a1', 'a2', 'a3', 'b1', 'b2']);
    waiting.find((w) => w.name === 'a2')!.leave();
    expect(queue.length).toBe(4);
    await serve(pool, held, 4);
    expect(log).toEqual(['a2: ClientGoneError', 'a1', 'b1', 'a3', 'b2']);
  });

  it('leaves no lane behind once it empties, whether served, left or timed out', () =>
    onClock(async ({ pool, queue, held, at }) => {
      const log: string[] = [];
      // b empties by leaving, c by timing out, while it is their turn next.
      const waiting = line(queue, log, ['a1', 'b1', 'c1', 'd1']);
      await at(500);
      line(queue, log, ['a2', 'd2']);
      waiting.find((w) => w.name === 'b1')!.leave();
      await serve(pool, held, 1);
      expect(log).toEqual(['b1: ClientGoneError', 'a1']);
      await at(1_000);
      expect(log).toEqual(['b1: ClientGoneError', 'a1', 'c1: QueueTimeoutError', 'd1: QueueTimeoutError']);
      // c's turn passed to d. Only a and d still wait: an emptied lane left in the round would take a turn with nobody in it.
      await serve(pool, held, 2);
      expect(log.slice(4)).toEqual(['d2', 'a2']);
      expect(queue.length).toBe(0);
      // An emptied lane left among the named ones would have no head to take the age of.
      expect(queue.oldestWaitMs()).toBe(0);
      // A client that waits again gets a new lane, with its full share.
      line(queue, log, ['b3', 'c3']);
      expect(queue.oldestWaitMs()).toBe(0);
      await serve(pool, held, 2);
      expect(log.slice(6)).toEqual(['b3', 'c3']);
    }));

  it('refuses past maxQueue, but never a redispatch (it was already accepted)', async () => {
    const { queue } = queueOver(1, { maxQueue: 1 });
    await queue.acquire(undefined, client().watch);
    void queue.acquire(undefined, client().watch).catch(() => {});
    await expect(queue.acquire(undefined, client().watch)).rejects.toThrow(QueueFullError);
    const redispatch = queue.acquire(undefined, client().watch, true);
    expect(queue.length).toBe(2);
    void redispatch.catch(() => {});
  });
});
