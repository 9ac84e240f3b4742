import type { ContainerInfo } from '../../runtime/src/driver.js';
import type { RuntimeTarget } from '../../runtime/src/runtime-target.js';
import type { ProvisionConfig } from './config.js';
import { containerTemplate, desiredLayout, workerRecord, type Inventory } from './inventory.js';
import { LocalWorkers, type LocalWorkersDeps } from './local-workers.js';
import type { ProvisionOptions, ProvisionResult, Provider, TeardownResult } from './provider.js';

export type LocalProviderDeps = LocalWorkersDeps;

/** Workers on this machine: every worker is a set of containers on one host address, told apart by port. */
export class LocalProvider implements Provider {
  readonly name = 'local';
  readonly #config: ProvisionConfig;
  readonly #runtime: RuntimeTarget;
  readonly #workers: LocalWorkers;

  constructor(config: ProvisionConfig, deps: LocalProviderDeps) {
    this.#config = config;
    this.#runtime = deps.runtime;
    this.#workers = new LocalWorkers(config, deps);
  }

  async provision(current: Inventory, options: ProvisionOptions = {}): Promise<ProvisionResult> {
    const layout = desiredLayout(this.#config);
    const wantedNames = new Set(layout.flatMap((worker) => worker.containers.map((container) => container.name)));
    const known = await this.#known(current);
    const removed: string[] = [];

    // Unwanted ones go first: after a config change they may sit on ports the wanted ones need.
    for (const [name, infos] of known) {
      if (wantedNames.has(name)) continue;
      await Promise.all(infos.map((info) => this.#workers.stopAndRemove(info)));
      removed.push(name);
    }

    const up = await this.#workers.bringUp(layout, known, options);
    return {
      workers: layout.map((worker) => workerRecord(worker, 'local', this.#runtime, containerTemplate(this.#config))),
      containers: up.containers,
      started: up.started,
      kept: up.kept,
      removed: [...removed, ...up.removed],
    };
  }

  async teardown(current: Inventory): Promise<TeardownResult> {
    const known = await this.#known(current);
    await Promise.all([...known.values()].flat().map((info) => this.#workers.stopAndRemove(info)));
    const unknown = current.containers.filter((container) => container.managed && !known.has(container.id)).map((container) => container.id);
    return { stopped: [...known.keys()].sort(), unknown };
  }

  /** What the runtime knows of this cluster, by container name: the inventory's and everything labelled with the cluster. */
  #known(current: Inventory): Promise<Map<string, ContainerInfo[]>> {
    // Unmanaged containers are only routed to; whoever runs them owns them.
    return this.#workers.known({}, current.containers.filter((container) => container.managed));
  }
}
