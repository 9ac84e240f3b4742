import type { Logger } from '../../common/src/logger.js';
import { containerName, LABELS, stopAndRemove, type ContainerInfo, type RuntimeDriver } from '../../runtime/src/driver.js';
import type { RuntimeTarget } from '../../runtime/src/runtime-target.js';
import type { ProvisionConfig } from './config.js';
import { containerRecord, containerTemplate, desiredLayout, workerRecord, type DesiredContainer, type Inventory } from './inventory.js';
import type { ProvisionOptions, ProvisionResult, Provider, TeardownResult } from './provider.js';
import { portAnswers, probeHealth, waitHealthy } from './wait-healthy.js';
import { PortInUseError } from '../../runtime/src/errors.js';
import { driverLauncher } from './driver-launcher.js';
import type { Launcher } from './launcher.js';

export interface LocalProviderDeps {
  /** Runtime the containers run in (local processes, or the local Docker engine). */
  driver: RuntimeDriver;
  /** How the orchestrator reaches that runtime, recorded with each worker. */
  runtime: RuntimeTarget;
  logger: Logger;
  /** Where a container's output goes, to point at when it dies during start. */
  logPathOf?: (name: string) => string;
  /** How containers get started. @default driverLauncher: one `startHealthy` per container, through a queue per worker */
  launcher?: Launcher;
  /** Progress lines for the operator. */
  say?: (line: string) => void;
}

/** Workers on this machine: every worker is a set of containers on one host address, told apart by port. */
export class LocalProvider implements Provider {
  readonly name = 'local';
  readonly #config: ProvisionConfig;
  readonly #driver: RuntimeDriver;
  readonly #runtime: RuntimeTarget;
  readonly #log: Logger;
  readonly #logPathOf: ((name: string) => string) | undefined;
  readonly #launcher: Launcher;

  constructor(config: ProvisionConfig, deps: LocalProviderDeps) {
    this.#config = config;
    this.#driver = deps.driver;
    this.#runtime = deps.runtime;
    this.#log = deps.logger;
    this.#logPathOf = deps.logPathOf;
    this.#launcher = deps.launcher ?? driverLauncher(deps.driver, config, { say: deps.say, logPathOf: deps.logPathOf });
  }

  async provision(current: Inventory, options: ProvisionOptions = {}): Promise<ProvisionResult> {
    const layout = desiredLayout(this.#config);
    const wanted = layout.flatMap((worker) => worker.containers);
    const wantedNames = new Set(wanted.map((container) => container.name));
    const known = await this.#known(current);
    const started: string[] = [];
    const kept: string[] = [];
    const removed: string[] = [];
    const runtimeIds = new Map<string, string>();

    // Unwanted ones go first: after a config change they may sit on ports the wanted ones need.
    for (const [name, infos] of known) {
      if (wantedNames.has(name)) continue;
      await Promise.all(infos.map((info) => this.#stopAndRemove(info)));
      removed.push(name);
    }

    try {
      const toStart: DesiredContainer[] = [];
      for (const container of wanted) {
        const infos = known.get(container.name) ?? [];
        const live = await this.#findHealthy(container, infos);
        if (live) {
          kept.push(container.name);
          runtimeIds.set(container.name, live.runtimeId);
          continue;
        }
        if (infos.length > 0) {
          // Running but not answering as itself (or exited): replace it, it holds the name and maybe the port.
          await Promise.all(infos.map((info) => this.#stopAndRemove(info)));
          removed.push(container.name);
        }
        toStart.push(container);
      }
      // Most apps report no identity in their health answer, so another program answering on a
      // port would pass for the container: every port to start on must be closed first.
      for (const container of toStart) {
        if (await portAnswers(container.host, container.port)) throw new PortInUseError(container.host, container.port);
      }
      const starting = new Set(toStart.map((container) => container.name));
      await this.#launcher.launch(toStart, (name, runtimeId) => {
        runtimeIds.set(name, runtimeId);
        if (!starting.has(name)) return;
        started.push(name);
        this.#log.info({ container: name, runtimeId }, 'container started');
      }, options.signal);

      // Every wanted one, kept or started (a launcher that waits has waited already): one last look.
      await waitHealthy(wanted, {
        healthPath: this.#config.healthPath,
        timeoutMs: this.#config.healthTimeoutMs,
        onProgress: options.onProgress,
        signal: options.signal,
        exited: async (target) => {
          const info = await this.#driver.inspect(runtimeIds.get(target.name)!);
          if (info?.state !== 'exited') return null;
          const log = this.#logPathOf ? `; see ${this.#logPathOf(target.name)}` : '';
          return `exit code ${info.exitCode ?? 'unknown'}${log}`;
        },
      });
    } catch (error) {
      await this.#rollback(started, runtimeIds);
      throw error;
    }

    return {
      workers: layout.map((worker) => workerRecord(worker, 'local', this.#runtime, containerTemplate(this.#config))),
      containers: wanted.map((container) => containerRecord(container, runtimeIds.get(container.name)!)),
      started,
      kept,
      removed,
    };
  }

  async teardown(current: Inventory): Promise<TeardownResult> {
    const known = await this.#known(current);
    await Promise.all([...known.values()].flat().map((info) => this.#stopAndRemove(info)));
    const unknown = current.containers.filter((container) => container.managed && !known.has(container.id)).map((container) => container.id);
    return { stopped: [...known.keys()].sort(), unknown };
  }

  /**
   * What the runtime knows of this cluster, by container name: the inventory's runtime ids and
   * everything labelled with the cluster, so orphans of a crashed run are found too.
   */
  async #known(current: Inventory): Promise<Map<string, ContainerInfo[]>> {
    const labelled = await this.#driver.list({ [LABELS.cluster]: this.#config.cluster });
    // Unmanaged containers are only routed to; whoever runs them owns them.
    const listed = current.containers.filter((container) => container.managed && container.runtimeId !== null);
    const inspected = await Promise.all(listed.map((container) => this.#driver.inspect(container.runtimeId!)));
    const byRuntimeId = new Map<string, ContainerInfo>();
    for (const info of [...labelled, ...inspected]) if (info) byRuntimeId.set(info.runtimeId, info);
    const byName = new Map<string, ContainerInfo[]>();
    for (const info of byRuntimeId.values()) {
      const name = containerName(info);
      byName.set(name, [...(byName.get(name) ?? []), info]);
    }
    return byName;
  }

  /** The one of `infos` that runs where `container` should and answers its health path; null if none does. */
  async #findHealthy(container: DesiredContainer, infos: ContainerInfo[]): Promise<ContainerInfo | null> {
    for (const info of infos) {
      // 'starting' too: Docker reports that until its own healthcheck first runs; our probe decides.
      const up = info.state === 'running' || info.state === 'starting';
      if (!up || info.host !== container.host || info.port !== container.port) continue;
      if ((await probeHealth(container, this.#config.healthPath)).ok) return info;
    }
    return null;
  }

  async #stopAndRemove(info: Pick<ContainerInfo, 'runtimeId' | 'name'>): Promise<void> {
    await stopAndRemove(this.#driver, info.runtimeId);
    this.#log.info({ container: info.name, runtimeId: info.runtimeId }, 'container stopped');
  }

  /** Undo a failed run: stop what it started (what it kept stays as it was). */
  async #rollback(started: string[], runtimeIds: Map<string, string>): Promise<void> {
    const results = await Promise.allSettled(
      started.map((name) => this.#stopAndRemove({ runtimeId: runtimeIds.get(name)!, name })),
    );
    for (const result of results) {
      if (result.status === 'rejected') this.#log.error({ err: result.reason }, 'could not stop a container this run started');
    }
  }
}
