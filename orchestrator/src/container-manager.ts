import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../../common/src/logger.js';
import { containerName, LABELS, type ContainerInfo, type ContainerSpec, type RuntimeDriver } from '../../runtime/src/driver.js';
import { containerRecordSchema, type WorkerRecord } from '../../status/src/schema.js';
import type { Container, ContainerPool } from './container-pool.js';
import { ContainerStartError, NoPlacementError, StartCancelledError } from './errors.js';

export interface ContainerManagerDeps {
  pool: ContainerPool;
  /** The driver of a worker's runtime (one per worker, made on first use). */
  driverFor(worker: WorkerRecord): RuntimeDriver;
  /** One `GET` of its health path; true when it answered 2xx. */
  probe(c: Container): Promise<boolean>;
  /** Drop the keep-alive connections to a container that was replaced or removed. */
  forget(containerId: string): Promise<void>;
  log: Logger;
}

export interface ContainerManagerOptions {
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
}

/** Where a new container goes. */
export interface Placement {
  worker: WorkerRecord;
  port: number;
}

/** A scale-out's start under way, which a scale-in may cancel. */
interface CancellableStart {
  controller: AbortController;
  /** Resolves once the start ended, whichever way: the container serves, or it is stopped and forgotten. */
  ended: Promise<void>;
}

/**
 * Starts, replaces and removes containers through the workers' runtime drivers, keeping the pool
 * in step: a new container joins the rotation only once it answered its health path, and a container
 * leaves it (drained) before it is stopped.
 */
export class ContainerManager {
  readonly #deps: ContainerManagerDeps;
  readonly #options: ContainerManagerOptions;
  /** Scale-outs still starting. Relocations are not listed: they carry a lost worker's capacity. */
  readonly #starts = new Map<Container, CancellableStart>();

  constructor(deps: ContainerManagerDeps, options: ContainerManagerOptions) {
    this.#deps = deps;
    this.#options = options;
  }

  /**
   * The worker with the fewest containers (ties: the least loaded, then the first), on its lowest
   * free port; null when every worker is full or down.
   */
  place(): Placement | null {
    const { pool } = this.#deps;
    let best: { worker: WorkerRecord; count: number; load: number } | undefined;
    for (const worker of pool.workers()) {
      const containers = pool.onWorker(worker.id);
      if (this.#roomOn(worker, containers) === 0) continue;
      const load = containers.reduce((n, c) => n + c.inFlight, 0);
      if (!best || containers.length < best.count || (containers.length === best.count && load < best.load)) {
        best = { worker, count: containers.length, load };
      }
    }
    return best ? { worker: best.worker, port: freePort(best.worker, pool.onWorker(best.worker.id))! } : null;
  }

  /**
   * How many more containers placement can take now, over every worker that is up. Containers
   * draining or starting hold their worker's slots and ports until they are gone.
   */
  room(): number {
    let n = 0;
    for (const worker of this.#deps.pool.workers()) n += this.#roomOn(worker, this.#deps.pool.onWorker(worker.id));
    return n;
  }

  /** Containers `worker` can take now: none when down, else up to its per-worker maximum and its free ports. */
  #roomOn(worker: WorkerRecord, containers: readonly Container[]): number {
    if (worker.state === 'down') return 0;
    return Math.max(0, Math.min(this.#options.maxPerWorker - containers.length, freePortCount(worker, containers)));
  }

  /**
   * Start a container where `place()` says, wait until it is healthy, and put it in rotation. A
   * scale-in may cancel it until then (`cancelStart`): it then rejects with StartCancelledError.
   */
  scaleOut(reason: string): Promise<Container> {
    return this.#add(reason, { cancellable: true });
  }

  /** Whether `c` is a scale-out still starting, which `cancelStart` can stop. */
  isCancellableStart(c: Container): boolean {
    return this.#starts.has(c);
  }

  /**
   * Cancel the start of `c` (see isCancellableStart): it is drained at once, so nothing counts on
   * it from here on, then stopped and forgotten. Resolves once it is gone; false when there was
   * no such start.
   */
  async cancelStart(c: Container, reason: string): Promise<boolean> {
    const start = this.#starts.get(c);
    if (!start) return false;
    this.#deps.pool.drain(c, reason);
    start.controller.abort();
    await start.ended;
    return true;
  }

  async #add(reason: string, options: { cancellable: boolean }): Promise<Container> {
    const placement = this.place();
    if (!placement) throw new NoPlacementError();
    const { worker, port } = placement;
    const record = containerRecordSchema.parse({ id: `${worker.id}-${port}`, workerId: worker.id, host: worker.host, port, runtimeId: null, state: 'starting' });
    const c = this.#deps.pool.add(record, this.#options.containerConcurrency);
    c.busyWithRuntime = true;
    const controller = new AbortController();
    let ended = (): void => {};
    if (options.cancellable) this.#starts.set(c, { controller, ended: new Promise<void>((resolve) => (ended = resolve)) });
    try {
      c.runtimeId = await this.#startHealthy(worker, c, controller.signal);
      this.#deps.pool.setHealth(c, 'healthy', reason);
      this.#deps.log.info({ container: c.id, runtimeId: c.runtimeId, reason }, 'container added');
      return c;
    } catch (error) {
      this.#deps.pool.remove(c);
      if (error instanceof StartCancelledError) this.#deps.log.info({ container: c.id, reason: c.history.at(-1)?.reason }, 'container start cancelled');
      throw error;
    } finally {
      this.#starts.delete(c);
      c.busyWithRuntime = false;
      ended();
    }
  }

  /** Remove the failed runtime container behind `c` and start a new one on the same worker and port. */
  async replace(c: Container): Promise<void> {
    const worker = this.#worker(c);
    c.busyWithRuntime = true;
    try {
      if (c.runtimeId) await this.#stopAndRemove(worker, c.runtimeId);
      await this.#deps.forget(c.id);
      const runtimeId = await this.#startHealthy(worker, c);
      this.#deps.pool.replaced(c, runtimeId);
      this.#deps.pool.setHealth(c, 'healthy', `replacement answered ${c.healthPath}`);
      this.#deps.log.info({ container: c.id, runtimeId, restarts: c.restarts }, 'container replaced');
    } catch (error) {
      c.lastError = (error as Error).message;
      this.#deps.pool.setHealth(c, 'down', `replacement failed: ${(error as Error).message}`);
      throw error;
    } finally {
      c.busyWithRuntime = false;
    }
  }

  /**
   * Start `c` again elsewhere (where `place()` says; its worker is down, so not there), then forget
   * `c`: the capacity returns before the old record goes. Requests still on `c` fail over on their own.
   */
  async relocate(c: Container, reason: string): Promise<Container> {
    c.busyWithRuntime = true;
    try {
      const moved = await this.#add(reason, { cancellable: false });
      await this.#forget(c);
      this.#deps.log.info({ container: c.id, to: moved.id, reason }, 'container moved');
      return moved;
    } finally {
      c.busyWithRuntime = false;
    }
  }

  /** Stop and remove the containers `listed` on a worker that the pool does not know (moved away while it was unreachable). */
  async removeOrphans(worker: WorkerRecord, listed: readonly ContainerInfo[]): Promise<void> {
    const known = this.#deps.pool.onWorker(worker.id);
    const orphans = listed.filter((info) => !known.some((c) => c.runtimeId === info.runtimeId || c.id === containerName(info)));
    for (const info of orphans) {
      await this.#stopAndRemove(worker, info.runtimeId);
      this.#deps.log.info({ worker: worker.id, container: containerName(info), runtimeId: info.runtimeId }, 'removed a container the inventory no longer lists');
    }
  }

  /**
   * Take `c` out of rotation, wait for its requests to finish (up to drainTimeoutMs), then stop and
   * remove it and forget it. Only managed containers can be removed.
   */
  async drainAndRemove(c: Container, reason: string): Promise<void> {
    const worker = this.#worker(c);
    c.busyWithRuntime = true;
    this.#deps.pool.drain(c, reason);
    const deadline = performance.now() + this.#options.drainTimeoutMs;
    while (c.inFlight > 0 && performance.now() < deadline) await sleep(20);
    // Past the deadline the answers in flight are lost with the container: say so.
    if (c.inFlight > 0) this.#deps.log.warn({ container: c.id, inFlight: c.inFlight }, 'drain deadline passed; removing the container anyway');
    try {
      if (c.runtimeId) await this.#stopAndRemove(worker, c.runtimeId);
    } finally {
      c.busyWithRuntime = false;
    }
    await this.#forget(c);
    this.#deps.log.info({ container: c.id, reason }, 'container removed');
  }

  /** Drop `c` from the pool and its connections; requests still on it release into a container the pool no longer lists. */
  async #forget(c: Container): Promise<void> {
    c.inFlight = 0;
    this.#deps.pool.remove(c);
    await this.#deps.forget(c.id);
  }

  #worker(c: Container): WorkerRecord {
    const worker = this.#deps.pool.worker(c.workerId);
    if (!worker) throw new Error(`container ${c.id} names an unknown worker ${c.workerId}`);
    return worker;
  }

  /**
   * Start the container `c` describes; resolves with its runtime id once it answers its health path. On
   * `cancel` it stops and removes what it started and rejects with StartCancelledError.
   */
  async #startHealthy(worker: WorkerRecord, c: Container, cancel?: AbortSignal): Promise<string> {
    const driver = this.#deps.driverFor(worker);
    const spec: ContainerSpec = {
      name: c.id,
      host: listenHost(worker, c.host),
      port: c.port,
      env: worker.template.env,
      image: worker.template.image,
      resources: worker.template.resources,
      labels: {
        [LABELS.cluster]: this.#options.cluster,
        [LABELS.worker]: worker.id,
        [LABELS.container]: c.id,
        [LABELS.port]: String(c.port),
        [LABELS.host]: listenHost(worker, c.host),
      },
    };
    const info = await driver.start(spec).catch((error: unknown) => {
      throw new ContainerStartError(c.id, (error as Error).message, error);
    });
    const deadline = performance.now() + this.#options.startTimeoutMs;
    for (let i = 0; ; i++) {
      const healthy = await this.#deps.probe(c).catch(() => false);
      // Cancelled meanwhile: healthy or not, it is no longer wanted, and it has served nothing yet.
      if (cancel?.aborted) {
        await this.#stopAndRemove(worker, info.runtimeId);
        throw new StartCancelledError(c.id);
      }
      if (healthy) return info.runtimeId;
      // Every second or so, ask whether it died instead of waiting out the deadline.
      if (i % 10 === 9 && (await driver.inspect(info.runtimeId))?.state === 'exited') {
        await this.#stopAndRemove(worker, info.runtimeId);
        throw new ContainerStartError(c.id, `it exited before answering ${c.healthPath}`);
      }
      if (performance.now() > deadline) {
        await this.#stopAndRemove(worker, info.runtimeId);
        throw new ContainerStartError(c.id, `no answer on ${c.healthPath} within ${this.#options.startTimeoutMs} ms`);
      }
      // A cancel ends the wait at once; the loop then sees it.
      await sleep(100, undefined, { signal: cancel }).catch(() => {});
    }
  }

  async #stopAndRemove(worker: WorkerRecord, runtimeId: string): Promise<void> {
    const driver = this.#deps.driverFor(worker);
    await driver.stop(runtimeId, { timeoutMs: this.#options.stopTimeoutMs });
    await driver.remove(runtimeId);
  }
}

/** A remote worker's containers listen on every interface; a local one's on the address they are reached at. */
function listenHost(worker: WorkerRecord, host: string): string {
  return worker.runtime.driver === 'docker' && worker.runtime.ssh ? '0.0.0.0' : host;
}

/** How many ports of the worker's range no container of it holds; without a range, those above the highest in use. */
function freePortCount(worker: WorkerRecord, containers: readonly Container[]): number {
  if (!worker.ports) return 65535 - Math.max(4999, ...containers.map((c) => c.port));
  const used = new Set(containers.map((c) => c.port).filter((port) => port >= worker.ports!.first && port <= worker.ports!.last));
  return worker.ports.last - worker.ports.first + 1 - used.size;
}

/** The lowest port of the worker's range that no container of it holds; above the highest in use without a range. */
function freePort(worker: WorkerRecord, containers: readonly Container[]): number | null {
  const used = new Set(containers.map((c) => c.port));
  if (!worker.ports) {
    const highest = Math.max(4999, ...used);
    return highest < 65535 ? highest + 1 : null;
  }
  for (let port = worker.ports.first; port <= worker.ports.last; port++) if (!used.has(port)) return port;
  return null;
}
