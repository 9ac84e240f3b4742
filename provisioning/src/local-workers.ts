import type { Logger } from '../../common/src/logger.js';
import { containerName, LABELS, stopAndRemove, type ContainerInfo, type RuntimeDriver } from '../../runtime/src/driver.js';
import { PortInUseError } from '../../runtime/src/errors.js';
import type { RuntimeTarget } from '../../runtime/src/runtime-target.js';
import type { ContainerRecord } from '../../status/src/schema.js';
import type { ProvisionConfig } from './config.js';
import { driverLauncher } from './driver-launcher.js';
import { containerRecord, type DesiredContainer, type DesiredWorker } from './inventory.js';
import type { Launcher } from './launcher.js';
import type { ProvisionOptions } from './provider.js';
import { portAnswers, probeHealth, waitHealthy } from './wait-healthy.js';

export interface LocalWorkersDeps {
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

/** What bringUp did, per container name. */
export interface BroughtUp {
  /** Every container of the workers, healthy, in the workers' order. */
  containers: ContainerRecord[];
  /** Containers started. */
  started: string[];
  /** Containers already running where they should and healthy, left alone. */
  kept: string[];
  /** Containers stopped because they ran but were not healthy (they are among `started` again). */
  removed: string[];
  /** Epoch ms: when the last container started ran (its process spawned, its compose project up); when that was known unneeded if none started. */
  runningAt: number;
}

/**
 * The containers of workers on this machine, one host address, told apart by port: what runs of
 * them, and bringing a set of workers up. The one piece behind both a whole-cluster provision
 * (LocalProvider) and one worker launched at a time (LocalWorkerProvider).
 */
export class LocalWorkers {
  readonly #config: ProvisionConfig;
  readonly #driver: RuntimeDriver;
  readonly #log: Logger;
  readonly #logPathOf: ((name: string) => string) | undefined;
  readonly #launcher: Launcher;

  constructor(config: ProvisionConfig, deps: LocalWorkersDeps) {
    this.#config = config;
    this.#driver = deps.driver;
    this.#log = deps.logger;
    this.#logPathOf = deps.logPathOf;
    this.#launcher = deps.launcher ?? driverLauncher(deps.driver, config, { say: deps.say, logPathOf: deps.logPathOf });
  }

  /**
   * What the runtime knows of this cluster, by container name: everything labelled with the
   * cluster and `labels` (so orphans of a crashed run are found too), and the `listed` containers'
   * runtime ids.
   */
  async known(labels: Record<string, string> = {}, listed: readonly ContainerRecord[] = []): Promise<Map<string, ContainerInfo[]>> {
    const labelled = await this.#driver.list({ ...labels, [LABELS.cluster]: this.#config.cluster });
    const inspected = await Promise.all(listed.filter((c) => c.runtimeId !== null).map((c) => this.#driver.inspect(c.runtimeId!)));
    const byRuntimeId = new Map<string, ContainerInfo>();
    for (const info of [...labelled, ...inspected]) if (info) byRuntimeId.set(info.runtimeId, info);
    const byName = new Map<string, ContainerInfo[]>();
    for (const info of byRuntimeId.values()) {
      const name = containerName(info);
      byName.set(name, [...(byName.get(name) ?? []), info]);
    }
    return byName;
  }

  /**
   * Bring every container of `workers` up, given what runs (`known`, by name): one already running
   * where it should and healthy is kept, one running otherwise is replaced, a missing one started;
   * resolves once each answers its health path. Refuses (PortInUseError) before starting anything
   * when a port to start on answers. On failure or abort, stops what it started and rejects.
   */
  async bringUp(workers: readonly DesiredWorker[], known: ReadonlyMap<string, ContainerInfo[]>, options: ProvisionOptions = {}): Promise<BroughtUp> {
    const wanted = workers.flatMap((worker) => worker.containers);
    const started: string[] = [];
    const kept: string[] = [];
    const removed: string[] = [];
    const runtimeIds = new Map<string, string>();
    let runningAt: number;
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
          await Promise.all(infos.map((info) => this.stopAndRemove(info)));
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
      ({ runningAt } = await this.#launcher.launch(toStart, (name, runtimeId) => {
        runtimeIds.set(name, runtimeId);
        if (!starting.has(name)) return;
        started.push(name);
        this.#log.info({ container: name, runtimeId }, 'container started');
      }, options.signal));

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
    return { containers: wanted.map((container) => containerRecord(container, runtimeIds.get(container.name)!)), started, kept, removed, runningAt };
  }

  /** Stop and remove one container, logging it. */
  async stopAndRemove(info: Pick<ContainerInfo, 'runtimeId' | 'name'>): Promise<void> {
    await stopAndRemove(this.#driver, info.runtimeId);
    this.#log.info({ container: info.name, runtimeId: info.runtimeId }, 'container stopped');
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

  /** Undo a failed run: stop what it started (what it kept stays as it was). */
  async #rollback(started: string[], runtimeIds: Map<string, string>): Promise<void> {
    const results = await Promise.allSettled(started.map((name) => this.stopAndRemove({ runtimeId: runtimeIds.get(name)!, name })));
    for (const result of results) {
      if (result.status === 'rejected') this.#log.error({ err: result.reason }, 'could not stop a container this run started');
    }
  }
}
