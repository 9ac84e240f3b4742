import type { Ec2Context } from './ec2-context.js';
import { findAmi, type Ami } from './images.js';
import { ensureKeyPair, type KeyPair } from './key-pair.js';
import { orchestratorGroupName, orchestratorRules } from './orchestrator-instance.js';
import { ensureSecurityGroup, workerGroupName, workerRules } from './security-group.js';

/** What the cluster's instances are launched with. */
export interface LaunchResources {
  ami: Ami;
  key: KeyPair;
  /** The workers' security group. */
  groupId: string;
  /** The orchestrator's group (withOrchestrator), which the workers' group lets in. */
  orchestratorGroup: string | undefined;
}

/**
 * The image, the key pair and the security groups, each found or created (idempotent): what
 * provision ensures before launching its workers, and the worker provider before launching one.
 */
export async function ensureLaunchResources(ctx: Ec2Context): Promise<LaunchResources> {
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
  return { ami, key, groupId, orchestratorGroup };
}
