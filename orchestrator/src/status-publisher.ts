import { ControlLoop } from '../../common/src/control-loop.js';
import type { Logger } from '../../common/src/logger.js';
import type { StateStore } from '../../status/src/state-store.js';
import type { ClusterView } from './cluster-view.js';

/**
 * Keeps the status file current without putting the disk on the request path: requests only bump
 * the pool's version; this loop writes at most once per `intervalMs`, and only when something changed.
 */
export class StatusPublisher extends ControlLoop {
  readonly #store: StateStore;
  readonly #view: Pick<ClusterView, 'pool' | 'queue' | 'status'>;
  #written = -1;
  #lastQueueLength = 0;
  /** Files written since start (the benchmark reports the rate). */
  writes = 0;

  constructor(deps: { store: StateStore; view: Pick<ClusterView, 'pool' | 'queue' | 'status'>; log: Logger }, options: { intervalMs: number }) {
    super('status-publisher', options.intervalMs, deps.log);
    this.#store = deps.store;
    this.#view = deps.view;
  }

  /** Write if anything changed since the last write. */
  override async tick(): Promise<void> {
    const version = this.#view.pool.version;
    const queueLength = this.#view.queue.length;
    if (version === this.#written && queueLength === this.#lastQueueLength) return;
    this.#written = version;
    this.#lastQueueLength = queueLength;
    await this.flush();
  }

  /** Write now, unconditionally. */
  async flush(): Promise<void> {
    await this.#store.write(this.#view.status());
    this.writes++;
  }

  /** A last write, so the file shows the final state. */
  protected override async onStop(): Promise<void> {
    await this.flush();
  }
}
