import { STATE_VERSION, type StateFile } from '../../status/src/schema.js';
import { containerState, type ContainerPool } from './container-pool.js';
import type { RequestStats } from './request-stats.js';

/** What observers read of the request queue (the queue itself satisfies it). */
export interface QueueReading {
  readonly length: number;
  /** How long the oldest waiting request has waited, in ms. */
  oldestWaitMs(): number;
  readonly counters: { readonly queued: number };
}

/** What observers read of the pool: never a method that changes it. */
export type PoolReading = Pick<ContainerPool, 'workers' | 'containers' | 'size' | 'capacity' | 'version'>;

export interface ClusterViewSources {
  cluster: string;
  pool: PoolReading;
  queue: QueueReading;
  /** Requests that may wait (the queue's capacity). */
  maxQueue: number;
  stats: RequestStats;
  orchestrator: () => StateFile['orchestrator'];
  autoscaler: () => StateFile['autoscaler'];
  /** The machine autoscaler's state; null when the orchestrator runs none. */
  machines: () => StateFile['machines'];
  /** The provisioning config the inventory was made with, carried over as read. */
  provisioning: StateFile['provisioning'];
  /** The autoscaler's lifetime decision counts and the container count it wants now. */
  scaling: () => { decisions: Readonly<Record<'scale-out' | 'scale-in' | 'none', number>>; desired: number };
}

/**
 * The cluster as observers see it: the pool, the queue and the request counts, read-only. The
 * metrics, the status file, the dashboard and `/health` all read it, so none of them depends on
 * the request path, and each shows the same numbers.
 */
export class ClusterView {
  readonly cluster: string;
  readonly pool: PoolReading;
  readonly queue: QueueReading;
  readonly stats: RequestStats;
  readonly #sources: ClusterViewSources;

  constructor(sources: ClusterViewSources) {
    this.#sources = sources;
    this.cluster = sources.cluster;
    this.pool = sources.pool;
    this.queue = sources.queue;
    this.stats = sources.stats;
  }

  /** The cluster's state now, in the state file's shape (also what `GET /status` answers). */
  status(): StateFile {
    const s = this.#sources;
    return {
      version: STATE_VERSION,
      cluster: s.cluster,
      updatedAt: new Date().toISOString(),
      writer: 'orchestrator',
      // Copies: the file's records never alias the pool's live workers.
      workers: [...s.pool.workers()].map((w) => ({ ...w })),
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
        history: [...c.history],
      })),
      orchestrator: s.orchestrator(),
      queue: { length: s.queue.length, capacity: s.maxQueue, oldestWaitMs: Math.round(s.queue.oldestWaitMs()) },
      counters: { ...s.stats.counters, ...s.queue.counters },
      autoscaler: s.autoscaler(),
      machines: s.machines(),
      provisioning: s.provisioning,
    };
  }

  /** The machine autoscaler's state; null without one. */
  machines(): StateFile['machines'] {
    return this.#sources.machines();
  }

  /** Requests answered since the start. */
  completed(): number {
    return this.stats.counters.completed;
  }

  /** Latency percentiles (ms) of requests answered within the last `windowMs`. */
  latencies(ps: readonly number[], windowMs: number): Array<number | null> {
    return this.stats.latencies.percentiles(ps, windowMs);
  }

  /** The autoscaler's decision counts and desired container count. */
  scaling(): ReturnType<ClusterViewSources['scaling']> {
    return this.#sources.scaling();
  }

  /**
   * Whether requests can be served now (some capacity, not shutting down). Nothing more: /health
   * answers anyone, so it shows nothing of the inventory (/status and /metrics do, to a read key).
   */
  healthy(): boolean {
    return this.pool.capacity() > 0 && (this.#sources.orchestrator()?.running ?? false);
  }
}
