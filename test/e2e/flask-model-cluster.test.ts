import { createServer, type Server } from 'node:http';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LoadResult } from '../../load/src/run-load.js';
import { workerUserData } from '../../provisioning/src/aws/user-data.js';
import { LABELS } from '../../runtime/src/driver.js';
import { freeBasePort } from '../../common/src/free-ports.js';
import { run, runEntry } from '../helpers/cli.js';
import { tempCluster, type TempCluster } from '../helpers/cluster.js';
import { buildFlaskModelImage, ENGINE_SETUP_TIMEOUT_MS, ensureDockerEngine, inspect, poll, removeDockerObjects, runOk, uniqueName } from '../helpers/docker.js';
import { ACCURACY_FLOOR, readHoldout, type Holdout, type PredictAnswer } from '../helpers/flask-model.js';
import { cleanEnv as env, liveStatus, readState, startOrchestrator, stopOrchestrator, type OrchestratorProcess } from '../helpers/orchestrator-process.js';

// Bring your own model, as a user with a Python Flask image does it: provision a Docker worker from
// docker-compose.worker.yml with the image and its paths, serve load through the orchestrator (a
// container killed under load), check the answers are the model's, tear down. The image reports no
// identity on its health path, so a port something else answers must be caught before starting.
const image = `flask-model:${uniqueName('byo')}`;
const clusterName = uniqueName('byo').replace(/[^a-z0-9-]/g, '').slice(0, 40);
const CONTRACT_FLAGS = ['--predict-path', '/predict', '--health-path', '/healthz'];
let cluster: TempCluster;
let holdout: Holdout;
let orchestrator: OrchestratorProcess | undefined;

const provisionFlags = () => ['--runtime', 'docker', '--worker-image', image, '--workers', '1', '--cluster', clusterName, ...CONTRACT_FLAGS, ...cluster.cliFlags];

async function labelled(cluster = clusterName): Promise<string[]> {
  const { stdout } = await runOk('docker', ['ps', '-aq', '--no-trunc', '--filter', `label=${LABELS.cluster}=${cluster}`]);
  return stdout.split('\n').filter(Boolean).sort();
}

async function predict(url: string, pixels: number[]): Promise<{ status: number; body: PredictAnswer }> {
  const response = await request(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ pixels }) });
  return { status: response.statusCode, body: (await response.body.json()) as PredictAnswer };
}

beforeAll(async () => {
  await ensureDockerEngine();
  await buildFlaskModelImage(image);
  holdout = await readHoldout(image);
  cluster = await tempCluster(1);
}, ENGINE_SETUP_TIMEOUT_MS + 600_000);

afterAll(async () => {
  await stopOrchestrator(orchestrator);
  if (cluster) {
    await runEntry('provisioning/src/main.ts', ['teardown', ...provisionFlags()], { env, timeoutMs: 120_000 });
    await cluster.cleanup();
  }
  await removeDockerObjects(await labelled(), [image]);
}, 180_000);

describe('a Python Flask model image as managed containers', () => {
  it('refuses a port another program answers, though the app reports no identity: nothing started, no inventory', { timeout: 60_000 }, async () => {
    // Answers the health path with 200, as a stray copy of the model (or anything) would.
    const squatter: Server = createServer((_req, res) => res.writeHead(200).end('OK'));
    await new Promise<void>((resolve) => squatter.listen(cluster.basePort + 1, '127.0.0.1', resolve));
    try {
      const refused = await runEntry('provisioning/src/main.ts', ['provision', ...provisionFlags()], { env, timeoutMs: 60_000 });
      expect(refused.code).toBe(1);
      expect(refused.stderr.trim().split('\n')).toEqual([`error: 127.0.0.1:${cluster.basePort + 1} is already in use [PORT_IN_USE]`]);
      expect(await labelled()).toEqual([]);
      await expect(readFile(cluster.statePath, 'utf8')).rejects.toMatchObject({ code: 'ENOENT' });
    } finally {
      await new Promise((resolve) => squatter.close(resolve));
    }
  });

  it('provisions a worker with its paths recorded in the template; the image\'s own healthcheck applies', { timeout: 180_000 }, async () => {
    const provisioned = await runEntry('provisioning/src/main.ts', ['provision', ...provisionFlags(), '--enable-crash-api'], { env, timeoutMs: 150_000 });
    expect(provisioned.code, provisioned.stderr).toBe(0);
    const inventory = await readState(cluster.statePath);
    expect(inventory.workers[0]!.template).toMatchObject({ image, contract: { predictPath: '/predict', healthPath: '/healthz' } });
    expect(inventory.containers.map((c) => c.port)).toEqual([cluster.basePort, cluster.basePort + 1]);
    for (const id of await labelled()) {
      const container = await inspect(id);
      expect(container.Config.Healthcheck.Test.join(' ')).toMatch(/python3.*\/healthz/);
      expect(container.Config.Env).toEqual(expect.arrayContaining([`CONTAINER_ID=w1-${container.Config.Labels[LABELS.port]}`]));
    }
  });

  it('serves 1,000 requests at concurrency 64, none lost when a container is killed under load, with the model\'s own predictions', { timeout: 240_000 }, async () => {
    const inventory = await readState(cluster.statePath);
    orchestrator = await startOrchestrator(cluster.statePath);
    const { url } = orchestrator;
    expect((await liveStatus(url)).containers.map((c) => c.state)).toEqual(['free', 'free']);

    const resultPath = join(cluster.dir, 'load.json');
    const body = JSON.stringify({ pixels: holdout.features[0] });
    const loading = runEntry(
      'load/src/main.ts',
      ['--url', `${url}/new_request`, '--requests', '1000', '--threads', '2', '--concurrency', '64', '--body', body, '--json', resultPath, '--no-progress'],
      { env, timeoutMs: 200_000 },
    );
    const victim = inventory.containers[1]!;
    await poll(async () => {
      const live = await liveStatus(url);
      return (live.counters?.completed ?? 0) > 100 && live.containers.find((c) => c.id === victim.id)?.state === 'busy' ? true : undefined;
    }, 'load on the victim', 60_000);
    await runOk('docker', ['kill', victim.runtimeId!]);

    const load = await loading;
    expect(load.code, load.stderr).toBe(0);
    const result = JSON.parse(await readFile(resultPath, 'utf8')) as LoadResult;
    expect(result.statusCodes).toEqual({ '200': 1000 });
    expect(Object.keys(result.servedBy).sort()).toEqual(inventory.containers.map((c) => c.id).sort());
    expect((await liveStatus(url)).counters).toMatchObject({ failed: 0, completed: 1000 });

    // Replaced on its port from the template: the same image, probed on /healthz.
    const healed = await poll(async () => {
      const record = (await liveStatus(url)).containers.find((c) => c.id === victim.id);
      return record?.restarts === 1 && record.state === 'free' ? record : undefined;
    }, `${victim.id} replaced`, 60_000);
    expect(healed.runtimeId).not.toBe(victim.runtimeId);
    expect((await inspect(healed.runtimeId!)).Config.Image).toBe(image);

    // The answers are the model's: held-out digits through /new_request, scored against their labels.
    const samples = holdout.features.slice(0, 200);
    const answers = await Promise.all(samples.map((pixels) => predict(`${url}/new_request`, pixels)));
    expect(answers.map((a) => a.status)).toEqual(samples.map(() => 200));
    const accuracy = answers.filter((a, i) => a.body.prediction === holdout.labels[i]).length / samples.length;
    console.log(`held-out accuracy through the orchestrator: ${(accuracy * 100).toFixed(1)} % of ${samples.length}`);
    expect(accuracy).toBeGreaterThanOrEqual(ACCURACY_FLOOR);
    expect(new Set(answers.map((a) => a.body.container))).toEqual(new Set(inventory.containers.map((c) => c.id)));
  });

  it('tears down every container of the cluster', { timeout: 120_000 }, async () => {
    await stopOrchestrator(orchestrator);
    orchestrator = undefined;
    const teardown = await runEntry('provisioning/src/main.ts', ['teardown', ...provisionFlags()], { env, timeoutMs: 120_000 });
    expect(teardown.code, teardown.stderr).toBe(0);
    expect(await labelled()).toEqual([]);
    expect((await readState(cluster.statePath)).containers).toEqual([]);
  });
});

// The EC2 worker's boot script, run on this machine (Docker is installed, so it skips the install):
// the same compose file starts the Python image.
describe('worker user-data with the Python image', () => {
  const udCluster = uniqueName('udflask').replace(/[^a-z0-9-]/g, '');
  let dir: string | undefined;

  afterAll(async () => {
    await removeDockerObjects(await labelled(udCluster), []);
    if (dir) await rm(dir, { recursive: true, force: true });
  }, 120_000);

  it('starts two containers that answer on /healthz and /predict', { timeout: 180_000 }, async () => {
    dir = await mkdtemp(join(tmpdir(), 'user-data-flask-'));
    const port = await freeBasePort([0, 1]);
    const scriptPath = join(dir, 'user-data.sh');
    const script = workerUserData({ cluster: udCluster, workerId: 'w1', image, imageSource: 'registry', ports: [port, port + 1], env: { WORK_MS: '0' }, installDir: join(dir, 'opt') });
    await writeFile(scriptPath, script);
    const result = await run('bash', [scriptPath], { timeoutMs: 150_000 });
    expect(result.code, result.stderr).toBe(0);
    for (const p of [port, port + 1]) {
      await poll(async () => ((await fetch(`http://127.0.0.1:${p}/healthz`).catch(() => undefined))?.ok ? true : undefined), `/healthz on ${p}`, 30_000);
      const answer = await predict(`http://127.0.0.1:${p}/predict`, holdout.features[1]!);
      expect(answer).toMatchObject({ status: 200, body: { prediction: holdout.labels[1], container: `w1-${p}` } });
    }
  });
});
