import type { IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ListeningServer } from '../../worker/src/http-server.js';
import { startOrchestrator, type RunningOrchestrator } from '../helpers/orchestrator-fixture.js';
import { workerPool } from '../worker/helpers.js';

const ID = 'w1-real';
/** Below the orchestrator's limit, so a body between the two reaches the worker and gets its own 413. */
const WORKER_LIMIT_BYTES = 1024;
const ORCHESTRATOR_LIMIT_BYTES = 8 * 1024;

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

async function post(url: string, contentType: string, body: string): Promise<Answer> {
  const response = await request(url, { method: 'POST', headers: { 'content-type': contentType }, body });
  return { status: response.statusCode, headers: response.headers, body: Buffer.from(await response.body.arrayBuffer()) };
}

describe("the real worker's client errors, through the orchestrator", () => {
  const workers = workerPool();
  let worker: ListeningServer;
  let running: RunningOrchestrator | undefined;
  /** POST /run_model requests that reached the worker, whatever it answered. */
  let modelCalls = 0;

  beforeEach(async () => {
    worker = await workers.start({ containerId: ID, maxBodyBytes: WORKER_LIMIT_BYTES });
    modelCalls = 0;
    worker.server.on('request', (req) => {
      if (req.url?.startsWith('/run_model')) modelCalls++;
    });
    running = await startOrchestrator([{ id: ID, port: (worker.server.address() as AddressInfo).port }], { maxBodyBytes: ORCHESTRATOR_LIMIT_BYTES });
  });
  afterEach(async () => {
    await running?.close();
    running = undefined;
    await workers.closeAll();
  });

  /** A 4xx is the client's fault: the container stays in rotation, with no failure counted, and serves the next request. */
  async function expectStillServing(): Promise<void> {
    const status = (await (await request(`${running!.url}/status`)).body.json()) as {
      containers: Array<{ id: string; state: string; failures: number; lastError: string | null }>;
    };
    expect(status.containers).toEqual([expect.objectContaining({ id: ID, state: 'free', failures: 0, lastError: null })]);
    const next = await post(`${running!.url}/new_request`, 'application/json', '{"text":"What a lovely day"}');
    expect(next.status, next.body.toString()).toBe(200);
    expect(next.headers['x-served-by']).toBe(ID);
    expect(JSON.parse(next.body.toString())).toMatchObject({ prediction: { label: 'positive' }, container: ID });
  }

  it.each([
    { name: 'invalid JSON', contentType: 'application/json', body: '{"text": ', status: 400, error: 'INVALID_JSON' },
    { name: 'JSON without "text"', contentType: 'application/json', body: '{"txt": "hello"}', status: 400, error: 'INVALID_INPUT' },
    { name: '"text" that is not a string', contentType: 'application/json', body: '{"text": 42}', status: 400, error: 'INVALID_INPUT' },
    { name: 'an empty "text"', contentType: 'application/json', body: '{"text": ""}', status: 400, error: 'INVALID_INPUT' },
    // The worker answers a body not sent as JSON with 400 INVALID_INPUT (not 415).
    { name: 'a body not sent as JSON', contentType: 'text/plain', body: '{"text": "hello"}', status: 400, error: 'INVALID_INPUT' },
    {
      name: "a body over the worker's limit but under the orchestrator's",
      contentType: 'application/json',
      body: JSON.stringify({ text: 'a'.repeat(WORKER_LIMIT_BYTES * 4) }),
      status: 413,
      error: 'PAYLOAD_TOO_LARGE',
    },
  ])("passes the worker's $status $error for $name through unchanged", async ({ contentType, body, status, error }) => {
    const direct = await post(`${worker.url}/run_model`, contentType, body);
    const proxied = await post(`${running!.url}/new_request`, contentType, body);

    expect(direct.status).toBe(status);
    expect(JSON.parse(direct.body.toString())).toEqual({ error, message: expect.any(String) });
    expect(proxied.status).toBe(status);
    expect(proxied.headers['content-type']).toBe(direct.headers['content-type']);
    expect(proxied.body.equals(direct.body), proxied.body.toString()).toBe(true);
    expect(proxied.headers['x-served-by']).toBe(ID);
    // An answer is never retried: the worker saw it once directly and once through the orchestrator.
    expect(proxied.headers['x-attempts']).toBeUndefined();
    expect(modelCalls).toBe(2);
    await expectStillServing();
  });

  it("answers a body over the orchestrator's maxBodyBytes with its own 413, never forwarding it", async () => {
    const proxied = await post(`${running!.url}/new_request`, 'application/json', JSON.stringify({ text: 'a'.repeat(ORCHESTRATOR_LIMIT_BYTES * 2) }));

    expect(proxied.status).toBe(413);
    expect(JSON.parse(proxied.body.toString())).toEqual({ error: 'PAYLOAD_TOO_LARGE', message: expect.any(String), requestId: expect.any(String) });
    expect(proxied.headers['x-served-by']).toBeUndefined();
    expect(modelCalls).toBe(0);
    await expectStillServing();
  });
});
