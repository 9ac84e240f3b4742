import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { LABELS } from '../../runtime/src/driver.js';
import { runEntry } from '../helpers/cli.js';
import { tempCluster, type TempCluster } from '../helpers/cluster.js';
import { buildWorkerImage, ENGINE_SETUP_TIMEOUT_MS, ensureDockerEngine, poll, removeDockerObjects, runOk, uniqueName } from '../helpers/docker.js';
import { cleanUpDrills, describeDrills, drillLoad, expectNoneLost, expectSettled, startDrillOrchestrator, type DrillCluster } from '../helpers/fault-drills.js';
import { cleanEnv as env, liveStatus, readState } from '../helpers/orchestrator-process.js';
import { ensureSshd, generateKey, knownHostsLine, startSshd, type Sshd } from '../helpers/sshd.js';
import { waitFor } from '../helpers/wait-for.js';

// The fault drills on Docker: 2 workers × 2 containers provisioned from docker-compose.worker.yml,
// killed with `docker kill`. Then a worker machine lost for real: its engine reached over SSH,
// the SSH server gone and its containers frozen, then back. Everything carries this run's cluster
// label and is removed afterwards, whatever happened.
const image = `inference-worker:${uniqueName('faults')}`;
const clusterName = uniqueName('faults').replace(/[^a-z0-9-]/g, '').slice(0, 40);
let temp: TempCluster;
let cluster: DrillCluster;

const provisionFlags = () => ['--runtime', 'docker', '--worker-image', image, '--cluster', clusterName, ...temp.cliFlags];

async function labelled(filters: string[] = []): Promise<string[]> {
  const { stdout } = await runOk('docker', ['ps', '-q', '--no-trunc', '--filter', `label=${LABELS.cluster}=${clusterName}`, ...filters]);
  return stdout.split('\n').filter(Boolean);
}

beforeAll(async () => {
  await Promise.all([ensureDockerEngine(), ensureSshd()]);
  await buildWorkerImage(image);
  temp = await tempCluster(2);
  const provisioned = await runEntry('provisioning/src/main.ts', ['provision', '--work-ms', '5', '--enable-crash-api', ...provisionFlags()], { env, timeoutMs: 180_000 });
  expect(provisioned.code, provisioned.stderr).toBe(0);
  cluster = {
    statePath: temp.statePath,
    kill: async (runtimeId) => {
      await runOk('docker', ['kill', runtimeId]);
    },
    running: () => labelled(),
  };
}, ENGINE_SETUP_TIMEOUT_MS + 300_000);

afterEach(cleanUpDrills);

afterAll(async () => {
  if (temp) {
    await runEntry('provisioning/src/main.ts', ['teardown', ...provisionFlags()], { env, timeoutMs: 120_000 });
    await temp.cleanup();
  }
  const { stdout } = await runOk('docker', ['ps', '-aq', '--no-trunc', '--filter', `label=${LABELS.cluster}=${clusterName}`]);
  await removeDockerObjects(stdout.split('\n').filter(Boolean), [image]);
}, 180_000);

describeDrills('Docker containers', () => cluster);

describe('a worker machine lost under load', () => {
  const daemons: Sshd[] = [];
  let frozen: string[] = [];
  afterAll(async () => {
    if (frozen.length > 0) await runOk('docker', ['unpause', ...frozen]).catch(() => undefined);
    await Promise.all(daemons.map((d) => d.stop()));
  });

  it('is marked down, its containers start on the other worker; back, it is up and what it still ran is removed', { timeout: 180_000 }, async () => {
    // Each worker's engine behind an SSH server of its own, as on EC2: the SSH server is the machine's reachability.
    const dir = temp.dir;
    const [clientKey, ...hostKeys] = await Promise.all(['client_key', 'host_w1', 'host_w2'].map((name) => generateKey(join(dir, name))));
    await writeFile(join(dir, 'authorized_keys'), `${clientKey}\n`);
    const sshdFor = (k: number, port?: number) => startSshd({ hostKeyPath: join(dir, `host_w${k + 1}`), authorizedKeysPath: join(dir, 'authorized_keys'), port });
    daemons.push(await sshdFor(0), await sshdFor(1));
    await writeFile(join(dir, 'known_hosts'), daemons.map((d, k) => knownHostsLine(d.port, hostKeys[k]!)).join('\n'));
    const state = await readState(temp.statePath);
    state.workers.forEach((worker, k) => {
      worker.runtime = { driver: 'docker', ssh: { host: '127.0.0.1', port: daemons[k]!.port, username: 'root', privateKeyPath: join(dir, 'client_key'), knownHostsPath: join(dir, 'known_hosts') } };
    });
    await writeFile(temp.statePath, JSON.stringify(state));

    const orchestrator = await startDrillOrchestrator(cluster);
    const before = await liveStatus(orchestrator.url);
    expect(before.containers.map((c) => c.state)).toEqual(['free', 'free', 'free', 'free']);
    const load = drillLoad(orchestrator, 8);
    // The load reaches every container before w2 goes.
    await waitFor(() => before.containers.every((c) => (load.outcomes.servedBy[c.id] ?? 0) > 0), 30_000, 'load on every container');

    // w2 vanishes: nothing answers its SSH port any more, and its containers freeze mid-request (packets go nowhere).
    const w2Port = daemons[1]!.port;
    await daemons[1]!.stop();
    frozen = before.containers.filter((c) => c.workerId === 'w2').map((c) => c.runtimeId!);
    await runOk('docker', ['pause', ...frozen]);

    const moved = await poll(async () => {
      const live = await liveStatus(orchestrator.url);
      const w2 = live.workers.find((w) => w.id === 'w2');
      const servingOnW1 = live.containers.filter((c) => c.workerId === 'w1' && (c.state === 'free' || c.state === 'busy'));
      return w2?.state === 'down' && live.containers.length === 4 && servingOnW1.length === 4 ? live : undefined;
    }, 'w2 down and its containers running on w1', 90_000);
    const outcomes = await load.stop();
    expectNoneLost(outcomes);
    expect(outcomes.errors).toEqual({});
    expect(new Set(moved.containers.map((c) => c.workerId))).toEqual(new Set(['w1']));

    // w2 comes back where it was, still running the two containers that have moved away meanwhile.
    daemons[1] = await sshdFor(1, w2Port);
    await runOk('docker', ['unpause', ...frozen]);
    await poll(async () => ((await liveStatus(orchestrator.url)).workers.find((w) => w.id === 'w2')?.state === 'up' ? true : undefined), 'w2 up again', 60_000);
    await poll(async () => ((await labelled(['--filter', `label=${LABELS.worker}=w2`])).length === 0 ? true : undefined), 'w2’s stale containers removed', 30_000);
    frozen = [];
    await expectSettled(cluster, orchestrator.url);
  });
});
