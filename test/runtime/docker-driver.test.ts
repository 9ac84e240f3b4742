import { createServer, type Server } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { DockerDriver } from '../../runtime/src/docker-driver.js';
import { LABELS } from '../../runtime/src/driver.js';
import { NODE_BASE_IMAGE, ensureDockerEngine, health, healthSpec, inspect, removeLabelled, runLabels } from '../helpers/docker.js';
import { freeBasePort } from '../../common/src/free-ports.js';

const SOCKET = '/var/run/docker.sock';

describe('DockerDriver over the local socket', () => {
  const labels = runLabels('docker-driver-test');
  const suffix = labels[LABELS.cluster]!.slice(-8);
  let driver: DockerDriver;
  let basePort: number;

  beforeAll(async () => {
    await ensureDockerEngine();
    driver = new DockerDriver({ connection: { socketPath: SOCKET } });
    basePort = await freeBasePort([0, 1, 2, 3]);
  }, 600_000);
  afterEach(async () => {
    vi.unstubAllEnvs();
    await removeLabelled(driver, labels);
  });
  afterAll(async () => {
    if (driver) await removeLabelled(driver, labels);
  });

  it("starts a labelled host-network container that runs and answers /health on 127.0.0.1, with the spec's env and none of the caller's", async () => {
    // Secrets in the starter's environment (as in the orchestrator's) must not reach the container.
    vi.stubEnv('ORCH_ADMIN_TOKEN', 'admin-token-0123456789abcdef');
    vi.stubEnv('AWS_SECRET_ACCESS_KEY', 'secret-access-key-0123456789');
    const spec = { ...healthSpec(`dd-${suffix}-a`, basePort, labels), env: { WORK_MS: '7' } };
    const info = await driver.start(spec);

    expect(info).toMatchObject({ name: spec.name, state: 'running', host: '127.0.0.1', port: basePort, exitCode: null });
    expect(info.runtimeId).toMatch(/^[0-9a-f]{64}$/);
    expect(info.labels).toMatchObject({ ...labels, [LABELS.container]: spec.name, [LABELS.port]: String(basePort), [LABELS.host]: '127.0.0.1' });
    expect(await health(basePort)).toEqual({ status: 200, body: { status: 'ok', id: spec.name } });
    // What the container was given beyond its image's own ENV.
    const imageEnv = new Set<string>((await inspect(NODE_BASE_IMAGE)).Config.Env ?? []);
    const given = ((await inspect(info.runtimeId)).Config.Env as string[]).filter((entry) => !imageEnv.has(entry));
    expect(given.sort()).toEqual([`CONTAINER_ID=${spec.name}`, 'FLASK_RUN_HOST=127.0.0.1', `FLASK_RUN_PORT=${basePort}`, 'HOST=127.0.0.1', `PORT=${basePort}`, 'WORK_MS=7']);
  });

  it('lists exactly its containers by label, and a new driver instance finds them again', async () => {
    const info = await driver.start(healthSpec(`dd-${suffix}-b`, basePort, labels));

    const listed = await driver.list(labels);
    expect(listed).toHaveLength(1);
    expect(listed[0]).toMatchObject({ runtimeId: info.runtimeId, name: info.name, state: 'running', port: basePort, host: '127.0.0.1' });

    const again = new DockerDriver({ connection: { socketPath: `unix://${SOCKET}` } });
    expect((await again.list(labels)).map((container) => container.runtimeId)).toEqual([info.runtimeId]);
    expect(await again.inspect(info.runtimeId)).toMatchObject({ name: info.name, state: 'running', port: basePort });
    expect(await driver.list({ ...labels, [LABELS.worker]: 'nobody' })).toEqual([]);
  });

  it('stops to exited (twice is fine), then remove makes inspect return null', async () => {
    const info = await driver.start(healthSpec(`dd-${suffix}-c`, basePort, labels));

    await driver.stop(info.runtimeId, { timeoutMs: 2_000 });
    expect(await driver.inspect(info.runtimeId)).toMatchObject({ state: 'exited', exitCode: 0 });
    expect((await driver.list(labels))[0]).toMatchObject({ state: 'exited', exitCode: 0 });
    await driver.stop(info.runtimeId);

    await driver.remove(info.runtimeId);
    expect(await driver.inspect(info.runtimeId)).toBeNull();
    expect(await driver.list(labels)).toEqual([]);
    await driver.remove(info.runtimeId);
    await driver.stop(info.runtimeId);
  });

  it('refuses a second container on a port one of ours already holds (PORT_IN_USE)', async () => {
    await driver.start(healthSpec(`dd-${suffix}-d`, basePort + 1, labels));

    await expect(driver.start(healthSpec(`dd-${suffix}-e`, basePort + 1, labels))).rejects.toMatchObject({ code: 'PORT_IN_USE' });
    expect((await driver.list(labels)).map((container) => container.name)).toEqual([`dd-${suffix}-d`]);
  });

  it('reports PORT_IN_USE and removes the container when the app dies of EADDRINUSE (a listener Docker cannot see)', async () => {
    const server: Server = createServer();
    await new Promise<void>((resolve) => server.listen(basePort + 2, '127.0.0.1', resolve));
    // A generous grace so a loaded machine still sees the crash; the driver stops watching as soon as it exits.
    const patient = new DockerDriver({ connection: { socketPath: SOCKET }, startGraceMs: 10_000 });
    try {
      await expect(patient.start(healthSpec(`dd-${suffix}-f`, basePort + 2, labels))).rejects.toMatchObject({ code: 'PORT_IN_USE' });
      expect(await driver.list(labels)).toEqual([]);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('refuses a name that is already taken, running or stopped (CONTAINER_EXISTS)', async () => {
    const info = await driver.start(healthSpec(`dd-${suffix}-g`, basePort + 3, labels));
    await expect(driver.start(healthSpec(`dd-${suffix}-g`, basePort + 3, labels))).rejects.toMatchObject({ code: 'CONTAINER_EXISTS' });

    await driver.stop(info.runtimeId, { timeoutMs: 1_000 });
    await expect(driver.start(healthSpec(`dd-${suffix}-g`, basePort + 3, labels))).rejects.toMatchObject({ code: 'CONTAINER_EXISTS' });
  });

  it('fails with IMAGE_NOT_FOUND for an image the engine lacks, creating nothing', async () => {
    const spec = { ...healthSpec(`dd-${suffix}-h`, basePort, labels), image: `local/no-such-image:${suffix}` };

    await expect(driver.start(spec)).rejects.toMatchObject({ code: 'IMAGE_NOT_FOUND' });
    expect(await driver.list(labels)).toEqual([]);
  });

  it('ensureImage resolves for an image the engine has and fails with IMAGE_NOT_FOUND, pulling nothing, for one it lacks', async () => {
    await expect(driver.ensureImage(NODE_BASE_IMAGE)).resolves.toBeUndefined();
    await expect(driver.ensureImage(`local/no-such-image:${suffix}`)).rejects.toMatchObject({
      code: 'IMAGE_NOT_FOUND',
      message: expect.stringContaining(`local/no-such-image:${suffix}`),
    });
  });

  it('uses defaultImage when the spec names none', async () => {
    const withDefault = new DockerDriver({ connection: { socketPath: SOCKET }, defaultImage: NODE_BASE_IMAGE });
    const { image: _image, ...spec } = healthSpec(`dd-${suffix}-i`, basePort, labels);

    expect(await withDefault.start(spec)).toMatchObject({ state: 'running' });
    expect(await health(basePort)).toMatchObject({ status: 200 });
  });

  it('fails with ENGINE_UNREACHABLE when the socket does not exist', async () => {
    const nowhere = new DockerDriver({ connection: { socketPath: '/nonexistent/docker.sock' } });

    await expect(nowhere.list(labels)).rejects.toMatchObject({ code: 'ENGINE_UNREACHABLE' });
    await expect(nowhere.start(healthSpec(`dd-${suffix}-j`, basePort, labels))).rejects.toMatchObject({ code: 'ENGINE_UNREACHABLE' });
    await expect(nowhere.inspect('abc')).rejects.toMatchObject({ code: 'ENGINE_UNREACHABLE' });
  });
});
