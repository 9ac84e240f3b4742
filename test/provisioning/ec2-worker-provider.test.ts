import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DescribeInstanceAttributeCommand, DescribeVolumesCommand, type Instance, type Tag } from '@aws-sdk/client-ec2';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../common/src/logger.js';
import { TAGS } from '../../provisioning/src/aws/ec2-context.js';
import { Ec2WorkerProvider } from '../../provisioning/src/aws/ec2-worker-provider.js';
import { provisionCluster, teardownCluster } from '../../provisioning/src/commands.js';
import { loadProvisionConfig, type ProvisionConfig } from '../../provisioning/src/config.js';
import { createProvider } from '../../provisioning/src/create-provider.js';
import type { Backend } from '../helpers/backend.js';
import { tempCluster, type TempCluster } from '../helpers/cluster.js';
import { interceptConsole, stopIntercepting } from '../helpers/ec2-intercept.js';
import { NEWEST_UBUNTU } from '../helpers/moto.js';
import { instancesOfWorker as instancesOf, liveWorkers, serveModelContainers, useMotoSuite, watchInstances, workerOf, type InstanceWatch } from '../helpers/moto-instances.js';
import { generateKey } from '../helpers/sshd.js';

// The EC2 worker provider against moto, the EC2 emulator, as the provisioning tests run: each
// instance's public address (54.214.A.B) is routed to 127.214.A.B, where the test serves stand-ins
// for its two model containers once the instance exists; nock answers only the console output
// (cloud-init's SSH host keys), which moto's fixed console lacks. Every outcome is read back from moto.

const log = createLogger('test', 'silent');
const SSH_CIDR = '203.0.113.7/32';
const ORCH_CIDR = '198.51.100.9/32';

const emulator = useMotoSuite();
let clusters = 0;

let cluster: TempCluster;
let name: string;
let watch: InstanceWatch | undefined;
let backends: Backend[] = [];
let hostKeys: Map<string, string>;

beforeEach(async () => {
  cluster = await tempCluster(1);
  name = `grow${++clusters}`;
  hostKeys = new Map();
});
afterEach(async () => {
  try {
    await watch?.stop();
  } finally {
    watch = undefined;
    stopIntercepting();
    await Promise.all(backends.map((b) => b.kill()));
    backends = [];
    // Whatever a failed test left in the emulator goes with the cluster.
    await teardownCluster(awsConfig(), { provider: createProvider(awsConfig(), log, { ec2: emulator.ec2, pollSeconds: 1 }) }).catch(() => {});
    await cluster.cleanup();
  }
});

function awsConfig(flags: Record<string, unknown> = {}): ProvisionConfig {
  return loadProvisionConfig({
    env: {},
    flags: {
      provider: 'aws',
      cluster: name,
      workers: 2,
      sshCidr: SSH_CIDR,
      orchestratorCidr: ORCH_CIDR,
      statePath: cluster.statePath,
      basePort: cluster.basePort,
      launchTimeoutMs: 10_000,
      logLevel: 'silent',
      ...flags,
    },
  });
}

const ports = () => [cluster.basePort, cluster.basePort + 1];
const provision = (config = awsConfig()) => provisionCluster(config, { provider: createProvider(config, log, { ec2: emulator.ec2, pollSeconds: 1 }) });
const workerProvider = (config = awsConfig()) => new Ec2WorkerProvider(config, { client: emulator.ec2, logger: log, pollSeconds: 1 });

/**
 * As each instance of the cluster appears, cloud-init prints its host key on the console and, for
 * the workers in `serving`, its model containers come up (stand-ins on its loopback address).
 * `booted` hears each instance once that is done.
 */
function bootInstances(serving: (workerId: string) => boolean = () => true, booted: (instance: Instance) => void = () => {}): void {
  interceptConsole(emulator.moto.endpoint, (instanceId) => {
    const key = hostKeys.get(instanceId);
    return key ? [key] : undefined;
  });
  watch = watchInstances(emulator.ec2, name, async (instance) => {
    if (serving(workerOf(instance))) backends.push(...(await serveModelContainers(instance, ports())));
    hostKeys.set(instance.InstanceId!, await generateKey(join(emulator.keysDir, instance.InstanceId!)));
    booted(instance);
  });
}

const tagsOf = (tags: Tag[] | undefined): Record<string, string> => Object.fromEntries((tags ?? []).map((t) => [t.Key!, t.Value!]));

/** Every instance ever launched for worker `workerId` of the cluster, whatever its state, oldest first. */
const instancesOfWorker = (workerId: string): Promise<Instance[]> => instancesOf(emulator.ec2, name, workerId);

const knownHostsFile = () => join(cluster.dir, 'keys', `${name}.known_hosts`);
const knownHostsLines = async () => (await readFile(knownHostsFile(), 'utf8')).split('\n').filter(Boolean).sort();
const knownHostsOf = (instances: Instance[]) => instances.map((i) => `${i.PublicIpAddress} ${hostKeys.get(i.InstanceId!)}`).sort();

describe('Ec2WorkerProvider against moto', () => {
  it('launches w3 next to the provisioned w1 and w2 exactly as provisioning launches a worker, and waits until its containers answer', { timeout: 60_000 }, async () => {
    bootInstances();
    await provision();
    const [w1] = await instancesOfWorker('w1');
    const launched = await workerProvider().launch('w3');

    const [w3, ...others] = await instancesOfWorker('w3');
    expect(others).toEqual([]);
    expect(launched.adopted).toBe(false);
    // The same image, type, key pair and security group as the workers provisioning made.
    expect(w3).toMatchObject({
      State: { Name: 'running' },
      ImageId: NEWEST_UBUNTU.ami_id,
      InstanceType: w1!.InstanceType,
      KeyName: w1!.KeyName,
      SecurityGroups: w1!.SecurityGroups,
    });
    expect(tagsOf(w3!.Tags)).toEqual({ [TAGS.cluster]: name, [TAGS.role]: 'worker', [TAGS.worker]: 'w3', Name: `${name}-w3` });
    const userData = await emulator.ec2.send(new DescribeInstanceAttributeCommand({ InstanceId: w3!.InstanceId, Attribute: 'userData' }));
    const script = Buffer.from(userData.UserData!.Value!, 'base64').toString('utf8');
    expect(script).toMatch(/^#!\/bin\/bash\n/);
    expect(script).toContain('WORKER_ID=w3\n');
    expect(script).toContain(`MODEL_PORT_A=${cluster.basePort}\nMODEL_PORT_B=${cluster.basePort + 1}\n`);
    expect(script).toContain(await readFile('docker-compose.worker.yml', 'utf8').then((t) => t.trimEnd()));
    expect(w3!.MetadataOptions).toMatchObject({ HttpTokens: 'required', HttpEndpoint: 'enabled', HttpPutResponseHopLimit: 1 });
    expect(w3!.BlockDeviceMappings).toEqual([expect.objectContaining({ DeviceName: NEWEST_UBUNTU.root_device_name, Ebs: expect.objectContaining({ DeleteOnTermination: true }) })]);
    const volumes = (await emulator.ec2.send(new DescribeVolumesCommand({ Filters: [{ Name: 'attachment.instance-id', Values: [w3!.InstanceId!] }] }))).Volumes ?? [];
    expect(volumes).toHaveLength(1);
    expect(volumes[0]).toMatchObject({ VolumeType: 'gp3', Size: 20, Encrypted: true, Attachments: [expect.objectContaining({ Device: NEWEST_UBUNTU.root_device_name })] });
    expect(tagsOf(volumes[0]!.Tags)).toEqual(tagsOf(w3!.Tags));

    const keyPath = join(cluster.dir, 'keys', `${name}.pem`);
    expect(launched.worker).toMatchObject({
      id: 'w3',
      provider: 'aws',
      host: w3!.PublicIpAddress,
      launchedBy: 'provisioning',
      runtime: { driver: 'docker', ssh: { host: w3!.PublicIpAddress, port: 22, username: 'ubuntu', privateKeyPath: keyPath, knownHostsPath: knownHostsFile() } },
      ports: { first: cluster.basePort, last: cluster.basePort + 9 },
    });
    expect(launched.containers.map((c) => [c.id, c.workerId, c.host, c.port, c.state])).toEqual(
      ports().map((port) => [`w3-${port}`, 'w3', w3!.PublicIpAddress, port, 'free']),
    );
    const { requestedAt, runningAt, healthyAt } = launched.timings;
    expect(requestedAt).toBeLessThanOrEqual(runningAt);
    expect(runningAt).toBeLessThanOrEqual(healthyAt);

    // w3's host key joins the others': known_hosts keeps w1's and w2's.
    const all = [...(await instancesOfWorker('w1')), ...(await instancesOfWorker('w2')), w3!];
    expect(await knownHostsLines()).toEqual(knownHostsOf(all));
    expect(await workerProvider().list()).toEqual(['w1', 'w2', 'w3']);
  });

  it('a second launch adopts the running instance instead of launching one; release terminates it, forgets its host key, and is idempotent', { timeout: 60_000 }, async () => {
    bootInstances();
    await provision();
    const provider = workerProvider();
    const first = await provider.launch('w3');
    const again = await workerProvider().launch('w3');
    expect(again.adopted).toBe(true);
    expect(again.worker).toEqual(first.worker);
    const [w3, ...others] = await instancesOfWorker('w3');
    expect(others).toEqual([]);
    expect(w3!.State!.Name).toBe('running');

    await provider.release('w3');
    expect((await instancesOfWorker('w3')).map((i) => [i.InstanceId, i.State!.Name])).toEqual([[w3!.InstanceId, 'terminated']]);
    expect(await provider.list()).toEqual(['w1', 'w2']);
    const kept = [...(await instancesOfWorker('w1')), ...(await instancesOfWorker('w2'))];
    expect(await knownHostsLines()).toEqual(knownHostsOf(kept));
    const [released] = await instancesOfWorker('w3');
    await provider.release('w3');
    expect((await liveWorkers(emulator.ec2, name)).map(workerOf).sort()).toEqual(['w1', 'w2']);

    // Released, it can be launched again: a new instance.
    const relaunched = await provider.launch('w3');
    expect(relaunched.adopted).toBe(false);
    // The released one and the new one (moto's launch times have whole seconds: the two may tie).
    expect((await instancesOfWorker('w3')).map((i) => [i.InstanceId, i.State!.Name]).sort()).toEqual(
      [
        [released!.InstanceId, 'terminated'],
        [(await liveWorkers(emulator.ec2, name)).find((i) => workerOf(i) === 'w3')!.InstanceId, 'running'],
      ].sort(),
    );
  });

  it('a launch whose containers never answer terminates the instance it launched and rejects WORKER_LAUNCH_FAILED', { timeout: 60_000 }, async () => {
    bootInstances((worker) => worker !== 'w3');
    await provision();
    const error = await workerProvider(awsConfig({ launchTimeoutMs: 3_000 }))
      .launch('w3')
      .catch((e: unknown) => e);
    const [w3, ...others] = await instancesOfWorker('w3');
    expect(others).toEqual([]);
    expect(error).toMatchObject({ code: 'WORKER_LAUNCH_FAILED', workerId: 'w3', instanceId: w3!.InstanceId, terminated: true, cause: { code: 'WORKERS_UNHEALTHY' } });
    expect(w3!.State!.Name).toBe('terminated');
    expect(await workerProvider().list()).toEqual(['w1', 'w2']);
    // Its host key, written before the health wait, went with it.
    expect(await knownHostsLines()).toEqual(knownHostsOf([...(await instancesOfWorker('w1')), ...(await instancesOfWorker('w2'))]));
  });

  it('a launch aborted while it waits terminates the instance it launched and rejects ABORTED', { timeout: 60_000 }, async () => {
    const abort = new AbortController();
    bootInstances(
      () => false,
      (instance) => workerOf(instance) === 'w1' && abort.abort(),
    );
    const error = await workerProvider(awsConfig({ launchTimeoutMs: 30_000 }))
      .launch('w1', abort.signal)
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'ABORTED' });
    expect((await instancesOfWorker('w1')).map((i) => i.State!.Name)).toEqual(['terminated']);
  });

  it('an adopted instance whose containers never answer is left running for its owner, and the error says so', { timeout: 60_000 }, async () => {
    bootInstances((worker) => worker !== 'w3');
    // Provisioning made w3 and gave up on it: the worker provider finds it.
    await expect(provision(awsConfig({ workers: 3, launchTimeoutMs: 3_000 }))).rejects.toMatchObject({ code: 'WORKERS_UNHEALTHY' });
    const [w3] = await instancesOfWorker('w3');
    const error = await workerProvider(awsConfig({ launchTimeoutMs: 3_000 }))
      .launch('w3')
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'WORKER_LAUNCH_FAILED', instanceId: w3!.InstanceId, terminated: false });
    expect((await instancesOfWorker('w3')).map((i) => [i.InstanceId, i.State!.Name])).toEqual([[w3!.InstanceId, 'running']]);
  });

  it('two callers launching the same worker at once end with one instance: the later launch is terminated and the earlier adopted by both', { timeout: 60_000 }, async () => {
    bootInstances();
    await provision(awsConfig({ workers: 1 }));
    const [a, b] = await Promise.all([workerProvider().launch('w2'), workerProvider().launch('w2')]);
    const [kept, double, ...more] = await instancesOfWorker('w2');
    expect(more).toEqual([]);
    // Both found none and launched: the double is there to be read back, terminated.
    expect([kept!.State!.Name, double!.State!.Name]).toEqual(['running', 'terminated']);
    expect([a.worker.host, b.worker.host]).toEqual([kept!.PublicIpAddress, kept!.PublicIpAddress]);
    expect([a.adopted, b.adopted].sort()).toEqual([false, true]);
    expect(await workerProvider().list()).toEqual(['w1', 'w2']);
  });

  it('teardown removes a worker the worker provider launched along with the provisioned ones', { timeout: 60_000 }, async () => {
    bootInstances();
    await provision(awsConfig({ workers: 1 }));
    await workerProvider().launch('w2');
    const config = awsConfig({ workers: 1 });
    await teardownCluster(config, { provider: createProvider(config, log, { ec2: emulator.ec2, pollSeconds: 1 }) });
    const states = [...(await instancesOfWorker('w1')), ...(await instancesOfWorker('w2'))].map((i) => [workerOf(i), i.State!.Name]);
    expect(states).toEqual([
      ['w1', 'terminated'],
      ['w2', 'terminated'],
    ]);
    expect(await workerProvider().list()).toEqual([]);
  });
});
