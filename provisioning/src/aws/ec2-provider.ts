import { appendFile, chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  AuthorizeSecurityGroupIngressCommand,
  CreateKeyPairCommand,
  CreateSecurityGroupCommand,
  DeleteKeyPairCommand,
  DeleteSecurityGroupCommand,
  DescribeImagesCommand,
  DescribeInstancesCommand,
  DescribeKeyPairsCommand,
  DescribeSecurityGroupsCommand,
  EC2Client,
  GetConsoleOutputCommand,
  RevokeSecurityGroupIngressCommand,
  RunInstancesCommand,
  TerminateInstancesCommand,
  waitUntilInstanceRunning,
  waitUntilInstanceTerminated,
  type Instance,
  type IpPermission,
  type SecurityGroup,
  type Tag,
  type UserIdGroupPair,
} from '@aws-sdk/client-ec2';
import { ConfigError } from '../../../common/src/errors.js';
import type { Logger } from '../../../common/src/logger.js';
import { knownHostName } from '../../../runtime/src/known-hosts.js';
import type { SshTarget } from '../../../runtime/src/ssh-connection.js';
import { containerRecordSchema, workerRecordSchema, type WorkerRecord } from '../../../status/src/schema.js';
import type { ProvisionConfig } from '../config.js';
import { containerTemplate, workerIds, type Inventory } from '../inventory.js';
import type { ProvisionOptions, ProvisionResult, Provider, TeardownResult } from '../provider.js';
import { judgeHealth, probeAll, probeHealth, type HealthProbe, type HealthTarget } from '../wait-healthy.js';
import {
  awsCode,
  ImageUploadError,
  InstanceWaitError,
  KeyPairError,
  PartialLaunchError,
  SecurityGroupInUseError,
  toAwsError,
  WorkersUnhealthyError,
} from './aws-errors.js';
import {
  deployOrchestrator,
  knownHostRenames,
  loadImage,
  ORCHESTRATOR_ROLE,
  orchestratorGroupName,
  orchestratorInventory,
  orchestratorLaunch,
  orchestratorRules,
  renameKnownHosts,
  waitForDocker,
} from './orchestrator-instance.js';
import { sshHttpGet } from './ssh-exec.js';
import { instanceLaunch } from './launch.js';
import { workerUserData } from './user-data.js';

/** Tag keys on everything provisioning creates in EC2. */
export const TAGS = {
  cluster: 'io.inference-orchestrator.cluster',
  role: 'io.inference-orchestrator.role',
  worker: 'io.inference-orchestrator.worker',
  createdBy: 'io.inference-orchestrator.created-by',
} as const;

/** Canonical's account, and its Ubuntu 24.04 LTS amd64 server images. */
export const UBUNTU_OWNER = '099720109477';
const UBUNTU_NAME = 'ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*';
const LIVE_STATES = ['pending', 'running'];
/** Ports of a worker's model containers: the two compose starts, and room for the orchestrator to add or move more. */
const WORKER_PORT_COUNT = 10;

export interface Ec2ProviderDeps {
  client: EC2Client;
  logger: Logger;
  /** Seconds between the waiters' polls (tests make it small). @default 5 */
  pollSeconds?: number;
  /** Progress lines for the operator. */
  say?: (line: string) => void;
}

/** What a dry run found and would do, and which permissions it would lack. */
export interface Ec2Plan {
  steps: string[];
  /** EC2 actions the credentials may not call (checked with DryRun). */
  denied: string[];
  /** The region the client works in. */
  region: string;
  /** The instances provision would launch (what costs money), e.g. `worker w3: t3.small`. */
  launches: string[];
  /** What the security groups open, e.g. `tcp 22 from 203.0.113.7/32`. */
  openPorts: string[];
}

interface KeyPair {
  name: string;
  path: string;
}

/**
 * Workers as EC2 instances: a key pair, a least-privilege security group, the AMI, one instance
 * per worker tagged with the cluster, whose user-data compose-starts two model containers. A
 * re-run finds the cluster's instances by tag and launches only the missing workers.
 */
export class Ec2Provider implements Provider {
  readonly name = 'aws';
  readonly #config: ProvisionConfig;
  readonly #ec2: EC2Client;
  readonly #log: Logger;
  readonly #poll: number;
  readonly #say: (line: string) => void;

  constructor(config: ProvisionConfig, deps: Ec2ProviderDeps) {
    this.#config = config;
    this.#ec2 = deps.client;
    this.#log = deps.logger;
    this.#poll = deps.pollSeconds ?? 5;
    this.#say = deps.say ?? (() => {});
  }

  get #keysDir(): string {
    return join(dirname(resolve(this.#config.statePath)), 'keys');
  }

  get #groupName(): string {
    return `${this.#config.cluster}-workers`;
  }

  get #knownHostsPath(): string {
    return join(this.#keysDir, `${this.#config.cluster}.known_hosts`);
  }

  async provision(_current: Inventory, options: ProvisionOptions = {}): Promise<ProvisionResult> {
    const config = this.#config;
    // The image first: a region without it should stop the run before anything is created.
    const ami = await this.#ami();
    const key = await this.#ensureKeyPair();
    const orchestratorGroup = config.withOrchestrator
      ? await this.#ensureSecurityGroup(orchestratorGroupName(config.cluster), `inference-orchestrator orchestrator of cluster ${config.cluster}`, orchestratorRules(config))
      : undefined;
    const groupId = await this.#ensureSecurityGroup(this.#groupName, `inference-orchestrator workers of cluster ${config.cluster}`, this.#rules(orchestratorGroup ? { GroupId: orchestratorGroup } : undefined));
    // The workers' group no longer refers to an orchestrator's: one an earlier run made can go.
    if (!orchestratorGroup) await this.#dropOrchestrator();
    const { wanted, missing, extra } = await this.#workerDiff();
    if (extra.length > 0) await this.#terminate(extra.map((i) => i.InstanceId!));
    for (const [n, workerId] of missing.entries()) {
      await this.#launch(workerId, { key: key.name, groupId, ami }).catch((error: unknown) => {
        throw n > 0 ? new PartialLaunchError(workerId, missing.slice(0, n), toAwsError('RunInstances', error)) : error;
      });
    }
    // Launched before anything waits, so that it boots while the workers do.
    const orchestrator = orchestratorGroup ? await this.#ensureOrchestratorInstance({ key: key.name, groupId: orchestratorGroup, ami }) : undefined;
    if (missing.length > 0) this.#say(`launched ${missing.join(', ')}; waiting for the instances to run`);

    const instances = await this.#waitRunning(wanted);
    const workers = wanted.map((id) => this.#workerRecord(id, instances.get(id)!, key));
    if (config.sshHostKeyCheck) await this.#writeKnownHosts(workers, instances);
    const targets = workers.flatMap((w) => this.#ports().map((port) => ({ name: `${w.id}-${port}`, host: w.host, port })));
    const probe = await this.#prober(workers);
    if (config.uploadImage) {
      for (const worker of workers) {
        const probes = await Promise.all(targets.filter((t) => t.host === worker.host).map(probe));
        if (!probes.every((p) => p.ok)) await this.#uploadImage(worker);
      }
    }
    await this.#waitHealthy(targets, instances, probe, options);
    const started = targets.filter((t) => missing.some((id) => t.name.startsWith(`${id}-`))).map((t) => t.name);
    const result: ProvisionResult = {
      workers,
      containers: targets.map((t) =>
        containerRecordSchema.parse({ id: t.name, workerId: t.name.split('-')[0], host: t.host, port: t.port, runtimeId: null, state: 'free' }),
      ),
      started,
      kept: targets.map((t) => t.name).filter((name) => !started.includes(name)),
      removed: extra.flatMap((i) => this.#ports().map((port) => `${workerIdOf(i)}-${port}`)),
    };
    if (orchestrator) result.orchestrator = await this.#deployOrchestrator(orchestrator, result, instances, key);
    return result;
  }

  async teardown(_current: Inventory): Promise<TeardownResult> {
    const instances = await this.#instances();
    // Whatever the config says now: an orchestrator an earlier run launched goes too.
    const orchestrator = await this.#orchestratorInstance();
    const doomed = [...instances.values(), ...(orchestrator ? [orchestrator] : [])];
    if (doomed.length > 0) {
      this.#say(`terminating ${[...instances.keys(), ...(orchestrator ? [ORCHESTRATOR_ROLE] : [])].join(', ')}`);
      await this.#terminate(doomed.map((i) => i.InstanceId!));
    }
    // The workers' group refers to the orchestrator's, which cannot go while referred to: workers' first.
    const group = await this.#findGroup(this.#groupName);
    if (group) await this.#deleteGroup(group.GroupId!);
    await this.#dropOrchestrator();
    const keyPair = await this.#call('DescribeKeyPairs', () =>
      this.#ec2.send(new DescribeKeyPairsCommand({ Filters: [{ Name: `tag:${TAGS.cluster}`, Values: [this.#config.cluster] }] })),
    );
    for (const created of keyPair.KeyPairs ?? []) {
      await this.#call('DeleteKeyPair', () => this.#ec2.send(new DeleteKeyPairCommand({ KeyName: created.KeyName })));
      await rm(this.#keyPath(), { force: true });
    }
    await rm(this.#knownHostsPath, { force: true });
    return { stopped: [...instances.keys()].sort().flatMap((id) => this.#ports().map((port) => `${id}-${port}`)), unknown: [] };
  }

  /** Describe what provision would do, and check with DryRun that the credentials may do it; creates nothing. */
  async plan(): Promise<Ec2Plan> {
    const config = this.#config;
    const steps: string[] = [];
    const denied: string[] = [];
    const keyName = config.keyName ?? this.#createdKeyName();
    const keys = await this.#describeKey(keyName);
    steps.push(keys ? `key pair ${keyName}: exists, used` : `key pair ${keyName}: create, private key saved to ${this.#keyPath()} (mode 0600)`);
    if (!keys) await this.#dryRun('CreateKeyPair', () => this.#ec2.send(new CreateKeyPairCommand({ KeyName: keyName, DryRun: true })), denied);
    const group = (await this.#findGroup(this.#groupName))?.GroupId;
    const orchestratorName = orchestratorGroupName(config.cluster);
    const openPorts = this.#rules(config.withOrchestrator ? { GroupName: orchestratorName } : undefined).map(describeRule);
    const rules = openPorts.join('; ');
    steps.push(group ? `security group ${this.#groupName} (${group}): exists, rules ensured: ${rules}` : `security group ${this.#groupName}: create with ${rules}`);
    if (!group) {
      await this.#dryRun('CreateSecurityGroup', () => this.#ec2.send(new CreateSecurityGroupCommand({ GroupName: this.#groupName, Description: 'x', DryRun: true })), denied);
    }
    const orchestratorGroup = (await this.#findGroup(orchestratorName))?.GroupId;
    const orchestrator = await this.#orchestratorInstance();
    if (config.withOrchestrator) {
      const orchestratorPorts = orchestratorRules(config).map((rule) => `${describeRule(rule)} to the orchestrator`);
      openPorts.push(...orchestratorPorts);
      const described = orchestratorPorts.join('; ');
      steps.push(
        orchestratorGroup
          ? `security group ${orchestratorName} (${orchestratorGroup}): exists, rules ensured: ${described}`
          : `security group ${orchestratorName}: create with ${described}`,
      );
      if (group && !orchestratorGroup) {
        await this.#dryRun('CreateSecurityGroup', () => this.#ec2.send(new CreateSecurityGroupCommand({ GroupName: orchestratorName, Description: 'x', DryRun: true })), denied);
      }
    } else {
      if (orchestrator) steps.push(`orchestrator: terminate ${orchestrator.InstanceId} (no withOrchestrator)`);
      if (orchestratorGroup) steps.push(`security group ${orchestratorName} (${orchestratorGroup}): delete`);
    }
    const ami = await this.#ami();
    steps.push(`AMI ${ami.id} (${ami.name}); root volume ${config.rootVolumeGb} GiB gp3, encrypted, on ${ami.rootDevice}`);
    const { wanted, existing, missing, extra } = await this.#workerDiff();
    for (const id of wanted.filter((w) => existing.has(w))) steps.push(`worker ${id}: keep ${existing.get(id)!.InstanceId}`);
    for (const id of missing) steps.push(`worker ${id}: launch one ${config.instanceType} with two model containers on ports ${this.#ports().join(' and ')}`);
    for (const i of extra) steps.push(`worker ${workerIdOf(i)}: terminate ${i.InstanceId}`);
    const launchOrchestrator = config.withOrchestrator && !orchestrator;
    if (config.withOrchestrator) {
      steps.push(
        orchestrator
          ? `orchestrator: keep ${orchestrator.InstanceId}, ${config.orchestratorImage} on port ${config.orchestratorPort} (redeployed if the inventory changed)`
          : `orchestrator: launch one ${config.orchestratorInstanceType} running ${config.orchestratorImage} on port ${config.orchestratorPort}, the workers at their private addresses`,
      );
    }
    if (missing.length > 0 || launchOrchestrator) {
      await this.#dryRun(
        'RunInstances',
        () =>
          this.#ec2.send(
            new RunInstancesCommand({ ImageId: ami.id, InstanceType: config.instanceType as never, MinCount: 1, MaxCount: 1, ...(group ? { SecurityGroupIds: [group] } : {}), DryRun: true }),
          ),
        denied,
      );
    }
    const terminated = [...extra, ...(orchestrator && !config.withOrchestrator ? [orchestrator] : [])];
    if (terminated.length > 0) {
      await this.#dryRun('TerminateInstances', () => this.#ec2.send(new TerminateInstancesCommand({ InstanceIds: terminated.map((i) => i.InstanceId!), DryRun: true })), denied);
    }
    return {
      steps,
      denied,
      region: await this.#ec2.config.region(),
      launches: [...missing.map((id) => `worker ${id}: ${config.instanceType}`), ...(launchOrchestrator ? [`${ORCHESTRATOR_ROLE}: ${config.orchestratorInstanceType}`] : [])],
      openPorts,
    };
  }

  /** The waiters' limit: launchTimeoutMs, but never shorter than two polls (the SDK refuses that). */
  #waitSeconds(): number {
    return Math.max(Math.ceil(this.#config.launchTimeoutMs / 1000), this.#poll * 2);
  }

  /** The worker's ports on its own machine: basePort and the next one. */
  #ports(): [number, number] {
    return [this.#config.basePort, this.#config.basePort + 1];
  }

  /** Every port the worker's containers may use: its record promises them, the security group opens them. */
  #portRange(): { first: number; last: number } {
    return { first: this.#config.basePort, last: this.#config.basePort + WORKER_PORT_COUNT - 1 };
  }

  #createdKeyName(): string {
    return `${this.#config.cluster}-workers`;
  }

  #keyPath(): string {
    return resolve(this.#config.sshKeyPath ?? join(this.#keysDir, `${this.#config.cluster}.pem`));
  }

  #tags(extra: Record<string, string> = {}): Tag[] {
    return Object.entries({ [TAGS.cluster]: this.#config.cluster, ...extra }).map(([Key, Value]) => ({ Key, Value }));
  }

  async #describeKey(name: string): Promise<boolean> {
    try {
      const found = await this.#ec2.send(new DescribeKeyPairsCommand({ KeyNames: [name] }));
      return (found.KeyPairs ?? []).length > 0;
    } catch (error) {
      if (awsCode(error) === 'InvalidKeyPair.NotFound') return false;
      throw toAwsError('DescribeKeyPairs', error);
    }
  }

  /** The configured key pair (its private key must be here), or ours: created once, its private key saved at mode 0600. */
  async #ensureKeyPair(): Promise<KeyPair> {
    const path = this.#keyPath();
    if (this.#config.keyName) {
      if (!(await this.#describeKey(this.#config.keyName))) throw new KeyPairError(`key pair ${this.#config.keyName} does not exist in EC2`);
      await readFile(path).catch(() => {
        throw new KeyPairError(`cannot read the private key of key pair ${this.#config.keyName} at ${path}`);
      });
      return { name: this.#config.keyName, path };
    }
    const name = this.#createdKeyName();
    if (await this.#describeKey(name)) {
      const present = await readFile(path).then(() => true, () => false);
      if (!present) throw new KeyPairError(`key pair ${name} exists in EC2 but its private key is not at ${path}; teardown deletes it, or name another with keyName and sshKeyPath`);
      return { name, path };
    }
    const created = await this.#call('CreateKeyPair', () =>
      this.#ec2.send(
        new CreateKeyPairCommand({
          KeyName: name,
          KeyType: 'ed25519',
          TagSpecifications: [{ ResourceType: 'key-pair', Tags: this.#tags({ [TAGS.createdBy]: 'provisioning' }) }],
        }),
      ),
    );
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    await writeFile(path, created.KeyMaterial ?? '', { mode: 0o600 });
    await chmod(path, 0o600);
    this.#say(`created key pair ${name}; private key in ${path}`);
    return { name, path };
  }

  /**
   * The workers' group: SSH from sshCidr, the model ports from orchestratorCidr; or, with the
   * orchestrator, the model ports and SSH (its Docker driver) from the orchestrator's group.
   */
  #rules(orchestrator?: UserIdGroupPair): IpPermission[] {
    const { first, last } = this.#portRange();
    const ssh: IpPermission = { IpProtocol: 'tcp', FromPort: 22, ToPort: 22, IpRanges: [{ CidrIp: this.#config.sshCidr!, Description: 'SSH from the operator' }] };
    if (orchestrator) {
      return [
        { ...ssh, UserIdGroupPairs: [{ ...orchestrator, Description: 'Docker over SSH from the orchestrator' }] },
        { IpProtocol: 'tcp', FromPort: first, ToPort: last, UserIdGroupPairs: [{ ...orchestrator, Description: 'model ports from the orchestrator' }] },
      ];
    }
    const cidr = this.#config.orchestratorCidr ?? this.#config.sshCidr!;
    return [ssh, { IpProtocol: 'tcp', FromPort: first, ToPort: last, IpRanges: [{ CidrIp: cidr, Description: 'model ports from the orchestrator' }] }];
  }

  async #findGroup(name: string): Promise<SecurityGroup | undefined> {
    const found = await this.#call('DescribeSecurityGroups', () =>
      this.#ec2.send(
        new DescribeSecurityGroupsCommand({
          Filters: [
            { Name: 'group-name', Values: [name] },
            { Name: `tag:${TAGS.cluster}`, Values: [this.#config.cluster] },
          ],
        }),
      ),
    );
    return found.SecurityGroups?.[0];
  }

  /**
   * The group `name` with exactly `rules`: created once, missing rules added and others revoked on
   * every run (a changed CIDR, or the model ports moving between a CIDR and the orchestrator's group).
   */
  async #ensureSecurityGroup(name: string, description: string, rules: IpPermission[]): Promise<string> {
    const group = await this.#findGroup(name);
    let groupId = group?.GroupId;
    if (!groupId) {
      const created = await this.#call('CreateSecurityGroup', () =>
        this.#ec2.send(
          new CreateSecurityGroupCommand({
            GroupName: name,
            Description: description,
            TagSpecifications: [{ ResourceType: 'security-group', Tags: this.#tags({ [TAGS.createdBy]: 'provisioning' }) }],
          }),
        ),
      );
      groupId = created.GroupId!;
      this.#say(`created security group ${name} (${groupId})`);
    }
    const have = singleSourceRules(group?.IpPermissions ?? []);
    const want = singleSourceRules(rules);
    const missing = [...want].filter(([key]) => !have.has(key)).map(([, rule]) => rule);
    const stale = [...have].filter(([key]) => !want.has(key)).map(([, rule]) => rule);
    if (missing.length > 0) {
      try {
        await this.#ec2.send(new AuthorizeSecurityGroupIngressCommand({ GroupId: groupId, IpPermissions: missing }));
      } catch (error) {
        if (awsCode(error) !== 'InvalidPermission.Duplicate') throw toAwsError('AuthorizeSecurityGroupIngress', error);
      }
    }
    if (stale.length > 0) {
      this.#say(`security group ${name}: revoking ${stale.map(describeRule).join('; ')}`);
      await this.#call('RevokeSecurityGroupIngress', () => this.#ec2.send(new RevokeSecurityGroupIngressCommand({ GroupId: groupId, IpPermissions: stale })));
    }
    return groupId;
  }

  /** The cluster's pending or running orchestrator instance. */
  async #orchestratorInstance(): Promise<Instance | undefined> {
    return (await this.#liveInstances(ORCHESTRATOR_ROLE))[0];
  }

  /** The orchestrator's instance id: the running one, or one launched now (a boot script installs Docker; nothing secret in it). */
  async #ensureOrchestratorInstance(with_: { key: string; groupId: string; ami: { id: string; rootDevice: string } }): Promise<string> {
    const existing = await this.#orchestratorInstance();
    if (existing) return existing.InstanceId!;
    const tags = this.#tags({ [TAGS.role]: ORCHESTRATOR_ROLE, Name: `${this.#config.cluster}-${ORCHESTRATOR_ROLE}` });
    const launched = await this.#call('RunInstances', () => this.#ec2.send(new RunInstancesCommand(orchestratorLaunch(this.#config, { ...with_, tags }))));
    const id = launched.Instances?.[0]?.InstanceId;
    if (!id) throw toAwsError('RunInstances', new Error('the answer names no instance'));
    this.#say(`launched the orchestrator's instance ${id}`);
    return id;
  }

  /**
   * Put the inventory (private addresses) and the worker key on the orchestrator's instance over
   * SSH, checking its host key like the workers', and start the orchestrator there.
   */
  async #deployOrchestrator(instanceId: string, inventory: Inventory, workers: Map<string, Instance>, key: KeyPair): Promise<NonNullable<ProvisionResult['orchestrator']>> {
    const config = this.#config;
    await this.#wait(waitUntilInstanceRunning, [instanceId], 'running');
    const described = await this.#call('DescribeInstances', () => this.#ec2.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] })));
    const instance = described.Reservations?.[0]?.Instances?.[0];
    const host = config.addressType === 'public' ? instance?.PublicIpAddress : instance?.PrivateIpAddress;
    if (!host) throw new WorkersUnhealthyError(`the orchestrator's instance ${instanceId} has no ${config.addressType} address`);
    const privateAddresses = new Map(inventory.workers.map((w) => [w.id, workers.get(w.id)?.PrivateIpAddress ?? '']));
    let knownHosts: string | null = null;
    if (config.sshHostKeyCheck) {
      knownHosts = renameKnownHosts(await readFile(this.#knownHostsPath, 'utf8'), knownHostRenames(inventory.workers, privateAddresses, config.sshPort));
      const keys = await this.#consoleHostKeys(instanceId, `the orchestrator's instance`, Date.now() + config.launchTimeoutMs);
      await appendFile(this.#knownHostsPath, keys.map((k) => `${knownHostName(host, config.sshPort)} ${k}\n`).join(''));
    }
    const privateKey = await readFile(key.path);
    const target: SshTarget = {
      host,
      port: config.sshPort,
      username: config.sshUser,
      privateKey,
      ...(config.sshHostKeyCheck ? { knownHostsPath: this.#knownHostsPath } : { insecureSkipHostKeyCheck: true }),
    };
    const deployed = await deployOrchestrator(
      target,
      config.cluster,
      { inventory: orchestratorInventory(config.cluster, inventory, privateAddresses, config.sshHostKeyCheck), workerKey: privateKey, knownHosts },
      { image: config.orchestratorImage, port: config.orchestratorPort, uploadImage: config.uploadImage, deadline: Date.now() + config.launchTimeoutMs, pollMs: this.#poll * 1000, say: this.#say },
    );
    const url = `http://${host.includes(':') ? `[${host}]` : host}:${config.orchestratorPort}`;
    this.#say(`orchestrator ${deployed.action} at ${url} (instance ${instanceId})`);
    return { url, instanceId, startedAt: deployed.startedAt };
  }

  /** Terminate the cluster's orchestrator instance, then delete its group (nothing refers to it any more). */
  async #dropOrchestrator(): Promise<void> {
    const instance = await this.#orchestratorInstance();
    if (instance) {
      this.#say(`terminating the orchestrator's instance ${instance.InstanceId}`);
      await this.#terminate([instance.InstanceId!]);
    }
    const group = await this.#findGroup(orchestratorGroupName(this.#config.cluster));
    if (group) await this.#deleteGroup(group.GroupId!);
  }

  async #ami(): Promise<{ id: string; name: string; rootDevice: string }> {
    const amiId = this.#config.amiId;
    const images = await this.#call('DescribeImages', async () => {
      try {
        return await this.#ec2.send(
          amiId
            ? new DescribeImagesCommand({ ImageIds: [amiId] })
            : new DescribeImagesCommand({
                Owners: [UBUNTU_OWNER],
                Filters: [
                  { Name: 'name', Values: [UBUNTU_NAME] },
                  { Name: 'state', Values: ['available'] },
                  { Name: 'architecture', Values: ['x86_64'] },
                ],
              }),
        );
      } catch (error) {
        if (amiId && awsCode(error)?.startsWith('InvalidAMIID.')) return { Images: [] };
        throw error;
      }
    });
    const region = await this.#ec2.config.region();
    const newest = (images.Images ?? []).sort((a, b) => String(b.CreationDate).localeCompare(String(a.CreationDate)))[0];
    if (!newest?.ImageId) {
      throw new ConfigError(
        amiId
          ? `amiId: expected an image of region ${region}, received ${amiId}, which does not exist there (or is not shared with this account)`
          : `amiId: expected an image: none given, and no Ubuntu 24.04 amd64 server image of Canonical (owner ${UBUNTU_OWNER}) is available in region ${region}`,
      );
    }
    if (!newest.RootDeviceName) throw new ConfigError(`amiId: expected an EBS-backed image, received ${newest.ImageId}, which names no root device`);
    return { id: newest.ImageId, name: newest.Name ?? '', rootDevice: newest.RootDeviceName };
  }

  /** The workers the config wants, the instances running now, the wanted ones missing, and the instances of unwanted workers. */
  async #workerDiff(): Promise<{ wanted: string[]; existing: Map<string, Instance>; missing: string[]; extra: Instance[] }> {
    const wanted = workerIds(this.#config);
    const existing = await this.#instances();
    return {
      wanted,
      existing,
      missing: wanted.filter((id) => !existing.has(id)),
      extra: [...existing].filter(([id]) => !wanted.includes(id)).map(([, instance]) => instance),
    };
  }

  /** The cluster's pending or running worker instances, by worker id. */
  async #instances(): Promise<Map<string, Instance>> {
    const byWorker = new Map<string, Instance>();
    for (const instance of await this.#liveInstances('worker')) {
      const id = workerIdOf(instance);
      if (id) byWorker.set(id, instance);
    }
    return byWorker;
  }

  /** The cluster's pending or running instances of one role (its tag). */
  async #liveInstances(role: string): Promise<Instance[]> {
    const found = await this.#call('DescribeInstances', () =>
      this.#ec2.send(
        new DescribeInstancesCommand({
          Filters: [
            { Name: `tag:${TAGS.cluster}`, Values: [this.#config.cluster] },
            { Name: `tag:${TAGS.role}`, Values: [role] },
            { Name: 'instance-state-name', Values: LIVE_STATES },
          ],
        }),
      ),
    );
    return (found.Reservations ?? []).flatMap((r) => r.Instances ?? []);
  }

  async #launch(workerId: string, with_: { key: string; groupId: string; ami: { id: string; rootDevice: string } }): Promise<void> {
    const config = this.#config;
    const { env, resources } = containerTemplate(config);
    const userData = workerUserData({
      cluster: config.cluster,
      workerId,
      image: config.workerImage,
      imageSource: config.uploadImage ? 'upload' : 'registry',
      sshUser: config.sshUser,
      ports: this.#ports(),
      env,
      resources,
    });
    const tags = this.#tags({ [TAGS.role]: 'worker', [TAGS.worker]: workerId, Name: `${config.cluster}-${workerId}` });
    await this.#call('RunInstances', () =>
      this.#ec2.send(new RunInstancesCommand(instanceLaunch(config, { ...with_, instanceType: config.instanceType, tags, userData }))),
    );
  }

  /**
   * Each worker's instance, once all run. EC2 is eventually consistent: a just-launched instance may
   * be missing from a filtered describe for a moment, so wait until each is listed; a waiter given
   * no ids would describe, and wait for, every instance of the account.
   */
  async #waitRunning(workerIds: string[]): Promise<Map<string, Instance>> {
    const deadline = Date.now() + this.#config.launchTimeoutMs;
    let instances = await this.#instances();
    while (workerIds.some((id) => !instances.has(id)) && Date.now() < deadline) {
      await sleep(this.#poll * 1000);
      instances = await this.#instances();
    }
    const unlisted = workerIds.filter((id) => !instances.has(id));
    if (unlisted.length > 0) throw new WorkersUnhealthyError(`no pending or running instance of ${unlisted.join(', ')} after ${this.#config.launchTimeoutMs} ms`);
    await this.#wait(waitUntilInstanceRunning, workerIds.map((id) => instances.get(id)!.InstanceId!), 'running');
    instances = await this.#instances();
    for (const id of workerIds) if (!instances.has(id)) throw new WorkersUnhealthyError(`worker ${id}'s instance is gone`);
    return instances;
  }

  #workerRecord(id: string, instance: Instance, key: KeyPair): WorkerRecord {
    const host = this.#config.addressType === 'public' ? instance.PublicIpAddress : instance.PrivateIpAddress;
    if (!host) throw new WorkersUnhealthyError(`worker ${id} (${instance.InstanceId}) has no ${this.#config.addressType} address`);
    return workerRecordSchema.parse({
      id,
      provider: 'aws',
      host,
      runtime: {
        driver: 'docker',
        ssh: {
          host,
          port: this.#config.sshPort,
          username: this.#config.sshUser,
          privateKeyPath: key.path,
          ...(this.#config.sshHostKeyCheck ? { knownHostsPath: this.#knownHostsPath } : { insecureSkipHostKeyCheck: true }),
        },
      },
      ports: this.#portRange(),
      template: containerTemplate(this.#config),
    });
  }

  /**
   * cloud-init prints each instance's SSH host keys on its console: read them into a known_hosts
   * file, so the orchestrator's SSH connections are verified from the first one.
   */
  async #writeKnownHosts(workers: WorkerRecord[], instances: Map<string, Instance>): Promise<void> {
    const lines: string[] = [];
    const deadline = Date.now() + this.#config.launchTimeoutMs;
    for (const worker of workers) {
      const keys = await this.#consoleHostKeys(instances.get(worker.id)!.InstanceId!, `worker ${worker.id}`, deadline);
      lines.push(...keys.map((key) => `${knownHostName(worker.host, this.#config.sshPort)} ${key}`));
    }
    await mkdir(this.#keysDir, { recursive: true, mode: 0o700 });
    await writeFile(this.#knownHostsPath, `${lines.join('\n')}\n`, { mode: 0o644 });
  }

  /** The host keys an instance's cloud-init printed on its console, once there; `what` names it in the error. */
  async #consoleHostKeys(instanceId: string, what: string, deadline: number): Promise<string[]> {
    for (;;) {
      const output = await this.#call('GetConsoleOutput', () => this.#ec2.send(new GetConsoleOutputCommand({ InstanceId: instanceId, Latest: true })));
      const keys = hostKeysOf(Buffer.from(output.Output ?? '', 'base64').toString('utf8'));
      if (keys.length > 0) return keys;
      if (Date.now() > deadline) {
        throw new WorkersUnhealthyError(`${what} (${instanceId}) printed no SSH host keys on its console (set sshHostKeyCheck false only if you accept unverified SSH)`);
      }
      await sleep(this.#poll * 1000);
    }
  }

  /**
   * `docker save` here, piped over SSH into `docker load` there, once Docker answers there (the
   * worker's user-data installs it, then waits for the image).
   */
  async #uploadImage(worker: WorkerRecord): Promise<void> {
    const target = await this.#sshTarget(worker);
    const fail = (message: string): ImageUploadError => new ImageUploadError(message);
    this.#say(`waiting for Docker on ${worker.id} to upload ${this.#config.workerImage}`);
    await waitForDocker(target, `worker ${worker.id}`, { deadline: Date.now() + this.#config.launchTimeoutMs, pollMs: this.#poll * 1000, fail });
    this.#say(`${worker.id}: ${await loadImage(target, this.#config.workerImage, `worker ${worker.id}`, fail)}`);
  }

  /** How a container's health path is probed: directly, or through an SSH tunnel to its worker. */
  async #prober(workers: WorkerRecord[]): Promise<(target: HealthTarget) => Promise<HealthProbe>> {
    if (this.#config.healthVia === 'direct') return (target) => probeHealth(target, this.#config.healthPath);
    const sshTargets = new Map<string, SshTarget>();
    for (const worker of workers) sshTargets.set(worker.host, await this.#sshTarget(worker));
    return async (target) => {
      try {
        const { status, body } = await sshHttpGet(sshTargets.get(target.host)!, target.port, this.#config.healthPath, 5_000);
        return judgeHealth(target, status, body);
      } catch (error) {
        return { ok: false, reason: `through SSH: ${(error as Error).message}` };
      }
    };
  }

  async #sshTarget(worker: WorkerRecord): Promise<SshTarget> {
    if (worker.runtime.driver !== 'docker' || !worker.runtime.ssh) throw new Error(`worker ${worker.id} has no SSH connection`);
    const { privateKeyPath, ...ssh } = worker.runtime.ssh;
    return { ...ssh, privateKey: await readFile(privateKeyPath) };
  }

  async #waitHealthy(
    targets: HealthTarget[],
    instances: Map<string, Instance>,
    probe: (target: HealthTarget) => Promise<HealthProbe>,
    options: ProvisionOptions,
  ): Promise<void> {
    const deadline = Date.now() + this.#config.launchTimeoutMs;
    let last = -1;
    for (;;) {
      const probes = (await probeAll(targets, probe)).map((outcome, i) => ({ target: targets[i]!, probe: outcome }));
      const healthy = probes.filter((p) => p.probe.ok).length;
      if (healthy !== last) options.onProgress?.(healthy, targets.length);
      last = healthy;
      if (healthy === targets.length) return;
      if (Date.now() > deadline || options.signal?.aborted) {
        const failing = probes
          .filter((p) => !p.probe.ok)
          .map((p) => {
            const workerId = p.target.name.split('-')[0]!;
            return `${p.target.name} on ${instances.get(workerId)?.InstanceId} (${p.target.host}:${p.target.port}: ${(p.probe as { reason: string }).reason})`;
          });
        throw new WorkersUnhealthyError(`${failing.length} of ${targets.length} containers never answered ${this.#config.healthPath}: ${failing.join(', ')}`);
      }
      await sleep(Math.min(this.#poll * 1000, 5_000));
    }
  }

  async #terminate(instanceIds: string[]): Promise<void> {
    await this.#call('TerminateInstances', () => this.#ec2.send(new TerminateInstancesCommand({ InstanceIds: instanceIds })));
    await this.#wait(waitUntilInstanceTerminated, instanceIds, 'terminated');
  }

  /**
   * Wait with one of the SDK's instance waiters, polling every few seconds up to launchTimeoutMs. Its
   * errors say only "Waiter has timed out" or dump a response: ours names each instance, its worker
   * and the state it is in.
   */
  async #wait(waiter: typeof waitUntilInstanceRunning, instanceIds: string[], state: 'running' | 'terminated'): Promise<void> {
    const seconds = this.#waitSeconds();
    try {
      await waiter({ client: this.#ec2, maxWaitTime: seconds, minDelay: this.#poll, maxDelay: this.#poll * 4 }, { InstanceIds: instanceIds });
    } catch (error) {
      const found = await this.#ec2.send(new DescribeInstancesCommand({ InstanceIds: instanceIds })).then(
        (answer) => (answer.Reservations ?? []).flatMap((r) => r.Instances ?? []),
        () => [] as Instance[],
      );
      const named = instanceIds.map((id) => {
        const instance = found.find((i) => i.InstanceId === id);
        const worker = instance && workerIdOf(instance);
        const why = instance?.StateReason?.Message;
        return `${worker ? `${worker} ` : ''}${id} (${instance?.State?.Name ?? 'state unknown'}${why ? `: ${why}` : ''})`;
      });
      const outcome = (error as Error).name === 'TimeoutError' ? `not within ${seconds} s` : 'one of them cannot get there any more';
      const advice =
        state === 'running'
          ? 'they are left as they are: run provision again to keep waiting (a terminated one is replaced), or `npm run teardown -- --provider aws` to remove them'
          : 'run teardown again to finish';
      throw new InstanceWaitError(state, outcome, instanceIds, named, advice, error);
    }
  }

  /** The group stays in use for a while after its instances terminated: retry DependencyViolation up to launchTimeoutMs, then name the group. */
  async #deleteGroup(groupId: string): Promise<void> {
    const deadline = Date.now() + this.#config.launchTimeoutMs;
    for (let attempt = 0; ; attempt++) {
      try {
        await this.#ec2.send(new DeleteSecurityGroupCommand({ GroupId: groupId }));
        return;
      } catch (error) {
        if (awsCode(error) !== 'DependencyViolation') throw toAwsError('DeleteSecurityGroup', error);
        if (Date.now() > deadline) {
          const name = await this.#ec2.send(new DescribeSecurityGroupsCommand({ GroupIds: [groupId] })).then(
            (answer) => answer.SecurityGroups?.[0]?.GroupName,
            () => undefined,
          );
          throw new SecurityGroupInUseError(name ? `${name} (${groupId})` : groupId, this.#config.launchTimeoutMs, error);
        }
        if (attempt === 0) this.#say(`security group ${groupId} is still in use; retrying for up to ${this.#config.launchTimeoutMs} ms`);
        this.#log.info({ groupId }, 'security group still in use; retrying');
        await sleep(this.#poll * 1000);
      }
    }
  }

  async #dryRun(action: string, call: () => Promise<unknown>, denied: string[]): Promise<void> {
    try {
      await call();
    } catch (error) {
      const code = awsCode(error);
      if (code === 'DryRunOperation') return;
      if (code === 'UnauthorizedOperation') {
        denied.push(action);
        return;
      }
      throw toAwsError(action, error);
    }
  }

  async #call<T>(action: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      throw toAwsError(action, error);
    }
  }
}

/** The worker an instance runs, from its tag. */
function workerIdOf(instance: Instance): string | undefined {
  return instance.Tags?.find((t) => t.Key === TAGS.worker)?.Value;
}

/** `ssh-ed25519 AAAA...` lines of cloud-init's host key block in a console output. */
export function hostKeysOf(console: string): string[] {
  const block = /-----BEGIN SSH HOST KEY KEYS-----\r?\n([\s\S]*?)-----END SSH HOST KEY KEYS-----/.exec(console)?.[1] ?? '';
  return block
    .split(/\r?\n/)
    .map((line) => line.trim().split(/\s+/).slice(0, 2))
    .filter(([type, key]) => key !== undefined && (type!.startsWith('ssh-') || type!.startsWith('ecdsa-')))
    .map(([type, key]) => `${type} ${key}`);
}

function describeRule(rule: IpPermission): string {
  const ports = rule.FromPort === rule.ToPort ? `${rule.FromPort}` : `${rule.FromPort}-${rule.ToPort}`;
  const sources = [...(rule.IpRanges ?? []).map((r) => r.CidrIp), ...(rule.UserIdGroupPairs ?? []).map((p) => `security group ${p.GroupName ?? p.GroupId}`)];
  return `tcp ${ports} from ${sources.join(', ')}`;
}

/** Rules one source each (an IPv4 range or a group), keyed by protocol, ports and source: what a group has and what it should have compare. */
function singleSourceRules(rules: IpPermission[]): Map<string, IpPermission> {
  const single = new Map<string, IpPermission>();
  for (const { IpProtocol, FromPort, ToPort, IpRanges, UserIdGroupPairs } of rules) {
    const ports = { IpProtocol, FromPort, ToPort };
    for (const range of IpRanges ?? []) single.set(`${IpProtocol}:${FromPort}-${ToPort}:${range.CidrIp}`, { ...ports, IpRanges: [range] });
    for (const pair of UserIdGroupPairs ?? []) single.set(`${IpProtocol}:${FromPort}-${ToPort}:${pair.GroupId}`, { ...ports, UserIdGroupPairs: [{ GroupId: pair.GroupId, Description: pair.Description }] });
  }
  return single;
}
