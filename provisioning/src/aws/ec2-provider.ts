import type { EC2Client } from '@aws-sdk/client-ec2';
import type { Logger } from '../../../common/src/logger.js';
import type { ProvisionConfig } from '../config.js';
import type { Inventory } from '../inventory.js';
import type { ProvisionOptions, ProvisionResult, Provider, TeardownResult } from '../provider.js';
import { PartialLaunchError, toAwsError } from './aws-errors.js';
import { workerIdOf, workerPorts, type Ec2Context } from './ec2-context.js';
import { releaseInstances, waitRunning, workerDiff } from './instances.js';
import { launchWorker } from './launch.js';
import { ensureLaunchResources } from './launch-resources.js';
import { readOrchestratorConfig } from './orchestrator-config.js';
import { deployOrchestratorInstance, dropOrchestrator, ensureOrchestratorInstance } from './orchestrator-launch.js';
import { planCluster, type Ec2Plan } from './plan.js';
import { teardownCluster } from './teardown.js';
import { workerContainers, workerRecord } from './worker-record.js';
import { readyWorkers } from './worker-ready.js';

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
 * parts in this folder (launch-resources, launch, instances, worker-record, worker-ready,
 * orchestrator-launch, teardown, plan) in the order a run needs them; the worker provider
 * (ec2-worker-provider) composes the same ones for one worker.
 */
/** The context the EC2 parts work in, from a provider's config and dependencies. */
export function ec2Context(config: ProvisionConfig, deps: Ec2ProviderDeps): Ec2Context {
  return { config, ec2: deps.client, log: deps.logger, pollMs: (deps.pollSeconds ?? 5) * 1000, say: deps.say ?? (() => {}) };
}

export class Ec2Provider implements Provider {
  readonly name = 'aws';
  readonly #ctx: Ec2Context;

  constructor(config: ProvisionConfig, deps: Ec2ProviderDeps) {
    this.#ctx = ec2Context(config, deps);
  }

  async provision(_current: Inventory, options: ProvisionOptions = {}): Promise<ProvisionResult> {
    const ctx = this.#ctx;
    // A bad orchestrator config file stops the run before anything is created.
    const orchestratorConfig = await readOrchestratorConfig(ctx.config);
    const { ami, key, groupId, orchestratorGroup } = await ensureLaunchResources(ctx);
    // The workers' group no longer refers to an orchestrator's: one an earlier run made can go.
    if (!orchestratorGroup) await dropOrchestrator(ctx);
    const { wanted, missing, extra } = await workerDiff(ctx);
    await releaseInstances(ctx, extra);
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
    await readyWorkers(ctx, workers, instances, options);
    const containers = workers.flatMap((w) => workerContainers(ctx, w));
    const started = containers.filter((c) => missing.includes(c.workerId)).map((c) => c.id);
    const result: ProvisionResult = {
      workers,
      containers,
      started,
      kept: containers.map((c) => c.id).filter((name) => !started.includes(name)),
      removed: extra.flatMap((i) => workerPorts(ctx.config).map((port) => `${workerIdOf(i)}-${port}`)),
    };
    if (orchestrator) result.orchestrator = await deployOrchestratorInstance(ctx, orchestrator, result, instances, key, orchestratorConfig);
    return result;
  }

  async teardown(_current: Inventory): Promise<TeardownResult> {
    return teardownCluster(this.#ctx);
  }

  /** Describe what provision would do, and check with DryRun that the credentials may do it; creates nothing. */
  async plan(): Promise<Ec2Plan> {
    // The cost guard shows this plan before it asks: a bad orchestrator config file is refused first.
    await readOrchestratorConfig(this.#ctx.config);
    return planCluster(this.#ctx);
  }
}
