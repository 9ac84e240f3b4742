import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { DescribeInstanceAttributeCommand, type Instance } from '@aws-sdk/client-ec2';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { freeBasePort } from '../../common/src/free-ports.js';
import { createLogger } from '../../common/src/logger.js';
import type { Orchestrator } from '../../orchestrator/src/orchestrator.js';
import { TAGS } from '../../provisioning/src/aws/ec2-context.js';
import { provisionCluster, teardownCluster } from '../../provisioning/src/commands.js';
import { loadProvisionConfig, type ProvisionConfig } from '../../provisioning/src/config.js';
import { createProvider, createWorkerProvider } from '../../provisioning/src/create-provider.js';
import type { MachineScalerSnapshot, StateFile } from '../../status/src/schema.js';
import type { Backend } from '../helpers/backend.js';
import { tempCluster, type TempCluster } from '../helpers/cluster.js';
import { poll } from '../helpers/docker.js';
import { startMachineOrchestrator } from '../helpers/machine-view.js';
import { instancesOfWorker, serveModelContainers, useMotoSuite, watchInstances, workerOf, type InstanceWatch } from '../helpers/moto-instances.js';

// The machine autoscaler of an in-process orchestrator on EC2, against moto: the workers it
// launches and releases are moto's instances, read back from the emulator. As in
// ec2-worker-provider.test.ts, each instance's public address (54.214.A.B) is routed to
// 127.214.A.B, where stand-ins for its two model containers answer once it exists (what its
// user-data would start).
//
// sshHostKeyCheck is off: with it, provisioning reads the host keys from the console, which moto
// lacks and nock would have to answer, but nock's interception of every http request in the process
// breaks the orchestrator's own upstream connections (its agent's sockets fail in nock's
// passthrough). The host keys are checked in ec2-worker-provider.test.ts; no SSH connects here.
//
// The workers' Docker-over-SSH runtime has nothing listening behind it: sshPort is a free port on
// which no sshd runs, so every runtime call the orchestrator makes is refused, as for a machine
// whose SSH is closed to it. Launch and release go through the EC2 API and joining through HTTP
// probes; the containers a worker's user-data starts are recorded without a runtime id, so a
// scale-in drains them without a runtime call; the reconciler keeps what it cannot list; and a lost
// machine is exactly one whose runtime cannot be listed. The one place the runtime must answer is an
// empty worker, which only its runtime can vouch for (see minContainersPerWorker below). A real
// sshd would not do better: the engine behind it (this machine's, one for every "instance") would
// list none of the stand-ins, and the reconciler would mark w1's containers down at start.

const log = createLogger('test', 'silent');
const SSH_CIDR = '203.0.113.7/32';
const ORCH_CIDR = '198.51.100.9/32';

const emulator = useMotoSuite();
let clusters = 0;

let cluster: TempCluster;
let name: string;
let sshPort: number;
let watch: InstanceWatch | undefined;
let orchestrator: Orchestrator | undefined;
/** The model container stand-ins of each instance, by instance id. */
let backends: Map<string, Backend[]>;

beforeEach(async () => {
  cluster = await tempCluster(1);
  name = `machines${++clusters}`;
  sshPort = await freeBasePort([0]);
  backends = new Map();
});
afterEach(async () => {
  try {
    await orchestrator?.close();
    await watch?.stop();
  } finally {
    orchestrator = undefined;
    watch = undefined;
    await Promise.all([...backends.values()].flat().map((b) => b.kill()));
    // Whatever a failed test left in the emulator goes with the cluster.
    const config = awsConfig();
    await teardownCluster(config, { provider: createProvider(config, log, { ec2: emulator.ec2, pollSeconds: 1 }) }).catch(() => {});
    await cluster.cleanup();
  }
}, 60_000);

function awsConfig(flags: Record<string, unknown> = {}): ProvisionConfig {
  return loadProvisionConfig({
    env: {},
    flags: {
      provider: 'aws',
      cluster: name,
      workers: 1,
      sshCidr: SSH_CIDR,
      orchestratorCidr: ORCH_CIDR,
      sshPort,
      sshHostKeyCheck: false,
      statePath: cluster.statePath,
      basePort: cluster.basePort,
      launchTimeoutMs: 10_000,
      logLevel: 'silent',
      ...flags,
    },
  });
}

/** As each instance of the cluster appears, the model containers of the workers in `serving` come up. */
function bootInstances(serving: (workerId: string) => boolean = () => true): void {
  watch = watchInstances(emulator.ec2, name, async (instance) => {
    if (serving(workerOf(instance))) backends.set(instance.InstanceId!, await serveModelContainers(instance, [cluster.basePort, cluster.basePort + 1]));
  });
}

/** Provision w1 as `npm run provision` does: the state file records the provisioning config. */
async function provision(flags: Record<string, unknown> = {}): Promise<void> {
  const config = awsConfig(flags);
  await provisionCluster(config, { provider: createProvider(config, log, { ec2: emulator.ec2, pollSeconds: 1 }) });
}

/**
 * An orchestrator over the cluster with a machine autoscaler and no scaling policy (the tests set
 * the container target). Its worker provider is the one it would build from the provisioning
 * config the state file records, given the emulator's client.
 */
async function start(flags: Record<string, unknown> = {}): Promise<Orchestrator> {
  const state = JSON.parse(await readFile(cluster.statePath, 'utf8')) as StateFile;
  const recorded = loadProvisionConfig({ env: {}, flags: { ...state.provisioning, statePath: cluster.statePath } });
  const workerProvider = createWorkerProvider(recorded, log, { ec2: emulator.ec2, pollSeconds: 1 });
  ({ orchestrator } = await startMachineOrchestrator(
    cluster,
    { workerCheckTimeoutMs: 1_000, maxContainers: 8, maxWorkers: 3, workerSurplusMs: 1_000, ...flags },
    { provision: false, workerProvider },
  ));
  return orchestrator;
}

const machines = (o: Orchestrator): MachineScalerSnapshot => o.machines!.snapshot();
const workerIds = (o: Orchestrator): string[] => [...o.pool.workers()].map((w) => w.id).sort();
const states = (instances: Instance[]): Array<[string, string]> => instances.map((i) => [i.InstanceId!, i.State!.Name!]);
const tagsOf = (instance: Instance): Record<string, string> => Object.fromEntries((instance.Tags ?? []).map((t) => [t.Key!, t.Value!]));
const userDataOf = async (instance: Instance): Promise<string> => {
  const attribute = await emulator.ec2.send(new DescribeInstanceAttributeCommand({ InstanceId: instance.InstanceId, Attribute: 'userData' }));
  return Buffer.from(attribute.UserData!.Value!, 'base64').toString('utf8');
};

describe('the machine autoscaler on EC2 (moto)', () => {
  it('launches w2 and w3 as provisioning launches w1 when 6 containers fit on no worker, then terminates them once surplus', { timeout: 120_000 }, async () => {
    bootInstances();
    await provision();
    // Scale-in leaves each worker one container: an empty worker is vouched for by its runtime
    // only (see the top), which cannot be reached here, so it would be marked down, not surplus.
    const o = await start({ minContainersPerWorker: 1 });
    const of = (worker: string) => instancesOfWorker(emulator.ec2, name, worker);
    const [w1] = await of('w1');

    o.autoscaler.scaleTo(6, 'test');
    await poll(async () => (workerIds(o).length === 3 && o.pool.capacity() === 6 ? true : undefined), 'three workers in rotation', 60_000);
    const grown = machines(o);
    expect(grown.decisions.filter((d) => d.action === 'launched').map((d) => [d.workerId, d.reason])).toEqual(
      expect.arrayContaining([
        ['w2', '4 container(s) the autoscaler wants fit on no worker'],
        ['w3', '4 container(s) the autoscaler wants fit on no worker'],
      ]),
    );
    expect(grown.counts).toMatchObject({ launched: 2, launchFailed: 0 });

    // Read back: one running instance each, tagged with the cluster and the worker, launched as w1 was.
    const w1UserData = await userDataOf(w1!);
    for (const worker of ['w2', 'w3']) {
      const [instance, ...others] = await of(worker);
      expect(others).toEqual([]);
      expect(instance).toMatchObject({
        State: { Name: 'running' },
        ImageId: w1!.ImageId,
        InstanceType: w1!.InstanceType,
        KeyName: w1!.KeyName,
        SecurityGroups: w1!.SecurityGroups,
        MetadataOptions: w1!.MetadataOptions,
      });
      expect(tagsOf(instance!)).toEqual({ [TAGS.cluster]: name, [TAGS.role]: 'worker', [TAGS.worker]: worker, Name: `${name}-${worker}` });
      // The same boot script, but for its own worker id.
      const forWorker = w1UserData
        .replace(`worker w1 of cluster ${name}`, `worker ${worker} of cluster ${name}`)
        .replace(`PROJECT=${name}-w1\n`, `PROJECT=${name}-${worker}\n`)
        .replace('WORKER_ID=w1\n', `WORKER_ID=${worker}\n`);
      expect(await userDataOf(instance!)).toBe(forWorker);
      expect(o.pool.worker(worker)).toMatchObject({ host: instance!.PublicIpAddress, launchedBy: 'autoscaler', state: 'up' });
    }

    // In rotation: requests through the orchestrator reach every container of the three instances.
    for (let i = 0; i < 12; i++) expect((await fetch(`${o.url}/predict`, { method: 'POST', body: '{}' })).status).toBe(200);
    const served = [...backends.values()].flat().map((b) => [b.id, b.stats.served > 0]);
    expect(served).toHaveLength(6);
    expect(served.filter(([, any]) => !any)).toEqual([]);

    o.autoscaler.scaleTo(1, 'test');
    await poll(async () => (workerIds(o).length === 1 && machines(o).releasing.length === 0 ? true : undefined), 'back to one worker', 60_000);
    expect(workerIds(o)).toEqual(['w1']);
    const shrunk = machines(o);
    const released = shrunk.decisions.filter((d) => d.action === 'released');
    expect(released.map((d) => d.workerId).sort()).toEqual(['w2', 'w3']);
    for (const d of released) expect(d.reason).toMatch(/^surplus for 1 s: the other workers hold or have room for the \d container\(s\) wanted$/);
    expect(shrunk.counts).toMatchObject({ launched: 2, released: 2, releaseFailed: 0 });
    // Read back: w2 and w3 terminated, w1 running.
    for (const worker of ['w2', 'w3']) expect((await of(worker)).map((i) => i.State!.Name)).toEqual(['terminated']);
    expect(states(await of('w1'))).toEqual([[w1!.InstanceId!, 'running']]);
    expect(o.pool.worker('w1')!.state).toBe('up');
    expect(await o.fleet!.provider.list()).toEqual(['w1']);
  });

  it('terminates the instance of a launch whose containers never answer, backs off, and launches again only once the back-off ends', { timeout: 120_000 }, async () => {
    bootInstances((worker) => worker === 'w1');
    // Recorded with the provisioning config: every worker launch waits 3 s for its containers.
    await provision({ launchTimeoutMs: 3_000 });
    const o = await start({ maxWorkers: 2, workerLaunchBackoffMs: 8_000, workerLaunchBackoffMaxMs: 16_000 });
    const of = () => instancesOfWorker(emulator.ec2, name, 'w2');

    o.autoscaler.scaleTo(4, 'test');
    const failed = await poll(async () => (machines(o).failures === 1 ? machines(o) : undefined), 'a failed launch', 60_000);
    const [first, ...others] = await of();
    expect(others).toEqual([]);
    expect(first!.State!.Name).toBe('terminated');
    expect(failed.lastError).toMatch(/w2/);
    expect(failed.counts).toMatchObject({ launched: 0, launchFailed: 1 });
    expect(failed.decisions.find((d) => d.action === 'launch-failed')).toMatchObject({ workerId: 'w2', reason: expect.stringMatching(/1 in a row, next launch not before 8 s$/) });
    expect(workerIds(o)).toEqual(['w1']);
    const backoffUntil = Date.parse(failed.backoffUntil!);
    expect(backoffUntil).toBeGreaterThan(Date.now());

    // Until the back-off ends the scaler holds, saying why, and EC2 sees no other launch.
    await sleep(Math.max(0, backoffUntil - Date.now() - 1_000));
    const held = machines(o);
    expect(held.decisions.filter((d) => d.action === 'launch')).toHaveLength(1);
    expect(held.decisions.some((d) => d.action === 'held' && /backing off after 1 failed launch\(es\) in a row, until /.test(d.reason))).toBe(true);
    expect(states(await of())).toEqual([[first!.InstanceId!, 'terminated']]);

    // Then it tries again, no earlier: a second instance, which fails the same way and doubles the back-off.
    const again = await poll(async () => (machines(o).failures === 2 ? machines(o) : undefined), 'a second failed launch', 60_000);
    const launches = again.decisions.filter((d) => d.action === 'launch');
    expect(launches).toHaveLength(2);
    expect(Date.parse(launches[1]!.at)).toBeGreaterThanOrEqual(backoffUntil);
    expect(again.decisions.filter((d) => d.action === 'launch-failed').at(-1)!.reason).toMatch(/2 in a row, next launch not before 16 s$/);
    expect((await of()).map((i) => i.State!.Name)).toEqual(['terminated', 'terminated']);
  });

  it('releases a worker it launched whose machine is lost (containers silent, runtime unreachable) after workerSurplusMs: its instance terminated', { timeout: 120_000 }, async () => {
    bootInstances();
    await provision();
    const o = await start({ maxWorkers: 2 });
    o.autoscaler.scaleTo(4, 'test');
    await poll(async () => (workerIds(o).length === 2 && o.pool.capacity() === 4 ? true : undefined), 'two workers in rotation', 60_000);
    const [lost] = await instancesOfWorker(emulator.ec2, name, 'w2');

    // Its machine goes: the containers stop answering; its runtime never could be listed.
    await Promise.all(backends.get(lost!.InstanceId!)!.map((b) => b.kill()));
    await poll(async () => (machines(o).counts.released === 1 ? true : undefined), 'the lost worker released', 60_000);
    const release = machines(o).decisions.find((d) => d.action === 'released');
    expect(release).toMatchObject({ workerId: 'w2', reason: 'down for 1 s: its machine is lost' });
    const lostStates = states(await instancesOfWorker(emulator.ec2, name, 'w2')).filter(([id]) => id === lost!.InstanceId);
    expect(lostStates).toEqual([[lost!.InstanceId!, 'terminated']]);
    // w1, provisioned, is never the autoscaler's to release.
    expect(states(await instancesOfWorker(emulator.ec2, name, 'w1')).map(([, state]) => state)).toEqual(['running']);
    expect(o.pool.worker('w1')!.state).toBe('up');
  });
});
