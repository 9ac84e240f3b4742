import {
  DescribeInstancesCommand,
  TerminateInstancesCommand,
  waitUntilInstanceRunning,
  waitUntilInstanceTerminated,
  type Instance,
} from '@aws-sdk/client-ec2';
import { pollUntil } from '../../../common/src/poll-until.js';
import { workerIds } from '../inventory.js';
import { InstanceWaitError, WorkersUnhealthyError } from './aws-errors.js';
import { awsCall, TAGS, workerIdOf, type Ec2Context } from './ec2-context.js';

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

/** The cluster's pending or running worker instances, by worker id. */
export async function workerInstances(ctx: Ec2Context): Promise<Map<string, Instance>> {
  const byWorker = new Map<string, Instance>();
  for (const instance of await liveInstances(ctx, 'worker')) {
    const id = workerIdOf(instance);
    if (id) byWorker.set(id, instance);
  }
  return byWorker;
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
export async function waitRunning(ctx: Ec2Context, ids: string[]): Promise<Map<string, Instance>> {
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
      onTimeout: () => new WorkersUnhealthyError(`no pending or running instance of ${unlisted(instances).join(', ')} after ${timeoutMs} ms`),
    },
  );
  await waitForState(ctx, ids.map((id) => instances.get(id)!.InstanceId!), 'running');
  instances = await workerInstances(ctx);
  for (const id of ids) if (!instances.has(id)) throw new WorkersUnhealthyError(`worker ${id}'s instance is gone`);
  return instances;
}

/** Terminate these instances and wait until they are. */
export async function terminate(ctx: Ec2Context, instanceIds: string[]): Promise<void> {
  await awsCall('TerminateInstances', () => ctx.ec2.send(new TerminateInstancesCommand({ InstanceIds: instanceIds })));
  await waitForState(ctx, instanceIds, 'terminated');
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
export async function waitForState(ctx: Ec2Context, instanceIds: string[], state: 'running' | 'terminated'): Promise<void> {
  const seconds = waitSeconds(ctx);
  const pollSeconds = ctx.pollMs / 1000;
  const waiter = state === 'running' ? waitUntilInstanceRunning : waitUntilInstanceTerminated;
  try {
    await waiter({ client: ctx.ec2, maxWaitTime: seconds, minDelay: pollSeconds, maxDelay: pollSeconds * 4 }, { InstanceIds: instanceIds });
  } catch (error) {
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
