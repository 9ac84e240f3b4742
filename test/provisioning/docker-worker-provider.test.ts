import { createServer, type Server } from 'node:net';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { composeProject } from '../../provisioning/src/compose-launcher.js';
import type { ProvisionConfig } from '../../provisioning/src/config.js';
import { createWorkerProvider } from '../../provisioning/src/create-provider.js';
import { portAnswers, probeHealth } from '../../provisioning/src/wait-healthy.js';
import type { WorkerProvider } from '../../provisioning/src/worker-provider.js';
import { DockerDriver } from '../../runtime/src/docker-driver.js';
import { LABELS } from '../../runtime/src/driver.js';
import { tempCluster, type TempCluster } from '../helpers/cluster.js';
import { buildWorkerImage, ENGINE_SETUP_TIMEOUT_MS, ensureDockerEngine, healthSpec, removeDockerObjects, removeLabelled, runOk, uniqueName } from '../helpers/docker.js';

// The Docker runtime one worker at a time: each worker a compose project of docker-compose.worker.yml
// on the real engine, as `npm run provision -- --runtime docker` makes them. Everything carries
// this run's cluster label and is removed afterwards, whatever happened.
const image = `inference-worker:${uniqueName('dwp')}`;
const clusterName = uniqueName('dwp').replace(/[^a-z0-9-]/g, '').slice(0, 40);
const clusterLabel = { [LABELS.cluster]: clusterName };
let cluster: TempCluster;
let config: ProvisionConfig;
let provider: WorkerProvider;
const driver = new DockerDriver({ connection: {} });

/** Ids of the containers of a compose project, running or not, as the engine lists them. */
async function projectContainers(project: string): Promise<string[]> {
  const { stdout } = await runOk('docker', ['ps', '-aq', '--no-trunc', '--filter', `label=com.docker.compose.project=${project}`]);
  return stdout.split('\n').filter(Boolean).sort();
}

beforeAll(async () => {
  await ensureDockerEngine();
  await buildWorkerImage(image);
  cluster = await tempCluster(3);
  config = cluster.config({ runtime: 'docker', workerImage: image, cluster: clusterName, workers: 1 });
  provider = createWorkerProvider(config, pino({ level: 'silent' }), { env: process.env });
}, ENGINE_SETUP_TIMEOUT_MS + 300_000);

afterAll(async () => {
  await removeLabelled(driver, clusterLabel);
  await removeDockerObjects([], [image]);
  await cluster?.cleanup();
}, 120_000);

describe('LocalWorkerProvider on the Docker engine (compose projects)', () => {
  it('launches w2 as compose project <cluster>-w2 on its port range, answering /health as itself; again it is adopted', { timeout: 120_000 }, async () => {
    expect(provider.kind).toBe('docker');
    const launched = await provider.launch('w2');

    const first = cluster.basePort + 10;
    expect(launched.adopted).toBe(false);
    expect(launched.worker).toMatchObject({ id: 'w2', provider: 'local', runtime: { driver: 'docker' }, state: 'up', ports: { first, last: first + 9 }, template: { image } });
    expect(launched.containers.map((c) => [c.id, c.port, c.state])).toEqual([
      [`w2-${first}`, first, 'free'],
      [`w2-${first + 1}`, first + 1, 'free'],
    ]);
    for (const c of launched.containers) expect(await probeHealth({ name: c.id, host: c.host, port: c.port }, '/health')).toEqual({ ok: true });
    const { requestedAt, runningAt, healthyAt } = launched.timings;
    expect(requestedAt).toBeLessThanOrEqual(runningAt);
    expect(runningAt).toBeLessThanOrEqual(healthyAt);
    // Read back from the engine: the project holds exactly these containers, labelled with the cluster and the worker.
    expect(await projectContainers(composeProject(clusterName, 'w2'))).toEqual(launched.containers.map((c) => c.runtimeId).sort());
    const labelled = await driver.list({ ...clusterLabel, [LABELS.worker]: 'w2' });
    expect(labelled.map((info) => [info.runtimeId, info.labels[LABELS.container]]).sort()).toEqual(launched.containers.map((c) => [c.runtimeId, c.id]).sort());
    expect(await provider.list()).toEqual(['w2']);

    const again = await provider.launch('w2');
    expect(again.adopted).toBe(true);
    expect(again.containers.map((c) => c.runtimeId)).toEqual(launched.containers.map((c) => c.runtimeId));
  });

  it('releases w2: its project down, a container added to it outside the project removed too, its ports closed; again a no-op', { timeout: 120_000 }, async () => {
    const launched = await provider.launch('w2');
    // As the orchestrator adds one to a worker: through the driver, labelled with the cluster and the worker.
    const added = await driver.start(healthSpec(`w2-${cluster.basePort + 12}`, cluster.basePort + 12, { ...clusterLabel, [LABELS.worker]: 'w2' }));

    await provider.release('w2');

    expect(await projectContainers(composeProject(clusterName, 'w2'))).toEqual([]);
    expect(await driver.inspect(added.runtimeId)).toBeNull();
    for (const c of launched.containers) expect(await portAnswers(c.host, c.port)).toBe(false);
    expect(await provider.list()).toEqual([]);
    await provider.release('w2');
    expect(await driver.list(clusterLabel)).toEqual([]);
  });

  it('a compose up that fails half-way (an engine without GPUs refuses the start) leaves nothing of the worker', { timeout: 60_000 }, async () => {
    const gpus = createWorkerProvider(cluster.config({ runtime: 'docker', workerImage: image, cluster: clusterName, workers: 1, gpus: 'all' }), pino({ level: 'silent' }), { env: process.env });

    await expect(gpus.launch('w3')).rejects.toMatchObject({ code: 'GPU_UNAVAILABLE' });

    // Compose created the containers before the engine refused to start them: none is left behind.
    expect(await projectContainers(composeProject(clusterName, 'w3'))).toEqual([]);
  });

  it('refuses a port another program holds (PORT_IN_USE), creating nothing', { timeout: 60_000 }, async () => {
    const squatter: Server = createServer((socket) => socket.destroy());
    await new Promise<void>((resolve, reject) => squatter.once('error', reject).listen(cluster.basePort + 21, '127.0.0.1', resolve));
    try {
      await expect(provider.launch('w3')).rejects.toMatchObject({ code: 'PORT_IN_USE' });
      expect(await projectContainers(composeProject(clusterName, 'w3'))).toEqual([]);
      expect(await driver.list({ ...clusterLabel, [LABELS.worker]: 'w3' })).toEqual([]);
    } finally {
      await new Promise((resolve) => squatter.close(resolve));
    }
  });
});
