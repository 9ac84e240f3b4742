import { ControlLoop } from '../../common/src/control-loop.js';
import type { Logger } from '../../common/src/logger.js';
import type { Container, ContainerPool } from './container-pool.js';
import type { RuntimeOperations } from './runtime-operations.js';

export interface HealerOptions {
  /** Pause between two passes, in ms. */
  intervalMs: number;
  /** Back-off before the second replacement in a row; it doubles for each further one. */
  backoffInitialMs: number;
  backoffMaxMs: number;
  /** Healthy this long after a replacement, a container's crash streak is forgotten. */
  backoffResetMs: number;
}

/** A crash streak: replacements since the container last stayed healthy for backoffResetMs. */
interface Streak {
  count: number;
  healthySince: number | null;
}

/**
 * Replaces managed containers that are out of rotation (unhealthy, or down in their runtime) by a
 * new one on the same worker and port. The first replacement is immediate; a container that
 * fails again before staying healthy for `backoffResetMs` waits 1 s, 2 s, 4 s ... up to
 * `backoffMaxMs` before the next one (Kubernetes' CrashLoopBackOff), shown as nextRestartAt.
 */
export class Healer extends ControlLoop {
  readonly #pool: ContainerPool;
  readonly #operations: Pick<RuntimeOperations, 'replace'>;
  readonly #options: HealerOptions;
  readonly #now: () => number;
  readonly #streaks = new Map<string, Streak>();

  constructor(
    deps: { pool: ContainerPool; operations: Pick<RuntimeOperations, 'replace'>; log: Logger; now?: () => number },
    options: HealerOptions,
  ) {
    super('healer', options.intervalMs, deps.log);
    this.#pool = deps.pool;
    this.#operations = deps.operations;
    this.#options = options;
    this.#now = deps.now ?? Date.now;
  }

  /** Ask for the replacements that are due; the runtime operations carry them out in the background. */
  override async tick(): Promise<void> {
    const now = this.#now();
    for (const c of this.#pool.containers()) {
      // A down worker's containers are the worker monitor's to move: nothing can start there.
      if (!c.managed || c.operation || c.draining || this.#pool.worker(c.workerId)?.state === 'down') continue;
      const streak = this.#streaks.get(c.id);
      if (c.health === 'healthy') {
        if (streak) {
          streak.healthySince ??= now;
          if (now - streak.healthySince >= this.#options.backoffResetMs) this.#streaks.delete(c.id);
        }
        continue;
      }
      if (streak) streak.healthySince = null;
      if ((c.health !== 'unhealthy' && c.health !== 'down') || now < c.nextRestartAt) continue;
      this.#replace(c, now);
    }
  }

  #replace(c: Container, now: number): void {
    const streak = this.#streaks.get(c.id) ?? { count: 0, healthySince: null };
    streak.count++;
    this.#streaks.set(c.id, streak);
    // The delay applies to the next replacement: the first one is immediate.
    this.#pool.scheduleRestart(c, now + Math.min(this.#options.backoffInitialMs * 2 ** (streak.count - 1), this.#options.backoffMaxMs));
    this.log.warn({ container: c.id, health: c.health, lastError: c.lastError, streak: streak.count }, 'replacing container');
    this.#operations.replace(c).catch((error: unknown) => {
      this.log.error({ container: c.id, err: error, nextRestartAt: new Date(c.nextRestartAt).toISOString() }, 'replacement failed; backing off');
    });
  }
}
