import { ControlLoop } from '../../common/src/control-loop.js';
import type { Logger } from '../../common/src/logger.js';
import type { ContainerInfo } from '../../runtime/src/driver.js';
import type { ContainerPool, Worker } from './container-pool.js';
import type { RuntimeOperations } from './runtime-operations.js';

export interface WorkerMonitorOptions {
  /** Pause between two passes, in ms. */
  intervalMs: number;
  /** Longest a worker's runtime may take to list its containers, once asked. */
  timeoutMs: number;
  /** Failed checks in a row that mark a worker down. */
  fall: number;
  /** Good checks in a row that bring it back. */
  rise: number;
}

export interface WorkerMonitorDeps {
  pool: ContainerPool;
  /** Lists, relocations and orphan removals all go through the runtime operations' queues. */
  operations: Pick<RuntimeOperations, 'list' | 'relocate' | 'removeOrphans'>;
  log: Logger;
}

/**
 * Tells a lost worker (its machine gone) from lost containers. A worker none of whose containers
 * is in rotation is suspect; its runtime is then asked what runs there. When it cannot answer
 * `fall` times in a row, the worker is marked down and each of its managed containers is started
 * again on the other workers before its record goes: the capacity moves, the healer does not try
 * to restart containers where nothing can run. Once the runtime answers `rise` times in a row the
 * worker is up again, and any container of ours it still runs that the inventory no longer lists
 * (moved away meanwhile) is removed, so nothing runs twice.
 */
export class WorkerMonitor extends ControlLoop {
  readonly #deps: WorkerMonitorDeps;
  readonly #options: WorkerMonitorOptions;
  readonly #streaks = new Map<string, { failures: number; successes: number }>();

  constructor(deps: WorkerMonitorDeps, options: WorkerMonitorOptions) {
    super('worker monitor', options.intervalMs, deps.log);
    this.#deps = deps;
    this.#options = options;
  }

  /** One pass over every worker; the runtime operations bound how many runtimes are asked at once. */
  override async tick(): Promise<void> {
    await Promise.all([...this.#deps.pool.workers()].map((worker) => this.#check(worker)));
  }

  async #check(worker: Worker): Promise<void> {
    const { pool } = this.#deps;
    // Being removed: its containers leave on purpose.
    if (worker.state === 'draining') return;
    const serving = pool.onWorker(worker.id).some((c) => c.health === 'healthy' || c.health === 'starting' || c.operation);
    if (worker.state === 'up' && serving) {
      this.#streaks.delete(worker.id);
      return;
    }
    const streak = this.#streaks.get(worker.id) ?? { failures: 0, successes: 0 };
    this.#streaks.set(worker.id, streak);
    let listed: ContainerInfo[];
    try {
      listed = await this.#deps.operations.list(worker, this.#options.timeoutMs);
    } catch (error) {
      streak.successes = 0;
      streak.failures++;
      if (worker.state === 'up' && streak.failures >= this.#options.fall) {
        this.#markDown(worker, `its runtime failed ${streak.failures} checks in a row: ${(error as Error).message}`);
      }
      if (worker.state === 'down') await this.#relocate(worker);
      return;
    }
    streak.failures = 0;
    streak.successes++;
    if (worker.state === 'down' && streak.successes >= this.#options.rise) {
      await this.#deps.operations.removeOrphans(worker, listed);
      pool.setWorkerState(worker, 'up', `its runtime answered ${streak.successes} checks in a row`);
    }
  }

  #markDown(worker: Worker, reason: string): void {
    const { pool } = this.#deps;
    pool.setWorkerState(worker, 'down', reason);
    for (const c of pool.onWorker(worker.id)) if (!c.operation) pool.setHealth(c, 'down', `worker ${worker.id} is down`);
  }

  /** Start each managed container of a down worker elsewhere; what finds no room is tried again next pass. */
  async #relocate(worker: Worker): Promise<void> {
    const movable = this.#deps.pool.onWorker(worker.id).filter((c) => c.managed && !c.operation);
    const results = await Promise.allSettled(movable.map((c) => this.#deps.operations.relocate(c, `moved from worker ${worker.id}, which is down`)));
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed.length > 0) this.log.warn({ worker: worker.id, unmoved: failed.length, err: failed[0]!.reason }, 'cannot move every container of a down worker yet');
  }
}
