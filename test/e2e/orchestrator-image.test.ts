import { mkdtemp, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freeBasePort } from '../../common/src/free-ports.js';
import { deployOrchestrator, orchestratorInventory, REMOTE_ROOT, remotePaths } from '../../provisioning/src/aws/orchestrator-instance.js';
import { LABELS } from '../../runtime/src/driver.js';
import { containerRecordSchema, workerRecordSchema } from '../../status/src/schema.js';
import { REPO_ROOT, run, runEntry } from '../helpers/cli.js';
import { tempCluster, type TempCluster } from '../helpers/cluster.js';
import {
  buildWorkerImage,
  ENGINE_SETUP_TIMEOUT_MS,
  ensureDockerEngine,
  healthOf,
  NODE_BASE_IMAGE,
  poll,
  removeDockerObjects,
  runOk,
  uniqueName,
} from '../helpers/docker.js';
import { cleanEnv as env, liveStatus, readState } from '../helpers/orchestrator-process.js';
import { ensureSshd, generateKey, startSshd, type Sshd } from '../helpers/sshd.js';

// The orchestrator image as a server runs it: built by the project's script on the registry-free
// base, started with host networking, its state folder on a volume, config from ORCH_* variables
// and flags. Its workers are local Docker workers (docker-compose.worker.yml, as on EC2), driven
// through the engine's socket: the same Docker driver the EC2 deploy uses over SSH, inside the
// bundle. (Process workers would need the host's PID namespace, and node would not be PID 1.)
const orchestratorImage = `inference-orchestrator:${uniqueName('e2e')}`;
const workerImage = `inference-worker:${uniqueName('e2e')}`;
const clusterName = uniqueName('orch-image').replace(/[^a-z0-9-]/g, '').slice(0, 40);
const containerName = uniqueName('orchestrator');
/** On every container this file starts, so cleanup finds them whatever happened. */
const runLabel = `io.inference-orchestrator.test=${containerName}`;
let cluster: TempCluster;

const provisionFlags = () => ['--runtime', 'docker', '--worker-image', workerImage, '--cluster', clusterName, ...cluster.cliFlags];

async function labelled(label: string): Promise<string[]> {
  const { stdout } = await runOk('docker', ['ps', '-aq', '--no-trunc', '--filter', `label=${label}`]);
  return stdout.split('\n').filter(Boolean);
}

beforeAll(async () => {
  await Promise.all([ensureDockerEngine(), ensureSshd()]);
  await Promise.all([
    buildWorkerImage(workerImage),
    runOk('bash', ['scripts/build-image.sh', 'orchestrator'], {
      env: { ...process.env, ORCHESTRATOR_IMAGE: orchestratorImage, BASE_IMAGE: NODE_BASE_IMAGE },
      timeoutMs: 300_000,
    }),
  ]);
  cluster = await tempCluster(2);
  const provisioned = await runEntry('provisioning/src/main.ts', ['provision', ...provisionFlags()], { env, timeoutMs: 180_000 });
  if (provisioned.code !== 0) throw new Error(`provision failed: ${provisioned.stderr}`);
}, ENGINE_SETUP_TIMEOUT_MS + 300_000);

afterAll(async () => {
  const ours = await labelled(runLabel).catch(() => []);
  if (cluster) {
    await runEntry('provisioning/src/main.ts', ['teardown', ...provisionFlags()], { env, timeoutMs: 120_000 });
    await cluster.cleanup();
  }
  const workers = await labelled(`${LABELS.cluster}=${clusterName}`).catch(() => []);
  await removeDockerObjects([...ours, ...workers], [orchestratorImage, workerImage]);
}, 180_000);

describe('the orchestrator image', () => {
  it('serves requests through the workers\' model containers, answers /status and /dashboard, and stops cleanly on docker stop', { timeout: 120_000 }, async () => {
    const port = await freeBasePort([0]);
    const url = `http://127.0.0.1:${port}`;
    const inventory = await readState(cluster.statePath);
    expect(inventory.containers).toHaveLength(4);

    await runOk('docker', [
      'run', '-d',
      '--name', containerName,
      '--label', runLabel,
      '--network', 'host',
      // Root for the engine's socket; the state folder is the volume the image expects at /state.
      '--user', '0:0',
      '-v', '/var/run/docker.sock:/var/run/docker.sock',
      '-v', `${cluster.dir}:/state`,
      '-e', 'ORCH_HOST=127.0.0.1',
      '-e', `ORCH_PORT=${port}`,
      orchestratorImage,
      // A flag after the image name reaches the orchestrator's own parser.
      '--health-interval-ms', '200',
    ]);
    expect(await healthOf(`${url}/health`)).toEqual({ status: 'ok' });

    const answers = await Promise.all(
      Array.from({ length: 12 }, async () => {
        const response = await fetch(`${url}/new_request`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"text":"I love this product"}' });
        return { status: response.status, body: (await response.json()) as { container: string; prediction: { label: string } } };
      }),
    );
    // Answered by the model app in the containers provisioning started, not by the orchestrator.
    for (const answer of answers) {
      expect(answer.status).toBe(200);
      expect(answer.body.prediction.label).toBe('positive');
      expect(inventory.containers.map((c) => c.id)).toContain(answer.body.container);
    }

    const live = await liveStatus(url);
    expect(live).toMatchObject({ cluster: clusterName, writer: 'orchestrator', orchestrator: { url, running: true }, counters: { completed: 12, failed: 0 } });
    expect(live.containers.map((c) => [c.id, c.runtimeId])).toEqual(inventory.containers.map((c) => [c.id, c.runtimeId]));
    // The page is read from the image at start; without it the process would not be up.
    const dashboard = await fetch(`${url}/dashboard`);
    expect(dashboard.headers.get('content-type')).toContain('text/html');
    expect(await dashboard.text()).toBe(await readFile(join(REPO_ROOT, 'orchestrator/dashboard/index.html'), 'utf8'));

    // Its Docker driver works from inside the bundle: a killed model container is replaced.
    const victim = inventory.containers[1]!;
    await runOk('docker', ['kill', victim.runtimeId!]);
    const replaced = await poll(async () => {
      const record = (await liveStatus(url)).containers.find((c) => c.id === victim.id);
      return record?.restarts === 1 && record.state === 'free' ? record : undefined;
    }, `${victim.id} replaced`, 60_000);
    expect(replaced.runtimeId).not.toBe(victim.runtimeId);

    // node is PID 1 in the container: SIGTERM reaches the orchestrator's own handler, which drains and exits 0.
    expect((await runOk('docker', ['exec', containerName, 'node', '-p', 'require("fs").readFileSync("/proc/1/cmdline","utf8")'])).stdout).toContain('/app/main.js');
    const started = performance.now();
    await runOk('docker', ['stop', '--time', '30', containerName]);
    expect(performance.now() - started).toBeLessThan(5_000);
    const state = await runOk('docker', ['inspect', '--format', '{{.State.ExitCode}} {{.State.OOMKilled}}', containerName]);
    expect(state.stdout.trim()).toBe('0 false');
    const logs = await run('docker', ['logs', containerName]);
    expect(logs.stdout).toMatch(/"signal":"SIGTERM".*shutting down/);
    expect(logs.stdout).toContain('"msg":"orchestrator stopped"');

    // Its last word is in the state file on the volume, which outlives the container.
    const written = await readState(cluster.statePath);
    expect(written).toMatchObject({ writer: 'orchestrator', orchestrator: { url, running: false }, counters: { completed: 12 } });
    expect(written.containers.find((c) => c.id === victim.id)?.runtimeId).toBe(replaced.runtimeId);
  });
});

// As provisioning deploys it on EC2 (deployOrchestrator over SSH, the worker key and the inventory
// delivered root-only), against a worker whose Docker it drives over SSH with that key, checking
// the host key it was given. One sshd on 127.0.0.3 plays both machines: the orchestrator's
// instance (where the deploy logs in) and the worker at its "private address" 127.0.0.3 (where the
// orchestrator's Docker driver logs in); both reach this machine's engine.
describe('the orchestrator image, deployed as on EC2', () => {
  const cluster = uniqueName('deployed').replace(/[^a-z0-9-]/g, '').slice(0, 40);
  const address = '127.0.0.3';
  let dir: string | undefined;
  let sshd: Sshd | undefined;

  afterAll(async () => {
    await sshd?.stop();
    const started = await labelled(`${LABELS.cluster}=${cluster}`).catch(() => []);
    await removeDockerObjects([...started, remotePaths(cluster).container]);
    await rm(remotePaths(cluster).dir, { recursive: true, force: true });
    // Its parent too, unless another test's deploy is in there.
    await rmdir(REMOTE_ROOT).catch(() => {});
    if (dir) await rm(dir, { recursive: true, force: true });
  }, 120_000);

  it('starts the worker\'s model containers over SSH with the delivered key and serves through them', { timeout: 180_000 }, async () => {
    dir = await mkdtemp(join(tmpdir(), 'orchestrator-deploy-'));
    const [hostKey, clientKey] = await Promise.all([generateKey(join(dir, 'host_key')), generateKey(join(dir, 'client_key'))]);
    await writeFile(join(dir, 'authorized_keys'), `${clientKey}\n`);
    sshd = await startSshd({ hostKeyPath: join(dir, 'host_key'), authorizedKeysPath: join(dir, 'authorized_keys'), listenAddress: address });
    const knownHosts = `[${address}]:${sshd.port} ${hostKey}\n`;
    await writeFile(join(dir, 'known_hosts'), knownHosts);
    const [modelPort, port] = await Promise.all([freeBasePort([0, 1]), freeBasePort([0])]);

    // What provisioning records of an EC2 worker, whose containers are not running yet: the orchestrator starts them.
    const worker = workerRecordSchema.parse({
      id: 'w1',
      provider: 'aws',
      host: address,
      runtime: { driver: 'docker', ssh: { host: address, port: sshd.port, username: 'root', privateKeyPath: join(dir, 'client_key') } },
      ports: { first: modelPort, last: modelPort + 1 },
      template: { image: workerImage, env: {} },
    });
    const containers = [modelPort, modelPort + 1].map((p) => containerRecordSchema.parse({ id: `w1-${p}`, workerId: 'w1', host: address, port: p, state: 'free' }));
    const privateKey = await readFile(join(dir, 'client_key'));
    const deployed = await deployOrchestrator(
      { host: address, port: sshd.port, username: 'root', privateKey, knownHostsPath: join(dir, 'known_hosts') },
      cluster,
      { inventory: orchestratorInventory(cluster, { workers: [worker], containers }, new Map([['w1', address]]), true), workerKey: privateKey, knownHosts },
      { image: orchestratorImage, port, uploadImage: false, deadline: Date.now() + 120_000, pollMs: 500, say: () => {} },
    );
    expect(deployed.action).toBe('started');

    // Its /health answered 200 through the tunnel: both model containers run, started by it over SSH.
    const live = await liveStatus(`http://127.0.0.1:${port}`);
    expect(live.containers.map((c) => [c.id, c.state])).toEqual([[`w1-${modelPort}`, 'free'], [`w1-${modelPort + 1}`, 'free']]);
    expect(await labelled(`${LABELS.cluster}=${cluster}`)).toHaveLength(2);
    const answer = await fetch(`http://127.0.0.1:${port}/new_request`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"text":"great"}' });
    expect(answer.status).toBe(200);
    expect(((await answer.json()) as { container: string }).container).toMatch(/^w1-/);
  });
});
