import { readFile } from 'node:fs/promises';
import { DescribeInstancesCommand, RunInstancesCommand, type Instance } from '@aws-sdk/client-ec2';
import type { SshTarget } from '../../../runtime/src/ssh-connection.js';
import type { Inventory } from '../inventory.js';
import type { ProvisionResult } from '../provider.js';
import { toAwsError, WorkersUnhealthyError } from './aws-errors.js';
import { awsCall, clusterTags, TAGS, type Ec2Context } from './ec2-context.js';
import { consoleHostKeys, knownHostsPath, setKnownHosts } from './host-keys.js';
import type { Ami } from './images.js';
import { liveInstances, terminate, waitForState } from './instances.js';
import type { KeyPair } from './key-pair.js';
import {
  deployOrchestrator,
  knownHostRenames,
  ORCHESTRATOR_ROLE,
  orchestratorGroupName,
  orchestratorInventory,
  orchestratorLaunch,
  renameKnownHosts,
} from './orchestrator-instance.js';
import type { OrchestratorConfigFile } from './orchestrator-config.js';
import { deleteGroup, findGroup } from './security-group.js';

/** The cluster's pending or running orchestrator instance. */
export async function orchestratorInstance(ctx: Ec2Context): Promise<Instance | undefined> {
  return (await liveInstances(ctx, ORCHESTRATOR_ROLE))[0];
}

/** The orchestrator's instance id: the running one, or one launched now (a boot script installs Docker; nothing secret in it). */
export async function ensureOrchestratorInstance(ctx: Ec2Context, with_: { key: string; groupId: string; ami: Ami }): Promise<string> {
  const existing = await orchestratorInstance(ctx);
  if (existing) return existing.InstanceId!;
  const tags = clusterTags(ctx.config, { [TAGS.role]: ORCHESTRATOR_ROLE, Name: `${ctx.config.cluster}-${ORCHESTRATOR_ROLE}` });
  const launched = await awsCall('RunInstances', () => ctx.ec2.send(new RunInstancesCommand(orchestratorLaunch(ctx.config, { ...with_, tags }))));
  const id = launched.Instances?.[0]?.InstanceId;
  if (!id) throw toAwsError('RunInstances', new Error('the answer names no instance'));
  ctx.say(`launched the orchestrator's instance ${id}`);
  return id;
}

/**
 * Put the inventory (private addresses), the worker key and the operator's config file (with its
 * TLS files) on the orchestrator's instance over SSH, checking its host key like the workers', and
 * start the orchestrator there (or SIGHUP it when only the config changed).
 */
export async function deployOrchestratorInstance(
  ctx: Ec2Context,
  instanceId: string,
  inventory: Inventory,
  workers: Map<string, Instance>,
  key: KeyPair,
  orchestratorConfig: OrchestratorConfigFile | undefined,
): Promise<NonNullable<ProvisionResult['orchestrator']>> {
  const { config } = ctx;
  const hostsPath = knownHostsPath(config);
  await waitForState(ctx, [instanceId], 'running');
  const described = await awsCall('DescribeInstances', () => ctx.ec2.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] })));
  const instance = described.Reservations?.[0]?.Instances?.[0];
  const host = config.addressType === 'public' ? instance?.PublicIpAddress : instance?.PrivateIpAddress;
  if (!host) throw new WorkersUnhealthyError(`the orchestrator's instance ${instanceId} has no ${config.addressType} address`);
  const privateAddresses = new Map(inventory.workers.map((w) => [w.id, workers.get(w.id)?.PrivateIpAddress ?? '']));
  let knownHosts: string | null = null;
  if (config.sshHostKeyCheck) {
    knownHosts = renameKnownHosts(await readFile(hostsPath, 'utf8'), knownHostRenames(inventory.workers, privateAddresses, config.sshPort));
    const keys = await consoleHostKeys(ctx, instanceId, `the orchestrator's instance`, config.launchTimeoutMs);
    await setKnownHosts(config, [{ host, keys }]);
  }
  const privateKey = await readFile(key.path);
  const target: SshTarget = {
    host,
    port: config.sshPort,
    username: config.sshUser,
    privateKey,
    ...(config.sshHostKeyCheck ? { knownHostsPath: hostsPath } : { insecureSkipHostKeyCheck: true }),
  };
  const deployed = await deployOrchestrator(
    target,
    config.cluster,
    {
      inventory: orchestratorInventory(config.cluster, inventory, privateAddresses, config.sshHostKeyCheck),
      workerKey: privateKey,
      knownHosts,
      ...(orchestratorConfig ? { config: orchestratorConfig } : {}),
    },
    { image: config.orchestratorImage, port: config.orchestratorPort, uploadImage: config.uploadImage, deadline: Date.now() + config.launchTimeoutMs, pollMs: ctx.pollMs, say: ctx.say },
  );
  const url = `${orchestratorConfig?.tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${config.orchestratorPort}`;
  ctx.say(`orchestrator ${deployed.action} at ${url} (instance ${instanceId})`);
  return { url, instanceId, startedAt: deployed.startedAt };
}

/** Terminate the cluster's orchestrator instance, then delete its group (nothing refers to it any more). */
export async function dropOrchestrator(ctx: Ec2Context): Promise<void> {
  const instance = await orchestratorInstance(ctx);
  if (instance) {
    ctx.say(`terminating the orchestrator's instance ${instance.InstanceId}`);
    await terminate(ctx, [instance.InstanceId!]);
  }
  const group = await findGroup(ctx, orchestratorGroupName(ctx.config.cluster));
  if (group) await deleteGroup(ctx, group.GroupId!);
}
