import type { Logger } from '../../common/src/logger.js';

export interface Rejection {
  requestId: string;
  path: string;
  status: number;
  /** The error code the client got (QUEUE_FULL, PAYLOAD_TOO_LARGE...). */
  error: string;
  /** The name of the client key the request came with, if any. */
  client?: string;
}

/**
 * One log line per rejected request, up to `perSecond` a second; past that, one line a second
 * counts the rest by error code. An overload answered with thousands of 503s a second must not
 * also spend the CPU it lacks on writing thousands of log lines.
 */
export class RejectionLog {
  readonly #log: Logger;
  readonly #perSecond: number;
  #windowStart = 0;
  #logged = 0;
  #suppressed = new Map<string, number>();
  #flushTimer: NodeJS.Timeout | undefined;
  readonly #message: string;
  readonly #summaryMessage: string;

  /** `message` of each line @default 'request rejected'; `summaryMessage` of the count @default 'more requests rejected than logged one by one' */
  constructor(log: Logger, options: { perSecond?: number; message?: string; summaryMessage?: string } = {}) {
    this.#log = log;
    this.#perSecond = options.perSecond ?? 20;
    this.#message = options.message ?? 'request rejected';
    this.#summaryMessage = options.summaryMessage ?? 'more requests rejected than logged one by one';
  }

  record(r: Rejection): void {
    const now = Date.now();
    if (now - this.#windowStart >= 1_000) {
      this.flush();
      this.#windowStart = now;
      this.#logged = 0;
    }
    if (++this.#logged <= this.#perSecond) {
      this.#log[r.status >= 500 ? 'warn' : 'info'](r, this.#message);
      return;
    }
    this.#suppressed.set(r.error, (this.#suppressed.get(r.error) ?? 0) + 1);
    this.#flushTimer ??= setTimeout(() => this.flush(), this.#windowStart + 1_000 - now).unref();
  }

  /** Log the count of rejections not logged one by one, if any. */
  flush(): void {
    clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    if (this.#suppressed.size === 0) return;
    const counts = Object.fromEntries(this.#suppressed);
    this.#suppressed = new Map();
    this.#log.warn({ rejected: counts }, this.#summaryMessage);
  }
}
