import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { judgeHealth, PROBE_CONCURRENCY, portAnswers, probeHealth, waitHealthy, type HealthTarget } from '../../provisioning/src/wait-healthy.js';

const servers: Server[] = [];

/** A /health server on a free port answering as `container` once `readyAfterMs` passed. */
async function healthServer(container: string, readyAfterMs = 0): Promise<number> {
  const readyAt = Date.now() + readyAfterMs;
  const server = createServer((_req, res) => {
    if (Date.now() < readyAt) return void res.writeHead(503).end();
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ status: 'ok', container }));
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

const target = (name: string, port: number): HealthTarget => ({ name, host: '127.0.0.1', port });

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
});

describe('waitHealthy', () => {
  it('resolves once every target answers as itself, reporting progress as the count grows', async () => {
    const targets = [target('a', await healthServer('a')), target('b', await healthServer('b', 300))];
    const progress: string[] = [];
    await waitHealthy(targets, { healthPath: '/health', timeoutMs: 5_000, intervalMs: 50, onProgress: (healthy, total) => progress.push(`${healthy}/${total}`) });
    expect(progress).toEqual(['1/2', '2/2']);
  });

  it('does not take a port answered by another container for healthy, and names it on timeout', async () => {
    const targets = [target('a', await healthServer('a')), target('b', await healthServer('someone-else'))];
    const error = await waitHealthy(targets, { healthPath: '/health', timeoutMs: 300, intervalMs: 50 }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'HEALTH_TIMEOUT' });
    expect((error as { pending: string[] }).pending).toHaveLength(1);
    expect((error as { pending: string[] }).pending[0]).toMatch(/^b: /);
  });

  it('gives up on a target whose process is gone without waiting for the timeout', async () => {
    const before = Date.now();
    const error = waitHealthy([target('dead', 1)], { healthPath: '/health', timeoutMs: 10_000, intervalMs: 50, exited: async () => 'exit code 1' });
    await expect(error).rejects.toMatchObject({ code: 'CONTAINER_EXITED' });
    expect(Date.now() - before).toBeLessThan(5_000);
  });

  it(`probes at most ${PROBE_CONCURRENCY} containers at once, however many there are`, async () => {
    // One slow app behind many names (it reports no identity), counting the probes it holds at once.
    let inFlight = 0;
    let most = 0;
    const server = createServer((_req, res) => {
      most = Math.max(most, ++inFlight);
      setTimeout(() => {
        inFlight--;
        res.writeHead(204).end();
      }, 50);
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    const targets = Array.from({ length: 3 * PROBE_CONCURRENCY }, (_, i) => target(`c${i}`, port));
    await waitHealthy(targets, { healthPath: '/healthz', timeoutMs: 10_000, intervalMs: 50 });
    expect(most).toBe(PROBE_CONCURRENCY);
  });

  it("probes with the caller's probe (EC2: through SSH) and fails with the caller's error, naming each one pending and why", async () => {
    const probed: string[] = [];
    const probe = async (t: HealthTarget) => {
      probed.push(t.name);
      return t.name === 'up' ? ({ ok: true } as const) : ({ ok: false, reason: 'through SSH: refused' } as const);
    };
    const error = await waitHealthy([target('up', 1), target('down', 2)], {
      healthPath: '/health',
      probe,
      timeoutMs: 200,
      intervalMs: 50,
      onTimeout: (pending) => Object.assign(new Error(pending.map((p) => `${p.target.name}: ${p.reason}`).join(', ')), { code: 'MINE' }),
    }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'MINE', message: 'down: through SSH: refused' });
    // A healthy one is not probed again.
    expect(probed.filter((name) => name === 'up')).toEqual(['up']);
  });

  it('stops waiting when aborted', async () => {
    const controller = new AbortController();
    // Aborted while it waits, whenever that is: the signal is what is tested.
    setTimeout(() => controller.abort(), 100);
    await expect(waitHealthy([target('never', 1)], { healthPath: '/health', timeoutMs: 10_000, intervalMs: 50, signal: controller.signal })).rejects.toMatchObject({
      code: 'ABORTED',
    });
  });
});

describe('what counts as healthy', () => {
  const a = target('w1-5000', 5000);

  it.each([
    ['a 200 naming the container', 200, '{"status":"ok","container":"w1-5000"}'],
    ['a 204 with no body', 204, ''],
    ['a 200 in plain text', 200, 'OK'],
    ['a JSON answer with no identity', 200, '{"status":"ready"}'],
    ['a JSON array', 200, '[1]'],
  ])('%s is healthy', (_what, status, body) => {
    expect(judgeHealth(a, status, body)).toEqual({ ok: true });
  });

  it.each([
    ['a 200 naming another container', 200, '{"container":"w2-5000"}', 'answered as container "w2-5000"'],
    ['a 200 naming no container (null)', 200, '{"container":null}', 'answered as container null'],
    ['a redirect', 302, '', 'answered HTTP 302'],
    ['a 503', 503, '{"container":"w1-5000"}', 'answered HTTP 503'],
  ])('%s is not', (_what, status, body, reason) => {
    expect(judgeHealth(a, status, body)).toEqual({ ok: false, reason });
  });

  it('probes the path it is given, and only that one', async () => {
    const paths: string[] = [];
    const server = createServer((req, res) => {
      paths.push(req.url ?? '');
      res.writeHead(req.url === '/api/v1/_health' ? 200 : 404).end();
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const app = target('app', (server.address() as AddressInfo).port);
    expect(await probeHealth(app, '/api/v1/_health')).toEqual({ ok: true });
    expect(await probeHealth(app, '/health')).toEqual({ ok: false, reason: 'answered HTTP 404' });
    expect(paths).toEqual(['/api/v1/_health', '/health']);
  });

  it('tells a port something answers on from a closed one', async () => {
    const port = await healthServer('x');
    expect(await portAnswers('127.0.0.1', port)).toBe(true);
    await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
    expect(await portAnswers('127.0.0.1', port)).toBe(false);
  });
});
