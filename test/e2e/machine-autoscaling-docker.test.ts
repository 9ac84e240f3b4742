import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LABELS } from '../../runtime/src/driver.js';
import { runEntry } from '../helpers/cli.js';
import { tempCluster, type TempCluster } from '../helpers/cluster.js';
import { buildWorkerImage, ENGINE_SETUP_TIMEOUT_MS, ensureDockerEngine, removeDockerObjects, runOk, uniqueName } from '../helpers/docker.js';
import { growAndShrink, MACHINE_SCALING_FLAGS } from '../helpers/machines.js';
import { cleanEnv as env, startOrchestrator, stopOrchestrator, type OrchestratorProcess } from '../helpers/orchestrator-process.js';

// Workers as compose projects of docker-compose.worker.yml on the real engine: the orchestrator
// launches w2 and w3 as `npm run provision` would, and takes their projects down again.
const image = `inference-worker:${uniqueName('machines')}`;
const clusterName = uniqueName('machines').replace(/[^a-z0-9-]/g, '').slice(0, 40);
let cluster: TempCluster;
let orchestrator: OrchestratorProcess | undefined;

const provisionFlags = () => ['--runtime', 'docker', '--worker-image', image, '--cluster', clusterName, ...cluster.cliFlags];

/** The cluster's containers by worker label, as the engine lists them. */
async function labelledWorkers(): Promise<string[]> {
  const { stdout } = await runOk('docker', ['ps', '-a', '--format', `{{.Label "${LABELS.worker}"}}`, '--filter', `label=${LABELS.cluster}=${clusterName}`]);
  return stdout.split('\n').filter(Boolean).sort();
}

/** The compose projects the cluster's containers belong to (Debian's docker-compose 1.29 has no `ls`). */
async function composeProjects(): Promise<string[]> {
  const { stdout } = await runOk('docker', ['ps', '-a', '--format', '{{.Label "com.docker.compose.project"}}', '--filter', `label=${LABELS.cluster}=${clusterName}`]);
  return [...new Set(stdout.split('\n').filter(Boolean))].sort();
}

beforeAll(async () => {
  await ensureDockerEngine();
  await buildWorkerImage(image);
  cluster = await tempCluster(3);
}, ENGINE_SETUP_TIMEOUT_MS + 300_000);

afterAll(async () => {
  await stopOrchestrator(orchestrator);
  if (cluster) {
    await runEntry('provisioning/src/main.ts', ['teardown', ...provisionFlags()], { env, timeoutMs: 120_000 });
    await cluster.cleanup();
  }
  const { stdout } = await runOk('docker', ['ps', '-aq', '--filter', `label=${LABELS.cluster}=${clusterName}`]);
  await removeDockerObjects(stdout.split('\n').filter(Boolean), [image]);
}, 180_000);

describe('machine autoscaling on the Docker runtime', () => {
  it('grows from 1 compose project to 3 under load, every request answered, then takes 2 down once idle', { timeout: 300_000 }, async () => {
    const provisioned = await runEntry('provisioning/src/main.ts', ['provision', ...provisionFlags(), '--workers', '1', '--work-ms', '50'], { env, timeoutMs: 180_000 });
    expect(provisioned.code, provisioned.stderr).toBe(0);
    orchestrator = await startOrchestrator(cluster.statePath, MACHINE_SCALING_FLAGS);
    await growAndShrink(orchestrator.url, cluster.statePath, { requests: 1200, timeoutMs: 180_000 });
    expect(await composeProjects()).toEqual([`${clusterName}-w1`]);
    expect(new Set(await labelledWorkers())).toEqual(new Set(['w1']));
  });
});
