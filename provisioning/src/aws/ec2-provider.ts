import type { EC2Client, Instance } from '@aws-sdk/client-ec2';
import type { Logger } from '../../../common/src/logger.js';
import { containerRecordSchema, workerRecordSchema, type WorkerRecord } from '../../../status/src/schema.js';
import type { ProvisionConfig } from '../config.js';
import { containerTemplate, type Inventory } from '../inventory.js';
import type { ProvisionOptions, ProvisionResult, Provider, TeardownResult } from '../provider.js';
import { PartialLaunchError, toAwsError, WorkersUnhealthyError } from './aws-errors.js';
import { workerIdOf, workerPortRange, workerPorts, type Ec2Context } from './ec2-context.js';
import { waitWorkersHealthy, workerProber } from './health-wait.js';
import { knownHostsPath, writeKnownHosts } from './host-keys.js';
import { uploadImage } from './image-upload.js';
import { findAmi } from './images.js';
import { terminate, waitRunning, workerDiff } from './instances.js';
import { ensureKeyPair, type KeyPair } from './key-pair.js';
import { launchWorker } from './launch.js';
import { deployOrchestratorInstance, dropOrchestrator, ensureOrchestratorInstance } from './orchestrator-launch.js';
import { orchestratorGroupName, orchestratorRules } from './orchestrator-instance.js';
import { planCluster, type Ec2Plan } from './plan.js';
import { ensureSecurityGroup, workerGroupName, workerRules } from './security-group.js';
import { teardownCluster } from './teardown.js';

export interface Ec2ProviderDeps {
  client: EC2Client;
  logger: Logger;
  /** Seconds between the waiters' polls (tests make it small). @default 5 */
  pollSeconds?: number;
  /** Progress lines for the operator. */
  say?: (line: string) => void;
}

/**
 * Workers as EC2 instances: a key pair, a least-privilege security group, the AMI, one instance
 * per worker tagged with the cluster, whose user-data compose-starts two model containers. A
 * re-run finds the cluster's instances by tag and launches only the missing workers. Composes the
 * parts in this folder (key-pair, security-group, images, launch, instances, host-keys,
 * image-upload, health-wait, orchestrator-launch, teardown, plan) in the order a run needs them.
 */
export class Ec2Provider implements Provider {
  readonly name = 'aws';
  readonly #ctx: Ec2Context;

  constructor(config: ProvisionConfig, deps: Ec2ProviderDeps) {
    this.#ctx = { config, ec2: deps.client, log: deps.logger, pollMs: (deps.pollSeconds ?? 5) * 1000, say: deps.say ?? (() => {}) };
  }

  async provision(_current: Inventory, options: ProvisionOptions = {}): Promise<ProvisionResult> {
    const ctx = this.#ctx;
    const { config } = ctx;
    // The image first: a region without it should stop the run before anything is created.
    const ami = await findAmi(ctx);
    const key = await ensureKeyPair(ctx);
    const orchestratorGroup = config.withOrchestrator
      ? await ensureSecurityGroup(ctx, orchestratorGroupName(config.cluster), `inference-orchestrator orchestrator of cluster ${config.cluster}`, orchestratorRules(config))
      : undefined;
    const groupId = await ensureSecurityGroup(
      ctx,
      workerGroupName(config),
      `inference-orchestrator workers of cluster ${config.cluster}`,
      workerRules(config, orchestratorGroup ? { GroupId: orchestratorGroup } : undefined),
    );
    // The workers' group no longer refers to an orchestrator's: one an earlier run made can go.
    if (!orchestratorGroup) await dropOrchestrator(ctx);
    const { wanted, missing, extra } = await workerDiff(ctx);
    if (extra.length > 0) await terminate(ctx, extra.map((i) => i.InstanceId!));
    for (const [n, workerId] of missing.entries()) {
      await launchWorker(ctx, workerId, { key: key.name, groupId, ami }).catch((error: unknown) => {
        throw n > 0 ? new PartialLaunchError(workerId, missing.slice(0, n), toAwsError('RunInstances', error)) : error;
      });
    }
    // Launched before anything waits, so that it boots while the workers do.
    const orchestrator = orchestratorGroup ? await ensureOrchestratorInstance(ctx, { key: key.name, groupId: orchestratorGroup, ami }) : undefined;
    if (missing.length > 0) ctx.say(`launched ${missing.join(', ')}; waiting for the instances to run`);

    const instances = await waitRunning(ctx, wanted);
    const workers = wanted.map((id) => workerRecord(ctx, id, instances.get(id)!, key));
    if (config.sshHostKeyCheck) await writeKnownHosts(ctx, workers, instances);
    const targets = workers.flatMap((w) => workerPorts(config).map((port) => ({ name: `${w.id}-${port}`, host: w.host, port })));
    const probe = await workerProber(ctx, workers);
    if (config.uploadImage) {
      for (const worker of workers) {
        const probes = await Promise.all(targets.filter((t) => t.host === worker.host).map(probe));
        if (!probes.every((p) => p.ok)) await uploadImage(ctx, worker);
      }
    }
    await waitWorkersHealthy(ctx, targets, instances, probe, options);
    const started = targets.filter((t) => missing.some((id) => t.name.startsWith(`${id}-`))).map((t) => t.name);
    const result: ProvisionResult = {
      workers,
      containers: targets.map((t) =>
        containerRecordSchema.parse({ id: t.name, workerId: t.name.split('-')[0], host: t.host, port: t.port, runtimeId: null, state: 'free' }),
      ),
      started,
      kept: targets.map((t) => t.name).filter((name) => !started.includes(name)),
      removed: extra.flatMap((i) => workerPorts(config).map((port) => `${workerIdOf(i)}-${port}`)),
    };
    if (orchestrator) result.orchestrator = await deployOrchestratorInstance(ctx, orchestrator, result, instances, key);
    return result;
  }

  async teardown(_current: Inventory): Promise<TeardownResult> {
    return teardownCluster(this.#ctx);
  }

  /** Describe what provision would do, and check with DryRun that the credentials may do it; creates nothing. */
  async plan(): Promise<Ec2Plan> {
    return planCluster(this.#ctx);
  }
}

/** The worker record of an instance: its address, and Docker over SSH to it with the cluster's key (and known_hosts). */
function workerRecord(ctx: Ec2Context, id: string, instance: Instance, key: KeyPair): WorkerRecord {
  const { config } = ctx;
  const host = config.addressType === 'public' ? instance.PublicIpAddress : instance.PrivateIpAddress;
  if (!host) throw new WorkersUnhealthyError(`worker ${id} (${instance.InstanceId}) has no ${config.addressType} address`);
  return workerRecordSchema.parse({
    id,
    provider: 'aws',
    host,
    runtime: {
      driver: 'docker',
      ssh: {
        host,
        port: config.sshPort,
        username: config.sshUser,
        privateKeyPath: key.path,
        ...(config.sshHostKeyCheck ? { knownHostsPath: knownHostsPath(config) } : { insecureSkipHostKeyCheck: true }),
      },
    },
    ports: workerPortRange(config),
    template: containerTemplate(config),
  });
}
