import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import {
  DescribeImagesCommand,
  DescribeInstanceAttributeCommand,
  DescribeInstancesCommand,
  DescribeKeyPairsCommand,
  DescribeSecurityGroupsCommand,
  DescribeVolumesCommand,
  type Instance,
  type IpPermission,
  type Tag,
} from '@aws-sdk/client-ec2';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../common/src/logger.js';
import { TAGS } from '../../provisioning/src/aws/ec2-context.js';
import { Ec2Provider } from '../../provisioning/src/aws/ec2-provider.js';
import { provisionCluster, teardownCluster } from '../../provisioning/src/commands.js';
import { loadProvisionConfig, type ProvisionConfig } from '../../provisioning/src/config.js';
import { createProvider } from '../../provisioning/src/create-provider.js';
import type { Backend } from '../helpers/backend.js';
import { runEntry } from '../helpers/cli.js';
import { tempCluster, type TempCluster } from '../helpers/cluster.js';
import { cliDenying } from '../helpers/ec2-deny.js';
import { denyActions, interceptConsole, stopIntercepting } from '../helpers/ec2-intercept.js';
import { CANONICAL, MOTO_CREDENTIALS, motoCliEnv, NEWEST_UBUNTU, startMoto, UBUNTU_CATALOG, type MotoAmi } from '../helpers/moto.js';
import { liveWorkers, serveModelContainers, useMotoSuite, watchInstances, workerOf, type InstanceWatch } from '../helpers/moto-instances.js';
import { ROUTE_ENV } from '../helpers/network-guard.js';
import { readState } from '../helpers/orchestrator-process.js';
import { generateKey } from '../helpers/sshd.js';

// EC2 provisioning against moto, the EC2 emulator: results are read back from it. Its instances'
// public addresses (54.214.A.B) are routed to 127.214.A.B, where the test serves stand-ins for the
// model containers once an instance exists (network-guard.ts). nock answers only what moto cannot:
// the console of a booting instance (cloud-init's SSH host keys) and a missing IAM permission.

const log = createLogger('test', 'silent');
const SSH_CIDR = '203.0.113.7/32';
const ORCH_CIDR = '198.51.100.9/32';
/** An image of the catalog whose root device is not Ubuntu's /dev/sda1, as Amazon Linux's is not. */
const XVDA_IMAGE: MotoAmi = { ...UBUNTU_CATALOG[0]!, ami_id: 'ami-0e0e0e0e0e0e00001', name: 'custom/worker-base-xvda', root_device_name: '/dev/xvda' };

// One emulator for the file (it takes seconds to start); each test works on its own cluster name.
const emulator = useMotoSuite({ amis: [...UBUNTU_CATALOG, XVDA_IMAGE] });
let clusters = 0;

let cluster: TempCluster;
let name: string;
let watch: InstanceWatch | undefined;
let backends: Backend[] = [];
/** The host key each instance's console shows once it booted. */
let hostKeys: Map<string, string>;

beforeEach(async () => {
  cluster = await tempCluster(1);
  name = `demo${++clusters}`;
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

const provider = (config: ProvisionConfig) => createProvider(config, log, { ec2: emulator.ec2, pollSeconds: 1 });

/**
 * As each instance of the cluster appears in the emulator, its model containers come up (stand-ins
 * on its loopback address) for the workers in `serving`, and cloud-init prints its host key on the
 * console (answered through nock; moto's console has no such block).
 */
function bootInstances(serving: (workerId: string) => boolean = () => true): void {
  interceptConsole(emulator.moto.endpoint, (instanceId) => {
    const key = hostKeys.get(instanceId);
    return key ? [key] : undefined;
  });
  watch = watchInstances(emulator.ec2, name, async (instance) => {
    if (serving(workerOf(instance))) backends.push(...(await serveModelContainers(instance, [cluster.basePort, cluster.basePort + 1])));
    hostKeys.set(instance.InstanceId!, await generateKey(join(emulator.keysDir, instance.InstanceId!)));
  });
}

const tagsOf = (tags: Tag[] | undefined): Record<string, string> => Object.fromEntries((tags ?? []).map((t) => [t.Key!, t.Value!]));

/** A rule as `tcp FROM-TO from CIDR,...`. */
const ruleText = (rule: IpPermission): string => `${rule.IpProtocol} ${rule.FromPort}-${rule.ToPort} from ${(rule.IpRanges ?? []).map((r) => r.CidrIp).join(',')}`;

async function keyPairsOf(cluster: string) {
  return (await emulator.ec2.send(new DescribeKeyPairsCommand({ Filters: [{ Name: `tag:${TAGS.cluster}`, Values: [cluster] }] }))).KeyPairs ?? [];
}

async function groupsOf(cluster: string) {
  return (await emulator.ec2.send(new DescribeSecurityGroupsCommand({ Filters: [{ Name: `tag:${TAGS.cluster}`, Values: [cluster] }] }))).SecurityGroups ?? [];
}

/** Every instance ever launched for the cluster, whatever its state. */
async function instancesOf(cluster: string): Promise<Instance[]> {
  const found = await emulator.ec2.send(new DescribeInstancesCommand({ Filters: [{ Name: `tag:${TAGS.cluster}`, Values: [cluster] }] }));
  return (found.Reservations ?? []).flatMap((r) => r.Instances ?? []).sort((a, b) => workerOf(a).localeCompare(workerOf(b)));
}

async function userDataOf(instance: Instance): Promise<string> {
  const attribute = await emulator.ec2.send(new DescribeInstanceAttributeCommand({ InstanceId: instance.InstanceId, Attribute: 'userData' }));
  return Buffer.from(attribute.UserData?.Value ?? '', 'base64').toString('utf8');
}

/** IMDSv2 only, and one encrypted gp3 root volume of `sizeGb` on `rootDevice`, deleted with the instance and tagged like it. */
async function expectHardened(instance: Instance, rootDevice: string, sizeGb: number): Promise<void> {
  expect(instance.MetadataOptions).toMatchObject({ HttpTokens: 'required', HttpEndpoint: 'enabled', HttpPutResponseHopLimit: 1 });
  expect(instance.BlockDeviceMappings).toEqual([expect.objectContaining({ DeviceName: rootDevice, Ebs: expect.objectContaining({ DeleteOnTermination: true }) })]);
  const volumes = (await emulator.ec2.send(new DescribeVolumesCommand({ Filters: [{ Name: 'attachment.instance-id', Values: [instance.InstanceId!] }] }))).Volumes ?? [];
  expect(volumes).toHaveLength(1);
  expect(volumes[0]).toMatchObject({ VolumeType: 'gp3', Size: sizeGb, Encrypted: true, Attachments: [expect.objectContaining({ Device: rootDevice })] });
  expect(tagsOf(volumes[0]!.Tags)).toEqual(tagsOf(instance.Tags));
}

describe('EC2 provisioning against moto', () => {
  it('creates a key pair, a least-privilege security group and one tagged instance per worker, of the newest Canonical Ubuntu image, whose user-data starts the compose file', async () => {
    bootInstances();
    const config = awsConfig();
    const report = await provisionCluster(config, { provider: provider(config) });
    expect(report.started).toEqual([`w1-${cluster.basePort}`, `w1-${cluster.basePort + 1}`, `w2-${cluster.basePort}`, `w2-${cluster.basePort + 1}`]);

    const [keyPair, ...otherKeys] = await keyPairsOf(name);
    expect(otherKeys).toEqual([]);
    expect(keyPair).toMatchObject({ KeyName: `${name}-workers`, KeyType: 'ed25519' });
    expect(tagsOf(keyPair!.Tags)).toEqual({ [TAGS.cluster]: name, [TAGS.createdBy]: 'provisioning' });

    const [group, ...otherGroups] = await groupsOf(name);
    expect(otherGroups).toEqual([]);
    expect(group).toMatchObject({ GroupName: `${name}-workers` });
    // SSH from the operator, the model ports from the orchestrator: nothing else, nothing open to the world.
    expect((group!.IpPermissions ?? []).map(ruleText).sort()).toEqual([`tcp 22-22 from ${SSH_CIDR}`, `tcp ${cluster.basePort}-${cluster.basePort + 9} from ${ORCH_CIDR}`].sort());

    const instances = await instancesOf(name);
    expect(instances.map(workerOf)).toEqual(['w1', 'w2']);
    // The catalog's decoys (another owner, arm64, minimal, pending, older releases) are newer or look alike; none is taken.
    const images = await emulator.ec2.send(new DescribeImagesCommand({ ImageIds: [NEWEST_UBUNTU.ami_id] }));
    expect(images.Images![0]).toMatchObject({ OwnerId: CANONICAL, Name: NEWEST_UBUNTU.name });
    for (const [i, instance] of instances.entries()) {
      expect(instance).toMatchObject({
        State: { Name: 'running' },
        ImageId: NEWEST_UBUNTU.ami_id,
        InstanceType: 't3.small',
        KeyName: `${name}-workers`,
        SecurityGroups: [expect.objectContaining({ GroupId: group!.GroupId })],
      });
      expect(tagsOf(instance.Tags)).toEqual({ [TAGS.cluster]: name, [TAGS.role]: 'worker', [TAGS.worker]: `w${i + 1}`, Name: `${name}-w${i + 1}` });
      const script = await userDataOf(instance);
      expect(script).toMatch(/^#!\/bin\/bash\n/);
      expect(script).toContain(`WORKER_ID=w${i + 1}\n`);
      expect(script).toContain(`MODEL_PORT_A=${cluster.basePort}\nMODEL_PORT_B=${cluster.basePort + 1}\n`);
      expect(script).toContain('usermod -aG docker ubuntu');
      expect(script).toContain(await readFile('docker-compose.worker.yml', 'utf8').then((t) => t.trimEnd()));
      await expectHardened(instance, NEWEST_UBUNTU.root_device_name, 20);
    }
  });

  it("the security group read back from EC2 opens every port of each worker's range, as its inventory record promises", async () => {
    bootInstances();
    const config = awsConfig({ amiId: NEWEST_UBUNTU.ami_id });
    await provisionCluster(config, { provider: provider(config) });
    const [group] = await groupsOf(name);
    const fromOrchestrator = (group!.IpPermissions ?? []).filter((rule) => rule.IpRanges?.some((r) => r.CidrIp === ORCH_CIDR));
    const { workers } = await readState(cluster.statePath);
    expect(workers).toHaveLength(2);
    for (const worker of workers) {
      expect(worker.ports).toEqual({ first: cluster.basePort, last: cluster.basePort + 9 });
      // The orchestrator places added and moved containers anywhere in this range.
      expect(fromOrchestrator.some((rule) => rule.FromPort! <= worker.ports!.first && rule.ToPort! >= worker.ports!.last), `rules ${fromOrchestrator.map(ruleText)}`).toBe(true);
    }
  });

  it('hardens each instance: IMDSv2 required, and an encrypted gp3 root volume of rootVolumeGb on the root device --ami-id names, deleted with it and tagged', async () => {
    bootInstances();
    const config = awsConfig({ amiId: XVDA_IMAGE.ami_id, rootVolumeGb: 32, workers: 1 });
    await provisionCluster(config, { provider: provider(config) });
    const [instance] = await instancesOf(name);
    expect(instance!.ImageId).toBe(XVDA_IMAGE.ami_id);
    await expectHardened(instance!, '/dev/xvda', 32);

    await teardownCluster(config, { provider: provider(config) });
    // DeleteOnTermination: nothing of the instance is left to pay for.
    expect((await emulator.ec2.send(new DescribeVolumesCommand({ Filters: [{ Name: `tag:${TAGS.cluster}`, Values: [name] }] }))).Volumes).toEqual([]);
  });

  it('--ami-id of an image that does not exist: one line naming amiId, no instance launched', async () => {
    const config = awsConfig({ amiId: 'ami-0123456789abcdef0' });
    const error = await provisionCluster(config, { provider: provider(config) }).catch((e: Error) => e);
    expect(error).toMatchObject({ code: 'CONFIG_INVALID', message: expect.stringMatching(/^amiId: .*ami-0123456789abcdef0/) });
    expect((error as Error).message).not.toContain('\n');
    expect(await instancesOf(name)).toEqual([]);
  });

  it('saves the private key at mode 0600, the host keys from the consoles in known_hosts, and an inventory without any secret', async () => {
    bootInstances();
    const config = awsConfig();
    const report = await provisionCluster(config, { provider: provider(config) });

    const keyPath = join(cluster.dir, 'keys', `${name}.pem`);
    expect((await stat(keyPath)).mode & 0o777).toBe(0o600);
    const privateKey = await readFile(keyPath, 'utf8');
    expect(privateKey).toMatch(/^-----BEGIN [A-Z ]*PRIVATE KEY-----\n/);
    const instances = await instancesOf(name);
    const knownHosts = join(cluster.dir, 'keys', `${name}.known_hosts`);
    expect(await readFile(knownHosts, 'utf8')).toBe(instances.map((i) => `${i.PublicIpAddress} ${hostKeys.get(i.InstanceId!)}\n`).join(''));

    const state = await readState(cluster.statePath);
    expect(state.workers.map((w) => [w.id, w.provider, w.host, w.runtime])).toEqual(
      instances.map((i) => [
        workerOf(i),
        'aws',
        i.PublicIpAddress,
        { driver: 'docker', ssh: { host: i.PublicIpAddress, port: 22, username: 'ubuntu', privateKeyPath: keyPath, knownHostsPath: knownHosts } },
      ]),
    );
    expect(state.containers.map((c) => c.id)).toEqual(report.started);
    // No secret in the status store: neither the private key nor the credentials.
    const raw = await readFile(cluster.statePath, 'utf8');
    const keyBody = privateKey.split('\n').filter((line) => line && !line.startsWith('-----'));
    expect(keyBody.length).toBeGreaterThan(0);
    for (const secret of [...keyBody, 'PRIVATE KEY', MOTO_CREDENTIALS.AWS_SECRET_ACCESS_KEY, MOTO_CREDENTIALS.AWS_ACCESS_KEY_ID]) expect(raw).not.toContain(secret);
  });

  it('is idempotent: a re-run finds the tagged instances and launches nothing', async () => {
    bootInstances();
    const config = awsConfig();
    await provisionCluster(config, { provider: provider(config) });
    const before = await instancesOf(name);
    const [groupBefore] = await groupsOf(name);
    const report = await provisionCluster(config, { provider: provider(config) });
    expect(report.started).toEqual([]);
    expect(report.kept).toHaveLength(4);
    expect((await instancesOf(name)).map((i) => [i.InstanceId, i.State!.Name])).toEqual(before.map((i) => [i.InstanceId, 'running']));
    expect(await keyPairsOf(name)).toHaveLength(1);
    const groups = await groupsOf(name);
    expect(groups.map((g) => g.GroupId)).toEqual([groupBefore!.GroupId]);
    expect(groups[0]!.IpPermissions!.map(ruleText).sort()).toEqual(groupBefore!.IpPermissions!.map(ruleText).sort());
  });

  it('tears down: terminates the instances, deletes the security group and the key pair it created and the local key, clears the inventory', async () => {
    bootInstances();
    const config = awsConfig();
    await provisionCluster(config, { provider: provider(config) });
    const report = await teardownCluster(config, { provider: provider(config) });
    expect(report.stopped).toHaveLength(4);
    expect((await instancesOf(name)).map((i) => i.State!.Name)).toEqual(['terminated', 'terminated']);
    expect(await groupsOf(name)).toEqual([]);
    expect((await emulator.ec2.send(new DescribeSecurityGroupsCommand({ Filters: [{ Name: 'group-name', Values: [`${name}-workers`] }] }))).SecurityGroups).toEqual([]);
    expect(await keyPairsOf(name)).toEqual([]);
    await expect(stat(join(cluster.dir, 'keys', `${name}.pem`))).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(stat(join(cluster.dir, 'keys', `${name}.known_hosts`))).rejects.toMatchObject({ code: 'ENOENT' });
    expect((await readState(cluster.statePath)).workers).toEqual([]);
  });

  it('reports a missing permission as AWS_UNAUTHORIZED naming the action, creating no instance', async () => {
    // Credentials without ec2:RunInstances; EC2's answer comes through nock (moto's IAM answers AccessDenied).
    denyActions(emulator.moto.endpoint, ['RunInstances']);
    const config = awsConfig();
    await expect(provisionCluster(config, { provider: provider(config) })).rejects.toMatchObject({
      code: 'AWS_UNAUTHORIZED',
      message: expect.stringContaining('ec2:RunInstances'),
    });
    expect(await instancesOf(name)).toEqual([]);
  });

  it('names exactly the containers that never answered, and leaves every instance for teardown', async () => {
    bootInstances((worker) => worker === 'w1');
    const config = awsConfig({ launchTimeoutMs: 3_000 });
    const error = await provisionCluster(config, { provider: provider(config) }).catch((e: Error) => e);
    const [w1, w2] = await instancesOf(name);
    expect(error).toMatchObject({ code: 'WORKERS_UNHEALTHY' });
    expect((error as Error).message).toContain(
      `2 of 4 containers never answered /health: w2-${cluster.basePort} on ${w2!.InstanceId} (${w2!.PublicIpAddress}:${cluster.basePort}: connection refused), ` +
        `w2-${cluster.basePort + 1} on ${w2!.InstanceId}`,
    );
    expect((error as Error).message).not.toContain(w1!.InstanceId!);
    expect((error as Error).message).toContain('npm run teardown -- --provider aws');
    expect((await liveWorkers(emulator.ec2, name)).map((i) => i.InstanceId)).toEqual([w1!.InstanceId, w2!.InstanceId]);
    await teardownCluster(config, { provider: provider(config) });
    expect(await liveWorkers(emulator.ec2, name)).toEqual([]);
  });

  it('dry run: shows the plan and checks permissions with DryRun, creating nothing', async () => {
    const config = awsConfig();
    const plan = await (provider(config) as Ec2Provider).plan();
    expect(plan.steps).toEqual([
      `key pair ${name}-workers: create, private key saved to ${join(cluster.dir, 'keys', `${name}.pem`)} (mode 0600)`,
      `security group ${name}-workers: create with tcp 22 from ${SSH_CIDR}; tcp ${cluster.basePort}-${cluster.basePort + 9} from ${ORCH_CIDR}`,
      `AMI ${NEWEST_UBUNTU.ami_id} (${NEWEST_UBUNTU.name}); root volume 20 GiB gp3, encrypted, on /dev/sda1`,
      `worker w1: launch one t3.small with two model containers on ports ${cluster.basePort} and ${cluster.basePort + 1}`,
      `worker w2: launch one t3.small with two model containers on ports ${cluster.basePort} and ${cluster.basePort + 1}`,
    ]);
    expect(plan.denied).toEqual([]);
    // Every check ran with DryRun: EC2 holds nothing of the cluster.
    expect([...(await keyPairsOf(name)), ...(await groupsOf(name)), ...(await instancesOf(name))]).toEqual([]);
    expect((await emulator.ec2.send(new DescribeKeyPairsCommand({ Filters: [{ Name: 'key-name', Values: [`${name}-workers`] }] }))).KeyPairs).toEqual([]);

    denyActions(emulator.moto.endpoint, ['RunInstances']);
    expect((await (provider(config) as Ec2Provider).plan()).denied).toEqual(['RunInstances']);
  });
});

describe('npm run provision -- --provider aws (the CLI)', () => {
  const cli = (command: 'provision' | 'teardown', extra: string[], env: Record<string, string>, endpoint = emulator.moto.endpoint) =>
    runEntry(
      'provisioning/src/main.ts',
      [command, '--provider', 'aws', '--cluster', name, '--ssh-cidr', SSH_CIDR, '--aws-endpoint', endpoint, '--region', 'us-east-1', ...cluster.cliFlags, ...extra],
      { env: motoCliEnv(env), timeoutMs: 120_000 },
    );

  it(
    'provision, a re-run and teardown: the instances run with their containers healthy, the re-run keeps them, teardown leaves nothing',
    { timeout: 120_000 },
    async () => {
      // Like the instances' containers, the stand-ins come up once the CLI has launched the instances.
      watch = watchInstances(emulator.ec2, name, async (instance) => {
        backends.push(...(await serveModelContainers(instance, [cluster.basePort, cluster.basePort + 1])));
      });
      // moto's console prints no host keys, which a child process's EC2 calls cannot be given here: no check.
      const flags = ['--yes', '--workers', '2', '--ssh-host-key-check', 'false', '--launch-timeout-ms', '30000'];
      const env = { ...MOTO_CREDENTIALS, [ROUTE_ENV]: '1' };
      const first = await cli('provision', flags, env);
      expect(first.code, first.stderr).toBe(0);
      expect(first.stderr).toContain('[provision] 4/4 containers healthy');
      const launched = await liveWorkers(emulator.ec2, name);
      expect(launched.map(workerOf).sort()).toEqual(['w1', 'w2']);
      const state = await readState(cluster.statePath);
      expect(state.workers.map((w) => [w.host, w.runtime.driver === 'docker' && w.runtime.ssh?.insecureSkipHostKeyCheck])).toEqual(
        [...launched].sort((a, b) => workerOf(a).localeCompare(workerOf(b))).map((i) => [i.PublicIpAddress, true]),
      );

      const again = await cli('provision', flags, env);
      expect(again.code, again.stderr).toBe(0);
      expect((await liveWorkers(emulator.ec2, name)).map((i) => i.InstanceId).sort()).toEqual(launched.map((i) => i.InstanceId).sort());

      const down = await cli('teardown', [], env);
      expect(down.code, down.stderr).toBe(0);
      expect((await instancesOf(name)).map((i) => i.State!.Name)).toEqual(['terminated', 'terminated']);
      expect([...(await keyPairsOf(name)), ...(await groupsOf(name))]).toEqual([]);
      expect((await readState(cluster.statePath)).workers).toEqual([]);
    },
  );

  it('--dry-run prints the plan and exits 0, creating nothing', async () => {
    const result = await cli('provision', ['--dry-run', '--root-volume-gb', '40'], MOTO_CREDENTIALS);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain(`plan for cluster "${name}" (dry run: nothing was created)`);
    expect(result.stdout).toContain(`AMI ${NEWEST_UBUNTU.ami_id} (${NEWEST_UBUNTU.name}); root volume 40 GiB gp3, encrypted, on /dev/sda1`);
    expect(result.stdout).toContain('worker w4: launch one t3.small');
    expect(result.stdout).toContain('permissions: every action above is allowed');
    expect([...(await keyPairsOf(name)), ...(await groupsOf(name)), ...(await instancesOf(name))]).toEqual([]);
  });

  it('--dry-run without a permission: the plan, then one line naming it, exit 1', async () => {
    const result = await cli('provision', ['--dry-run'], { ...MOTO_CREDENTIALS, ...cliDenying(emulator.moto.endpoint, ['RunInstances']) });
    expect(result.code).toBe(1);
    expect(result.stdout).toContain('worker w1: launch one t3.small');
    expect(result.stderr.trim().split('\n')).toEqual(['error: not allowed to call ec2:RunInstances; the IAM actions provisioning needs are listed in the README [AWS_UNAUTHORIZED]']);
  });

  it('without credentials: one line and exit 1, nothing created in EC2', async () => {
    const result = await cli('provision', ['--yes'], {});
    expect(result.code).toBe(1);
    expect(result.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^error: no AWS credentials found: .* \[AWS_CREDENTIALS_MISSING\]$/)]);
    expect([...(await keyPairsOf(name)), ...(await groupsOf(name)), ...(await instancesOf(name))]).toEqual([]);
    expect((await emulator.ec2.send(new DescribeKeyPairsCommand({ Filters: [{ Name: 'key-name', Values: [`${name}-workers`] }] }))).KeyPairs).toEqual([]);
  });

  it("in a region whose Ubuntu images are under another owner than Canonical's: one line naming amiId, exit 2, no instance launched", { timeout: 60_000 }, async () => {
    // The same images published under the account the lookup once used by mistake: Canonical's owner finds none.
    const elsewhere = await startMoto({ amis: UBUNTU_CATALOG.map((image) => ({ ...image, owner_id: '099720683109' })) });
    try {
      const result = await cli('provision', ['--yes'], MOTO_CREDENTIALS, elsewhere.endpoint);
      expect(result.code).toBe(2);
      // Progress lines first (the key pair and the group come before the image), then the one error line.
      expect(result.stderr.trim().split('\n').filter((line) => !line.startsWith('[provision] '))).toEqual([
        `error: amiId: expected an image: none given, and no Ubuntu 24.04 amd64 server image of Canonical (owner ${CANONICAL}) is available in region us-east-1 [CONFIG_INVALID]`,
      ]);
      const leftover = await elsewhere.client().send(new DescribeInstancesCommand({}));
      expect(leftover.Reservations).toEqual([]);
    } finally {
      await elsewhere.stop();
    }
  });
});
