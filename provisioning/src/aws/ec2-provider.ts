import { spawn } from 'node:child_process';
import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
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
  RunInstancesCommand,
  TerminateInstancesCommand,
  waitUntilInstanceRunning,
  waitUntilInstanceTerminated,
  type Instance,
  type IpPermission,
  type Tag,
} from '@aws-sdk/client-ec2';
import type { Logger } from '../../../common/src/logger.js';
import { knownHostName } from '../../../runtime/src/known-hosts.js';
import type { SshTarget } from '../../../runtime/src/ssh-connection.js';
import { containerRecordSchema, workerRecordSchema, type WorkerRecord } from '../../../status/src/schema.js';
import type { ProvisionConfig } from '../config.js';
import { containerTemplate, workerIds, type Inventory } from '../inventory.js';
import type { ProvisionOptions, ProvisionResult, Provider, TeardownResult } from '../provider.js';
import { judgeHealth, probeHealth, type HealthProbe, type HealthTarget } from '../wait-healthy.js';
import { awsCode, ImageUploadError, KeyPairError, toAwsError, WorkersUnhealthyError } from './aws-errors.js';
import { sshExec, sshHttpGet } from './ssh-exec.js';
import { workerUserData } from './user-data.js';

/** Tag keys on everything provisioning creates in EC2. */
export const TAGS = {
  cluster: 'io.inference-orchestrator.cluster',
  role: 'io.inference-orchestrator.role',
  worker: 'io.inference-orchestrator.worker',
  createdBy: 'io.inference-orchestrator.created-by',
} as const;

/** Canonical's account, and its Ubuntu 24.04 LTS amd64 server images. */
const UBUNTU_OWNER = '099720683109';
const UBUNTU_NAME = 'ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*';
const LIVE_STATES = ['pending', 'running'];

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
    const key = await this.#ensureKeyPair();
    const groupId = await this.#ensureSecurityGroup();
    const ami = await this.#ami();
    const { wanted, missing, extra } = await this.#workerDiff();
    if (extra.length > 0) await this.#terminate(extra.map((i) => i.InstanceId!));
    for (const workerId of missing) await this.#launch(workerId, { key: key.name, groupId, ami: ami.id });
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
    return {
      workers,
      containers: targets.map((t) =>
        containerRecordSchema.parse({ id: t.name, workerId: t.name.split('-')[0], host: t.host, port: t.port, runtimeId: null, state: 'free' }),
      ),
      started,
      kept: targets.map((t) => t.name).filter((name) => !started.includes(name)),
      removed: extra.flatMap((i) => this.#ports().map((port) => `${workerIdOf(i)}-${port}`)),
    };
  }

  async teardown(_current: Inventory): Promise<TeardownResult> {
    const instances = await this.#instances();
    if (instances.size > 0) {
      this.#say(`terminating ${[...instances.keys()].join(', ')}`);
      await this.#terminate([...instances.values()].map((i) => i.InstanceId!));
    }
    const group = await this.#findGroup();
    if (group) await this.#deleteGroup(group);
    const keyPair = await this.#call('DescribeKeyPairs', () =>
      this.#ec2.send(new DescribeKeyPairsCommand({ Filters: [{ Name: `tag:${TAGS.cluster}`, Values: [this.#config.cluster] }] })),
    );
    for (const created of keyPair.KeyPairs ?? []) {
      await this.#call('DeleteKeyPair', () => this.#ec2.send(new DeleteKeyPairCommand({ KeyPairId: created.KeyPairId })));
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
    const group = await this.#findGroup();
    const rules = this.#rules().map(describeRule).join('; ');
    steps.push(group ? `security group ${this.#groupName} (${group}): exists, rules ensured: ${rules}` : `security group ${this.#groupName}: create with ${rules}`);
    if (!group) {
      await this.#dryRun('CreateSecurityGroup', () => this.#ec2.send(new CreateSecurityGroupCommand({ GroupName: this.#groupName, Description: 'x', DryRun: true })), denied);
    }
    const ami = await this.#ami();
    steps.push(`AMI ${ami.id} (${ami.name})`);
    const { wanted, existing, missing, extra } = await this.#workerDiff();
    for (const id of wanted.filter((w) => existing.has(w))) steps.push(`worker ${id}: keep ${existing.get(id)!.InstanceId}`);
    for (const id of missing) steps.push(`worker ${id}: launch one ${config.instanceType} with two model containers on ports ${this.#ports().join(' and ')}`);
    for (const i of extra) steps.push(`worker ${workerIdOf(i)}: terminate ${i.InstanceId}`);
    if (missing.length > 0) {
      await this.#dryRun(
        'RunInstances',
        () =>
          this.#ec2.send(
            new RunInstancesCommand({ ImageId: ami.id, InstanceType: config.instanceType as never, MinCount: 1, MaxCount: 1, ...(group ? { SecurityGroupIds: [group] } : {}), DryRun: true }),
          ),
        denied,
      );
    }
    if (extra.length > 0) {
      await this.#dryRun('TerminateInstances', () => this.#ec2.send(new TerminateInstancesCommand({ InstanceIds: extra.map((i) => i.InstanceId!), DryRun: true })), denied);
    }
    return { steps, denied };
  }

  /** The waiters' limit: launchTimeoutMs, but never shorter than two polls (the SDK refuses that). */
  #waitSeconds(): number {
    return Math.max(Math.ceil(this.#config.launchTimeoutMs / 1000), this.#poll * 2);
  }

  /** The worker's ports on its own machine: basePort and the next one. */
  #ports(): [number, number] {
    return [this.#config.basePort, this.#config.basePort + 1];
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

  #rules(): IpPermission[] {
    const [first, last] = this.#ports();
    const orchestrator = this.#config.orchestratorCidr ?? this.#config.sshCidr!;
    return [
      { IpProtocol: 'tcp', FromPort: 22, ToPort: 22, IpRanges: [{ CidrIp: this.#config.sshCidr!, Description: 'SSH from the operator' }] },
      { IpProtocol: 'tcp', FromPort: first, ToPort: last, IpRanges: [{ CidrIp: orchestrator, Description: 'model ports from the orchestrator' }] },
    ];
  }

  async #findGroup(): Promise<string | undefined> {
    const found = await this.#call('DescribeSecurityGroups', () =>
      this.#ec2.send(
        new DescribeSecurityGroupsCommand({
          Filters: [
            { Name: 'group-name', Values: [this.#groupName] },
            { Name: `tag:${TAGS.cluster}`, Values: [this.#config.cluster] },
          ],
        }),
      ),
    );
    return found.SecurityGroups?.[0]?.GroupId;
  }

  /** SSH from sshCidr, the model ports from the orchestrator, nothing else; created once, rules ensured every run. */
  async #ensureSecurityGroup(): Promise<string> {
    let groupId = await this.#findGroup();
    if (!groupId) {
      const created = await this.#call('CreateSecurityGroup', () =>
        this.#ec2.send(
          new CreateSecurityGroupCommand({
            GroupName: this.#groupName,
            Description: `inference-orchestrator workers of cluster ${this.#config.cluster}`,
            TagSpecifications: [{ ResourceType: 'security-group', Tags: this.#tags({ [TAGS.createdBy]: 'provisioning' }) }],
          }),
        ),
      );
      groupId = created.GroupId!;
      this.#say(`created security group ${this.#groupName} (${groupId})`);
    }
    try {
      await this.#ec2.send(new AuthorizeSecurityGroupIngressCommand({ GroupId: groupId, IpPermissions: this.#rules() }));
    } catch (error) {
      if (awsCode(error) !== 'InvalidPermission.Duplicate') throw toAwsError('AuthorizeSecurityGroupIngress', error);
    }
    return groupId;
  }

  async #ami(): Promise<{ id: string; name: string }> {
    if (this.#config.amiId) return { id: this.#config.amiId, name: 'from config' };
    const images = await this.#call('DescribeImages', () =>
      this.#ec2.send(
        new DescribeImagesCommand({
          Owners: [UBUNTU_OWNER],
          Filters: [
            { Name: 'name', Values: [UBUNTU_NAME] },
            { Name: 'state', Values: ['available'] },
            { Name: 'architecture', Values: ['x86_64'] },
          ],
        }),
      ),
    );
    const newest = (images.Images ?? []).sort((a, b) => String(b.CreationDate).localeCompare(String(a.CreationDate)))[0];
    if (!newest?.ImageId) throw toAwsError('DescribeImages', new Error(`no Ubuntu 24.04 image found in the region; set amiId`));
    return { id: newest.ImageId, name: newest.Name ?? '' };
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
    const found = await this.#call('DescribeInstances', () =>
      this.#ec2.send(
        new DescribeInstancesCommand({
          Filters: [
            { Name: `tag:${TAGS.cluster}`, Values: [this.#config.cluster] },
            { Name: `tag:${TAGS.role}`, Values: ['worker'] },
            { Name: 'instance-state-name', Values: LIVE_STATES },
          ],
        }),
      ),
    );
    const byWorker = new Map<string, Instance>();
    for (const instance of (found.Reservations ?? []).flatMap((r) => r.Instances ?? [])) {
      const id = workerIdOf(instance);
      if (id) byWorker.set(id, instance);
    }
    return byWorker;
  }

  async #launch(workerId: string, with_: { key: string; groupId: string; ami: string }): Promise<void> {
    const config = this.#config;
    const userData = workerUserData({
      cluster: config.cluster,
      workerId,
      image: config.workerImage,
      imageSource: config.uploadImage ? 'upload' : 'registry',
      sshUser: config.sshUser,
      ports: this.#ports(),
      env: containerTemplate(config).env,
    });
    const tags = this.#tags({ [TAGS.role]: 'worker', [TAGS.worker]: workerId, Name: `${config.cluster}-${workerId}` });
    await this.#call('RunInstances', () =>
      this.#ec2.send(
        new RunInstancesCommand({
          ImageId: with_.ami,
          InstanceType: config.instanceType as never,
          MinCount: 1,
          MaxCount: 1,
          KeyName: with_.key,
          SecurityGroupIds: [with_.groupId],
          UserData: Buffer.from(userData).toString('base64'),
          TagSpecifications: [
            { ResourceType: 'instance', Tags: tags },
            { ResourceType: 'volume', Tags: tags },
          ],
        }),
      ),
    );
  }

  async #waitRunning(workerIds: string[]): Promise<Map<string, Instance>> {
    let instances = await this.#instances();
    const ids = workerIds.map((id) => instances.get(id)?.InstanceId).filter((id): id is string => id !== undefined);
    await this.#wait(waitUntilInstanceRunning, ids, 'running');
    instances = await this.#instances();
    for (const id of workerIds) if (!instances.has(id)) throw new WorkersUnhealthyError(`worker ${id}'s instance is gone`);
    return instances;
  }

  #workerRecord(id: string, instance: Instance, key: KeyPair): WorkerRecord {
    const host = this.#config.addressType === 'public' ? instance.PublicIpAddress : instance.PrivateIpAddress;
    if (!host) throw new WorkersUnhealthyError(`worker ${id} (${instance.InstanceId}) has no ${this.#config.addressType} address`);
    const [first] = this.#ports();
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
      ports: { first, last: first + 9 },
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
      const instanceId = instances.get(worker.id)!.InstanceId!;
      for (;;) {
        const output = await this.#call('GetConsoleOutput', () => this.#ec2.send(new GetConsoleOutputCommand({ InstanceId: instanceId, Latest: true })));
        const keys = hostKeysOf(Buffer.from(output.Output ?? '', 'base64').toString('utf8'));
        if (keys.length > 0) {
          lines.push(...keys.map((key) => `${knownHostName(worker.host, this.#config.sshPort)} ${key}`));
          break;
        }
        if (Date.now() > deadline) {
          throw new WorkersUnhealthyError(`worker ${worker.id} (${instanceId}) printed no SSH host keys on its console (set sshHostKeyCheck false only if you accept unverified SSH)`);
        }
        await sleep(this.#poll * 1000);
      }
    }
    await mkdir(this.#keysDir, { recursive: true, mode: 0o700 });
    await writeFile(this.#knownHostsPath, `${lines.join('\n')}\n`, { mode: 0o644 });
  }

  /**
   * `docker save` here, piped over SSH into `docker load` there, once Docker answers there (the
   * worker's user-data installs it, then waits for the image).
   */
  async #uploadImage(worker: WorkerRecord): Promise<void> {
    const target = await this.#sshTarget(worker);
    const asRoot = (command: string): string => `if [ "$(id -u)" = 0 ]; then ${command}; else sudo -n ${command}; fi`;
    const deadline = Date.now() + this.#config.launchTimeoutMs;
    this.#say(`waiting for Docker on ${worker.id} to upload ${this.#config.workerImage}`);
    for (;;) {
      const ready = await sshExec(target, asRoot('docker info >/dev/null')).catch((error: { code?: string }) => {
        // Not up yet (refused, reset, timed out) is worth waiting for; a refused host key or login is not.
        if (error.code === 'ENGINE_UNREACHABLE') return null;
        throw error;
      });
      if (ready?.code === 0) break;
      if (Date.now() > deadline) throw new ImageUploadError(`Docker on worker ${worker.id} (${worker.host}) did not answer over SSH within ${this.#config.launchTimeoutMs} ms`);
      await sleep(this.#poll * 1000);
    }
    const save = spawn('docker', ['save', this.#config.workerImage], { stdio: ['ignore', 'pipe', 'pipe'] });
    let saveError = '';
    save.stderr.on('data', (chunk: Buffer) => (saveError += chunk.toString('utf8')));
    const saved = new Promise<number | null>((resolve) => save.once('close', resolve));
    const loaded = await sshExec(target, asRoot('docker load'), save.stdout);
    if ((await saved) !== 0) throw new ImageUploadError(`docker save ${this.#config.workerImage} failed here: ${saveError.trim().split('\n').at(-1)}`);
    if (loaded.code !== 0) throw new ImageUploadError(`docker load on worker ${worker.id} failed: ${loaded.stderr.trim().split('\n').at(-1)}`);
    this.#say(`${worker.id}: ${loaded.stdout.trim().split('\n').at(-1)}`);
  }

  /** How a container's /health is probed: directly, or through an SSH tunnel to its worker. */
  async #prober(workers: WorkerRecord[]): Promise<(target: HealthTarget) => Promise<HealthProbe>> {
    if (this.#config.healthVia === 'direct') return (target) => probeHealth(target);
    const sshTargets = new Map<string, SshTarget>();
    for (const worker of workers) sshTargets.set(worker.host, await this.#sshTarget(worker));
    return async (target) => {
      try {
        const { status, body } = await sshHttpGet(sshTargets.get(target.host)!, target.port, '/health', 5_000);
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
      const probes = await Promise.all(targets.map(async (t) => ({ target: t, probe: await probe(t) })));
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
        throw new WorkersUnhealthyError(`${failing.length} of ${targets.length} containers never answered /health: ${failing.join(', ')}`);
      }
      await sleep(Math.min(this.#poll * 1000, 5_000));
    }
  }

  async #terminate(instanceIds: string[]): Promise<void> {
    await this.#call('TerminateInstances', () => this.#ec2.send(new TerminateInstancesCommand({ InstanceIds: instanceIds })));
    await this.#wait(waitUntilInstanceTerminated, instanceIds, 'terminated');
  }

  /** Wait with one of the SDK's instance waiters, polling every few seconds up to launchTimeoutMs. */
  async #wait(waiter: typeof waitUntilInstanceRunning, instanceIds: string[], state: string): Promise<void> {
    try {
      await waiter({ client: this.#ec2, maxWaitTime: this.#waitSeconds(), minDelay: this.#poll, maxDelay: this.#poll * 4 }, { InstanceIds: instanceIds });
    } catch (error) {
      throw toAwsError(`DescribeInstances (waiting for ${state})`, error);
    }
  }

  /** The group stays in use for a while after its instances terminated: retry DependencyViolation. */
  async #deleteGroup(groupId: string): Promise<void> {
    const deadline = Date.now() + this.#config.launchTimeoutMs;
    for (;;) {
      try {
        await this.#ec2.send(new DeleteSecurityGroupCommand({ GroupId: groupId }));
        return;
      } catch (error) {
        if (awsCode(error) !== 'DependencyViolation' || Date.now() > deadline) throw toAwsError('DeleteSecurityGroup', error);
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
  return `tcp ${ports} from ${rule.IpRanges!.map((r) => r.CidrIp).join(', ')}`;
}
