import { startWorker, type WorkerDeps } from '../../worker/src/app.js';
import { loadWorkerConfig, type WorkerConfig } from '../../worker/src/config.js';
import type { ListeningServer } from '../../worker/src/http-server.js';

/** A worker config for tests: port 0, fixed container id, silent logs, no environment. */
export function testConfig(overrides: Record<string, unknown> = {}): WorkerConfig {
  return loadWorkerConfig({ env: {}, flags: { port: 0, containerId: 'test-worker', logLevel: 'silent', ...overrides } });
}

/** Starts real workers on 127.0.0.1 and closes every one of them in `closeAll` (call it in afterEach). */
export function workerPool() {
  const running: ListeningServer[] = [];
  return {
    async start(overrides: Record<string, unknown> = {}, deps: WorkerDeps = {}): Promise<ListeningServer> {
      const worker = await startWorker(testConfig(overrides), deps);
      running.push(worker);
      return worker;
    },
    async closeAll(): Promise<void> {
      await Promise.all(running.splice(0).map((worker) => worker.close(1_000)));
    },
  };
}

/** POST a JSON string (sent as-is, so malformed JSON is possible) and return status and parsed body. */
export async function postRaw(url: string, body: string, contentType = 'application/json'): Promise<{ status: number; body: any }> {
  const response = await fetch(url, { method: 'POST', headers: { 'content-type': contentType }, body });
  return { status: response.status, body: await response.json() };
}

/** POST `value` as JSON. */
export const postJson = (url: string, value: unknown) => postRaw(url, JSON.stringify(value));

/** GET and return status and parsed body. */
export async function getJson(url: string): Promise<{ status: number; body: any }> {
  const response = await fetch(url);
  return { status: response.status, body: await response.json() };
}
