import { CreateKeyPairCommand, CreateSecurityGroupCommand, RunInstancesCommand, TerminateInstancesCommand } from '@aws-sdk/client-ec2';
import { awsCode, toAwsError } from './aws-errors.js';
import { workerIdOf, workerPorts, type Ec2Context } from './ec2-context.js';
import { findAmi } from './images.js';
import { workerDiff } from './instances.js';
import { createdKeyName, keyPairExists, keyPath } from './key-pair.js';
import { orchestratorInstance } from './orchestrator-launch.js';
import { ORCHESTRATOR_ROLE, orchestratorGroupName, orchestratorRules } from './orchestrator-instance.js';
import { describeRule, findGroup, workerGroupName, workerRules } from './security-group.js';

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

/** Describe what provision would do, and check with DryRun that the credentials may do it; creates nothing. */
export async function planCluster(ctx: Ec2Context): Promise<Ec2Plan> {
  const { config, ec2 } = ctx;
  const steps: string[] = [];
  const denied: string[] = [];
  const groupName = workerGroupName(config);
  const keyName = config.keyName ?? createdKeyName(config);
  const keys = await keyPairExists(ctx, keyName);
  steps.push(keys ? `key pair ${keyName}: exists, used` : `key pair ${keyName}: create, private key saved to ${keyPath(config)} (mode 0600)`);
  if (!keys) await dryRun('CreateKeyPair', () => ec2.send(new CreateKeyPairCommand({ KeyName: keyName, DryRun: true })), denied);
  const group = (await findGroup(ctx, groupName))?.GroupId;
  const orchestratorName = orchestratorGroupName(config.cluster);
  const openPorts = workerRules(config, config.withOrchestrator ? { GroupName: orchestratorName } : undefined).map(describeRule);
  const rules = openPorts.join('; ');
  steps.push(group ? `security group ${groupName} (${group}): exists, rules ensured: ${rules}` : `security group ${groupName}: create with ${rules}`);
  if (!group) {
    await dryRun('CreateSecurityGroup', () => ec2.send(new CreateSecurityGroupCommand({ GroupName: groupName, Description: 'x', DryRun: true })), denied);
  }
  const orchestratorGroup = (await findGroup(ctx, orchestratorName))?.GroupId;
  const orchestrator = await orchestratorInstance(ctx);
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
      await dryRun('CreateSecurityGroup', () => ec2.send(new CreateSecurityGroupCommand({ GroupName: orchestratorName, Description: 'x', DryRun: true })), denied);
    }
  } else {
    if (orchestrator) steps.push(`orchestrator: terminate ${orchestrator.InstanceId} (no withOrchestrator)`);
    if (orchestratorGroup) steps.push(`security group ${orchestratorName} (${orchestratorGroup}): delete`);
  }
  const ami = await findAmi(ctx);
  steps.push(`AMI ${ami.id} (${ami.name}); root volume ${config.rootVolumeGb} GiB gp3, encrypted, on ${ami.rootDevice}`);
  const { wanted, existing, missing, extra } = await workerDiff(ctx);
  for (const id of wanted.filter((w) => existing.has(w))) steps.push(`worker ${id}: keep ${existing.get(id)!.InstanceId}`);
  for (const id of missing) steps.push(`worker ${id}: launch one ${config.instanceType} with two model containers on ports ${workerPorts(config).join(' and ')}`);
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
    await dryRun(
      'RunInstances',
      () =>
        ec2.send(new RunInstancesCommand({ ImageId: ami.id, InstanceType: config.instanceType as never, MinCount: 1, MaxCount: 1, ...(group ? { SecurityGroupIds: [group] } : {}), DryRun: true })),
      denied,
    );
  }
  const terminated = [...extra, ...(orchestrator && !config.withOrchestrator ? [orchestrator] : [])];
  if (terminated.length > 0) {
    await dryRun('TerminateInstances', () => ec2.send(new TerminateInstancesCommand({ InstanceIds: terminated.map((i) => i.InstanceId!), DryRun: true })), denied);
  }
  return {
    steps,
    denied,
    region: await ec2.config.region(),
    launches: [...missing.map((id) => `worker ${id}: ${config.instanceType}`), ...(launchOrchestrator ? [`${ORCHESTRATOR_ROLE}: ${config.orchestratorInstanceType}`] : [])],
    openPorts,
  };
}

/** Call with DryRun: allowed (DryRunOperation) passes, UnauthorizedOperation adds `action` to `denied`, anything else throws. */
async function dryRun(action: string, call: () => Promise<unknown>, denied: string[]): Promise<void> {
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
