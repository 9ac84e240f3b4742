import type { Instance } from '@aws-sdk/client-ec2';
import { containerRecordSchema, workerRecordSchema, type ContainerRecord, type WorkerRecord } from '../../../status/src/schema.js';
import { containerTemplate } from '../inventory.js';
import type { HealthTarget } from '../wait-healthy.js';
import { WorkersUnhealthyError } from './aws-errors.js';
import { instanceAddress, workerPortRange, workerPorts, type Ec2Context } from './ec2-context.js';
import { knownHostsPath } from './host-keys.js';
import type { KeyPair } from './key-pair.js';

/** The worker record of an instance: its address, and Docker over SSH to it with the cluster's key (and known_hosts). */
export function workerRecord(ctx: Ec2Context, id: string, instance: Instance, key: KeyPair): WorkerRecord {
  const { config } = ctx;
  const host = instanceAddress(config, instance);
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

/** The model containers a worker's user-data starts, `<worker>-<port>`, to probe. */
export function workerTargets(ctx: Ec2Context, worker: WorkerRecord): HealthTarget[] {
  return workerPorts(ctx.config).map((port) => ({ name: `${worker.id}-${port}`, host: worker.host, port }));
}

/** Their records, free. */
export function workerContainers(ctx: Ec2Context, worker: WorkerRecord): ContainerRecord[] {
  return workerTargets(ctx, worker).map((t) => containerRecordSchema.parse({ id: t.name, workerId: worker.id, host: t.host, port: t.port, runtimeId: null, state: 'free' }));
}
