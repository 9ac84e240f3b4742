import type { Logger } from '../../common/src/logger.js';
import { pollWithin } from '../../common/src/poll-until.js';
import { NotFoundError } from '../../common/src/http-errors.js';
import type { LaunchedWorker, WorkerProvider } from '../../provisioning/src/worker-provider.js';
import type { LaunchTiming, MachineDecision, MachineScalerSnapshot, WorkerRecord } from '../../status/src/schema.js';
import { containerName, type ContainerInfo } from '../../runtime/src/driver.js';
import type { Container, ContainerPool, Worker } from './container-pool.js';
import { ConflictError } from './errors.js';
import type { RuntimeOperations } from './runtime-operations.js';

export interface WorkerFleetDeps {
  pool: ContainerPool;
  /** Makes and removes machines: the code `npm run provision` uses. */
  provider: WorkerProvider;
  /** Replacement capacity on the other workers before one leaves. */
  operations: Pick<RuntimeOperations, 'scaleOut' | 'isCancellableStart' | 'cancelStart'>;
  /** Containers the autoscaler wants now (with the workers that are up now). */
  wanted: () => number;
  /** One health probe of a container: true when it answers. */
  probe: (c: Container) => Promise<boolean>;
  /** What a worker's runtime runs (to learn the runtime ids a provider could not report: EC2's containers start by user-data). */
  list: (worker: Worker) => Promise<ContainerInfo[]>;
  /** Drop a container's connections. */
  forget: (id: string) => Promise<void>;
  log: Logger;
  now?: () => number;
}

export interface WorkerFleetOptions {
  containerConcurrency: number;
  /** How long a leaving worker's requests get to finish. */
  drainTimeoutMs: number;
  /** Back-off after a failed launch, doubled for each further failure in a row, up to backoffMaxMs. */
  backoffMs: number;
  backoffMaxMs: number;
}

/** Decisions and launch timings kept for the status. */
const KEPT = 20;

/**
 * The workers as machines: launches one (through the provider, then its containers join the
 * pool), retires and releases one (its containers leave the rotation, the capacity the cluster still
 * needs starts elsewhere first, its requests finish, then the machine goes). The machine
 * autoscaler and the admin API both act through it, so every launch and release is bounded,
 * recorded with its reason, and backed off after a failure the same way.
 */
export class WorkerFleet {
  readonly #deps: WorkerFleetDeps;
  readonly #options: WorkerFleetOptions;
  readonly #now: () => number;
  readonly #launching = new Map<string, { since: string; reason: string; abort: AbortController; done: Promise<unknown> }>();
  readonly #releasing = new Map<string, { since: string; reason: string; done: Promise<unknown> }>();
  readonly #decisions: MachineDecision[] = [];
  readonly #launches: LaunchTiming[] = [];
  readonly #counts = { launched: 0, launchFailed: 0, adopted: 0, released: 0, releaseFailed: 0 };
  #failures = 0;
  #backoffUntil = 0;
  #lastError: string | null = null;

  constructor(deps: WorkerFleetDeps, options: WorkerFleetOptions) {
    this.#deps = deps;
    this.#options = options;
    this.#now = deps.now ?? Date.now;
  }

  get provider(): WorkerProvider {
    return this.#deps.provider;
  }

  /** Workers being launched now. */
  get launching(): number {
    return this.#launching.size;
  }

  /** Workers being released now. */
  get releasing(): number {
    return this.#releasing.size;
  }

  /** Launches that failed in a row. */
  get failures(): number {
    return this.#failures;
  }

  /** Until when launches wait after failures (epoch ms); 0 when they need not. */
  get backoffUntil(): number {
    return this.#backoffUntil;
  }

  /** The lowest `w<k>` no worker, launch or release holds. */
  nextId(): string {
    for (let k = 1; ; k++) {
      const id = `w${k}`;
      if (!this.#deps.pool.worker(id) && !this.#launching.has(id) && !this.#releasing.has(id)) return id;
    }
  }

  /**
   * Launch worker `id` and put its containers in rotation; resolves with its record. A failure
   * is recorded, backs further launches off, releases whatever the launch left, and rejects.
   * `needSince`: when the need it answers was first seen (epoch ms), for its timing.
   */
  launch(id: string, reason: string, options: { launchedBy: WorkerRecord['launchedBy']; needSince?: number; workers?: number }): Promise<WorkerRecord> {
    if (this.#deps.pool.worker(id) || this.#launching.has(id) || this.#releasing.has(id)) {
      return Promise.reject(new ConflictError(`worker ${id} is already in the cluster, launching or leaving`));
    }
    const abort = new AbortController();
    const requestedAt = this.#now();
    this.#record('launch', id, reason, options.workers);
    const done = (async () => {
      let launched: LaunchedWorker;
      try {
        launched = await this.#deps.provider.launch(id, abort.signal);
      } catch (error) {
        this.#launchFailed(id, error);
        // A launch cleans up what it started; an adopted machine that never answered goes too.
        await this.#deps.provider.release(id).catch((err: unknown) => this.#deps.log.error({ err, worker: id }, 'could not release a worker whose launch failed'));
        throw error;
      }
      const worker = await this.#join(launched, options.launchedBy, reason);
      const inRotationAt = this.#now();
      const { timings } = launched;
      this.#launches.push({
        workerId: id,
        needSince: options.needSince === undefined ? null : new Date(options.needSince).toISOString(),
        decisionMs: options.needSince === undefined ? null : requestedAt - options.needSince,
        launchMs: timings.runningAt - timings.requestedAt,
        startMs: timings.healthyAt - timings.runningAt,
        probeMs: inRotationAt - timings.healthyAt,
      });
      if (this.#launches.length > KEPT) this.#launches.shift();
      this.#failures = 0;
      this.#backoffUntil = 0;
      this.#counts[launched.adopted ? 'adopted' : 'launched']++;
      this.#record(launched.adopted ? 'adopt' : 'launched', id, launched.adopted ? `${reason}; it was running already` : reason);
      return worker;
    })().finally(() => {
      this.#launching.delete(id);
      this.#deps.pool.touch();
    });
    this.#launching.set(id, { since: new Date(requestedAt).toISOString(), reason, abort, done: done.catch(() => {}) });
    this.#deps.pool.touch();
    return done;
  }

  /** Its containers join the pool, each probed once now so that one that answers serves at once. */
  async #join(launched: LaunchedWorker, launchedBy: WorkerRecord['launchedBy'], reason: string): Promise<WorkerRecord> {
    const { pool, probe } = this.#deps;
    const worker = pool.addWorker({ ...launched.worker, launchedBy, state: 'up' });
    const added = launched.containers.map((r) => pool.add({ ...r, state: 'starting' }, this.#options.containerConcurrency));
    await this.#learnRuntimeIds(worker, added);
    await Promise.all(
      added.map(async (c) => {
        if (await probe(c).catch(() => false)) pool.setHealth(c, 'healthy', `joined with worker ${worker.id} (${reason})`);
      }),
    );
    return { ...worker };
  }

  /**
   * Containers started by the machine itself (EC2 user-data) come without runtime ids; without
   * one, a scale-in or a replacement could not stop the container it forgets. Asked of the
   * worker's runtime by name, as the reconciler does at start; a runtime that cannot answer now
   * leaves them unknown (logged), as a worker unreachable at start does.
   */
  async #learnRuntimeIds(worker: Worker, added: readonly Container[]): Promise<void> {
    const missing = added.filter((c) => c.managed && c.runtimeId === null);
    if (missing.length === 0) return;
    try {
      const listed = await this.#deps.list(worker);
      for (const c of missing) {
        const info = listed.find((i) => containerName(i) === c.id);
        if (info) this.#deps.pool.setRuntimeId(c, info.runtimeId);
      }
    } catch (error) {
      this.#deps.log.warn({ err: error, worker: worker.id }, "cannot ask a new worker's runtime for its containers' ids");
    }
  }

  #launchFailed(id: string, error: unknown): void {
    this.#failures++;
    this.#counts.launchFailed++;
    const wait = Math.min(this.#options.backoffMaxMs, this.#options.backoffMs * 2 ** (this.#failures - 1));
    this.#backoffUntil = this.#now() + wait;
    this.#lastError = (error as Error).message;
    this.#record('launch-failed', id, `${this.#lastError}; ${this.#failures} in a row, next launch not before ${Math.round(wait / 1000)} s`);
  }

  /**
   * Take worker `id` out and release its machine: it takes no new container, the containers the
   * cluster still needs start on the other workers first, its own leave the rotation and finish
   * their requests (up to drainTimeoutMs), then the provider releases the machine and the worker
   * is forgotten. A machine the inventory does not list (found at start) is only released.
   * Resolves with the containers it held.
   */
  release(id: string, reason: string, options: { workers?: number } = {}): Promise<{ worker: string; containers: string[] }> {
    if (this.#releasing.has(id)) return Promise.reject(new ConflictError(`worker ${id} is already leaving`));
    if (this.#launching.has(id)) return Promise.reject(new ConflictError(`worker ${id} is still launching`));
    const worker = this.#deps.pool.worker(id);
    this.#record('release', id, reason, options.workers);
    const done = (async () => {
      const containers = worker ? await this.#retire(worker.id, reason) : [];
      try {
        await this.#deps.provider.release(id);
      } catch (error) {
        this.#counts.releaseFailed++;
        this.#lastError = (error as Error).message;
        this.#record('release-failed', id, `${this.#lastError}; it stays draining, the next pass tries again`);
        throw error;
      }
      if (worker) this.#deps.pool.removeWorker(id);
      this.#counts.released++;
      this.#record('released', id, reason);
      return { worker: id, containers };
    })().finally(() => {
      this.#releasing.delete(id);
      this.#deps.pool.touch();
    });
    this.#releasing.set(id, { since: new Date(this.#now()).toISOString(), reason, done: done.catch(() => {}) });
    this.#deps.pool.touch();
    return done;
  }

  /** Drain worker `id` (see release); its containers leave the pool. Returns their ids. */
  async #retire(id: string, reason: string): Promise<string[]> {
    const { pool, operations, log } = this.#deps;
    const worker = pool.worker(id)!;
    pool.setWorkerState(worker, 'draining', reason);
    const own = pool.onWorker(id);
    // Its containers no longer count (see Autoscaler.current): the ones the cluster still needs start elsewhere before they leave.
    const counted = [...pool.containers()].filter((c) => c.workerId !== id && !c.draining && c.health !== 'down').length;
    const short = Math.min(own.filter((c) => !c.draining && c.health !== 'down').length, Math.max(0, this.#deps.wanted() - counted));
    if (short > 0) {
      const moved = await Promise.allSettled(Array.from({ length: short }, () => operations.scaleOut(`capacity of worker ${id}, which leaves: ${reason}`)));
      const failed = moved.filter((m) => m.status === 'rejected').length;
      if (failed > 0) log.warn({ worker: id, failed }, "some of a leaving worker's capacity could not start elsewhere; its requests queue meanwhile");
    }
    for (const c of own) {
      if (operations.isCancellableStart(c)) await operations.cancelStart(c, `worker ${id} leaves: ${reason}`);
      else pool.drain(c, `worker ${id} leaves: ${reason}`);
    }
    await pollWithin(async () => (pool.onWorker(id).every((c) => c.inFlight === 0 && !c.operation) ? true : undefined), {
      timeoutMs: this.#options.drainTimeoutMs,
      intervalMs: 20,
    });
    const left = pool.onWorker(id);
    const unfinished = left.reduce((n, c) => n + c.inFlight, 0);
    if (unfinished > 0) log.warn({ worker: id, inFlight: unfinished }, 'drain deadline passed; releasing the worker anyway');
    for (const c of left) {
      pool.remove(c);
      await this.#deps.forget(c.id);
    }
    return own.map((c) => c.id);
  }

  /** Workers left draining by a failed release, which a later pass releases again. */
  stranded(): string[] {
    return [...this.#deps.pool.workers()].filter((w) => w.state === 'draining' && !this.#releasing.has(w.id)).map((w) => w.id);
  }

  /** Record a decision that held something back (kept once while it repeats). */
  held(reason: string, workers: number): void {
    const last = this.#decisions.at(-1);
    if (last?.action === 'held' && last.reason === reason) return;
    this.#record('held', null, reason, workers);
  }

  #record(action: MachineDecision['action'], workerId: string | null, reason: string, workers?: number): void {
    const decision: MachineDecision = { at: new Date(this.#now()).toISOString(), action, workerId, workers: workers ?? this.#workerCount(), reason };
    this.#decisions.push(decision);
    if (this.#decisions.length > KEPT) this.#decisions.shift();
    const failed = action === 'launch-failed' || action === 'release-failed';
    this.#deps.log[failed ? 'warn' : 'info'](decision, `machines: ${action}${workerId ? ` ${workerId}` : ''}`);
    this.#deps.pool.touch();
  }

  /** Workers in the cluster (whatever their state) and being launched (one that joined already counts once). */
  #workerCount(): number {
    let n = 0;
    for (const w of this.#deps.pool.workers()) if (!this.#launching.has(w.id)) n++;
    return n + this.#launching.size;
  }

  /** Stop launches under way (each stops what it started) and wait for releases to end. */
  async close(): Promise<void> {
    for (const launch of this.#launching.values()) launch.abort.abort();
    await Promise.all([...this.#launching.values(), ...this.#releasing.values()].map((entry) => entry.done));
  }

  /** The state for /status, /metrics and the dashboard; `scaler` adds the autoscaling side. */
  snapshot(scaler: { paused: boolean; minWorkers: number; maxWorkers: number }): MachineScalerSnapshot {
    const entries = (map: Map<string, { since: string; reason: string }>) => [...map].map(([workerId, e]) => ({ workerId, since: e.since, reason: e.reason }));
    return {
      provider: this.#deps.provider.kind,
      ...scaler,
      launching: entries(this.#launching),
      releasing: entries(this.#releasing),
      failures: this.#failures,
      backoffUntil: this.#backoffUntil > this.#now() ? new Date(this.#backoffUntil).toISOString() : null,
      lastError: this.#lastError,
      counts: { ...this.#counts },
      decisions: [...this.#decisions],
      launches: [...this.#launches],
    };
  }

  /** The worker, for the admin API: 404 when unknown. */
  known(id: string): void {
    if (!this.#deps.pool.worker(id) && !this.#launching.has(id)) throw new NotFoundError(`no worker ${id}`);
  }
}
