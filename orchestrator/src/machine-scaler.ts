import { ControlLoop } from '../../common/src/control-loop.js';
import type { Logger } from '../../common/src/logger.js';
import type { MachineScalerSnapshot } from '../../status/src/schema.js';
import type { Autoscaler } from './autoscaler.js';
import type { ContainerPool, Worker } from './container-pool.js';
import type { RuntimeOperations } from './runtime-operations.js';
import type { WorkerFleet } from './worker-fleet.js';

export interface MachineScalerOptions {
  minWorkers: number;
  maxWorkers: number;
  /** Containers one worker holds at most: how many a new worker makes room for. */
  maxPerWorker: number;
  /** A worker surplus this long in a row is released. */
  surplusMs: number;
  /** Least time between two launches, and between two releases. */
  upCooldownMs: number;
  downCooldownMs: number;
  intervalMs: number;
}

export interface MachineScalerDeps {
  pool: ContainerPool;
  fleet: WorkerFleet;
  autoscaler: Pick<Autoscaler, 'unplaced' | 'wanted' | 'paused'>;
  operations: Pick<RuntimeOperations, 'room'>;
  log: Logger;
  now?: () => number;
}

/**
 * The cluster autoscaler of this product: follows the container autoscaler with machines. When
 * containers it wants fit on no worker (every one full: maxContainersPerWorker, or its ports), it
 * launches workers, enough for them, up to maxWorkers, and at least minWorkers are up. A worker is
 * surplus while the other workers can hold every container the autoscaler wants (what they run
 * plus their room); surplus for `surplusMs` in a row, it is released (the autoscaler's own before provisioned
 * ones, then the fewest containers to move, then the newest), never below minWorkers. Launches back off after failures; one release
 * at a time. At start, machines of the cluster the inventory does not list (a launch the last run
 * did not finish) are adopted while under maxWorkers, else released.
 */
export class MachineScaler extends ControlLoop {
  readonly options: MachineScalerOptions;
  readonly #deps: MachineScalerDeps;
  readonly #now: () => number;
  /** When containers were first seen not to fit, while they still do not. */
  #needSince: number | undefined;
  /** When each worker became surplus, while it stays so. */
  readonly #surplusSince = new Map<string, number>();
  /** When each worker of the autoscaler's own was first seen down, while it stays so. */
  readonly #downSince = new Map<string, number>();
  #lastLaunch = -Infinity;
  #lastRelease = -Infinity;

  constructor(deps: MachineScalerDeps, options: MachineScalerOptions) {
    super('machine scaler', options.intervalMs, deps.log);
    this.#deps = deps;
    this.options = options;
    this.#now = deps.now ?? Date.now;
  }

  /**
   * Machines of the cluster the inventory does not list: adopted while there is room under
   * maxWorkers, else released. Resolves once each is under way (launching or releasing), so that
   * the first pass counts them; adopting one waits for its containers in the background.
   */
  async adoptOrRelease(): Promise<void> {
    const { fleet, pool } = this.#deps;
    const found = (await fleet.provider.list()).filter((id) => !pool.worker(id));
    const why = 'found by its labels or tags at start, not in the inventory (a launch the last run did not finish)';
    for (const id of found) {
      const done =
        this.#total() < this.options.maxWorkers
          ? fleet.launch(id, `${why}: adopted`, { launchedBy: 'autoscaler' })
          : fleet.release(id, `${why}: released, ${this.options.maxWorkers} workers already`);
      done.catch((error: unknown) => this.log.warn({ err: error, worker: id }, 'could not adopt or release a machine found at start'));
    }
  }

  override async tick(): Promise<void> {
    const { fleet, autoscaler } = this.#deps;
    const now = this.#now();
    for (const id of fleet.stranded()) void fleet.release(id, 'its last release failed; trying again').catch(() => {});
    const unplaced = autoscaler.unplaced();
    if (unplaced > 0) this.#needSince ??= now;
    else this.#needSince = undefined;
    // Paused (the admin API, a teardown through it): no launch, not even to minWorkers, and no release.
    if (autoscaler.paused) return;
    this.#releaseLost(now);
    const up = this.#up().length;
    if (up + fleet.launching < this.options.minWorkers) {
      this.#launch(this.options.minWorkers - up - fleet.launching, `below minWorkers (${up} up${fleet.launching ? `, ${fleet.launching} launching` : ''})`, 'below minWorkers');
      return;
    }
    if (unplaced > 0) {
      // Each new worker makes room for maxPerWorker; those launching already count.
      const wanted = Math.ceil(unplaced / this.options.maxPerWorker) - fleet.launching;
      if (wanted > 0) this.#launch(wanted, `${unplaced} container(s) the autoscaler wants fit on no worker`, 'containers the autoscaler wants fit on no worker');
      this.#surplusSince.clear();
      return;
    }
    this.#releaseSurplus(now);
  }

  /**
   * Launch up to `n` workers, within maxWorkers, the cooldown and the back-off. `need` says why,
   * without counts, so that a hold repeated pass after pass is recorded once.
   */
  #launch(n: number, reason: string, need: string): void {
    const { fleet } = this.#deps;
    const now = this.#now();
    const total = this.#total();
    const room = this.options.maxWorkers - total;
    if (room <= 0) return fleet.held(`${need}; held: maxWorkers (${this.options.maxWorkers}) reached`, total);
    if (now < fleet.backoffUntil) return fleet.held(`${need}; held: backing off after ${fleet.failures} failed launch(es) in a row, until ${new Date(fleet.backoffUntil).toISOString()}`, total);
    if (now - this.#lastLaunch < this.options.upCooldownMs) return fleet.held(`${need}; held: launch cooldown`, total);
    this.#lastLaunch = now;
    for (let i = 0; i < Math.min(n, room); i++) {
      const id = fleet.nextId();
      fleet
        .launch(id, reason, { launchedBy: 'autoscaler', needSince: this.#needSince, workers: total })
        .catch((error: unknown) => this.log.warn({ err: error, worker: id }, 'worker launch failed; backing off'));
    }
  }

  /** Release the first surplus worker (the autoscaler's own, then the emptiest) once it has been surplus for surplusMs, within minWorkers and the cooldown. */
  #releaseSurplus(now: number): void {
    const { fleet, autoscaler, pool, operations } = this.#deps;
    const up = this.#up();
    if (up.length <= this.options.minWorkers || fleet.launching > 0 || fleet.releasing > 0) {
      this.#surplusSince.clear();
      return;
    }
    const counted = (w: Worker): number => pool.onWorker(w.id).filter((c) => !c.draining && c.health !== 'down').length;
    const total = [...pool.containers()].filter((c) => !c.draining && c.health !== 'down').length;
    // What the others hold and have room for, against what the autoscaler would want with one worker fewer.
    const surplus = up.filter((w) => total - counted(w) + operations.room(w.id) >= autoscaler.wanted(up.length - 1));
    for (const id of this.#surplusSince.keys()) if (!surplus.some((w) => w.id === id)) this.#surplusSince.delete(id);
    for (const w of surplus) if (!this.#surplusSince.has(w.id)) this.#surplusSince.set(w.id, now);
    // The one to release is chosen among every surplus worker, then waits its own surplusMs: a provisioned worker
    // surplus a little longer must not go before the autoscaler's own.
    const due = surplus.sort((a, b) => byAutoscaler(b) - byAutoscaler(a) || counted(a) - counted(b) || workerNumber(b.id) - workerNumber(a.id))[0];
    if (!due || now - this.#surplusSince.get(due.id)! < this.options.surplusMs || now - this.#lastRelease < this.options.downCooldownMs) return;
    this.#lastRelease = now;
    this.#surplusSince.delete(due.id);
    const reason = `surplus for ${Math.round(this.options.surplusMs / 1000)} s: the other workers hold or have room for the ${autoscaler.wanted(up.length - 1)} container(s) wanted`;
    fleet.release(due.id, reason, { workers: this.#total() }).catch((error: unknown) => this.log.warn({ err: error, worker: due.id }, 'worker release failed'));
  }

  /**
   * A worker of the autoscaler's own that has been down for surplusMs (its machine lost, its
   * containers moved away) is released, so it stops costing and counting toward maxWorkers. A
   * provisioned one is left for the operator, as before.
   */
  #releaseLost(now: number): void {
    const { fleet, pool } = this.#deps;
    for (const w of pool.workers()) {
      if (w.state !== 'down' || w.launchedBy !== 'autoscaler') {
        this.#downSince.delete(w.id);
        continue;
      }
      const since = this.#downSince.get(w.id) ?? now;
      this.#downSince.set(w.id, since);
      if (now - since < this.options.surplusMs) continue;
      this.#downSince.delete(w.id);
      fleet.release(w.id, `down for ${Math.round(this.options.surplusMs / 1000)} s: its machine is lost`).catch((error: unknown) => this.log.warn({ err: error, worker: w.id }, 'worker release failed'));
    }
  }

  /** Workers up (not down, not leaving). */
  #up(): Worker[] {
    return [...this.#deps.pool.workers()].filter((w) => w.state === 'up');
  }

  /** Every worker the cluster has or is launching: down ones still run somewhere and cost. */
  #total(): number {
    return [...this.#deps.pool.workers()].length + this.#deps.fleet.launching;
  }

  #shape(): { paused: boolean; minWorkers: number; maxWorkers: number } {
    return { paused: this.#deps.autoscaler.paused, minWorkers: this.options.minWorkers, maxWorkers: this.options.maxWorkers };
  }

  snapshot(): MachineScalerSnapshot {
    return this.#deps.fleet.snapshot(this.#shape());
  }
}

const byAutoscaler = (w: Worker): number => (w.launchedBy === 'autoscaler' ? 1 : 0);
const workerNumber = (id: string): number => Number(/^w(\d+)$/.exec(id)?.[1] ?? 0);
