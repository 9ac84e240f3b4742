import { afterEach, describe, expect, it } from 'vitest';
import { validateOptions, type RawOptions } from '../../load/src/options.js';
import { LoadThreadError, NO_CONTAINER, runLoad, split, type LoadProgress } from '../../load/src/run-load.js';
import { refusingUrl, startTestServer, type TestServer, type TestServerOptions } from './test-server.js';

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function serve(options: TestServerOptions = {}): Promise<TestServer> {
  server = await startTestServer(options);
  return server;
}

const load = (raw: RawOptions, onProgress?: (progress: LoadProgress) => void) => runLoad(validateOptions(raw), { onProgress });

describe('split', () => {
  it('splits a total into shares that differ by at most one and add up', () => {
    expect(split(10, 4)).toEqual([3, 3, 2, 2]);
    expect(split(4, 4)).toEqual([1, 1, 1, 1]);
    expect(split(7, 1)).toEqual([7]);
  });
});

describe('runLoad', () => {
  it('sends exactly N requests and never more than C at once, counted by the server', async () => {
    const { url, stats } = await serve({ delayMs: () => 10 });
    const result = await load({ url, requests: 203, threads: 4, concurrency: 10 });
    expect(stats.requests).toBe(203);
    expect(stats.maxInFlight).toBeLessThanOrEqual(10);
    expect(stats.maxInFlight).toBeGreaterThanOrEqual(5);
    expect(result).toMatchObject({ requests: 203, threads: 4, concurrency: 10, succeeded: 203, failed: 0, statusCodes: { '200': 203 }, errors: {} });
  });

  it('uses fewer threads when concurrency is lower than threads, and keeps the concurrency bound', async () => {
    const { url, stats } = await serve({ delayMs: () => 5 });
    const result = await load({ url, requests: 40, threads: 4, concurrency: 2 });
    expect(result.threads).toBe(2);
    expect(result.concurrency).toBe(2);
    expect(stats.requests).toBe(40);
    expect(stats.maxInFlight).toBeLessThanOrEqual(2);
  });

  it('uses no more threads than requests', async () => {
    const { url, stats } = await serve();
    const result = await load({ url, requests: 2, threads: 4, concurrency: 8 });
    expect(result).toMatchObject({ threads: 2, concurrency: 2, succeeded: 2 });
    expect(stats.requests).toBe(2);
  });

  it('counts requests per container from x-served-by, adding up to the answers and matching the server', async () => {
    const { url, stats } = await serve({ containers: ['w1-c1', 'w1-c2', 'w2-c1', 'w2-c2'] });
    const result = await load({ url, requests: 101, threads: 3, concurrency: 6 });
    expect(result.servedBy).toEqual(Object.fromEntries(stats.servedBy));
    expect(Object.values(result.servedBy).reduce((a, b) => a + b, 0)).toBe(101);
  });

  it('with a timeline, tells each second of the run apart: what finished in it, how fast, and where', async () => {
    // One lane: 5 quick answers, then one that takes 1.2 s, then 5 quick ones in a later second.
    const { url } = await serve({ containers: ['c1'], delayMs: (n) => (n === 5 ? 1_200 : 0) });
    const result = await runLoad({ ...validateOptions({ url, requests: 11, threads: 1, concurrency: 1 }), timeline: true });
    const timeline = result.timeline!;
    expect(timeline.map((s) => s.second)).toEqual(timeline.map((_, i) => i));
    expect(timeline.reduce((n, s) => n + s.answered, 0)).toBe(11);
    expect(timeline[0]).toMatchObject({ second: 0, answered: 5, failed: 0, servedBy: { c1: 5 } });
    const slow = timeline.find((s) => s.latencyMs && s.latencyMs.p99 >= 1_200)!;
    expect(slow.second).toBeGreaterThanOrEqual(1);
    expect(slow.answered).toBe(6);
    expect(slow.latencyMs!.p50).toBeLessThan(100);
    // Without it, no timeline is kept.
    expect((await load({ url, requests: 2 })).timeline).toBeUndefined();
  });

  it('counts answers without x-served-by under "(none)"', async () => {
    const { url } = await serve({ containers: [] });
    const result = await load({ url, requests: 12 });
    expect(result.servedBy).toEqual({ [NO_CONTAINER]: 12 });
  });

  it('reports nearest-rank percentiles of the measured latencies', async () => {
    // One lane, so the 10th request is the slow one: p50 and p90 are fast answers, p99 and max the slow one.
    const { url } = await serve({ delayMs: (n) => (n === 9 ? 150 : 0) });
    const result = await load({ url, requests: 10, threads: 1, concurrency: 1 });
    const latency = result.latencyMs!;
    expect(latency.min).toBeGreaterThan(0);
    expect(latency.min).toBeLessThanOrEqual(latency.p50);
    expect(latency.p50).toBeLessThanOrEqual(latency.p90);
    expect(latency.p90).toBeLessThan(100);
    expect(latency.p99).toBeGreaterThanOrEqual(150);
    expect(latency.max).toBe(latency.p99);
    expect(latency.mean).toBeGreaterThan(15);
    expect(result.durationMs).toBeGreaterThanOrEqual(150);
    expect(result.throughputRps).toBeCloseTo((10 * 1000) / result.durationMs, 1);
  });

  it('counts non-2xx answers as failed, by status', async () => {
    const { url } = await serve({ status: (n) => (n % 5 === 0 ? 500 : 200) });
    const result = await load({ url, requests: 50, threads: 2 });
    expect(result).toMatchObject({ succeeded: 40, failed: 10, statusCodes: { '200': 40, '500': 10 }, errors: {} });
  });

  it('counts refused connections as failed, by error code, with no latency', async () => {
    const result = await load({ url: await refusingUrl(), requests: 9, threads: 3 });
    expect(result).toMatchObject({ succeeded: 0, failed: 9, statusCodes: {}, errors: { ECONNREFUSED: 9 }, servedBy: {}, latencyMs: null, throughputRps: 0 });
  });

  it('counts requests that outlive --timeout-ms as TIMEOUT', async () => {
    const { url } = await serve({ hang: true });
    const result = await load({ url, requests: 4, threads: 2, timeoutMs: 100 });
    expect(result).toMatchObject({ failed: 4, errors: { TIMEOUT: 4 } });
    expect(result.durationMs).toBeGreaterThanOrEqual(95);
  });

  it('sends the body as application/json with the chosen method, and none with GET', async () => {
    const { url, stats } = await serve();
    await load({ url, requests: 1, body: '{"text":"meh"}', method: 'put' });
    expect(stats.last).toEqual({ method: 'PUT', contentType: 'application/json', body: '{"text":"meh"}' });
    await load({ url, requests: 1 });
    expect(stats.last).toEqual({ method: 'POST', contentType: 'application/json', body: '{"text":"I love this product"}' });
    await load({ url, requests: 1, method: 'GET' });
    expect(stats.last).toEqual({ method: 'GET', contentType: undefined, body: '' });
  });

  it('reports progress up to the total', async () => {
    const { url } = await serve({ status: (n) => (n < 3 ? 503 : 200) });
    const seen: LoadProgress[] = [];
    await load({ url, requests: 30, threads: 2 }, (progress) => seen.push(progress));
    expect(seen.at(-1)).toEqual({ done: 30, total: 30, failed: 3 });
    expect(seen.map((p) => p.done)).toEqual([...seen.map((p) => p.done)].sort((a, b) => a - b));
  });

  it('rejects with LoadThreadError when a thread fails instead of reporting partial numbers', async () => {
    // Skipping validation lets a URL through that the threads cannot parse.
    const options = { ...validateOptions({ requests: 4, threads: 2 }), url: 'not a url' };
    await expect(runLoad(options)).rejects.toBeInstanceOf(LoadThreadError);
  });
});
