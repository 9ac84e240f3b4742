import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { LABELS, MODEL_HOST_ENV, type ContainerSpec } from '../../runtime/src/driver.js';
import { ProcessDriver } from '../../runtime/src/process-driver.js';
import { FAKE_WORKER_COMMAND, killGroups, pidAlive, pidsGone, processEnvironment } from '../helpers/processes.js';
import { freeBasePort } from '../../common/src/free-ports.js';
import { pollUntil } from '../../common/src/poll-until.js';

const HOST = '127.0.0.1';

async function health(port: number): Promise<{ status: number; body: unknown }> {
  let last: unknown;
  return pollUntil(
    async () => {
      try {
        // No keep-alive: a pooled connection to a killed server keeps its port busy (FIN-WAIT) for the next test.
        const res = await request(`http://${HOST}:${port}/health`, { reset: true, headersTimeout: 1_000, bodyTimeout: 1_000 });
        return { status: res.statusCode, body: await res.body.json() };
      } catch (error) {
        last = error;
        return undefined;
      }
    },
    { timeoutMs: 10_000, intervalMs: 50, onTimeout: () => last as Error },
  );
}

describe('ProcessDriver', () => {
  let dir: string;
  let basePort: number;
  const started = new Set<number>();
  let driver: ProcessDriver;

  const spec = (name: string, port: number, cluster = 'test'): ContainerSpec => ({
    name,
    host: HOST,
    port,
    env: { WORK_MS: '0' },
    labels: { [LABELS.cluster]: cluster, [LABELS.container]: name, [LABELS.port]: String(port) },
  });
  const start = async (s: ContainerSpec) => {
    const info = await driver.start(s);
    started.add(Number(info.runtimeId));
    return info;
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'process-driver-'));
    basePort = await freeBasePort([0, 1, 2]);
  });
  afterEach(async () => {
    vi.unstubAllEnvs();
    // Whatever a test left running, even when it failed half-way; wait so its port is free again.
    killGroups(started);
    await pidsGone([...started]);
    started.clear();
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('starts a detached process that is running and answers /health with its name', async () => {
    driver = new ProcessDriver({ stateDir: join(dir, 'run-a'), logDir: join(dir, 'logs'), command: FAKE_WORKER_COMMAND });
    const info = await start(spec('w1-a', basePort));
    expect(info).toMatchObject({ name: 'w1-a', state: 'running', host: HOST, port: basePort });
    expect(pidAlive(Number(info.runtimeId))).toBe(true);

    const res = await health(basePort);
    expect(res).toMatchObject({ status: 200, body: { status: 'ok', container: 'w1-a' } });
    expect((await driver.inspect(info.runtimeId))?.state).toBe('running');

    const entry = JSON.parse(await readFile(join(dir, 'run-a', 'w1-a.json'), 'utf8'));
    expect(entry).toMatchObject({ pid: Number(info.runtimeId), name: 'w1-a', host: HOST, port: basePort, command: FAKE_WORKER_COMMAND });
    expect(typeof entry.startedAt).toBe('string');
  });

  it('lists by labels, also from a new instance over the same stateDir', async () => {
    driver = new ProcessDriver({ stateDir: join(dir, 'run-b'), command: FAKE_WORKER_COMMAND });
    const one = await start(spec('w1-b', basePort, 'alpha'));
    await start(spec('w2-b', basePort + 1, 'beta'));

    const again = new ProcessDriver({ stateDir: join(dir, 'run-b') });
    const alpha = await again.list({ [LABELS.cluster]: 'alpha' });
    expect(alpha).toHaveLength(1);
    expect(alpha[0]).toMatchObject({ runtimeId: one.runtimeId, name: 'w1-b', state: 'running', port: basePort });
    expect(await again.list({})).toHaveLength(2);
    expect(await again.list({ [LABELS.cluster]: 'gamma' })).toEqual([]);
  });

  it('stops the process group: exited afterwards and the pid is gone; stopping again is fine', async () => {
    driver = new ProcessDriver({ stateDir: join(dir, 'run-c'), command: FAKE_WORKER_COMMAND });
    const info = await start(spec('w1-c', basePort));
    await health(basePort);

    await driver.stop(info.runtimeId, { timeoutMs: 3_000 });
    expect(await pidsGone([Number(info.runtimeId)])).toBe(true);
    expect((await driver.inspect(info.runtimeId))?.state).toBe('exited');
    await driver.stop(info.runtimeId);

    await driver.remove(info.runtimeId);
    expect(await driver.inspect(info.runtimeId)).toBeNull();
    await driver.remove(info.runtimeId);
  });

  it('kills a process that ignores SIGTERM after timeoutMs', async () => {
    driver = new ProcessDriver({
      stateDir: join(dir, 'run-d'),
      command: [process.execPath, '-e', "process.on('SIGTERM', () => {}); setInterval(() => {}, 1000)"],
    });
    const info = await start(spec('stubborn', basePort));
    // Let node install its SIGTERM handler before we send it.
    await new Promise((resolve) => setTimeout(resolve, 300));

    const before = Date.now();
    await driver.stop(info.runtimeId, { timeoutMs: 300 });
    expect(Date.now() - before).toBeGreaterThanOrEqual(300);
    expect(await pidsGone([Number(info.runtimeId)])).toBe(true);
  });

  it('refuses a port something already listens on with PORT_IN_USE', async () => {
    driver = new ProcessDriver({ stateDir: join(dir, 'run-e'), command: FAKE_WORKER_COMMAND });
    const blocker: Server = createServer();
    await new Promise<void>((resolve) => blocker.listen(basePort + 2, HOST, resolve));
    try {
      await expect(driver.start(spec('w1-e', basePort + 2))).rejects.toMatchObject({ code: 'PORT_IN_USE' });
      expect(await driver.list({})).toEqual([]);
    } finally {
      blocker.close();
    }
  });

  it('refuses to start a second process under a running name with CONTAINER_EXISTS', async () => {
    driver = new ProcessDriver({ stateDir: join(dir, 'run-f'), command: FAKE_WORKER_COMMAND });
    await start(spec('w1-f', basePort));
    await expect(driver.start(spec('w1-f', basePort + 1))).rejects.toMatchObject({ code: 'CONTAINER_EXISTS' });
  });

  it('does not take a live pid running another program for its own, nor signal it', async () => {
    const stateDir = join(dir, 'run-g');
    driver = new ProcessDriver({ stateDir, command: FAKE_WORKER_COMMAND });
    // A registry entry whose pid was reused by another program: here, this test runner itself.
    const info = await start(spec('w1-g', basePort));
    await driver.stop(info.runtimeId);
    const entry = JSON.parse(await readFile(join(stateDir, 'w1-g.json'), 'utf8'));
    await writeFile(join(stateDir, 'w1-g.json'), JSON.stringify({ ...entry, pid: process.pid }));

    const reused = await driver.inspect(String(process.pid));
    expect(reused?.state).toBe('exited');
    expect((await driver.list({}))[0]?.state).toBe('exited');
    await driver.stop(String(process.pid), { timeoutMs: 100 });
    expect(pidAlive(process.pid)).toBe(true);
    // remove() must only forget it, and must not kill us either.
    await driver.remove(String(process.pid));
    expect(await driver.list({})).toEqual([]);
  });

  it('reports SPAWN_FAILED when the command does not exist', async () => {
    driver = new ProcessDriver({ stateDir: join(dir, 'run-h'), command: [join(dir, 'no-such-program')] });
    await expect(driver.start(spec('w1-h', basePort))).rejects.toMatchObject({ code: 'SPAWN_FAILED' });
    expect(await driver.list({})).toEqual([]);
  });

  it("gives the process the allow-listed host variables and the spec's env, and nothing else of the caller's environment", async () => {
    // What an orchestrator's environment holds besides a program's basics: its token, cloud credentials, its own Node options.
    const callerOnly = {
      ORCH_ADMIN_TOKEN: 'admin-token-0123456789abcdef',
      AWS_ACCESS_KEY_ID: 'AKIATESTKEY0123456789',
      AWS_SECRET_ACCESS_KEY: 'secret-access-key-0123456789',
      NODE_OPTIONS: '--max-old-space-size=256',
      LOG_LEVEL: 'trace',
      MODEL_ENV_CANARY: 'canary-0123456789',
    };
    for (const [name, value] of Object.entries(callerOnly)) vi.stubEnv(name, value);
    vi.stubEnv('HOME', dir);
    vi.stubEnv('TMPDIR', dir);
    vi.stubEnv('TZ', 'UTC');
    vi.stubEnv('LANG', 'C.UTF-8');
    driver = new ProcessDriver({ stateDir: join(dir, 'run-j'), command: FAKE_WORKER_COMMAND });
    // The template may set a host variable (it wins) but never where the container listens or its name.
    const info = await start({ ...spec('w1-j', basePort), env: { WORK_MS: '7', LANG: 'en_GB.UTF-8', PORT: '1', CONTAINER_ID: 'other' } });
    await health(basePort);

    const env = await processEnvironment(Number(info.runtimeId));
    for (const name of Object.keys(callerOnly)) expect(env, name).not.toHaveProperty(name);
    expect(env).toMatchObject({ PATH: process.env.PATH, HOME: dir, TMPDIR: dir, TZ: 'UTC', LANG: 'en_GB.UTF-8' });
    const hostNames = MODEL_HOST_ENV.filter((name) => process.env[name] !== undefined);
    expect(Object.keys(env).sort()).toEqual([...new Set([...hostNames, 'WORK_MS', 'LANG', 'HOST', 'PORT', 'CONTAINER_ID', 'FLASK_RUN_HOST', 'FLASK_RUN_PORT'])].sort());
    expect(env).toMatchObject({ WORK_MS: '7', HOST, PORT: String(basePort), CONTAINER_ID: 'w1-j', FLASK_RUN_HOST: HOST, FLASK_RUN_PORT: String(basePort) });
  });

  it('reports REGISTRY_INVALID for an unreadable registry entry instead of forgetting a process', async () => {
    const stateDir = join(dir, 'run-i');
    driver = new ProcessDriver({ stateDir, command: FAKE_WORKER_COMMAND });
    await start(spec('w1-i', basePort));
    await writeFile(join(stateDir, 'w1-i.json'), '{ not json');
    await expect(driver.list({})).rejects.toMatchObject({ code: 'REGISTRY_INVALID' });
  });
});
