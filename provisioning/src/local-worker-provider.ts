import type { Logger } from '../../common/src/logger.js';
import { LABELS, type RuntimeDriver } from '../../runtime/src/driver.js';
import type { RuntimeTarget } from '../../runtime/src/runtime-target.js';
import type { ProvisionConfig } from './config.js';
import { containerTemplate, workerLayout, workerRecord } from './inventory.js';
import type { Launcher } from './launcher.js';
import { LocalWorkers, type LocalWorkersDeps } from './local-workers.js';
import type { LaunchedWorker, WorkerProvider } from './worker-provider.js';

/**
 * Workers on this machine, one at a time, as `npm run provision` makes them (LocalWorkers): local
 * processes on worker `w<k>`'s port range, or (runtime docker) a compose project of
 * docker-compose.worker.yml per worker. Found again by their cluster and worker labels.
 */
export class LocalWorkerProvider implements WorkerProvider {
  readonly kind: 'process' | 'docker';
  readonly #config: ProvisionConfig;
  readonly #driver: RuntimeDriver;
  readonly #runtime: RuntimeTarget;
  readonly #log: Logger;
  readonly #launcher: Launcher | undefined;
  readonly #workers: LocalWorkers;

  constructor(config: ProvisionConfig, deps: LocalWorkersDeps) {
    this.kind = deps.runtime.driver;
    this.#config = config;
    this.#driver = deps.driver;
    this.#runtime = deps.runtime;
    this.#log = deps.logger;
    this.#launcher = deps.launcher;
    this.#workers = new LocalWorkers(config, deps);
  }

  async launch(workerId: string, signal?: AbortSignal): Promise<LaunchedWorker> {
    const requestedAt = Date.now();
    const worker = workerLayout(this.#config, workerId);
    const known = await this.#workers.known(this.#labels(workerId));
    try {
      const up = await this.#workers.bringUp([worker], known, { signal });
      return {
        worker: workerRecord(worker, 'local', this.#runtime, containerTemplate(this.#config)),
        containers: up.containers,
        timings: { requestedAt, runningAt: up.runningAt, healthyAt: Date.now() },
        adopted: up.kept.length === worker.containers.length,
      };
    } catch (error) {
      // bringUp stopped what it reported started; a compose up that failed half-way reported
      // nothing, yet may have left a container running. A worker that had nothing is left with nothing.
      if (known.size === 0) await this.release(workerId).catch((err: unknown) => this.#log.error({ err, workerId }, 'could not release a worker whose launch failed'));
      throw error;
    }
  }

  async release(workerId: string): Promise<void> {
    await this.#launcher?.release?.(workerId);
    // Also what the project does not hold: containers the orchestrator added to the worker.
    const left = await this.#driver.list(this.#labels(workerId));
    await Promise.all(left.map((info) => this.#workers.stopAndRemove(info)));
  }

  async list(): Promise<string[]> {
    const infos = await this.#driver.list({ [LABELS.cluster]: this.#config.cluster });
    const ids = new Set<string>();
    for (const info of infos) {
      const id = info.labels[LABELS.worker];
      if (id && (info.state === 'running' || info.state === 'starting')) ids.add(id);
    }
    // By number: w2 before w10.
    return [...ids].sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  }

  #labels(workerId: string): Record<string, string> {
    return { [LABELS.cluster]: this.#config.cluster, [LABELS.worker]: workerId };
  }
}
