import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freeBasePort } from '../../common/src/free-ports.js';
import { Compose } from '../../provisioning/src/compose.js';
import { composeLauncher } from '../../provisioning/src/compose-launcher.js';
import { loadProvisionConfig } from '../../provisioning/src/config.js';
import { desiredLayout } from '../../provisioning/src/inventory.js';
import { DockerDriver } from '../../runtime/src/docker-driver.js';
import { LABELS } from '../../runtime/src/driver.js';
import { GpuUnavailableError } from '../../runtime/src/errors.js';
import { ProcessDriver } from '../../runtime/src/process-driver.js';
import {
  ENGINE_SETUP_TIMEOUT_MS,
  HEALTH_SERVER_COMMAND,
  NODE_BASE_IMAGE,
  ensureDockerEngine,
  health,
  healthSpec,
  inspect,
  removeDockerObjects,
  removeLabelled,
  runLabels,
  runOk,
  uniqueName,
} from '../helpers/docker.js';

const SOCKET = '/var/run/docker.sock';
const MIB = 1024 * 1024;

/**
 * A recording proxy in front of the real engine: it refuses a GPU request only at start, and the
 * driver then removes the container, so what the driver asked for can only be read on the way.
 */
async function recordingProxy(socketPath: string): Promise<{ server: Server; creates: any[] }> {
  const creates: any[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      if (req.method === 'POST' && /\/containers\/create/.test(req.url ?? '')) creates.push(JSON.parse(body.toString('utf8')));
      const upstream = request({ socketPath: SOCKET, path: req.url, method: req.method, headers: req.headers }, (answer: IncomingMessage) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      });
      upstream.on('error', (error) => res.destroy(error));
      upstream.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return { server, creates };
}

describe('container resources on a real Docker engine', () => {
  const labels = runLabels('res');
  // runLabels' value is `res-<uuid>`: 40 characters, a valid cluster name, so compose-started containers carry it too.
  const cluster = labels[LABELS.cluster]!;
  const suffix = cluster.slice(-8);
  // The worker compose file runs the image's own command: give the health server one.
  const image = `resources-health:${uniqueName('res')}`;
  let driver: DockerDriver;
  let basePort: number;
  let dir: string;

  beforeAll(async () => {
    await ensureDockerEngine();
    driver = new DockerDriver({ connection: { socketPath: SOCKET } });
    basePort = await freeBasePort([0, 1, 100, 101]);
    dir = await mkdtemp(join(tmpdir(), 'docker-resources-'));
    await writeFile(join(dir, 'Dockerfile'), `FROM ${NODE_BASE_IMAGE}\nCMD ${JSON.stringify(HEALTH_SERVER_COMMAND)}\n`);
    await runOk('docker', ['build', '-q', '--network', 'host', '-t', image, dir], { env: { ...process.env, DOCKER_BUILDKIT: '0' }, timeoutMs: 120_000 });
  }, ENGINE_SETUP_TIMEOUT_MS + 120_000);

  afterAll(async () => {
    if (driver) await removeLabelled(driver, labels);
    await removeDockerObjects([], [image]);
    if (dir) await rm(dir, { recursive: true, force: true });
  }, 60_000);

  it('DockerDriver.start applies cpus and memoryMb: the engine reports NanoCpus and Memory, and the app runs', async () => {
    const info = await driver.start({ ...healthSpec(`res-${suffix}-a`, basePort, labels), resources: { cpus: 0.5, memoryMb: 64 } });

    const { HostConfig } = await inspect(info.runtimeId);
    expect(HostConfig).toMatchObject({ NanoCpus: 500_000_000, Memory: 64 * MIB, DeviceRequests: null });
    expect(await health(basePort)).toMatchObject({ status: 200 });
    await driver.remove(info.runtimeId);
  });

  it('DockerDriver.start sends a GPU request as DeviceRequests; an engine without GPUs refuses it with GPU_UNAVAILABLE and nothing is left', async () => {
    const socketPath = join(dir, 'recording.sock');
    const { server, creates } = await recordingProxy(socketPath);
    try {
      const recorded = new DockerDriver({ connection: { socketPath } });
      for (const [gpus, count] of [['all', -1], [2, 2]] as const) {
        const start = recorded.start({ ...healthSpec(`res-${suffix}-gpu`, basePort, labels), resources: { gpus } });

        await expect(start).rejects.toBeInstanceOf(GpuUnavailableError);
        await expect(start).rejects.toMatchObject({ code: 'GPU_UNAVAILABLE' });
        expect(creates.at(-1).HostConfig.DeviceRequests).toEqual([{ Driver: 'nvidia', Count: count, Capabilities: [['gpu']] }]);
        expect(await driver.list(labels)).toEqual([]);
      }
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('compose-started workers (docker-compose.worker.yml through the compose launcher) get the config\'s cpus and memoryMb on both containers', { timeout: 120_000 }, async () => {
    const config = loadProvisionConfig({ env: {}, flags: { cluster, runtime: 'docker', workerImage: image, workers: '1', basePort: String(basePort), cpus: '0.25', memoryMb: '96' } });
    const started = new Map<string, string>();

    await composeLauncher(new Compose(process.env), driver, config).launch(desiredLayout(config)[0]!.containers, (name, runtimeId) => started.set(name, runtimeId));

    expect([...started.keys()].sort()).toEqual([`w1-${basePort}`, `w1-${basePort + 1}`]);
    for (const runtimeId of started.values()) {
      expect((await inspect(runtimeId)).HostConfig).toMatchObject({ NanoCpus: 250_000_000, Memory: 96 * MIB });
    }
    for (const port of [basePort, basePort + 1]) expect(await health(port)).toMatchObject({ status: 200 });
  });

  it('compose with the GPU override (gpus all) is refused by an engine without GPUs with GPU_UNAVAILABLE', { timeout: 120_000 }, async () => {
    // Ports of another worker, so the containers of the test above stay as they are.
    const config = loadProvisionConfig({ env: {}, flags: { cluster, runtime: 'docker', workerImage: image, workers: '2', basePort: String(basePort), gpus: 'all' } });

    const launch = composeLauncher(new Compose(process.env), driver, config).launch(desiredLayout(config)[1]!.containers, () => {});

    await expect(launch).rejects.toBeInstanceOf(GpuUnavailableError);
    await expect(launch).rejects.toMatchObject({ code: 'GPU_UNAVAILABLE', cause: { code: 'COMPOSE_FAILED' } });
    expect((await driver.list({ ...labels, [LABELS.worker]: 'w2' })).filter((container) => container.state === 'running')).toEqual([]);
  });
});

describe('resources on the process runtime', () => {
  it('ProcessDriver refuses a spec with resources (RESOURCES_UNSUPPORTED) rather than run it unlimited, starting nothing', async () => {
    const stateDir = await mkdtemp(join(tmpdir(), 'process-resources-'));
    try {
      const processes = new ProcessDriver({ stateDir });
      const spec = { name: 'limited', host: '127.0.0.1', port: await freeBasePort([0]), env: {}, labels: {}, resources: { memoryMb: 64 } };

      await expect(processes.start(spec)).rejects.toMatchObject({ code: 'RESOURCES_UNSUPPORTED' });
      expect(await processes.list({})).toEqual([]);
    } finally {
      await rm(stateDir, { recursive: true, force: true });
    }
  });
});
