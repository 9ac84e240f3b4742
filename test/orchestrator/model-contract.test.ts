import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { liveStatus } from '../helpers/orchestrator-process.js';
import { startOrchestrator, type RunningOrchestrator } from '../helpers/orchestrator-fixture.js';
import { poll } from '../helpers/docker.js';
import { workerRecordSchema } from '../../status/src/schema.js';

/** A model app with its own paths, as most are: POST /predict, GET /healthz answering 204 with no body (so no identity). */
interface App {
  id: string;
  port: number;
  /** Method and URL of every request it got, in order. */
  seen: string[];
  server: Server;
}

async function startApp(id: string, onPredict?: (req: IncomingMessage, res: ServerResponse) => boolean): Promise<App> {
  const seen: string[] = [];
  const server = createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    req.resume().on('end', () => {
      if (req.method === 'GET' && req.url === '/healthz') return void res.writeHead(204).end();
      if (req.method === 'POST' && req.url?.startsWith('/predict') && !onPredict?.(req, res)) {
        return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ app: id, url: req.url }));
      }
      if (!res.headersSent && !res.destroyed) res.writeHead(404).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { id, port: (server.address() as AddressInfo).port, seen, server };
}

const CONTRACT = { predictPath: '/predict', healthPath: '/healthz' };

describe("a worker template's model contract", () => {
  let apps: App[] = [];
  let running: RunningOrchestrator | undefined;

  afterEach(async () => {
    await running?.close();
    for (const app of apps) app.server.closeAllConnections();
    await Promise.all(apps.map((app) => new Promise((resolve) => app.server.close(resolve))));
    apps = [];
    running = undefined;
  });

  const allFree = (url: string) =>
    poll(async () => ((await liveStatus(url)).containers.every((c) => c.state === 'free') ? true : undefined), 'every container free', 10_000);

  it('probes its health path (a 204 with no identity is healthy) and sends /new_request to its predict path, query kept', async () => {
    apps = [await startApp('a')];
    running = await startOrchestrator(apps, {}, undefined, CONTRACT);
    await allFree(running.url);

    const response = await request(`${running.url}/new_request?threshold=0.5`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(response.statusCode).toBe(200);
    expect(await response.body.json()).toEqual({ app: 'a', url: '/predict?threshold=0.5' });
    // Other paths pass through as they are; the default paths are never used.
    const passthrough = await request(`${running.url}/run_model`, { method: 'POST', body: '{}' });
    expect(passthrough.statusCode).toBe(404);
    await passthrough.body.dump();
    expect(apps[0]!.seen).toContain('GET /healthz');
    expect(apps[0]!.seen).not.toContain('GET /health');
  });

  it('is the bundled worker\'s in a state file written before contracts existed', () => {
    const old = workerRecordSchema.parse({ id: 'w1', provider: 'docker', host: '127.0.0.1', runtime: { driver: 'docker' }, template: { image: 'inference-worker:latest', env: {} } });
    expect(old.template.contract).toEqual({ predictPath: '/run_model', healthPath: '/health' });
  });

  it('keeps a container whose health path answers 404 out of rotation', async () => {
    apps = [await startApp('a')];
    running = await startOrchestrator(apps, { healthFall: 1 }, undefined, { predictPath: '/predict', healthPath: '/ready' });
    await poll(async () => ((await liveStatus(running!.url)).containers[0]?.state === 'unhealthy' ? true : undefined), 'the container unhealthy', 10_000);
    const status = await liveStatus(running.url);
    expect(status.containers[0]!.lastError).toContain('404');
  });

  it('resends a /new_request its container dropped to another container: the predict path counts as idempotent by default', async () => {
    const dropper = await startApp('dropper', (req) => {
      req.socket.destroy();
      return true;
    });
    apps = [dropper, await startApp('b')];
    running = await startOrchestrator(apps, {}, undefined, CONTRACT);
    await allFree(running.url);

    const answers = await Promise.all(
      Array.from({ length: 4 }, async () => {
        const response = await request(`${running!.url}/new_request`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
        return { status: response.statusCode, body: (await response.body.json()) as { app: string } };
      }),
    );
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200]);
    expect(answers.every((a) => a.body.app === 'b')).toBe(true);
    expect(dropper.seen.some((line) => line.startsWith('POST /predict'))).toBe(true);
  });
});
