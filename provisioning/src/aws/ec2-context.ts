import { join, dirname, resolve } from 'node:path';
import type { EC2Client, Instance, Tag } from '@aws-sdk/client-ec2';
import type { Logger } from '../../../common/src/logger.js';
import type { ProvisionConfig } from '../config.js';
import { toAwsError } from './aws-errors.js';

/** Tag keys on everything provisioning creates in EC2. */
export const TAGS = {
  cluster: 'io.inference-orchestrator.cluster',
  role: 'io.inference-orchestrator.role',
  worker: 'io.inference-orchestrator.worker',
  createdBy: 'io.inference-orchestrator.created-by',
} as const;

/** What every part of the EC2 provider works with: the config, the client, and where it reports. */
export interface Ec2Context {
  config: ProvisionConfig;
  ec2: EC2Client;
  log: Logger;
  /** Pause between polls of EC2 (instances listed, console output, group deletable), in ms. */
  pollMs: number;
  /** Progress lines for the operator. */
  say: (line: string) => void;
}

/** Ports of a worker's model containers: the two compose starts, and room for the orchestrator to add or move more. */
const WORKER_PORT_COUNT = 10;

/** The worker's ports on its own machine: basePort and the next one. */
export function workerPorts(config: ProvisionConfig): [number, number] {
  return [config.basePort, config.basePort + 1];
}

/** Every port the worker's containers may use: its record promises them, the security group opens them. */
export function workerPortRange(config: ProvisionConfig): { first: number; last: number } {
  return { first: config.basePort, last: config.basePort + WORKER_PORT_COUNT - 1 };
}

/** Where the cluster's keys and known_hosts live: next to the state file. */
export function keysDir(config: ProvisionConfig): string {
  return join(dirname(resolve(config.statePath)), 'keys');
}

/** The cluster's tag, and `extra`, as EC2 tags. */
export function clusterTags(config: ProvisionConfig, extra: Record<string, string> = {}): Tag[] {
  return Object.entries({ [TAGS.cluster]: config.cluster, ...extra }).map(([Key, Value]) => ({ Key, Value }));
}

/** The worker an instance runs, from its tag. */
export function workerIdOf(instance: Instance): string | undefined {
  return instance.Tags?.find((t) => t.Key === TAGS.worker)?.Value;
}

/** The address the orchestrator reaches an instance at (addressType), if it has one yet. */
export function instanceAddress(config: ProvisionConfig, instance: Instance): string | undefined {
  return config.addressType === 'public' ? instance.PublicIpAddress : instance.PrivateIpAddress;
}

/** `call`, its failure turned into our typed AWS error naming `action`. */
export async function awsCall<T>(action: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    throw toAwsError(action, error);
  }
}
