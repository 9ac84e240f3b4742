import type { Logger } from '../../common/src/logger.js';
import { containerName, type ContainerInfo } from '../../runtime/src/driver.js';
import { containerRecordSchema, type ContainerRecord, type StateFile, type WorkerRecord } from '../../status/src/schema.js';

/** What the runtime says runs on one worker; null when it could not be asked. */
export type ListWorkerContainers = (worker: WorkerRecord) => Promise<ContainerInfo[] | null>;

export interface Reconciliation {
  /** The inventory to load: recorded containers (missing ones marked `down`) plus adopted ones. */
  containers: ContainerRecord[];
  adopted: string[];
  missing: string[];
}

/**
 * Compare the recorded inventory with what each worker's runtime lists (by cluster and worker
 * label): containers running there but not recorded are adopted, recorded managed ones the
 * runtime does not run are marked `down`. A worker whose runtime cannot be asked is left as recorded: no
 * information is not evidence of absence.
 */
export async function reconcile(inventory: StateFile, list: ListWorkerContainers, log: Logger): Promise<Reconciliation> {
  const containers: ContainerRecord[] = [];
  const adopted: string[] = [];
  const missing: string[] = [];
  for (const worker of inventory.workers) {
    const recorded = inventory.containers.filter((c) => c.workerId === worker.id);
    let listed: ContainerInfo[] | null;
    try {
      listed = await list(worker);
    } catch (error) {
      log.warn({ worker: worker.id, err: error }, 'cannot list the worker’s containers; keeping the recorded inventory');
      listed = null;
    }
    if (listed === null) {
      containers.push(...recorded);
      continue;
    }
    const running = listed.filter((info) => info.state === 'running' || info.state === 'starting');
    for (const record of recorded) {
      // Containers the orchestrator merely routes to are not the runtime's to report on.
      if (!record.managed) {
        containers.push(record);
        continue;
      }
      // By runtime id, or by name: a compose-started container carries its name in a label (EC2 workers are recorded before their ids are known).
      const live = running.find((info) => info.runtimeId === record.runtimeId || containerName(info) === record.id);
      if (live) {
        containers.push({ ...record, runtimeId: live.runtimeId });
      } else {
        missing.push(record.id);
        containers.push({ ...record, state: 'down', lastError: 'not running in its runtime at orchestrator start' });
      }
    }
    for (const info of running) {
      const name = containerName(info);
      if (recorded.some((r) => r.id === name || r.runtimeId === info.runtimeId)) continue;
      adopted.push(name);
      containers.push(containerRecordSchema.parse({ id: name, workerId: worker.id, host: worker.host, port: info.port, runtimeId: info.runtimeId, state: 'starting' }));
    }
  }
  // Containers of workers that are no longer recorded stay as they were.
  const workerIds = new Set(inventory.workers.map((w) => w.id));
  containers.push(...inventory.containers.filter((c) => !workerIds.has(c.workerId)));
  if (adopted.length > 0) log.info({ adopted }, 'adopted running containers missing from the inventory');
  if (missing.length > 0) log.warn({ missing }, 'recorded containers are not running');
  return { containers, adopted, missing };
}
