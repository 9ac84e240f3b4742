import PQueue from 'p-queue';
import { ControlLoop } from '../../common/src/control-loop.js';
import type { Logger } from '../../common/src/logger.js';
import type { Container, ContainerPool } from './container-pool.js';
import type { UpstreamClient } from './upstream/upstream-client.js';

export interface HealthCheckerOptions {
  /** Pause between two passes, in ms. @default 1000 */
  intervalMs: number;
  /** A probe slower than this fails, in ms. */
  timeoutMs: number;
  /** Consecutive failures that take a container out of rotation. */
  fall: number;
  /** Consecutive successes that bring it back. */
  rise: number;
  /** Probes in flight at once, the passes' and the start waits' together (healthProbeConcurrency). */
  concurrency: number;
}

/** What one probe found. */
export interface ProbeResult {
  ok: boolean;
  error: string | null;
  timedOut: boolean;
}

/**
 * Probes `GET` of its health path on every container each pass (healthy: any 2xx). A probe that times out on a container busy
 * with a request is ignored rather than counted: a single-threaded model server cannot answer
 * while it computes, and being busy is not being dead. Refused connections and error answers
 * always count. Every probe, a pass's or a start wait's (`check`), runs through one bounded
 * p-queue; its timeout starts when it runs, not while it waits.
 */
export class HealthChecker extends ControlLoop {
  readonly #pool: ContainerPool;
  readonly #upstream: Pick<UpstreamClient, 'send'>;
  readonly #options: HealthCheckerOptions;
  readonly #probes: PQueue;

  constructor(deps: { pool: ContainerPool; upstream: Pick<UpstreamClient, 'send'>; log: Logger }, options: HealthCheckerOptions) {
    super('health-checker', options.intervalMs, deps.log);
    this.#pool = deps.pool;
    this.#upstream = deps.upstream;
    this.#options = options;
    this.#probes = new PQueue({ concurrency: options.concurrency });
  }

  /** One pass over every container, at most `concurrency` probes at once. */
  override async tick(): Promise<void> {
    // A container with a runtime operation under way is the operation's to watch.
    await Promise.all([...this.#pool.containers()].filter((c) => !c.operation).map((c) => this.#probes.add(() => this.#probe(c))));
  }

  /** One `GET` of `c`'s health path, in the probe queue: whether it answered 2xx, and if not why (and whether it timed out). */
  check(c: Container): Promise<ProbeResult> {
    return this.#probes.add(() => this.#send(c));
  }

  async #send(c: Container): Promise<ProbeResult> {
    try {
      const response = await this.#upstream.send(c, {
        method: 'GET',
        path: c.healthPath,
        headers: {},
        body: undefined,
        signal: AbortSignal.timeout(this.#options.timeoutMs),
      });
      // A health answer is small; a huge one is not read.
      if (!Buffer.isBuffer(response.body)) response.body.destroy();
      return response.statusCode >= 200 && response.statusCode <= 299
        ? { ok: true, error: null, timedOut: false }
        : { ok: false, error: `health answered ${response.statusCode}`, timedOut: false };
    } catch (e) {
      const cause = (e as Error).cause as { name?: string } | undefined;
      const timedOut = cause?.name === 'TimeoutError' || cause?.name === 'AbortError';
      return { ok: false, error: timedOut ? `health probe timed out after ${this.#options.timeoutMs} ms` : (e as Error).message, timedOut };
    }
  }

  async #probe(c: Container): Promise<void> {
    const busyAtStart = c.inFlight > 0;
    const { ok, error, timedOut } = await this.#send(c);
    if (timedOut && (busyAtStart || c.inFlight > 0)) return;
    // It may have been taken for replacement or removal while the probe ran (or waited).
    if (c.operation) return;
    // The pool logs the change, if any.
    this.#pool.recordProbe(c, ok, error, this.#options);
  }
}
