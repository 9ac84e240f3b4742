import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BackendFarm } from '../../bench/src/backend-farm-process.js';
import { measure } from '../../bench/src/measure.js';
import { ensureWrk } from '../../bench/src/wrk.js';

let farm: BackendFarm;
let refusing: Server;
beforeAll(async () => {
  ensureWrk();
  farm = new BackendFarm(2, { directSlots: 4 });
  await farm.start();
  refusing = createServer((_req, res) => res.writeHead(503).end());
  await new Promise<void>((resolve) => refusing.listen(0, '127.0.0.1', resolve));
}, 300_000);
afterAll(async () => {
  await farm?.stop();
  await new Promise((resolve) => refusing?.close(resolve));
});

const backend = (port: number): string => `http://127.0.0.1:${port}/run_model`;

describe('measure', () => {
  it('measures a wrk run from both sides, with CPU per request, and returns only once the backends are idle again', async () => {
    // One connection on one single-request backend busy 300 ms a request: wrk stops mid-request.
    const m = await measure(farm, { name: 'one backend', url: backend(farm.ports[0]!), pid: null }, { serviceMs: 300, concurrency: 1, seconds: 2 });
    expect(m).toMatchObject({ target: 'one backend', maxBackendConcurrency: 1, spread: { min: 0 } });
    expect(m.throughputRps).toBeGreaterThan(0);
    expect(m.meanServiceMs).toBeGreaterThanOrEqual(299);
    expect(m.cpuUsPerRequest.proxy).toBeNull();
    expect(m.cpuUsPerRequest.client).toBeGreaterThanOrEqual(0);
    const { stats } = await farm.snapshot();
    expect(stats.map((s) => s.inFlight)).toEqual([0, 0]);
  });

  it('counts the direct backend, which may serve many at once: its limit is one request per connection at a time', async () => {
    const m = await measure(farm, { name: 'direct', url: backend(farm.directPort!), pid: null, direct: true }, { serviceMs: 20, concurrency: 4, seconds: 2 });
    expect(m).toMatchObject({ maxBackendConcurrency: 4, spread: { min: m.spread.max } });
    expect(m.spread.max).toBeGreaterThan(100);
    expect(m.limitRps).toBeCloseTo(4_000 / m.meanServiceMs, 6);
  });

  it('fails the run when a single-request backend was sent two requests at once', async () => {
    const run = measure(farm, { name: 'two at once', url: backend(farm.ports[0]!), pid: null }, { serviceMs: 20, concurrency: 2, seconds: 2 });
    await expect(run).rejects.toThrow(/two at once sent concurrent requests to a single-concurrency backend \(b1: 2\)/);
  });

  it('fails the run on any error wrk counted', async () => {
    const url = `http://127.0.0.1:${(refusing.address() as AddressInfo).port}/new_request`;
    await expect(measure(farm, { name: 'refusing', url, pid: null }, { serviceMs: 0, concurrency: 2, seconds: 2 })).rejects.toThrow(/refusing: wrk counted errors \{"connect":0,"read":0,"write":0,"status":\d+/);
  });
});
