import { pollUntil } from '../../common/src/poll-until.js';
import { stopAndRemove, type ContainerInfo, type ContainerSpec, type RuntimeDriver } from './driver.js';
import { ContainerStartError, StartCancelledError } from './errors.js';

export interface StartHealthyOptions {
  /** One probe of the started container: true once it is healthy. A probe that throws counts as not healthy. */
  probe(): Promise<boolean>;
  /** Give up (and stop it) when it is not healthy this long after it started, in ms. */
  timeoutMs: number;
  /** Pause between probes, in ms. @default 100 */
  intervalMs?: number;
  /** How long a stop waits before it forces, in ms (see RuntimeDriver.stop). */
  stopTimeoutMs: number;
  /** Aborting stops and removes what was started and rejects with StartCancelledError. */
  signal?: AbortSignal;
}

/** How often, in ms, the runtime is asked whether the container died, rather than probing it until the deadline. */
const EXIT_CHECK_MS = 1_000;

/**
 * Start `spec`, wait until `probe` says healthy; on exit, timeout or cancel, stop + remove it and
 * reject (ContainerStartError, or StartCancelledError on `signal`). The one "start, then wait until
 * healthy" of the house: provisioning and the orchestrator both start containers through it.
 */
export async function startHealthy(driver: RuntimeDriver, spec: ContainerSpec, options: StartHealthyOptions): Promise<ContainerInfo> {
  const { signal, timeoutMs, intervalMs = 100 } = options;
  if (signal?.aborted) throw new StartCancelledError(spec.name);
  const info = await driver.start(spec).catch((error: unknown) => {
    throw new ContainerStartError(spec.name, (error as Error).message, error, { reason: 'refused' });
  });
  const exitCheckEvery = Math.max(1, Math.round(EXIT_CHECK_MS / intervalMs));
  try {
    await pollUntil(
      async (round) => {
        if (await options.probe().catch(() => false)) return true;
        if (round % exitCheckEvery === exitCheckEvery - 1) {
          const now = await driver.inspect(info.runtimeId);
          if (now?.state === 'exited') {
            throw new ContainerStartError(spec.name, `it exited (code ${now.exitCode ?? 'unknown'}) before it was healthy`, undefined, { reason: 'exited', exitCode: now.exitCode });
          }
        }
        return undefined;
      },
      { timeoutMs, intervalMs, signal, onTimeout: () => new ContainerStartError(spec.name, `not healthy within ${timeoutMs} ms`, undefined, { reason: 'timeout' }) },
    );
    return info;
  } catch (error) {
    // Exited, late or no longer wanted: either way it has served nothing, and nothing of it stays.
    await stopAndRemove(driver, info.runtimeId, { timeoutMs: options.stopTimeoutMs });
    if (signal?.aborted) throw new StartCancelledError(spec.name);
    throw error;
  }
}
