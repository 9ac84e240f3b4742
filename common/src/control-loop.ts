import type { Logger } from './logger.js';

/**
 * A periodic control loop: `tick()` does one pass; passes never overlap because the next one is
 * scheduled only after the previous ended. A failed pass is logged and retried by the next one.
 */
export abstract class ControlLoop {
  readonly #name: string;
  readonly #intervalMs: number;
  protected readonly log: Logger;
  #timer: NodeJS.Timeout | undefined;
  #running = false;
  #pass: Promise<void> | undefined;
  #stopping: Promise<void> | undefined;

  constructor(name: string, intervalMs: number, log: Logger) {
    this.#name = name;
    this.#intervalMs = intervalMs;
    this.log = log;
  }

  /** One pass; tests call it directly. */
  abstract tick(): Promise<void>;

  /** Start passes, the first one after `firstDelayMs`. @default intervalMs */
  start(firstDelayMs = this.#intervalMs): void {
    if (this.#running || this.#stopping) return;
    this.#running = true;
    this.#schedule(firstDelayMs);
  }

  /** Stop; resolves once a pass under way has ended, then runs `onStop`. Idempotent: a second call returns the same promise. */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      this.#running = false;
      clearTimeout(this.#timer);
      await this.#pass;
      await this.onStop();
    })();
    return this.#stopping;
  }

  /** Last work after the final pass. */
  protected async onStop(): Promise<void> {}

  #schedule(delayMs: number): void {
    this.#timer = setTimeout(() => {
      this.#pass = this.tick()
        .catch((error: unknown) => this.log.error({ err: error, loop: this.#name }, `${this.#name} pass failed`))
        .finally(() => {
          if (this.#running) this.#schedule(this.#intervalMs);
        });
    }, delayMs);
  }
}
