import { ControlLoop } from '../../common/src/control-loop.js';
import type { Logger } from '../../common/src/logger.js';
import { STATE_VERSION, type StateFile } from '../../status/src/schema.js';
import type { StateStore } from '../../status/src/state-store.js';
import { containerState, type ContainerPool } from './container-pool.js';
import type { ProxyCounters } from './proxy-handler.js';
import type { RequestQueue } from './request-queue.js';

export interface StatusSources {
  cluster: string;
  pool: ContainerPool;
  queue: RequestQueue;
  counters: () => ProxyCounters;
  orchestrator: () => StateFile['orchestrator'];
  autoscaler: () => StateFile['autoscaler'];
  maxQueue: number;
}

/** The cluster's state now, in the state file's shape (also what `GET /status` answers). */
export function snapshot(s: StatusSources): StateFile {
  const proxy = s.counters();
  return {
    version: STATE_VERSION,
    cluster: s.cluster,
    updatedAt: new Date().toISOString(),
    writer: 'orchestrator',
    workers: [...s.pool.workers()],
    containers: [...s.pool.containers()].map((c) => ({
      id: c.id,
      workerId: c.workerId,
      host: c.host,
      port: c.port,
      runtimeId: c.runtimeId,
      managed: c.managed,
      state: containerState(c),
      limit: c.limit,
      inFlight: c.inFlight,
      served: c.served,
      failures: c.failures,
      lastError: c.lastError,
      restarts: c.restarts,
      nextRestartAt: c.nextRestartAt > Date.now() ? new Date(c.nextRestartAt).toISOString() : null,
      history: c.history,
    })),
    orchestrator: s.orchestrator(),
    queue: { length: s.queue.length, capacity: s.maxQueue, oldestWaitMs: Math.round(s.queue.oldestWaitMs()) },
    counters: { ...proxy, ...s.queue.counters },
    autoscaler: s.autoscaler(),
  };
}

/**
 * Keeps the status file current without putting the disk on the request path: requests only bump
 * the pool's version; this loop writes at most once per `intervalMs`, and only when something changed.
 */
export class StatusPublisher extends ControlLoop {
  readonly #store: StateStore;
  readonly #sources: StatusSources;
  #written = -1;
  #lastQueueLength = 0;
  /** Files written since start (the benchmark reports the rate). */
  writes = 0;

  constructor(deps: { store: StateStore; sources: StatusSources; log: Logger }, options: { intervalMs: number }) {
    super('status-publisher', options.intervalMs, deps.log);
    this.#store = deps.store;
    this.#sources = deps.sources;
  }

  /** Write if anything changed since the last write. */
  override async tick(): Promise<void> {
    const version = this.#sources.pool.version;
    const queueLength = this.#sources.queue.length;
    if (version === this.#written && queueLength === this.#lastQueueLength) return;
    this.#written = version;
    this.#lastQueueLength = queueLength;
    await this.flush();
  }

  /** Write now, unconditionally. */
  async flush(): Promise<void> {
    await this.#store.write(snapshot(this.#sources));
    this.writes++;
  }

  /** A last write, so the file shows the final state. */
  protected override async onStop(): Promise<void> {
    await this.flush();
  }
}
