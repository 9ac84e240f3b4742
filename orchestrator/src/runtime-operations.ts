import PQueue from 'p-queue';
import { pollWithin } from '../../common/src/poll-until.js';
import type { Logger } from '../../common/src/logger.js';
import { containerLabels, containerName, stopAndRemove, type ContainerInfo, type RuntimeDriver } from '../../runtime/src/driver.js';
import { StartCancelledError } from '../../runtime/src/errors.js';
import { startHealthy } from '../../runtime/src/start-healthy.js';
import { containerRecordSchema } from '../../status/src/schema.js';
import type { Container, ContainerPool, Worker } from './container-pool.js';
import { NoPlacementError, WorkerCheckTimeoutError } from './errors.js';
import { place, room, type Placement } from './placement.js';

export interface RuntimeOperationsDeps {
  pool: ContainerPool;
  /** The driver of a worker's runtime (one per worker, made on first use). */
  driverFor(worker: Worker): RuntimeDriver;
  /** The worker's containers as its runtime lists them (this cluster's, by label); throws when the runtime cannot be reached. */
  list(worker: Worker): Promise<ContainerInfo[]>;
  /** One `GET` of its health path (through the health checker's bounded probe queue); true when it answered 2xx. */
  probe(c: Container): Promise<boolean>;
  /** Drop the keep-alive connections to a container that was replaced or removed. */
  forget(containerId: string): Promise<void>;
  log: Logger;
}

export interface RuntimeOperationsOptions {
  cluster: string;
  /** Requests a new container serves at once. */
  containerConcurrency: number;
  /** How long a new container has to answer its health path. */
  startTimeoutMs: number;
  /** How long `stop` waits before killing. */
  stopTimeoutMs: number;
  /** How long a drained container's requests get to finish before it is removed anyway. */
  drainTimeoutMs: number;
  /** Containers one worker may hold. */
  maxPerWorker: number;
  /** Runtime operations under way at once over the whole cluster (maxRuntimeOperations). */
  maxOperations: number;
}

/** A scale-out's start, which a scale-in may cancel: dropped while it waits in a queue, stopped once it runs. */
interface CancellableStart {
  /** Aborted only while it waits: p-queue then drops it without running it. */
  queued: AbortController;
  /** Aborted once it runs: startHealthy stops and removes what it started. */
  running: AbortController;
  started: boolean;
  /** Settles once the start ended, whichever way: the container serves, or it is stopped and forgotten. */
  ended: Promise<unknown>;
}

/**
 * The one owner of runtime work: every start, replace, relocate, drain, remove and list goes
 * through here, and the control loops only say what they want. Operations on one worker run in
 * order, at most its runtime's `concurrency` at once (a p-queue per worker); over the cluster at
 * most `maxOperations` run at once (one more p-queue). The pool follows through its transitions:
 * a container carries its operation from the moment it is asked for (queued included), so the
 * loops leave it alone; a new container joins the rotation only once it answered its health path,
 * and a container leaves it (drained) before it is stopped.
 */
export class RuntimeOperations {
  readonly #deps: RuntimeOperationsDeps;
  readonly #options: RuntimeOperationsOptions;
  /** Every operation end to end (its waits in the queues below, a drain, the pool's bookkeeping): onIdle is when the pool has settled. Unbounded: the bounds are the next two. */
  readonly #operations = new PQueue();
  readonly #cluster: PQueue;
  readonly #byWorker = new Map<string, PQueue>();
  /** Scale-outs still starting. Relocations are not listed: they carry a lost worker's capacity. */
  readonly #starts = new Map<Container, CancellableStart>();

  constructor(deps: RuntimeOperationsDeps, options: RuntimeOperationsOptions) {
    this.#deps = deps;
    this.#options = options;
    this.#cluster = new PQueue({ concurrency: options.maxOperations });
  }

  /** Resolves once no operation is queued or running (shutdown, tests). */
  async onIdle(): Promise<void> {
    await this.#operations.onIdle();
  }

  /** How many more containers placement can take now, on every worker but `exceptWorker` (see placement.ts). */
  room(exceptWorker?: string): number {
    return room(this.#deps.pool, this.#options.maxPerWorker, exceptWorker);
  }

  /**
   * Place a new container now (it counts, as `starting`, from here on), start it in its worker's
   * queue, and put it in rotation once healthy. A scale-in may cancel it until then (`cancelStart`):
   * it then rejects with StartCancelledError.
   */
  scaleOut(reason: string): Promise<Container> {
    const placement = place(this.#deps.pool, this.#options.maxPerWorker);
    if (!placement) return Promise.reject(new NoPlacementError());
    const c = this.#placed(placement);
    const start: CancellableStart = { queued: new AbortController(), running: new AbortController(), started: false, ended: Promise.resolve() };
    this.#starts.set(c, start);
    const done = this.#track(async () => {
      try {
        await this.#run(
          placement.worker,
          () => {
            start.started = true;
            return this.#startNew(placement.worker, c, reason, start.running.signal);
          },
          start.queued.signal,
        );
        return c;
      } catch (error) {
        this.#deps.pool.remove(c);
        if (error instanceof StartCancelledError) this.#deps.log.info({ container: c.id, reason: c.history.at(-1)?.reason }, 'container start cancelled');
        throw error;
      } finally {
        this.#starts.delete(c);
        this.#deps.pool.operationEnded(c);
      }
    });
    start.ended = done.catch(() => {});
    return done;
  }

  /** Whether `c` is a scale-out still starting, which `cancelStart` can stop. */
  isCancellableStart(c: Container): boolean {
    return this.#starts.has(c);
  }

  /**
   * Cancel the start of `c` (see isCancellableStart): it is drained at once, so nothing counts on
   * it from here on; still queued, it is dropped before it runs; running, it is stopped and
   * removed. Resolves once it is gone; false when there was no such start.
   */
  async cancelStart(c: Container, reason: string): Promise<boolean> {
    const start = this.#starts.get(c);
    if (!start) return false;
    this.#deps.pool.drain(c, reason);
    (start.started ? start.running : start.queued).abort(new StartCancelledError(c.id));
    await start.ended;
    return true;
  }

  /** Remove the failed runtime container behind `c` and start a new one on the same worker and port. */
  replace(c: Container): Promise<void> {
    const { pool, log } = this.#deps;
    const worker = this.#worker(c);
    pool.operationBegun(c, 'replace');
    return this.#track(async () => {
      try {
        const runtimeId = await this.#run(worker, async () => {
          if (c.runtimeId) await this.#stopAndRemove(worker, c.runtimeId);
          await this.#deps.forget(c.id);
          return (await this.#startHealthy(worker, c)).runtimeId;
        });
        pool.replaced(c, runtimeId);
        pool.setHealth(c, 'healthy', `replacement answered ${c.healthPath}`);
        log.info({ container: c.id, runtimeId, restarts: c.restarts }, 'container replaced');
      } catch (error) {
        pool.recordError(c, (error as Error).message);
        pool.setHealth(c, 'down', `replacement failed: ${(error as Error).message}`);
        throw error;
      } finally {
        pool.operationEnded(c);
      }
    });
  }

  /**
   * Start `c` again elsewhere (where placement says; its worker is down, so not there), then forget
   * `c`: the capacity returns before the old record goes. Requests still on `c` fail over on their own.
   */
  relocate(c: Container, reason: string): Promise<Container> {
    const { pool, log } = this.#deps;
    const placement = place(pool, this.#options.maxPerWorker);
    if (!placement) return Promise.reject(new NoPlacementError());
    pool.operationBegun(c, 'relocate');
    const moved = this.#placed(placement);
    return this.#track(async () => {
      try {
        await this.#run(placement.worker, () => this.#startNew(placement.worker, moved, reason));
      } catch (error) {
        pool.remove(moved);
        throw error;
      } finally {
        pool.operationEnded(moved);
        pool.operationEnded(c);
      }
      await this.#forget(c);
      log.info({ container: c.id, to: moved.id, reason }, 'container moved');
      return moved;
    });
  }

  /**
   * Take `c` out of rotation, wait for its requests to finish (up to drainTimeoutMs, holding no
   * queue slot: waiting is not runtime work), then stop and remove it in its worker's queue and
   * forget it. Only managed containers can be removed.
   */
  drainAndRemove(c: Container, reason: string): Promise<void> {
    const { pool, log } = this.#deps;
    const worker = this.#worker(c);
    pool.operationBegun(c, 'remove');
    pool.drain(c, reason);
    return this.#track(async () => {
      await pollWithin(async () => (c.inFlight === 0 ? true : undefined), { timeoutMs: this.#options.drainTimeoutMs, intervalMs: 20 });
      // Past the deadline the answers in flight are lost with the container: say so.
      if (c.inFlight > 0) log.warn({ container: c.id, inFlight: c.inFlight }, 'drain deadline passed; removing the container anyway');
      try {
        const { runtimeId } = c;
        if (runtimeId) await this.#run(worker, () => this.#stopAndRemove(worker, runtimeId));
      } finally {
        pool.operationEnded(c);
      }
      await this.#forget(c);
      log.info({ container: c.id, reason }, 'container removed');
    });
  }

  /** Stop and remove the containers `listed` on a worker that the pool does not know (moved away while it was unreachable). */
  removeOrphans(worker: Worker, listed: readonly ContainerInfo[]): Promise<void> {
    const known = this.#deps.pool.onWorker(worker.id);
    const orphans = listed.filter((info) => !known.some((c) => c.runtimeId === info.runtimeId || c.id === containerName(info)));
    return this.#track(async () => {
      await Promise.all(
        orphans.map(async (info) => {
          await this.#run(worker, () => this.#stopAndRemove(worker, info.runtimeId));
          this.#deps.log.info({ worker: worker.id, container: containerName(info), runtimeId: info.runtimeId }, 'removed a container the inventory no longer lists');
        }),
      );
    });
  }

  /** What `worker`'s runtime runs, asked in its queue; rejects with WorkerCheckTimeoutError when it takes longer than `timeoutMs` once asked. */
  list(worker: Worker, timeoutMs: number): Promise<ContainerInfo[]> {
    return this.#track(() => this.#run(worker, () => withTimeout(this.#deps.list(worker), timeoutMs, () => new WorkerCheckTimeoutError(worker.id, timeoutMs))));
  }

  /** Count `whole` (an operation with its bookkeeping) until it ends. */
  #track<T>(whole: () => Promise<T>): Promise<T> {
    return this.#operations.add(whole);
  }

  /**
   * Run `work` in `worker`'s queue (in order, at most its runtime's concurrency at once), within
   * the cluster-wide bound. Aborting `queued` drops it while it waits in either queue.
   */
  #run<T>(worker: Worker, work: () => Promise<T>, queued?: AbortSignal): Promise<T> {
    let queue = this.#byWorker.get(worker.id);
    if (!queue) {
      queue = new PQueue({ concurrency: this.#deps.driverFor(worker).concurrency });
      this.#byWorker.set(worker.id, queue);
    }
    return queue.add(() => this.#cluster.add(work, { signal: queued }), { signal: queued });
  }

  /** A new container record where `placement` says, in the pool as `starting`, its start under way. */
  #placed({ worker, port }: Placement): Container {
    const record = containerRecordSchema.parse({ id: `${worker.id}-${port}`, workerId: worker.id, host: worker.host, port, runtimeId: null, state: 'starting' });
    const c = this.#deps.pool.add(record, this.#options.containerConcurrency);
    this.#deps.pool.operationBegun(c, 'start');
    return c;
  }

  /** Start the new container `c` and put it in rotation once it answers its health path. */
  async #startNew(worker: Worker, c: Container, reason: string, signal?: AbortSignal): Promise<void> {
    const info = await this.#startHealthy(worker, c, signal);
    this.#deps.pool.setRuntimeId(c, info.runtimeId);
    this.#deps.pool.setHealth(c, 'healthy', reason);
    this.#deps.log.info({ container: c.id, runtimeId: info.runtimeId, reason }, 'container added');
  }

  /** Start what `c` describes on `worker` and wait until it answers its health path (runtime/src/start-healthy.ts). */
  #startHealthy(worker: Worker, c: Container, signal?: AbortSignal): Promise<ContainerInfo> {
    const host = listenHost(worker, c.host);
    return startHealthy(
      this.#deps.driverFor(worker),
      {
        name: c.id,
        host,
        port: c.port,
        env: worker.template.env,
        image: worker.template.image,
        resources: worker.template.resources,
        labels: containerLabels({ cluster: this.#options.cluster, worker: worker.id, container: c.id, port: c.port, host }),
      },
      { probe: () => this.#deps.probe(c), timeoutMs: this.#options.startTimeoutMs, stopTimeoutMs: this.#options.stopTimeoutMs, signal },
    );
  }

  /** Drop `c` from the pool and its connections. */
  async #forget(c: Container): Promise<void> {
    this.#deps.pool.remove(c);
    await this.#deps.forget(c.id);
  }

  #worker(c: Container): Worker {
    const worker = this.#deps.pool.worker(c.workerId);
    if (!worker) throw new Error(`container ${c.id} names an unknown worker ${c.workerId}`);
    return worker;
  }

  #stopAndRemove(worker: Worker, runtimeId: string): Promise<void> {
    return stopAndRemove(this.#deps.driverFor(worker), runtimeId, { timeoutMs: this.#options.stopTimeoutMs });
  }
}

/** A remote worker's containers listen on every interface; a local one's on the address they are reached at. */
function listenHost(worker: Worker, host: string): string {
  return worker.runtime.driver === 'docker' && worker.runtime.ssh ? '0.0.0.0' : host;
}

/** `promise`, or `onTimeout()`'s error after `ms`. */
function withTimeout<T>(promise: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
