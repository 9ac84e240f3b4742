import { containerLabels, type RuntimeDriver } from '../../runtime/src/driver.js';
import { ContainerStartError, StartCancelledError } from '../../runtime/src/errors.js';
import { startHealthy } from '../../runtime/src/start-healthy.js';
import type { ProvisionConfig } from './config.js';
import { AbortedError, ContainerExitedError, HealthTimeoutError } from './errors.js';
import { containerTemplate, type DesiredContainer } from './inventory.js';
import type { Launcher } from './launcher.js';
import { probeHealth } from './wait-healthy.js';
import { startPerWorker } from './worker-start-queue.js';

/** How long a stop of a container that failed its start waits before it forces, in ms. */
const STOP_TIMEOUT_MS = 5_000;

export interface DriverLauncherOptions {
  /** Progress lines for the operator (a line per start begun, done or failed). */
  say?: (line: string) => void;
  /** Where a container's output goes, to point at when it dies during start. */
  logPathOf?: (name: string) => string;
}

/**
 * One `startHealthy` per container, labelled so it can be found again: through a queue per worker
 * (`driver.concurrency` starts at once, in order), every worker at once. Each container is
 * reported once healthy; the first failure cancels the rest, which stop what they started.
 */
export function driverLauncher(driver: RuntimeDriver, config: ProvisionConfig, options: DriverLauncherOptions = {}): Launcher {
  const { env } = containerTemplate(config);
  return {
    async launch(containers, onStarted, signal) {
      // startHealthy resolves once healthy: when each process ran is seen at its driver.start.
      let runningAt = Date.now();
      const noted = notingStarts(driver, () => (runningAt = Date.now()));
      const outcomes = await startPerWorker(
        containers,
        (container, cancel) =>
          startHealthy(
            noted,
            {
              name: container.name,
              host: container.host,
              port: container.port,
              env,
              labels: containerLabels({ cluster: config.cluster, worker: container.workerId, container: container.name, port: container.port, host: container.host }),
            },
            {
              probe: async () => (await probeHealth(container, config.healthPath)).ok,
              timeoutMs: config.healthTimeoutMs,
              stopTimeoutMs: STOP_TIMEOUT_MS,
              signal: cancel,
            },
          ),
        { concurrency: driver.concurrency, signal, say: options.say },
      );
      outcomes.forEach((outcome, i) => {
        if (outcome.status === 'fulfilled') onStarted(containers[i]!.name, outcome.value.runtimeId);
      });
      if (signal?.aborted) throw new AbortedError();
      const failure = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected' && !(o.reason instanceof StartCancelledError));
      if (failure) throw launchError(failure.reason, containers, outcomes, config, options);
      return { runningAt };
    },
  };
}

/** `driver`, calling `onStart` whenever a start of it returned (the container runs, not yet healthy). */
function notingStarts(driver: RuntimeDriver, onStart: () => void): RuntimeDriver {
  return {
    kind: driver.kind,
    concurrency: driver.concurrency,
    async start(spec) {
      const info = await driver.start(spec);
      onStart();
      return info;
    },
    stop: (runtimeId, stopOptions) => driver.stop(runtimeId, stopOptions),
    remove: (runtimeId) => driver.remove(runtimeId),
    inspect: (runtimeId) => driver.inspect(runtimeId),
    list: (labels) => driver.list(labels),
  };
}

/**
 * Provisioning's own errors for a failed start: the runtime's refusal as it is (PORT_IN_USE...),
 * an exit naming the log, a timeout naming every container not healthy by then.
 */
function launchError(
  error: unknown,
  containers: readonly DesiredContainer[],
  outcomes: PromiseSettledResult<unknown>[],
  config: ProvisionConfig,
  options: DriverLauncherOptions,
): unknown {
  if (!(error instanceof ContainerStartError)) return error;
  const name = error.container;
  switch (error.reason) {
    case 'refused':
      return error.cause ?? error;
    case 'exited': {
      const log = options.logPathOf ? `; see ${options.logPathOf(name)}` : '';
      return new ContainerExitedError(name, `exit code ${error.exitCode ?? 'unknown'}${log}`);
    }
    case 'timeout': {
      const pending = containers
        .map((container, i) => ({ container, outcome: outcomes[i]! }))
        .filter(({ outcome }) => outcome.status === 'rejected')
        .map(({ container, outcome }) => `${container.name}: ${(outcome as PromiseRejectedResult).reason instanceof StartCancelledError ? 'cancelled, another was not healthy in time' : `not healthy within ${config.healthTimeoutMs} ms`}`);
      return new HealthTimeoutError(config.healthTimeoutMs, pending);
    }
    default:
      return error;
  }
}
