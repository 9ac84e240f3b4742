import {
  containerRecordSchema,
  emptyState,
  workerRecordSchema,
  type ContainerRecord,
  type ContainerTemplate,
  type StateFile,
  type WorkerRecord,
} from '../../status/src/schema.js';
import type { ModelContract } from '../../runtime/src/model-contract.js';
import type { RuntimeTarget } from '../../runtime/src/runtime-target.js';
import type { ProvisionConfig } from './config.js';
import { WorkerIdError } from './errors.js';

/** One container the config asks for. */
export interface DesiredContainer {
  /** `w<k>-<port>`, e.g. `w1-5000`: unique in the cluster and stable across runs. */
  name: string;
  workerId: string;
  host: string;
  port: number;
}

/** One worker the config asks for, with its containers. */
export interface DesiredWorker {
  /** `w1`, `w2`, ... */
  id: string;
  host: string;
  /** The worker's port range: the orchestrator places new containers in it. */
  ports: { first: number; last: number };
  containers: DesiredContainer[];
}

/** The workers and containers of a cluster, as the state file lists them. */
export interface Inventory {
  workers: WorkerRecord[];
  containers: ContainerRecord[];
}

/** The ids of the workers the config asks for: w1, w2, ... */
export function workerIds(config: Pick<ProvisionConfig, 'workers'>): string[] {
  return Array.from({ length: config.workers }, (_, w) => `w${w + 1}`);
}

/** The cluster the config describes: workers w1..w<config.workers> (see workerLayout). */
export function desiredLayout(config: ProvisionConfig): DesiredWorker[] {
  return workerIds(config).map((id) => workerLayout(config, id));
}

/**
 * Worker `id` (`w<k>`, k from 1, beyond config.workers too: the orchestrator adds workers): its
 * containers on ports basePort+(k-1)*portStride+0..containersPerWorker-1, its range portStride
 * ports from the first (up to 65535). Throws WorkerIdError for another id, or one whose containers
 * would pass port 65535.
 */
export function workerLayout(config: ProvisionConfig, id: string): DesiredWorker {
  const k = /^w([1-9]\d*)$/.exec(id)?.[1];
  if (k === undefined) throw new WorkerIdError(id, 'expected w<k>, k a positive integer');
  const firstPort = config.basePort + (Number(k) - 1) * config.portStride;
  const lastContainerPort = firstPort + config.containersPerWorker - 1;
  if (lastContainerPort > 65535) throw new WorkerIdError(id, `its last container would need port ${lastContainerPort} (> 65535)`);
  const containers = Array.from({ length: config.containersPerWorker }, (_, i) => ({
    name: `${id}-${firstPort + i}`,
    workerId: id,
    host: config.host,
    port: firstPort + i,
  }));
  return { id, host: config.host, ports: { first: firstPort, last: Math.min(firstPort + config.portStride - 1, 65535) }, containers };
}

/** How every container of the cluster is started: what the orchestrator reuses to replace or add one. */
export function containerTemplate(config: ProvisionConfig): ContainerTemplate {
  return {
    // EC2 workers run the image too: the orchestrator starts added and replacement containers from it.
    ...(config.runtime === 'docker' || config.provider === 'aws' ? { image: config.workerImage } : {}),
    env: { WORK_MS: String(config.workMs), ENABLE_CRASH_API: String(config.enableCrashApi) },
    contract: { predictPath: config.predictPath, healthPath: config.healthPath },
    // Only what the config sets: an absent field is no limit.
    ...(config.cpus !== undefined || config.memoryMb !== undefined || config.gpus !== undefined
      ? {
          resources: {
            ...(config.cpus !== undefined ? { cpus: config.cpus } : {}),
            ...(config.memoryMb !== undefined ? { memoryMb: config.memoryMb } : {}),
            ...(config.gpus !== undefined ? { gpus: config.gpus } : {}),
          },
        }
      : {}),
  };
}

/** A worker as the state file lists it after provisioning. */
export function workerRecord(
  worker: DesiredWorker,
  provider: WorkerRecord['provider'],
  runtime: RuntimeTarget,
  template: ContainerTemplate,
): WorkerRecord {
  return workerRecordSchema.parse({ id: worker.id, provider, host: worker.host, runtime, state: 'up', ports: worker.ports, template });
}

/** A healthy, idle container as the state file lists it after provisioning. */
export function containerRecord(container: DesiredContainer, runtimeId: string): ContainerRecord {
  return containerRecordSchema.parse({
    id: container.name,
    workerId: container.workerId,
    host: container.host,
    port: container.port,
    runtimeId,
    managed: true,
    state: 'free',
  });
}

/**
 * An inventory of containers something else runs, on one local worker `w1` whose apps follow
 * `contract`: the orchestrator routes to them and health-checks them, but never starts, replaces
 * or stops them (`managed: false`).
 */
export function unmanagedInventory(cluster: string, containers: ReadonlyArray<{ id: string; port: number }>, contract?: ModelContract): StateFile {
  const state = emptyState(cluster, 'provisioning');
  const template = { env: {}, ...(contract ? { contract } : {}) };
  state.workers.push(workerRecordSchema.parse({ id: 'w1', provider: 'local', host: '127.0.0.1', runtime: { driver: 'process' }, template }));
  for (const c of containers) {
    state.containers.push({ ...containerRecord({ name: c.id, workerId: 'w1', host: '127.0.0.1', port: c.port }, ''), runtimeId: null, managed: false });
  }
  return state;
}
