import { afterEach, describe, expect, it } from 'vitest';
import { startBackend, type Backend } from '../helpers/backend.js';
import { startOrchestrator, stopRig, type RunningOrchestrator } from '../helpers/orchestrator-fixture.js';
import { waitFor } from '../helpers/wait-for.js';

let backends: Backend[] = [];
let running: RunningOrchestrator | undefined;

afterEach(async () => {
  for (const b of backends) while (b.held > 0) b.answerNext();
  await stopRig(running, backends);
  [running, backends] = [undefined, []];
});

const post = (url: string, seq: number, signal?: AbortSignal): Promise<Response> =>
  fetch(`${url}/new_request`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-seq': String(seq) },
    body: JSON.stringify({ text: `request ${seq}` }),
    signal,
  });

describe('request queue, proven from the containers', () => {
  it('never gives a container more than one request at a time and answers every request', async () => {
    backends = await Promise.all(['a', 'b', 'c', 'd'].map((id) => startBackend(id, { delayMs: 5 })));
    running = await startOrchestrator(backends);
    const responses = await Promise.all(Array.from({ length: 200 }, (_, i) => post(running!.url, i)));
    expect(responses.map((r) => r.status)).toEqual(Array(200).fill(200));
    for (const b of backends) expect(b.stats.maxInFlight).toBe(1);
    expect(backends.reduce((n, b) => n + b.stats.served, 0)).toBe(200);
    // Every container took part: nobody sat idle while 196 requests waited.
    for (const b of backends) expect(b.stats.served).toBeGreaterThan(20);
  });

  it('serves waiting requests in arrival order', async () => {
    const only = await startBackend('only', { manual: true });
    backends = [only];
    running = await startOrchestrator(backends);
    const pending: Promise<Response>[] = [];
    for (let seq = 1; seq <= 5; seq++) {
      pending.push(post(running.url, seq));
      // Each request is queued before the next is sent, so arrival order is known.
      await waitFor(() => only.stats.arrivals.length + running!.orchestrator.queue.length === seq);
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
    backends = [a, b];
    running = await startOrchestrator(backends);
    const pending = [post(running.url, 1), post(running.url, 2)];
    await waitFor(() => a.held === 1 && b.held === 1);
    pending.push(post(running.url, 3));
    await waitFor(() => running!.orchestrator.queue.length === 1);
    b.answerNext();
    await waitFor(() => b.held === 1);
    expect(b.stats.arrivals.at(-1)).toBe('3');
    expect(running.orchestrator.queue.length).toBe(0);
    a.answerNext();
    b.answerNext();
    await Promise.all(pending);
  });

  it('answers 503 QUEUE_FULL with Retry-After past maxQueue, and keeps what it accepted', async () => {
    const only = await startBackend('only', { manual: true });
    backends = [only];
    running = await startOrchestrator(backends, { maxQueue: 2 });
    const accepted = [post(running.url, 1), post(running.url, 2), post(running.url, 3)];
    await waitFor(() => only.held === 1 && running!.orchestrator.queue.length === 2);
    const rejected = await post(running.url, 4);
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
    backends = [only];
    running = await startOrchestrator(backends, { queueTimeoutMs: 150 });
    const first = post(running.url, 1);
    await waitFor(() => only.held === 1);
    const late = await post(running.url, 2);
    expect(late.status).toBe(504);
    expect(await late.json()).toMatchObject({ error: 'QUEUE_TIMEOUT' });
    only.answerNext();
    expect((await first).status).toBe(200);
    expect(only.stats.arrivals).toEqual(['1']);
    expect(running.orchestrator.queue.counters.timedOut).toBe(1);
  });

  it('drops a queued request whose client disconnected; it never reaches a container', async () => {
    const only = await startBackend('only', { manual: true });
    backends = [only];
    running = await startOrchestrator(backends);
    const first = post(running.url, 1);
    await waitFor(() => only.held === 1);
    const abort = new AbortController();
    const gone = post(running.url, 2, abort.signal).catch((error: unknown) => error);
    await waitFor(() => running!.orchestrator.queue.length === 1);
    abort.abort();
    await gone;
    await waitFor(() => running!.orchestrator.queue.length === 0);
    const third = post(running.url, 3);
    await waitFor(() => running!.orchestrator.queue.length === 1);
    only.answerNext();
    await waitFor(() => only.held === 1);
    only.answerNext();
    expect((await first).status).toBe(200);
    expect((await third).status).toBe(200);
    expect(only.stats.arrivals).toEqual(['1', '3']);
    expect(running.orchestrator.queue.counters.cancelled).toBe(1);
  });

  it('keeps a container busy until it answered, even when its client left', async () => {
    const only = await startBackend('only', { manual: true });
    backends = [only];
    running = await startOrchestrator(backends);
    const abort = new AbortController();
    const gone = post(running.url, 1, abort.signal).catch((error: unknown) => error);
    await waitFor(() => only.held === 1);
    abort.abort();
    await gone;
    const next = post(running.url, 2);
    await waitFor(() => running!.orchestrator.queue.length === 1);
    // The container is still computing request 1: request 2 must wait for it.
    await new Promise((r) => setTimeout(r, 100));
    expect(only.stats.arrivals).toEqual(['1']);
    only.answerNext();
    await waitFor(() => only.held === 1);
    only.answerNext();
    expect((await next).status).toBe(200);
    expect(only.stats.maxInFlight).toBe(1);
  });
});
