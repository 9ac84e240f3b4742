import { rm } from 'node:fs/promises';
import type { TeardownResult } from '../provider.js';
import { workerIdOf, workerPorts, type Ec2Context } from './ec2-context.js';
import { knownHostsPath } from './host-keys.js';
import { liveInstances, terminate } from './instances.js';
import { deleteKeyPairs } from './key-pair.js';
import { dropOrchestrator, orchestratorInstance } from './orchestrator-launch.js';
import { ORCHESTRATOR_ROLE } from './orchestrator-instance.js';
import { deleteGroup, findGroup, workerGroupName } from './security-group.js';

/**
 * Remove everything of the cluster, whatever the config says now: the workers' instances, an
 * orchestrator an earlier run launched, both security groups, the created key pair, and the keys
 * and known_hosts here.
 */
export async function teardownCluster(ctx: Ec2Context): Promise<TeardownResult> {
  // Every instance, not one per worker: two callers may each have launched one for the same worker.
  const instances = await liveInstances(ctx, 'worker');
  const workers = [...new Set(instances.flatMap((i) => workerIdOf(i) ?? []))].sort();
  const orchestrator = await orchestratorInstance(ctx);
  const doomed = [...instances, ...(orchestrator ? [orchestrator] : [])];
  if (doomed.length > 0) {
    ctx.say(`terminating ${[...workers, ...(orchestrator ? [ORCHESTRATOR_ROLE] : [])].join(', ')}`);
    await terminate(ctx, doomed.map((i) => i.InstanceId!));
  }
  // The workers' group refers to the orchestrator's, which cannot go while referred to: workers' first.
  const group = await findGroup(ctx, workerGroupName(ctx.config));
  if (group) await deleteGroup(ctx, group.GroupId!);
  await dropOrchestrator(ctx);
  await deleteKeyPairs(ctx);
  await rm(knownHostsPath(ctx.config), { force: true });
  return { stopped: workers.flatMap((id) => workerPorts(ctx.config).map((port) => `${id}-${port}`)), unknown: [] };
}
