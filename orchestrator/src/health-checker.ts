import { ControlLoop } from '../../common/src/control-loop.js';
import type { Logger } from '../../common/src/logger.js';
import { containerState, type Container, type ContainerPool } from './container-pool.js';
import type { UpstreamClient } from './upstream-client.js';

export interface HealthCheckerOptions {
  /** Pause between two passes, in ms. @default 1000 */
  intervalMs: number;
  /** A probe slower than this fails, in ms. */
  timeoutMs: number;
  /** Consecutive failures that take a container out of rotation. */
  fall: number;
  /** Consecutive successes that bring it back. */
  rise: number;
}

/**
 * Probes `GET /health` on every container each pass. A probe that times out on a container busy
 * with a request is ignored rather than counted: a single-threaded model server cannot answer
 * while it computes, and being busy is not being dead. Refused connections and error answers
 * always count.
 */
export class HealthChecker extends ControlLoop {
  readonly #pool: ContainerPool;
  readonly #upstream: Pick<UpstreamClient, 'send'>;
  readonly #options: HealthCheckerOptions;

  constructor(deps: { pool: ContainerPool; upstream: Pick<UpstreamClient, 'send'>; log: Logger }, options: HealthCheckerOptions) {
    super('health-checker', options.intervalMs, deps.log);
    this.#pool = deps.pool;
    this.#upstream = deps.upstream;
    this.#options = options;
  }

  /** One pass over every container, probes in parallel. */
  override async tick(): Promise<void> {
    await Promise.all([...this.#pool.containers()].map((c) => this.#probe(c)));
  }

  async #probe(c: Container): Promise<void> {
    const busyAtStart = c.inFlight > 0;
    let ok = false;
    let error: string | null = null;
    try {
      const response = await this.#upstream.send(c, {
        method: 'GET',
        path: '/health',
        headers: {},
        body: undefined,
        signal: AbortSignal.timeout(this.#options.timeoutMs),
      });
      await response.body.dump();
      ok = response.statusCode === 200;
      if (!ok) error = `health answered ${response.statusCode}`;
    } catch (e) {
      const cause = (e as Error).cause as { name?: string } | undefined;
      const timedOut = cause?.name === 'TimeoutError' || cause?.name === 'AbortError';
      if (timedOut && (busyAtStart || c.inFlight > 0)) return;
      error = timedOut ? `health probe timed out after ${this.#options.timeoutMs} ms` : (e as Error).message;
    }
    const changed = this.#pool.recordProbe(c, ok, error, this.#options);
    if (changed) {
      const level = changed === 'healthy' ? 'info' : 'warn';
      this.log[level]({ container: c.id, state: containerState(c), error }, `container ${changed}`);
    }
  }
}
