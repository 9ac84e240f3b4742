import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LoadResult } from '../../load/src/run-load.js';
import { LABELS } from '../../runtime/src/driver.js';
import { run, runEntry } from '../helpers/cli.js';
import { tempCluster, type TempCluster } from '../helpers/cluster.js';
import {
  buildWorkerImage,
  ENGINE_SETUP_TIMEOUT_MS,
  ensureDockerEngine,
  NODE_BASE_IMAGE,
  poll,
  removeDockerObjects,
  runOk,
  uniqueName,
} from '../helpers/docker.js';
import { cleanEnv as env, containerHealth, liveStatus, readState, startOrchestrator, type OrchestratorProcess } from '../helpers/orchestrator-process.js';

// The Docker path end to end, as a user runs it: build the image, provision W=2 workers with
// docker-compose.worker.yml, serve load through the orchestrator, kill a container under load,
// restart the orchestrator, tear down. Everything carries this run's cluster label and is
// removed afterwards, whatever happened.
const image = `inference-worker:${uniqueName('e2e')}`;
const clusterName = uniqueName('e2e').replace(/[^a-z0-9-]/g, '').slice(0, 40);
let cluster: TempCluster;
let orchestrator: OrchestratorProcess | undefined;
/** A container that is not ours: teardown must leave it alone. */
const bystander = uniqueName('bystander');

const provisionFlags = () => ['--runtime', 'docker', '--worker-image', image, '--cluster', clusterName, ...cluster.cliFlags];

async function labelledContainers(): Promise<string[]> {
  const { stdout } = await runOk('docker', ['ps', '-aq', '--no-trunc', '--filter', `label=${LABELS.cluster}=${clusterName}`]);
  return stdout.split('\n').filter(Boolean).sort();
}

async function stopOrchestrator(): Promise<number | null> {
  if (!orchestrator) return null;
  const { child, exited } = orchestrator;
  orchestrator = undefined;
  if (child.exitCode === null) child.kill('SIGTERM');
  return exited;
}

beforeAll(async () => {
  await ensureDockerEngine();
  await buildWorkerImage(image);
  cluster = await tempCluster(2);
}, ENGINE_SETUP_TIMEOUT_MS + 300_000);

afterAll(async () => {
  if (orchestrator?.child.exitCode === null) orchestrator.child.kill('SIGKILL');
  if (cluster) {
    await runEntry('provisioning/src/main.ts', ['teardown', ...provisionFlags()], { env, timeoutMs: 120_000 });
    await cluster.cleanup();
  }
  await removeDockerObjects([...(await labelledContainers()), bystander], [image]);
}, 180_000);

describe('a Docker cluster from docker-compose.worker.yml', () => {
  it('refuses an image the engine lacks with one line, starting nothing and writing no inventory', { timeout: 60_000 }, async () => {
    const missing = await runEntry('provisioning/src/main.ts', ['provision', ...provisionFlags(), '--worker-image', `${image}-missing`], { env });
    expect(missing.code).toBe(1);
    expect(missing.stderr.trim().split('\n')).toEqual([expect.stringMatching(/IMAGE_NOT_FOUND/)]);
    expect(await labelledContainers()).toEqual([]);
    await expect(readFile(cluster.statePath, 'utf8')).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('provisions 2 workers × 2 containers, and a re-run keeps them', { timeout: 240_000 }, async () => {
    const first = await runEntry('provisioning/src/main.ts', ['provision', ...provisionFlags()], { env, timeoutMs: 180_000 });
    expect(first.code, first.stderr).toBe(0);
    const inventory = await readState(cluster.statePath);
    expect(inventory.workers.map((w) => w.runtime)).toEqual([{ driver: 'docker' }, { driver: 'docker' }]);
    expect(inventory.containers.map((c) => c.port)).toEqual([0, 1, 10, 11].map((offset) => cluster.basePort + offset));
    const ids = inventory.containers.map((c) => c.runtimeId!).sort();
    expect(await labelledContainers()).toEqual(ids);
    // Each container is the one the inventory names, answering as itself on its port.
    for (const c of inventory.containers) expect((await containerHealth(`http://${c.host}:${c.port}`)).container).toBe(c.id);

    const again = await runEntry('provisioning/src/main.ts', ['provision', ...provisionFlags()], { env, timeoutMs: 180_000 });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain('4 kept');
    expect((await readState(cluster.statePath)).containers.map((c) => c.runtimeId!).sort()).toEqual(ids);
    expect(await labelledContainers()).toEqual(ids);
  });

  it('serves 400 requests at concurrency 16 over every container, losing none when one is killed mid-run', { timeout: 180_000 }, async () => {
    const inventory = await readState(cluster.statePath);
    orchestrator = await startOrchestrator(cluster.statePath);
    const { url } = orchestrator;
    expect((await liveStatus(url)).containers.map((c) => c.state)).toEqual(['free', 'free', 'free', 'free']);

    const resultPath = join(cluster.dir, 'load.json');
    const loading = runEntry(
      'load/src/main.ts',
      ['--url', `${url}/new_request`, '--requests', '400', '--threads', '2', '--concurrency', '16', '--json', resultPath, '--no-progress'],
      { env, timeoutMs: 150_000 },
    );
    const victim = inventory.containers[2]!;
    for (;;) {
      const live = await liveStatus(url);
      if ((live.counters?.completed ?? 0) > 40 && live.containers.find((c) => c.id === victim.id)?.state === 'busy') break;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await runOk('docker', ['kill', victim.runtimeId!]);

    const load = await loading;
    expect(load.code, load.stderr).toBe(0);
    const result = JSON.parse(await readFile(resultPath, 'utf8')) as LoadResult;
    expect(result.statusCodes).toEqual({ '200': 400 });
    expect(Object.keys(result.servedBy).sort()).toEqual(inventory.containers.map((c) => c.id).sort());
    const live = await liveStatus(url);
    expect(live.counters).toMatchObject({ failed: 0 });
    expect(live.counters?.redispatched).toBeGreaterThanOrEqual(1);
    for (const c of inventory.containers.filter((c) => c !== victim)) {
      expect((await containerHealth(`http://${c.host}:${c.port}`)).maxInFlight).toBe(1);
    }
    // The killed container is replaced by a new one on the same port, which serves.
    const healed = await poll(async () => {
      const record = (await liveStatus(url)).containers.find((c) => c.id === victim.id);
      return record?.restarts === 1 && record.state === 'free' ? record : undefined;
    }, `${victim.id} replaced`);
    expect(healed.runtimeId).not.toBe(victim.runtimeId);
    expect((await containerHealth(`http://${victim.host}:${victim.port}`)).container).toBe(victim.id);
    expect(await labelledContainers()).toHaveLength(4);
  });

  it('on restart, reconciles with the engine: every container found again, none started twice', { timeout: 60_000 }, async () => {
    const before = await labelledContainers();
    expect(await stopOrchestrator()).toBe(0);
    const inventory = await readState(cluster.statePath);
    expect(inventory.containers.map((c) => c.runtimeId).sort()).toEqual(before);

    orchestrator = await startOrchestrator(cluster.statePath);
    const live = await liveStatus(orchestrator.url);
    expect(live.containers.map((c) => [c.id, c.runtimeId, c.state]).sort()).toEqual(inventory.containers.map((c) => [c.id, c.runtimeId, 'free']).sort());
    expect(await labelledContainers()).toEqual(before);
  });

  it('tears down exactly the cluster\'s containers, leaving the rest of the engine alone', { timeout: 120_000 }, async () => {
    await stopOrchestrator();
    await runOk('docker', ['run', '-d', '--name', bystander, '--network', 'host', NODE_BASE_IMAGE, 'node', '-e', 'setInterval(() => {}, 1000)']);
    const teardown = await runEntry('provisioning/src/main.ts', ['teardown', ...provisionFlags()], { env, timeoutMs: 120_000 });
    expect(teardown.code, teardown.stderr).toBe(0);
    expect(await labelledContainers()).toEqual([]);
    expect((await readState(cluster.statePath)).containers).toEqual([]);
    const survivor = await run('docker', ['inspect', '--format', '{{.State.Running}}', bystander]);
    expect(survivor.stdout.trim()).toBe('true');
  });
});
