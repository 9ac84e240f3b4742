import { createLogger } from '../../common/src/logger.js';
import { ContainerPool, type Container, type Worker } from '../../orchestrator/src/container-pool.js';
import { RuntimeOperations } from '../../orchestrator/src/runtime-operations.js';
import { LABELS, type ContainerInfo, type ContainerSpec, type RuntimeDriver } from '../../runtime/src/driver.js';
import { containerRecordSchema, workerRecordSchema, type WorkerRecord } from '../../status/src/schema.js';

/** An in-memory runtime: records every call; `failStarts` makes the next starts throw. */
export class FakeDriver implements RuntimeDriver {
  readonly kind = 'fake';
  /** Settable, so a test picks how many starts a worker's queue runs at once. */
  concurrency = 1;
  readonly running = new Map<string, ContainerSpec>();
  readonly started: ContainerSpec[] = [];
  readonly removed: string[] = [];
  failStarts = 0;
  #next = 1;

  async start(spec: ContainerSpec): Promise<ContainerInfo> {
    if (this.failStarts > 0) {
      this.failStarts--;
      throw new Error(`cannot start ${spec.name}`);
    }
    const runtimeId = `rt-${this.#next++}`;
    this.running.set(runtimeId, spec);
    this.started.push(spec);
    return this.#info(runtimeId, spec);
  }

  async stop(): Promise<void> {}

  async remove(runtimeId: string): Promise<void> {
    if (this.running.delete(runtimeId)) this.removed.push(runtimeId);
  }

  async inspect(runtimeId: string): Promise<ContainerInfo | null> {
    const spec = this.running.get(runtimeId);
    return spec ? this.#info(runtimeId, spec) : null;
  }

  async list(): Promise<ContainerInfo[]> {
    return [...this.running].map(([id, spec]) => this.#info(id, spec));
  }

  #info(runtimeId: string, spec: ContainerSpec): ContainerInfo {
    return { runtimeId, name: spec.name, state: 'running', labels: spec.labels, host: spec.host, port: spec.port, exitCode: null };
  }
}

export interface FakeCluster {
  pool: ContainerPool;
  driver: FakeDriver;
  operations: RuntimeOperations;
  /** Ports whose /health answers 200 (a new container answers once its port is here). */
  healthy: Set<number>;
  add(workerId: string, port: number): Container;
}

/** `workers` workers w1..wN with ports 5000.. (stride 100), no containers yet, a fake driver and probe. */
export function fakeCluster(
  workers: number,
  options: {
    maxPerWorker?: number;
    startTimeoutMs?: number;
    drainTimeoutMs?: number;
    maxOperations?: number;
    /** The runtime of every worker. @default a new FakeDriver */
    driver?: FakeDriver;
    /** What a worker's runtime lists. @default the fake driver's containers labelled with the worker */
    list?: (worker: Worker) => Promise<ContainerInfo[]>;
  } = {},
): FakeCluster {
  const pool = new ContainerPool();
  const driver = options.driver ?? new FakeDriver();
  const healthy = new Set<number>();
  const records: WorkerRecord[] = Array.from({ length: workers }, (_, i) =>
    workerRecordSchema.parse({
      id: `w${i + 1}`,
      provider: 'local',
      host: '127.0.0.1',
      runtime: { driver: 'process' },
      ports: { first: 5000 + i * 100, last: 5000 + i * 100 + 9 },
      template: { env: { WORK_MS: '0' } },
    }),
  );
  pool.load(records, [], 1);
  const operations = new RuntimeOperations(
    {
      pool,
      driverFor: () => driver,
      list: options.list ?? (async (worker) => (await driver.list()).filter((info) => info.labels[LABELS.worker] === worker.id)),
      probe: async (c) => healthy.has(c.port),
      forget: async () => {},
      log: createLogger('test', 'silent'),
    },
    {
      cluster: 'test',
      containerConcurrency: 1,
      startTimeoutMs: options.startTimeoutMs ?? 1_000,
      stopTimeoutMs: 0,
      drainTimeoutMs: options.drainTimeoutMs ?? 1_000,
      maxPerWorker: options.maxPerWorker ?? 8,
      maxOperations: options.maxOperations ?? 32,
    },
  );
  return {
    pool,
    driver,
    operations,
    healthy,
    add(workerId, port) {
      healthy.add(port);
      const c = pool.add(containerRecordSchema.parse({ id: `${workerId}-${port}`, workerId, host: '127.0.0.1', port, runtimeId: `pre-${port}` }), 1);
      pool.setHealth(c, 'healthy', 'test');
      return c;
    },
  };
}
