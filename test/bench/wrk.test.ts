import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ensureWrk, startWrk, wrkVersion } from '../../bench/src/wrk.js';

let server: Server | undefined;
afterEach(async () => {
  if (server) await new Promise((resolve) => server!.close(resolve));
  server = undefined;
});

/** A server answering `status` to every request, recording each method and body it got. */
async function answering(status: number, seen: string[]): Promise<string> {
  server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
    req.on('end', () => {
      seen.push(`${req.method} ${req.url} ${req.headers['content-type']} ${body}`);
      res.writeHead(status).end('{}');
    });
  });
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/new_request`;
}

describe('startWrk', () => {
  beforeAll(() => ensureWrk(), 300_000);

  it('POSTs the JSON body and reads back the summary of the run', async () => {
    const seen: string[] = [];
    const run = startWrk(await answering(200, seen), 4, 1);
    expect(run.pid).toBeGreaterThan(0);
    const result = await run.result;
    // wrk counts what was answered before it stopped; up to one request per connection was still in flight.
    expect(seen.length - result.requests).toBeGreaterThanOrEqual(0);
    expect(seen.length - result.requests).toBeLessThanOrEqual(4);
    expect(new Set(seen)).toEqual(new Set(['POST /new_request application/json {"text":"benchmark"}']));
    expect(result.seconds).toBeGreaterThan(0.9);
    expect(result.throughputRps).toBeCloseTo(result.requests / result.seconds, 6);
    expect(result.latencyMs.p50).toBeGreaterThan(0);
    expect(result.latencyMs.p50).toBeLessThanOrEqual(result.latencyMs.p99);
    expect(result.errors).toEqual({ connect: 0, read: 0, write: 0, status: 0, timeout: 0 });
  });

  it('counts answers other than 2xx and 3xx as errors', async () => {
    const seen: string[] = [];
    const result = await startWrk(await answering(503, seen), 2, 1).result;
    expect(result.errors.status).toBe(result.requests);
    expect(result.requests).toBeGreaterThan(0);
  });

  it('reads its version', () => {
    expect(wrkVersion()).toMatch(/^wrk \S*\d+\.\d+/);
  });
});
