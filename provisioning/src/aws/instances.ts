import {
  DescribeInstancesCommand,
  TerminateInstancesCommand,
  waitUntilInstanceRunning,
  waitUntilInstanceTerminated,
  type Instance,
} from '@aws-sdk/client-ec2';
import { pollUntil } from '../../../common/src/poll-until.js';
import { AbortedError } from '../errors.js';
import { workerIds } from '../inventory.js';
import { InstanceWaitError, WorkersUnhealthyError } from './aws-errors.js';
import { awsCall, instanceAddress, TAGS, workerIdOf, type Ec2Context } from './ec2-context.js';
import { forgetKnownHosts } from './host-keys.js';

const LIVE_STATES = ['pending', 'running'];

/** The cluster's pending or running instances of one role (its tag). */
export async function liveInstances(ctx: Ec2Context, role: string): Promise<Instance[]> {
  const found = await awsCall('DescribeInstances', () =>
    ctx.ec2.send(
      new DescribeInstancesCommand({
        Filters: [
          { Name: `tag:${TAGS.cluster}`, Values: [ctx.config.cluster] },
          { Name: `tag:${TAGS.role}`, Values: [role] },
          { Name: 'instance-state-name', Values: LIVE_STATES },
        ],
      }),
    ),
  );
  return (found.Reservations ?? []).flatMap((r) => r.Instances ?? []);
}

/**
 * Earliest launched first, then by instance id: when two callers launched for the same worker,
 * each of them, reading the same instances, keeps the same one.
 */
export function byLaunch(a: Instance, b: Instance): number {
  return (a.LaunchTime?.getTime() ?? 0) - (b.LaunchTime?.getTime() ?? 0) || a.InstanceId!.localeCompare(b.InstanceId!);
}

/** The cluster's pending or running worker instances, by worker id (the earliest launched, where a worker has two). */
export async function workerInstances(ctx: Ec2Context): Promise<Map<string, Instance>> {
  const byWorker = new Map<string, Instance>();
  for (const instance of (await liveInstances(ctx, 'worker')).sort(byLaunch)) {
    const id = workerIdOf(instance);
    if (id && !byWorker.has(id)) byWorker.set(id, instance);
  }
  return byWorker;
}

/** Every pending or running instance tagged with worker `workerId`, earliest launched first. */
export async function instancesOfWorker(ctx: Ec2Context, workerId: string): Promise<Instance[]> {
  return (await liveInstances(ctx, 'worker')).filter((instance) => workerIdOf(instance) === workerId).sort(byLaunch);
}

/** The workers the config wants, the instances running now, the wanted ones missing, and the instances of unwanted workers. */
export async function workerDiff(ctx: Ec2Context): Promise<{ wanted: string[]; existing: Map<string, Instance>; missing: string[]; extra: Instance[] }> {
  const wanted = workerIds(ctx.config);
  const existing = await workerInstances(ctx);
  return {
    wanted,
    existing,
    missing: wanted.filter((id) => !existing.has(id)),
    extra: [...existing].filter(([id]) => !wanted.includes(id)).map(([, instance]) => instance),
  };
}

/**
 * Each worker's instance, once all run. EC2 is eventually consistent: a just-launched instance may
 * be missing from a filtered describe for a moment, so wait until each is listed; a waiter given
 * no ids would describe, and wait for, every instance of the account.
 */
export async function waitRunning(ctx: Ec2Context, ids: string[], signal?: AbortSignal): Promise<Map<string, Instance>> {
  const timeoutMs = ctx.config.launchTimeoutMs;
  const unlisted = (instances: Map<string, Instance>): string[] => ids.filter((id) => !instances.has(id));
  let instances = new Map<string, Instance>();
  await pollUntil(
    async () => {
      instances = await workerInstances(ctx);
      return unlisted(instances).length === 0 ? true : undefined;
    },
    {
      timeoutMs,
      intervalMs: ctx.pollMs,
      signal,
      onTimeout: () => new WorkersUnhealthyError(`no pending or running instance of ${unlisted(instances).join(', ')} after ${timeoutMs} ms`),
    },
  ).catch((error: unknown) => {
    throw signal?.aborted ? new AbortedError() : error;
  });
  await waitForState(ctx, ids.map((id) => instances.get(id)!.InstanceId!), 'running', signal);
  instances = await workerInstances(ctx);
  for (const id of ids) if (!instances.has(id)) throw new WorkersUnhealthyError(`worker ${id}'s instance is gone`);
  return instances;
}

/** Terminate these instances and wait until they are. */
export async function terminate(ctx: Ec2Context, instanceIds: string[]): Promise<void> {
  await awsCall('TerminateInstances', () => ctx.ec2.send(new TerminateInstancesCommand({ InstanceIds: instanceIds })));
  await waitForState(ctx, instanceIds, 'terminated');
}

/** Terminate these instances, wait until they are, and drop their host keys from known_hosts (EC2 will give their addresses to others). */
export async function releaseInstances(ctx: Ec2Context, instances: Instance[]): Promise<void> {
  if (instances.length === 0) return;
  await terminate(ctx, instances.map((i) => i.InstanceId!));
  await forgetKnownHosts(ctx.config, instances.flatMap((i) => instanceAddress(ctx.config, i) ?? []));
}

/** The waiters' limit: launchTimeoutMs, but never shorter than two polls (the SDK refuses that). */
function waitSeconds(ctx: Ec2Context): number {
  const pollSeconds = ctx.pollMs / 1000;
  return Math.max(Math.ceil(ctx.config.launchTimeoutMs / 1000), pollSeconds * 2);
}

/**
 * Wait with one of the SDK's instance waiters, polling every few seconds up to launchTimeoutMs. Its
 * errors say only "Waiter has timed out" or dump a response: ours names each instance, its worker
 * and the state it is in.
 */
export async function waitForState(ctx: Ec2Context, instanceIds: string[], state: 'running' | 'terminated', signal?: AbortSignal): Promise<void> {
  const seconds = waitSeconds(ctx);
  const pollSeconds = ctx.pollMs / 1000;
  const waiter = state === 'running' ? waitUntilInstanceRunning : waitUntilInstanceTerminated;
  try {
    await waiter({ client: ctx.ec2, maxWaitTime: seconds, minDelay: pollSeconds, maxDelay: pollSeconds * 4, abortSignal: signal }, { InstanceIds: instanceIds });
  } catch (error) {
    if (signal?.aborted) throw new AbortedError();
    const found = await ctx.ec2.send(new DescribeInstancesCommand({ InstanceIds: instanceIds })).then(
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
